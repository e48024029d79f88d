"""Failover under load: a PostgreSQL 15 primary with a streaming standby, the primary stopped and
the standby promoted while two pods serve conversations through a multi-host URL
(``postgresql://postgres@127.0.0.1:<primary>,127.0.0.1:<standby>/db?target_session_attrs=read-write``).

While no primary is there every request is answered within the pool timeout plus a margin, with
503 and Retry-After (never a hang to the client's timeout, never another 5xx); runs succeed again
within seconds of the promotion, without a pod restart; with synchronous replication no
acknowledged run is lost, also when the standby's replay lags behind (paused) at the failover.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from migrate.runner import Options, run
from service.db import to_url
from service.runs.execution import UNAVAILABLE_MESSAGE
from tests.support.load import Call, Load
from tests.support.pgcluster import Cluster, require_pg15
from tests.support.service import ServiceProcess

POOL_TIMEOUT = 3.0
# DB_IO_TIMEOUT and DB_CONNECT_TIMEOUT stay at their defaults: the test is of what an operator gets.
# RUN_LEASE_SECONDS at its default (30 s), longer than the outages here: runs in flight keep their
# thread instead of being taken over by the other pod.
FAILOVER_ENV = {"DB_POOL_TIMEOUT": str(POOL_TIMEOUT), "RUN_LEASE_SECONDS": "30"}
# A request makes several database calls in turn; the one that meets the outage waits at most the
# pool timeout, and the run's end is recorded (or given up) within another. The rest is margin for
# a loaded 2-core machine. The client gives up at 30 s: a hang shows as status 0.
BOUND = 2 * POOL_TIMEOUT + 4


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def ready(pod: ServiceProcess) -> int:
    try:
        return httpx.get(pod.url + "/ready", timeout=10).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    require_pg15()
    c = Cluster(synchronous=True).start()
    try:
        yield c
    finally:
        c.close()


def start_pods(cluster: Cluster, **env: str) -> tuple[list[ServiceProcess], str]:
    dbname = cluster.create_database()
    url = to_url(cluster.url(dbname))
    assert "," in url and "target_session_attrs=read-write" in url  # the multi-host URL form
    run(Options(conninfo=cluster.url(dbname)))
    pods = [ServiceProcess(cluster.url(dbname), **{**FAILOVER_ENV, **env}) for _ in range(2)]
    for p in pods:
        p.start(wait=None)
    for p in pods:
        p.wait_for("/ready", timeout=60)
    assert all(p.env["DATABASE_URL"] == url for p in pods)
    return pods, url


def failover(cluster: Cluster, pods: list[ServiceProcess], *, lagging: bool) -> tuple[Load, dict[str, float]]:
    """Stop the primary under load, promote the standby once the pods noticed; return the figures."""
    load = Load([p.url for p in pods]).start()
    figures: dict[str, float] = {}
    try:
        wait_until(lambda: load.ok_count() >= 15, "load warmed up")
        if lagging:
            cluster.pause_replay()
            mark = load.ok_count()
            wait_until(lambda: load.ok_count() >= mark + 15 and cluster.replay_lag_bytes() > 0,
                       "runs acknowledged while the standby's replay is paused")
            figures["lag_bytes"] = cluster.replay_lag_bytes()
        before = len(load.calls)
        stopped = time.monotonic()
        cluster.stop_primary("fast")
        # A cluster manager promotes once the primary is found gone; here: once both pods say so.
        wait_until(lambda: all(ready(p) == 503 for p in pods), "pods notice the primary is gone")
        wait_until(lambda: any(c.status >= 400 or c.status == 0 for c in load.calls[before:]),
                   "a request meets the outage")
        figures["noticed_s"] = time.monotonic() - stopped
        promote_started = time.monotonic()
        cluster.promote()
        promoted = time.monotonic()
        figures["promote_s"] = promoted - promote_started
        at_promotion = len(load.calls)
        figures["first_run_s"] = wait_until(
            lambda: any(c.path.endswith("/runs/wait") and 0 < c.status < 400 for c in load.calls[at_promotion:]),
            "a run succeeds on the promoted standby")
        wait_until(lambda: all(ready(p) == 200 for p in pods), "pods ready again")
        figures["ready_s"] = time.monotonic() - promoted
        after = load.ok_count()
        wait_until(lambda: load.ok_count() >= after + 15, "serving on the new primary")
    finally:
        load.stop()
    figures["outage_s"] = promoted - stopped
    return load, figures


def check_and_report(name: str, load: Load, pods: list[ServiceProcess], figures: dict[str, float],
                     bound: float = BOUND) -> None:
    failed = load.failed()
    slowest = max(c.seconds for c in load.calls)
    lost = load.lost(pods[0].url)
    print(f"\nfailover {name}: {len(load.calls)} requests, {len(failed)} failed "
          f"(statuses {sorted({c.status for c in failed})}), slowest {slowest:.2f} s, runs acknowledged "
          f"{sum(len(v) for v in load.acknowledged.values())}, lost {len(lost)}; primary gone "
          f"{figures['outage_s']:.1f} s (promotion {figures['promote_s']:.1f} s), first run "
          f"{figures['first_run_s']:.2f} s and both pods ready {figures['ready_s']:.2f} s after the promotion"
          + (f"; {len(load.streamed_errors)} runs/wait past the heartbeat ended with the outage in the body"
             if load.streamed_errors else "")
          + (f"; replay lag at the failover {int(figures['lag_bytes'])} bytes" if "lag_bytes" in figures else ""))
    assert failed, "the failover was not noticed at all"
    assert load.errors_in_body == [], load.errors_in_body  # a run the database failed under is a 503
    # ...unless its runs/wait outlived STREAM_HEARTBEAT_SECONDS: the 200 went out with the first
    # keep-alive, so the body names the outage (a client retries on that message, docs/reliability.md).
    for body in load.streamed_errors:
        assert UNAVAILABLE_MESSAGE in body, body
    for call in failed:  # never a hang (status 0: the client's 30 s timeout), never another 5xx
        assert call.status == 503, call
        assert call.retry_after, call
        assert call.problem.startswith("{"), call
    assert slowest < bound, [c for c in load.calls if c.seconds >= bound]
    assert figures["first_run_s"] < 30  # "within seconds": generous for a loaded machine
    assert lost == [], lost
    assert all(p.proc is not None and p.proc.poll() is None for p in pods)  # no pod restarted


class TestFailover:
    def test_should_answer_503_then_resume_on_the_promoted_standby_losing_nothing(self, cluster: Cluster) -> None:
        pods, _ = start_pods(cluster)
        try:
            load, figures = failover(cluster, pods, lagging=False)
            check_and_report("synchronous standby", load, pods, figures)
        finally:
            for p in pods:
                p.stop()

    def test_should_lose_nothing_when_the_standby_replays_behind(self, cluster: Cluster) -> None:
        pods, _ = start_pods(cluster)
        try:
            load, figures = failover(cluster, pods, lagging=True)
            assert figures["lag_bytes"] > 0
            assert not cluster.standby_in_recovery()
            check_and_report("synchronous standby, replay paused", load, pods, figures)
        finally:
            for p in pods:
                p.stop()


class TestStandbyGoneFirst:
    """The standby is promoted while the old primary still runs (a manager that fences it late).

    The old primary's COMMITs wait for a synchronous standby that left, with no server-side limit
    (PostgreSQL turns statement_timeout off during COMMIT): only the service's DB_IO_TIMEOUT ends
    them. Those writes exist on the old primary only; they must not be acknowledged.
    """

    @staticmethod
    def _promote_then_fence(
        cluster: Cluster, env: dict[str, str], refused: Callable[[list[Call]], bool]
    ) -> tuple[Load, list[ServiceProcess], dict[str, float], list[Call]]:
        pods, _ = start_pods(cluster, **env)
        load = Load([p.url for p in pods]).start()
        figures: dict[str, float] = {}
        try:
            wait_until(lambda: load.ok_count() >= 15, "load warmed up")
            started = time.monotonic()
            cluster.promote()  # the old primary keeps running: read-write, first in the URL
            promoted = time.monotonic()
            figures["promote_s"] = promoted - started
            at_promotion = len(load.calls)
            wait_until(lambda: refused(load.calls[at_promotion:]), "writes on the old primary are refused")
            stopped = time.monotonic()
            cluster.stop_primary("fast")  # fenced at last
            at_stop = len(load.calls)
            figures["first_run_s"] = wait_until(
                lambda: any(c.path.endswith("/runs/wait") and 0 < c.status < 400 for c in load.calls[at_stop:]),
                "a run succeeds on the promoted standby")
            wait_until(lambda: all(ready(p) == 200 for p in pods), "pods ready again")
            figures["ready_s"] = time.monotonic() - stopped
            after = load.ok_count()
            wait_until(lambda: load.ok_count() >= after + 15, "serving on the new primary")
        except BaseException:
            load.stop()
            for p in pods:
                p.stop()
            raise
        load.stop()
        figures["outage_s"] = stopped - promoted
        return load, pods, figures, load.calls[at_promotion:at_stop]

    def test_should_answer_503_before_the_clients_timeout_and_acknowledge_nothing_unconfirmed(
        self, cluster: Cluster
    ) -> None:
        # The defaults: DB_STATEMENT_TIMEOUT 10 s, so DB_IO_TIMEOUT 15 s, below the client's 30 s.
        load, pods, figures, window = self._promote_then_fence(
            cluster, {}, lambda calls: sum(1 for c in calls if c.status >= 400) >= 4)
        try:
            assert [c for c in window if c.status == 503], "no write waited for the departed standby"
            # The COMMIT waits DB_IO_TIMEOUT; its request may have waited for a pooled connection first.
            check_and_report("standby promoted before the old primary stopped", load, pods, figures,
                             bound=15 + POOL_TIMEOUT + 4)
        finally:
            for p in pods:
                p.stop()

    def test_should_hang_to_the_clients_timeout_with_an_io_timeout_above_it(self, cluster: Cluster) -> None:
        # The control, the report: DB_STATEMENT_TIMEOUT 30 s made DB_IO_TIMEOUT 35 s, and
        # requests that met the departed standby hung until the client gave up at 30 s.
        load, pods, _, window = self._promote_then_fence(
            cluster, {"DB_STATEMENT_TIMEOUT": "30"}, lambda calls: any(c.status == 0 for c in calls))
        try:
            hung = [c for c in window if c.status == 0]
            print(f"\ncontrol (DB_IO_TIMEOUT 35 s): {len(hung)} requests hung to the client's "
                  f"{load.timeout:g} s timeout")
            assert hung and all(c.seconds >= load.timeout for c in hung)
            assert load.lost(pods[0].url) == []  # not acknowledged either: the client gave up first
        finally:
            for p in pods:
                p.stop()


class TestAsynchronousStandby:
    def test_should_lose_the_runs_acknowledged_while_the_standby_was_behind(self) -> None:
        """What asynchronous replication can lose (docs/reliability.md): the primary acknowledges a
        COMMIT before any standby has it. The replication link stalls, runs go on being acknowledged,
        the primary crashes and the standby is promoted without them. The service's part still holds:
        503s, no hang, serving again after the promotion; past it, a 404 only for a thread the
        promoted standby never received."""
        require_pg15()
        cluster = Cluster(synchronous=False, link_proxy=True).start()
        pods: list[ServiceProcess] = []
        try:
            pods, _ = start_pods(cluster)
            load = Load([p.url for p in pods]).start()
            try:
                wait_until(lambda: load.ok_count() >= 15, "load warmed up")
                cluster.wait_replayed()
                assert cluster.link is not None
                cluster.link.stall()  # the standby receives nothing from now on
                acked = sum(len(v) for v in load.acknowledged.values())
                wait_until(lambda: sum(len(v) for v in load.acknowledged.values()) >= acked + 5,
                           "runs acknowledged by the primary alone")
                stopped = time.monotonic()
                cluster.stop_primary("immediate")  # a crash: nothing more reaches the standby
                wait_until(lambda: all(ready(p) == 503 for p in pods), "pods notice the primary is gone")
                before_promotion = len(load.calls)
                cluster.promote()
                promoted = time.monotonic()
                at_promotion = len(load.calls)
                first_run = wait_until(
                    lambda: any(c.path.endswith("/runs/wait") and 0 < c.status < 400
                                for c in load.calls[at_promotion:]), "a run succeeds on the promoted standby")
                after = load.ok_count()
                wait_until(lambda: load.ok_count() >= after + 10, "serving on the new primary")
            finally:
                load.stop()
            lost = load.lost(pods[0].url)
            failed = load.failed()
            print(f"\nfailover asynchronous standby, link stalled: {len(load.calls)} requests, {len(failed)} failed "
                  f"(statuses {sorted({c.status for c in failed})}), runs acknowledged "
                  f"{sum(len(v) for v in load.acknowledged.values())}, lost {len(lost)} (at least 5 acknowledged "
                  f"after the stall); primary gone {promoted - stopped:.1f} s, first run {first_run:.2f} s after "
                  f"the promotion")
            assert lost, "nothing was lost: the test did not stall replication"
            # A thread created on the old primary after the stall is not on the promoted standby: a
            # request for it after the promotion is an honest 404. Any other failure is a 503.
            gone_after_promotion = {id(c) for c in load.calls[before_promotion:] if c.status == 404}
            for call in failed:
                if id(call) in gone_after_promotion:
                    thread_id = call.path.split("/")[2]
                    assert httpx.get(f"{pods[0].url}/threads/{thread_id}", timeout=10).status_code == 404, call
                    assert "not found" in call.problem, call
                    continue
                assert call.status == 503 and call.retry_after, call
            assert max(c.seconds for c in load.calls) < BOUND
        finally:
            for p in pods:
                p.stop()
            cluster.close()
