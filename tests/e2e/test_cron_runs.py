"""Crons that fire through real service processes: the runs they create execute, once per slot.

Three pods on one database; every pod runs a scheduler. Schedules have a seconds field
(``* * * * * */2``) so the default suite runs in seconds; the per-minute version of "three pods,
five minutes, five firings" is in tests/integration/test_crons.py (CRON_FIVE_MINUTES=1).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from croniter import croniter
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from tests.support.receiver import webhook_receiver
from tests.support.service import ServiceProcess

DEADLINE = 120.0
EVERY_2S = "* * * * * */2"
INPUT = {"messages": [{"role": "user", "content": "tick"}], "delay": 0.05}


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_receiver() as hooks:
        yield hooks


@pytest.fixture
def pods(migrated_db: str) -> Iterator[list[ServiceProcess]]:
    with ExitStack() as stack:
        procs = [ServiceProcess(migrated_db, CRON_MAX_SLEEP="1", WEBHOOK_ALLOW_LOOPBACK="true",
                                WEBHOOK_BACKOFF="0.1") for _ in range(3)]
        for p in procs:
            stack.callback(p.stop)
            p.start(wait=None)
        for p in procs:
            p.wait_for("/ready")
        yield procs


def slots_until(schedule: str, first: str, n: int) -> dt.datetime:
    it, end = croniter(schedule, dt.datetime.fromisoformat(first)), dt.datetime.fromisoformat(first)
    for _ in range(n - 1):
        end = it.get_next(dt.datetime)
    return end


def firings(pods: list[ServiceProcess], outcome: str = "fired") -> float:
    total = 0.0
    for p in pods:
        for line in httpx.get(p.url + "/metrics").text.splitlines():
            if line.startswith(f'langgraph_cron_firings_total{{outcome="{outcome}"}}'):
                total += float(line.rsplit(" ", 1)[1])
    return total


def limit_to(client: SyncLangGraphClient, cron: dict[str, Any], n: int) -> dt.datetime:
    """Set end_time to the cron's n-th slot from its current next_run_date."""
    end = slots_until(cron["schedule"], cron["next_run_date"], n)
    client.crons.update(cron["cron_id"], end_time=end)
    return end


def done(pod: ServiceProcess, cron_id: str) -> bool:
    """The cron's last slot has fired (its next_run_date is NULL)."""
    return httpx.get(f"{pod.url}/runs/crons/{cron_id}").json()["next_run_date"] is None


def test_should_fire_a_thread_cron_once_per_slot_across_three_pods(pods: list[ServiceProcess],
                                                                  receiver: tuple[str, list[Any]]) -> None:
    url, hooks = receiver
    client = get_sync_client(url=pods[0].url)
    thread = client.threads.create()
    cron: Any = client.crons.create_for_thread(thread["thread_id"], "slow", schedule=EVERY_2S, input=INPUT,
                                               webhook=url)
    limit_to(client, cron, 5)
    wait_until(lambda: done(pods[0], cron["cron_id"]), "the cron's last slot")
    runs = wait_until(lambda: (r := client.runs.list(thread["thread_id"], limit=50)) and
                      all(x["status"] == "success" for x in r) and len(r) >= 5 and r, "five successful runs")
    assert len(runs) == 5
    assert {r["metadata"].get("cron_id") for r in runs} == {cron["cron_id"]}
    assert firings(pods) == 5
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"].get("steps", 0) >= 2, state  # the graph ran
    wait_until(lambda: len(hooks) >= 5, "five webhooks")
    assert sorted(h["run_id"] for h in hooks) == sorted(r["run_id"] for r in runs)
    assert {h["status"] for h in hooks} == {"success"}


