"""Crons on a real PostgreSQL: the store, and the scheduler's exactly-once claim across OS processes.

The scheduler processes (tests/support/cron_worker.py) run the real :class:`CronScheduler` with a
Submit that inserts into a table of the test, in the claim's transaction; a trigger logs every claim
with its transaction id, so each fired row is joined to the slot it fired. The naive check-then-act
scheduler, in the same setup, fires slots twice: so these tests can fail.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from croniter import croniter
from psycopg.rows import dict_row

from service import db
from service.errors import NotFound, Unprocessable
from service.pool import Pool
from service.runs.crons import CronFilters, CronSpec, CronStore
from tests.support.cron_worker import FIRED_SLOTS_SQL, prepare
from tests.support.pgbouncer import pgbouncer
from tests.support.race import ROOT, python_env

DEADLINE = 120.0


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def _with_store(conninfo: str, action: Callable[[CronStore], Any]) -> Any:
    pool = Pool(conninfo, min_size=1, max_size=2, kwargs=db.pool_kwargs(pgbouncer=False), open=False)
    await pool.open(wait=True)
    try:
        return await action(CronStore(pool))
    finally:
        await pool.close()


def store(conninfo: str, action: Callable[[CronStore], Any]) -> Any:
    return asyncio.run(_with_store(conninfo, action))


def spec(schedule: str, **kw: Any) -> CronSpec:
    base: dict[str, Any] = {"assistant_id": "support", "thread_id": None, "schedule": schedule, "timezone": None,
                            "payload": {"assistant_id": "support", "input": {"n": 1}}, "metadata": {"k": "v"},
                            "on_run_completed": "delete"}
    base.update(kw)
    return CronSpec(**base)


# -- the store --------------------------------------------------------------------------------------

def test_should_create_get_search_count_patch_and_delete_crons(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        conn.execute("INSERT INTO threads (thread_id) VALUES ('t-1')")

    async def scenario(s: CronStore) -> None:
        a = await s.create(spec("*/5 * * * *", timezone="Europe/Paris", metadata={"team": "a"}))
        b = await s.create(spec("0 9 * * 1", thread_id="t-1", on_run_completed=None, enabled=False))
        assert a["next_run_date"] is not None and a["timezone"] == "Europe/Paris"
        assert dt.datetime.fromisoformat(a["next_run_date"]) > dt.datetime.now(dt.UTC)
        assert (await s.get(a["cron_id"]))["payload"] == {"assistant_id": "support", "input": {"n": 1}}
        assert await s.count(CronFilters()) == 2
        assert await s.count(CronFilters(thread_id="t-1")) == 1
        assert [c["cron_id"] for c in await s.search(CronFilters(metadata={"team": "a"}), 10, 0, "created_at",
                                                       "desc")] == [a["cron_id"]]
        assert [c["cron_id"] for c in await s.search(CronFilters(enabled=False), 10, 0, "created_at", "asc")] \
            == [b["cron_id"]]
        both = await s.search(CronFilters(), 10, 0, "created_at", "asc")
        assert [c["cron_id"] for c in both] == [a["cron_id"], b["cron_id"]]
        assert [c["cron_id"] for c in await s.search(CronFilters(), 1, 1, "created_at", "asc")] == [b["cron_id"]]

        patched = await s.patch(b["cron_id"], {"schedule": "* * * * * */10", "enabled": True,
                                               "metadata": {"x": 1}}, {"input": {"n": 2}})
        assert patched["schedule"] == "* * * * * */10" and patched["enabled"] is True
        assert patched["metadata"] == {"k": "v", "x": 1}
        assert patched["payload"]["input"] == {"n": 2} and patched["payload"]["metadata"] == {"k": "v", "x": 1}
        nxt = dt.datetime.fromisoformat(patched["next_run_date"])
        assert nxt.second % 10 == 0 and nxt - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=11)

        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        assert (await s.patch(b["cron_id"], {"end_time": later}, {}))["next_run_date"] == patched["next_run_date"]
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        ended = await s.patch(a["cron_id"], {"end_time": past}, {})
        assert ended["next_run_date"] is None and ended["end_time"] is not None

        with pytest.raises(Unprocessable):
            await s.patch(a["cron_id"], {"schedule": "61 * * * *"}, {})
        with pytest.raises(Unprocessable):
            await s.patch(a["cron_id"], {"timezone": "Mars/Olympus"}, {})
        with pytest.raises(NotFound):
            await s.create(spec("* * * * *", thread_id="no-such-thread"))
        with pytest.raises(Unprocessable):
            await s.get("not-a-uuid")
        await s.delete(a["cron_id"])
        with pytest.raises(NotFound):
            await s.get(a["cron_id"])
        with pytest.raises(NotFound):
            await s.delete(a["cron_id"])

    store(migrated_db, scenario)
    # A thread's crons go with it.
    with psycopg.connect(migrated_db) as conn:
        conn.execute("DELETE FROM threads WHERE thread_id = 't-1'")
        assert conn.execute("SELECT count(*) FROM crons").fetchone() == (0,)


# -- the scheduler, across processes ---------------------------------------------------------------

class Workers:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo  # the workers' (perhaps through PgBouncer)
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.dir = Path(tempfile.mkdtemp(prefix="cron-workers-"))

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.dir / f"{name}.log"
        conninfo = db.with_params(self.conninfo, application_name=f"cron-{name}")
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tests.support.cron_worker", conninfo, *args],
                                    env=python_env(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        wait_until(lambda: "cron_worker_ready" in log.read_text() or proc.poll() is not None, f"worker {name}")
        assert proc.poll() is None, log.read_text()[-3000:]
        return proc

    def logs(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-2000:] for _, log in self.procs)

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def workers(conninfo: str) -> Iterator[Workers]:
    w = Workers(conninfo)
    try:
        yield w
    finally:
        w.stop()


def fired_slots(conninfo: str, cron_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        return conn.execute(FIRED_SLOTS_SQL, (cron_id,)).fetchall()


def cron_row(conninfo: str, cron_id: str) -> dict[str, Any]:
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM crons WHERE cron_id = %s", (cron_id,)).fetchone()
    assert row is not None
    return row


def expected_slots(schedule: str, first: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    slots, it = [first], croniter(schedule, first)
    while (nxt := it.get_next(dt.datetime)) <= end:
        slots.append(nxt)
    return slots


def fire_with(conninfo: str, schedule: str, firings: int, *worker_args: list[str],
              worker_conninfo: str | None = None) -> tuple[list[Any], list[Any]]:
    """Start the workers, then a cron of ``schedule`` whose end_time is its ``firings``-th slot; wait until
    the last slot is gone (next_run_date NULL). Return (fired rows with their slots, the slots due)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        prepare(conn)
    with workers(worker_conninfo or conninfo) as w:
        for i, args in enumerate(worker_args):
            w.start(f"w{i}", *args)
        cron = store(conninfo, lambda s: s.create(spec(schedule)))
        first = cron_row(conninfo, cron["cron_id"])["next_run_date"]
        it, end = croniter(schedule, first), first
        for _ in range(firings - 1):
            end = it.get_next(dt.datetime)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("UPDATE crons SET end_time = %s WHERE cron_id = %s", (end, cron["cron_id"]))
        slots = expected_slots(schedule, first, end)
        timeout = DEADLINE + (end - dt.datetime.now(dt.UTC)).total_seconds()
        try:
            wait_until(lambda: cron_row(conninfo, cron["cron_id"])["next_run_date"] is None, "the last firing",
                       timeout)
        except AssertionError:
            raise AssertionError(w.logs()) from None
        return fired_slots(conninfo, cron["cron_id"]), slots


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
def test_should_fire_each_slot_exactly_once_with_three_schedulers(migrated_db: str, route: str) -> None:
    with ExitStack() as stack:
        args, via = ["--max-sleep", "1"], None
        if route == "pgbouncer":
            via = stack.enter_context(pgbouncer(migrated_db))
            args.append("--pgbouncer")
        fired, slots = fire_with(migrated_db, "* * * * * */2", 5, *[args] * 3, worker_conninfo=via)
    assert len(slots) == 5
    assert [f["slot"] for f in fired] == slots, fired
    with psycopg.connect(migrated_db) as conn:
        # No claim without its run: every claim's transaction inserted exactly one fired row.
        orphans = conn.execute("SELECT count(*) FROM cron_claims c WHERE c.slot IS NOT NULL AND NOT EXISTS "
                               "(SELECT 1 FROM cron_fired f WHERE f.txid = c.txid)").fetchone()
    assert orphans == (0,)


