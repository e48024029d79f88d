"""Webhooks: the run JSON POSTed to a run's ``webhook`` URL when it completes, without SSRF.

* ``validate_webhook(url)`` at run (and cron) creation: an http(s) URL with a host, whose host is not
  an address or name this service refuses; raises :class:`~service.errors.Unprocessable`.
* :class:`WebhookSender` posts in the background (a run's completion never waits for it), each
  attempt cut at ``timeout`` seconds, up to ``attempts`` attempts with exponential backoff on a
  connection error, a timeout, a 5xx, 408 or 429.
* Every connection resolves the host itself and connects to an address it checked (the check and
  the connection use the same address, so a DNS answer that changes in between cannot slip through),
  never through an environment proxy. Refused: link-local addresses (169.254.0.0/16, fe80::/10) and
  cloud metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200, 168.63.129.16, ...)
  unless ``WEBHOOK_ALLOW_LINK_LOCAL=true``; loopback and unspecified addresses (the pod itself)
  unless ``WEBHOOK_ALLOW_LOOPBACK=true``; multicast, broadcast and reserved addresses always.
  Private addresses (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed: in-cluster receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from service import metrics
from service.errors import Unprocessable
from service.logging import get_logger
from service.settings import WebhookSettings

log = get_logger("service.webhooks")

MAX_URL_LENGTH = 4096
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata and host-agent addresses (AWS, GCP, Azure, Oracle, OpenStack; Alibaba; AWS IPv6).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "169.254.169.123", "fd00:ec2::254", "fd00:ec2::23",
    "100.100.100.200", "168.63.129.16", "192.0.0.192",
))
METADATA_NAMES = frozenset(("metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"))
LOOPBACK_NAMES = frozenset(("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"))


class WebhookRefused(Exception):
    """The webhook's host is (or resolves to) an address the policy refuses."""


def refusal(address: IPAddress, policy: WebhookSettings) -> str | None:
    """Why ``address`` is refused under ``policy``, or None when a webhook may connect to it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return None if policy.allow_link_local else "a cloud metadata address"
    if address.is_link_local:
        return None if policy.allow_link_local else "a link-local address"
    if address.is_loopback or address.is_unspecified:
        return None if policy.allow_loopback else "a loopback address"
    if address.is_multicast or address.is_reserved or address == ipaddress.IPv4Address("255.255.255.255"):
        return "a multicast, broadcast or reserved address"
    return None


def _host_refusal(host: str, policy: WebhookSettings) -> str | None:
    name = host.lower().rstrip(".")
    try:
        return refusal(ipaddress.ip_address(name), policy)
    except ValueError:
        pass
    if name in METADATA_NAMES:
        return None if policy.allow_link_local else "a cloud metadata host"
    if (name in LOOPBACK_NAMES or name.endswith(".localhost")) and not policy.allow_loopback:
        return "a loopback host"
    return None


@functools.cache
def _env_policy() -> WebhookSettings:
    return WebhookSettings.from_env()


def validate_webhook(url: str, policy: WebhookSettings | None = None) -> None:
    """Raise Unprocessable (one line) unless ``url`` is a webhook URL this service would POST to.

    Checks the URL and a host given as an address or a well-known name; names are resolved (and
    their addresses checked) at each delivery, where the answer is the one connected to.
    """
    policy = policy or _env_policy()
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise Unprocessable(f"webhook must be an http or https URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Unprocessable("webhook is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Unprocessable("webhook must be an absolute http or https URL")
    if port == 0 or any(c in url for c in "\x00\r\n\t "):
        raise Unprocessable("webhook is not a valid URL")
    why = _host_refusal(parts.hostname, policy)
    if why is not None:
        raise Unprocessable(f"webhook host is refused: {why}")


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def checked_addresses(host: str, port: int, policy: WebhookSettings,
                            resolve: Callable[[str, int], Any] = _system_resolve) -> list[str]:
    """The addresses of ``host`` to connect to; WebhookRefused when any of them is refused.

    One refused address refuses the host (a name that answers with both a public address and the
    metadata address is an attack, not a misconfiguration).
    """
    why = _host_refusal(host, policy)
    if why is not None:
        raise WebhookRefused(why)
    try:
        literal = ipaddress.ip_address(host)
        return [str(literal)]
    except ValueError:
        pass
    try:
        found = [str(a) for a in await resolve(host, port)]
    except OSError:
        raise httpcore.ConnectError(f"cannot resolve {host[:100]}") from None
    if not found:
        raise httpcore.ConnectError(f"{host[:100]} has no address")
    for address in found:
        why = refusal(ipaddress.ip_address(address.split("%", 1)[0]), policy)
        if why is not None:
            raise WebhookRefused(f"{host[:100]} resolves to {why}")
    return list(dict.fromkeys(found))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to checked addresses (TLS still names the host)."""

    def __init__(self, policy: WebhookSettings, resolve: Callable[[str, int], Any] = _system_resolve) -> None:
        self.policy = policy
        self.resolve = resolve
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await checked_addresses(host, port, self.policy, self.resolve):
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise WebhookRefused("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over :class:`GuardedBackend`; no proxies from the environment."""

    def __init__(self, policy: WebhookSettings, resolve: Callable[[str, int], Any] = _system_resolve) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=32,
            max_keepalive_connections=8, keepalive_expiry=5.0, network_backend=GuardedBackend(policy, resolve),
        )