def test_should_give_each_firing_of_a_stateless_cron_its_own_thread(pods: list[ServiceProcess]) -> None:
    client = get_sync_client(url=pods[1].url)
    kept: Any = client.crons.create("slow", schedule=EVERY_2S, input=INPUT, on_run_completed="keep",
                                    metadata={"which": "kept"})
    limit_to(client, kept, 3)
    wait_until(lambda: done(pods[1], kept["cron_id"]), "the kept cron's last slot")
    threads = wait_until(lambda: (t := client.threads.search(metadata={"cron_id": kept["cron_id"]}, limit=50))
                         and len(t) >= 3 and all(x["status"] == "idle" for x in t) and t, "three idle threads")
    assert len(threads) == 3
    for t in threads:
        runs = client.runs.list(t["thread_id"])
        assert [r["status"] for r in runs] == ["success"]
        assert runs[0]["metadata"]["which"] == "kept"


def test_should_delete_the_threads_of_a_stateless_cron_by_default(pods: list[ServiceProcess]) -> None:
    client = get_sync_client(url=pods[2].url)
    cron: Any = client.crons.create("slow", schedule=EVERY_2S, input=INPUT)
    assert cron["on_run_completed"] == "delete"
    limit_to(client, cron, 2)
    wait_until(lambda: done(pods[2], cron["cron_id"]), "the cron's last slot")
    wait_until(lambda: firings(pods) == 2, "two firings")
    wait_until(lambda: client.threads.search(metadata={"cron_id": cron["cron_id"]}) == [],
               "the firings' threads deleted after their runs")


def test_should_not_fire_after_end_time_or_when_disabled(pods: list[ServiceProcess]) -> None:
    client = get_sync_client(url=pods[0].url)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    ended: Any = client.crons.create("slow", schedule=EVERY_2S, input=INPUT, end_time=past,
                                     on_run_completed="keep")
    assert ended["next_run_date"] is None
    disabled: Any = client.crons.create("slow", schedule=EVERY_2S, input=INPUT, enabled=False,
                                        on_run_completed="keep")
    # A cron that does fire, as the clock for "long enough": two of its slots pass.
    probe: Any = client.crons.create("slow", schedule=EVERY_2S, input=INPUT, on_run_completed="keep")
    limit_to(client, probe, 2)
    wait_until(lambda: done(pods[0], probe["cron_id"]), "the probe's last slot")
    for cron in (ended, disabled):
        assert client.threads.search(metadata={"cron_id": cron["cron_id"]}) == []


def test_should_wake_the_schedulers_of_other_pods(migrated_db: str) -> None:
    """Pod A has no scheduler; pod B's sleeps an hour: a cron created on A fires because B hears of it."""
    with ServiceProcess(migrated_db, CRON_SCHEDULER="false") as a, \
            ServiceProcess(migrated_db, CRON_MAX_SLEEP="3600") as b:
        client = get_sync_client(url=a.url)
        cron: Any = client.crons.create("slow", schedule=EVERY_2S, input=INPUT, on_run_completed="keep")
        limit_to(client, cron, 1)
        wait_until(lambda: done(a, cron["cron_id"]), "the firing, by pod B")
        assert firings([a]) == 0 and firings([b]) == 1


@pytest.mark.skipif(not os.environ.get("CRON_FIVE_MINUTES"), reason="set CRON_FIVE_MINUTES=1: five real minutes")
def test_should_fire_a_per_minute_cron_five_times_in_five_minutes_with_three_pods(pods: list[ServiceProcess]) -> None:
    client = get_sync_client(url=pods[0].url)
    thread = client.threads.create()
    cron: Any = client.crons.create_for_thread(thread["thread_id"], "slow", schedule="* * * * *", input=INPUT)
    end = limit_to(client, cron, 5)
    wait_until(lambda: done(pods[0], cron["cron_id"]), "the fifth minute",
               timeout=DEADLINE + (end - dt.datetime.now(dt.UTC)).total_seconds())
    runs = wait_until(lambda: (r := client.runs.list(thread["thread_id"], limit=50)) and
                      all(x["status"] == "success" for x in r) and r, "the runs to finish")
    assert len(runs) == 5 and firings(pods) == 5
    print(f"\nper-minute cron, three pods: {len(runs)} runs, firings per pod "
          f"{[firings([p]) for p in pods]}")