def test_should_show_that_a_naive_scheduler_fires_slots_twice(migrated_db: str) -> None:
    """The same processes with check-then-act: some slot fires twice (rounds until it is seen)."""
    deadline = time.monotonic() + 240
    rounds = []
    while time.monotonic() < deadline:
        fired, slots = fire_with(migrated_db, "* * * * * */2", 5, *[["--max-sleep", "1", "--naive"]] * 3)
        rounds.append((len(fired), len(slots)))
        if len(fired) > len(slots):
            return
    raise AssertionError(f"the naive scheduler never double-fired: (fired, slots) per round {rounds}")


def test_should_fire_a_slot_once_when_the_pod_firing_it_dies(migrated_db: str) -> None:
    """SIGKILL a scheduler inside its firing's transaction: another fires that slot, once."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        prepare(conn)
    with workers(migrated_db) as w:
        doomed = w.start("doomed", "--max-sleep", "1", "--slow-submit", "30")
        cron = store(migrated_db, lambda s: s.create(spec("* * * * * */2")))

        def sleeping() -> bool:
            with psycopg.connect(migrated_db) as conn:
                return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cron-doomed' "
                                    "AND query LIKE %s", ("%pg_sleep%",)).fetchone() == (1,)

        wait_until(sleeping, "the doomed worker inside a firing")
        slot = cron_row(migrated_db, cron["cron_id"])["next_run_date"]  # its claim is not committed
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        # Its backend still sleeps (and holds the claim's row lock) until it notices the client is gone.
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'cron-doomed'")
        for i in range(2):
            w.start(f"heir{i}", "--max-sleep", "1")
        fired = wait_until(lambda: [f for f in fired_slots(migrated_db, cron["cron_id"]) if f["slot"] > slot],
                           "a firing after the lost one")
    rows = fired_slots(migrated_db, cron["cron_id"])
    assert [r["slot"] for r in rows].count(slot) == 1, rows
    assert len({r["slot"] for r in rows}) == len(rows), rows
    assert doomed.pid not in {r["pid"] for r in rows}
    assert fired


def test_should_fire_missed_slots_once_not_in_a_burst(migrated_db: str) -> None:
    """Every pod was down for ten slots: the first scheduler up fires once, then resumes on schedule."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        prepare(conn)
    cron = store(migrated_db, lambda s: s.create(spec("* * * * *")))
    missed = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=10)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("UPDATE crons SET next_run_date = %s WHERE cron_id = %s", (missed, cron["cron_id"]))
    with workers(migrated_db) as w:
        w.start("late", "--max-sleep", "1")
        resumed = wait_until(lambda: (n := cron_row(migrated_db, cron["cron_id"])["next_run_date"]) > missed and n,
                             "the missed firing")
    assert resumed > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)  # back on schedule, not at a missed slot
    rows = fired_slots(migrated_db, cron["cron_id"])
    assert [r["slot"] for r in rows if r["slot"] < resumed] == [missed]


