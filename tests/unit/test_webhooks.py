"""The webhook URL policy (no I/O): which hosts and addresses a webhook may reach."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from service.errors import Unprocessable
from service.runs.webhooks import WebhookRefused, checked_addresses, refusal, validate_webhook
from service.settings import ConfigError, WebhookSettings

STRICT = WebhookSettings()
OPEN = WebhookSettings(allow_link_local=True, allow_loopback=True)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://169.254.1.1:8080/", "http://[fe80::1]/",
    "http://[fd00:ec2::254]/", "http://100.100.100.200/", "http://168.63.129.16/",
    "http://[::ffff:169.254.169.254]/", "http://metadata.google.internal/computeMetadata/v1/",
    "http://127.0.0.1:8000/threads", "http://localhost/", "http://api.localhost/", "http://0.0.0.0/",
    "http://[::1]/", "http://224.0.0.1/", "http://255.255.255.255/",
])
def test_should_refuse_link_local_metadata_loopback_and_reserved_hosts(url: str) -> None:
    with pytest.raises(Unprocessable) as info:
        validate_webhook(url, STRICT)
    assert "\n" not in info.value.detail and info.value.detail.startswith("webhook host is refused")


@pytest.mark.parametrize("url", ["https://hooks.example.com/x?y=1", "http://10.0.0.5:9000/hook",
                                 "http://receiver.default.svc.cluster.local/hook", "http://[2001:db8::1]/"])
def test_should_accept_public_and_private_hosts(url: str) -> None:
    validate_webhook(url, STRICT)


def test_should_allow_link_local_and_loopback_only_by_setting() -> None:
    for url in ("http://169.254.169.254/", "http://[fe80::1]/", "http://127.0.0.1:9/", "http://localhost/"):
        validate_webhook(url, OPEN)
    validate_webhook("http://127.0.0.1:9/", WebhookSettings(allow_loopback=True))
    with pytest.raises(Unprocessable):
        validate_webhook("http://169.254.169.254/", WebhookSettings(allow_loopback=True))
    # Multicast stays refused whatever the settings say.
    assert refusal(ipaddress.ip_address("224.0.0.1"), OPEN) is not None


@pytest.mark.parametrize("url", ["", "ftp://example.com/", "/threads", "example.com/hook", "http://",
                                 "http://example.com:99999/", "http://exa mple.com/", "x" * 5000])
def test_should_answer_malformed_urls_with_one_line(url: str) -> None:
    with pytest.raises(Unprocessable) as info:
        validate_webhook(url, STRICT)
    assert "\n" not in info.value.detail and len(info.value.detail) < 200


def test_should_refuse_a_name_that_resolves_to_a_metadata_address() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"evil.test": ["93.184.216.34", "169.254.169.254"], "fine.test": ["93.184.216.34"],
                "mapped.test": ["::ffff:169.254.169.254"]}[host]

    with pytest.raises(WebhookRefused, match="cloud metadata"):
        asyncio.run(checked_addresses("evil.test", 80, STRICT, resolver))
    with pytest.raises(WebhookRefused):
        asyncio.run(checked_addresses("mapped.test", 80, STRICT, resolver))
    assert asyncio.run(checked_addresses("fine.test", 80, STRICT, resolver)) == ["93.184.216.34"]


def test_should_read_webhook_settings_from_the_environment() -> None:
    s = WebhookSettings.from_env({"WEBHOOK_ALLOW_LINK_LOCAL": "true", "WEBHOOK_TIMEOUT": "2.5",
                                  "WEBHOOK_ATTEMPTS": "5"})
    assert (s.allow_link_local, s.allow_loopback, s.timeout, s.attempts) == (True, False, 2.5, 5)
    with pytest.raises(ConfigError, match="WEBHOOK_ATTEMPTS"):
        WebhookSettings.from_env({"WEBHOOK_ATTEMPTS": "0"})
    with pytest.raises(ConfigError, match="WEBHOOK_ALLOW_LINK_LOCAL"):
        WebhookSettings.from_env({"WEBHOOK_ALLOW_LINK_LOCAL": "maybe"})