def webhook_payload(run: dict[str, Any], *, status: str, started_at: dt.datetime | None,
                    ended_at: dt.datetime | None, values: Any, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body the LangGraph Server posts: the run, its final status and times, and the thread's values."""
    payload = {
        **run, "status": status,
        "run_started_at": started_at.isoformat() if started_at else None,
        "run_ended_at": ended_at.isoformat() if ended_at else None,
        "webhook_sent_at": dt.datetime.now(dt.UTC).isoformat(),
        "values": values,
    }
    if error is not None:
        payload["error"] = error
    return payload


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class WebhookSender:
    """Posts webhooks in the background of the process that finished the run; drained on shutdown."""

    def __init__(self, policy: WebhookSettings, resolve: Callable[[str, int], Any] = _system_resolve) -> None:
        self.policy = policy
        self.client = httpx.AsyncClient(transport=GuardedTransport(policy, resolve), follow_redirects=False,
                                        timeout=httpx.Timeout(policy.timeout), trust_env=False,
                                        headers={"User-Agent": "langgraph-pg-webhook"})
        self.pending: set[asyncio.Task[bool]] = set()

    def send(self, url: str, payload: dict[str, Any], *, run_id: str | None = None) -> asyncio.Task[bool]:
        """Post ``payload`` to ``url`` in the background; never raises, never waits."""
        task = asyncio.get_running_loop().create_task(self.post(url, payload, run_id=run_id), name="webhook")
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task

    async def deliver(self, url: str, payload: dict[str, Any]) -> None:
        """``post`` for a caller that keeps its own background task (the run manager's webhook hook)."""
        run_id = payload.get("run_id")
        await self.post(url, payload, run_id=str(run_id) if run_id is not None else None)

    async def post(self, url: str, payload: dict[str, Any], *, run_id: str | None = None) -> bool:
        """Deliver with the bounded retry; True when the receiver answered 2xx. Logs the host, never the URL."""
        try:
            host = urlsplit(url).hostname or ""
            body = _encode(payload)
        except (ValueError, TypeError) as exc:
            metrics.WEBHOOKS.labels("failed").inc()
            log.warning("webhook_failed", run_id=run_id, reason=type(exc).__name__)
            return False
        for attempt in range(1, self.policy.attempts + 1):
            outcome: str
            try:
                async with asyncio.timeout(self.policy.timeout):
                    resp = await self.client.post(url, content=body, headers={"Content-Type": "application/json"})
                if resp.is_success:
                    metrics.WEBHOOKS.labels("delivered").inc()
                    log.info("webhook_delivered", host=host, run_id=run_id, attempt=attempt, status=resp.status_code)
                    return True
                outcome = f"status {resp.status_code}"
                if not _retryable(resp.status_code):
                    break
            except WebhookRefused as exc:
                metrics.WEBHOOKS.labels("refused").inc()
                log.warning("webhook_refused", host=host, run_id=run_id, reason=str(exc))
                return False
            except TimeoutError:
                outcome = "timeout"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            except (ValueError, TypeError, OSError) as exc:  # e.g. a URL httpx cannot send: no retry helps
                outcome = type(exc).__name__
                break
            log.info("webhook_attempt_failed", host=host, run_id=run_id, attempt=attempt, outcome=outcome)
            if attempt < self.policy.attempts:
                await asyncio.sleep(self.policy.backoff * 2 ** (attempt - 1))
        metrics.WEBHOOKS.labels("failed").inc()
        log.warning("webhook_failed", host=host, run_id=run_id, attempts=self.policy.attempts)
        return False

    async def close(self, timeout: float = 10.0) -> None:
        """Let deliveries in flight finish for up to ``timeout`` seconds, then cancel the rest."""
        if self.pending:
            _, late = await asyncio.wait(set(self.pending), timeout=timeout)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.client.aclose()


def _encode(payload: dict[str, Any]) -> bytes:
    import orjson

    from service.serde import to_jsonable

    return orjson.dumps(to_jsonable(payload), option=orjson.OPT_NON_STR_KEYS)