@pytest.mark.skipif(not os.environ.get("CRON_FIVE_MINUTES"), reason="set CRON_FIVE_MINUTES=1: five real minutes")
def test_should_fire_a_per_minute_cron_five_times_in_five_minutes_with_three_schedulers(migrated_db: str) -> None:
    fired, slots = fire_with(migrated_db, "* * * * *", 5, *[[]] * 3)
    assert len(slots) == 5
    assert [f["slot"] for f in fired] == slots, fired


@pytest.mark.parametrize(("max_sleep", "idle"), [("1", True), ("0.02", False)])
def test_should_issue_few_statements_when_idle(migrated_db: str, max_sleep: str, idle: bool) -> None:
    """An idle scheduler (one far-off cron) looks once per max sleep: a few statements a second at most.

    Counted by PostgreSQL (transactions of the database, from pg_stat_database) while a scheduler
    runs for a short and for a long window, each stopped before counting: a backend may hold its
    counts back for up to 10 s while it lives and sends them as it exits. Start-up costs the same in
    both, so their difference over the difference of the windows is the idle loop's rate alone.
    """
    store(migrated_db, lambda s: s.create(spec("0 0 1 1 *")))
    name = psycopg.conninfo.conninfo_to_dict(migrated_db)["dbname"]

    def transactions() -> int:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                               (name,)).fetchone()
        assert row is not None
        return int(row[0])

    def backends() -> int:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                               "AND application_name LIKE 'cron-%%'", (name,)).fetchone()
        assert row is not None
        return int(row[0])

    def count(window: float) -> tuple[int, float]:
        before = transactions()
        with workers(migrated_db) as w:
            w.start("idle", "--max-sleep", max_sleep)
            started = time.monotonic()
            time.sleep(window)  # the measurement window (the scheduler's own sleeps), not a wait for an event
            elapsed = time.monotonic() - started
        wait_until(lambda: backends() == 0, "the scheduler's backends to exit (and send their counts)")
        return transactions() - before, elapsed

    short, short_s = count(2)
    long, long_s = count(8)
    rate = (long - short) / (long_s - short_s)
    print(f"\nscheduler sleeping up to {max_sleep} s: {rate:.2f} transactions/s ({short} in {short_s:.1f} s, "
          f"{long} in {long_s:.1f} s)")
    # The second case is the check of the check: a scheduler that looks every 20 ms is caught.
    assert (rate <= 3) is idle, f"{short} transactions in {short_s:.1f}s, {long} in {long_s:.1f}s"


def test_should_wait_quietly_for_the_schema_then_fire(fresh_db: str) -> None:
    """A pod started before the migration: one log line, no errors, and it fires once migrated."""
    from migrate.runner import Options, run

    with workers(fresh_db) as w:
        w.start("early", "--max-sleep", "0.2")
        wait_until(lambda: "cron_scheduler_waiting_for_schema" in w.logs(), "the scheduler to notice")
        run(Options(conninfo=fresh_db))
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            prepare(conn)
        cron = store(fresh_db, lambda s: s.create(spec("* * * * * */2")))
        wait_until(lambda: fired_slots(fresh_db, cron["cron_id"]), "a firing")
        logs = w.logs()
    assert logs.count("cron_scheduler_waiting_for_schema") == 1, logs
    assert "cron_scheduler_failed" not in logs and "Traceback" not in logs


def test_should_wake_the_scheduler_when_a_cron_is_created(migrated_db: str) -> None:
    """A scheduler that would sleep an hour fires a new cron's first slot: creating it woke the scheduler."""
    from service.runs.crons import CronScheduler
    from tests.support.cron_worker import make_submit

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        prepare(conn)

    async def scenario() -> list[Any]:
        pool = Pool(migrated_db, min_size=1, max_size=4, kwargs=db.pool_kwargs(pgbouncer=False), open=False)
        await pool.open(wait=True)
        scheduler = CronScheduler(pool, make_submit(0), max_sleep=3600)
        crons = CronStore(pool, on_change=scheduler.wake)
        scheduler.start()
        try:
            while scheduler.looks == 0:  # it looked at the (empty) table and is going to sleep for an hour
                await asyncio.sleep(0.01)
            cron = await crons.create(spec("* * * * * */2"))
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                rows = await asyncio.to_thread(fired_slots, migrated_db, cron["cron_id"])
                if rows:
                    return rows
                await asyncio.sleep(0.05)
            raise AssertionError("the new cron never fired")
        finally:
            await scheduler.stop()
            await pool.close()

    assert len(asyncio.run(scenario())) >= 1
