"""The migration job against a real PostgreSQL, run as separate OS processes."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from psycopg import sql

from migrate.runner import DEFAULT_LOCK_KEY, ExitCode
from service import schema
from service.db import with_params
from tests.support.pg import ADMIN_PASSWORD, PgServer
from tests.support.race import ROOT, Finished, migrate_cmd, python_env, run_together, summary

BENCH_NAIVE = str(ROOT / "bench" / "naive_setup.py")


def run_migrate(conninfo: str, *args: str, timeout: float = 60, **env: str) -> Finished:
    proc = subprocess.run(
        migrate_cmd(*args), env=python_env(MIGRATE_DATABASE_URL=conninfo, **env), cwd=ROOT,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    return Finished(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_failure(result: Finished, code: ExitCode) -> str:
    """A failure is one line on stderr, the documented exit code, no traceback, no secret."""
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything
    assert ADMIN_PASSWORD not in everything
    return lines[0]


def schema_state(conninfo: str) -> tuple[dict[str, int], dict[str, bool]]:
    with psycopg.connect(conninfo) as conn:
        versions = schema.read_versions(conn)
        names = [s.name for s in schema.expected_indexes()]
        rows = conn.execute(schema.INDEX_STATE_SQL, (names,)).fetchall()
    return versions, {r[0]: bool(r[1] and r[2]) for r in rows}


def assert_current(conninfo: str) -> None:
    versions, indexes = schema_state(conninfo)
    assert versions == schema.required_versions()
    assert indexes == {s.name: True for s in schema.expected_indexes()}


class TestConcurrentStart:
    def test_should_apply_exactly_once_when_twenty_processes_start_together(self, fresh_db: str) -> None:
        results, _ = run_together(
            fresh_db, lambda db: [migrate_cmd("--connect-timeout", "90")] * 20,
            lambda db: python_env(MIGRATE_DATABASE_URL=db),
        )

        assert [r.returncode for r in results] == [0] * 20, [r for r in results if r.returncode]
        summaries = [summary(r) for r in results]
        appliers = [s for s in summaries if s["steps_applied_count"]]
        assert len(appliers) == 1
        assert appliers[0]["outcome"] == "applied"
        assert appliers[0]["steps_applied_count"] == sum(len(c.steps) for c in schema.COMPONENTS)
        assert sorted(s["outcome"] for s in summaries) == ["applied"] + ["current"] * 19
        assert_current(fresh_db)
        # They really overlapped: someone waited for the lock while the schema was applied.
        assert any(s["lock_wait_seconds"] > 0.001 for s in summaries if s is not appliers[0])

    @pytest.mark.parametrize("mode", ["setup", "blocking-lock"])
    def test_should_fail_with_the_naive_patterns_the_job_replaces(self, fresh_db: str, mode: str) -> None:
        # The same start with the patterns teams use: proves the race test can see the bug.
        results, _ = run_together(fresh_db, lambda db: [[sys.executable, BENCH_NAIVE, mode, db]] * 20)
        errors = {m.group(1) for r in results if (m := re.search(r"failed: (\w+)", r.stdout))}
        assert errors, "the naive pattern unexpectedly survived 20 concurrent starts"
        # Only the race's own errors: the lock waiters' deadlock, or concurrent inserts. A `CREATE
        # ... IF NOT EXISTS` whose rival commits between its existence check and its catalog insert
        # fails on a unique index (UniqueViolation, as does a second insert of a migration's row)
        # or, caught at the insert's own check, with 'relation ... already exists' (DuplicateTable)
        # or 'type ... already exists' (DuplicateObject): which one a start sees is timing alone.
        race = {"UniqueViolation", "DuplicateObject", "DuplicateTable"}
        expected = {"DeadlockDetected"} if mode == "blocking-lock" else race
        assert errors <= expected, [r.stdout for r in results]

    def test_should_wait_for_a_database_that_does_not_accept_connections_yet(
        self, pg_server: PgServer, fresh_db: str
    ) -> None:
        pg_server.allow_connections(fresh_db, False)
        try:
            proc = subprocess.Popen(
                migrate_cmd("--connect-timeout", "60"), env=python_env(MIGRATE_DATABASE_URL=fresh_db),
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert '"event": "database_not_ready"' in first
            assert '"reason": "starting"' in first
        finally:
            pg_server.allow_connections(fresh_db, True)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert_current(fresh_db)


class TestLockTimeout:
    def test_should_exit_with_the_documented_code_and_name_the_holder(self, fresh_db: str) -> None:
        holder_conninfo = with_params(fresh_db, application_name="someone-else-migrating")
        with psycopg.connect(holder_conninfo, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (DEFAULT_LOCK_KEY,))
            holder_pid = holder.info.backend_pid
            started = time.monotonic()
            result = run_migrate(fresh_db, "--lock-timeout", "2")
            elapsed = time.monotonic() - started

        line = assert_clean_failure(result, ExitCode.LOCK_TIMEOUT)
        assert elapsed < 2 + 2, elapsed
        assert f"pid {holder_pid}" in line
        assert "someone-else-migrating" in line
        assert "query age" in line
        finished = summary(result)
        assert finished["holder"]["pid"] == holder_pid  # type: ignore[index]
        assert finished["holder"]["application_name"] == "someone-else-migrating"  # type: ignore[index]
        assert isinstance(finished["holder"]["query_age_seconds"], float)  # type: ignore[index]
        versions, _ = schema_state(fresh_db)
        assert set(versions.values()) == {-1}

    def test_should_honour_a_lock_key_from_the_environment(self, fresh_db: str) -> None:
        with psycopg.connect(fresh_db, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (DEFAULT_LOCK_KEY,))
            result = run_migrate(fresh_db, "--lock-timeout", "1", MIGRATE_LOCK_KEY="12345")
        assert result.returncode == 0, result
        assert_current(fresh_db)


class TestRepeatAndCheck:
    def test_should_do_nothing_quickly_on_a_current_database(self, fresh_db: str) -> None:
        assert run_migrate(fresh_db).returncode == 0
        second = run_migrate(fresh_db)
        assert second.returncode == 0, second
        finished = summary(second)
        assert finished["outcome"] == "current"
        assert finished["steps_applied"] == []
        assert finished["duration_seconds"] < 1.0

    def test_should_issue_each_ddl_statement_once(self, fresh_db: str) -> None:
        # An event trigger records every DDL command as it starts (CREATE ... IF NOT EXISTS of an
        # existing table included): the audit trail PostgreSQL's log_statement=ddl also shows.
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("CREATE TABLE ddl_seen (query text)")
            conn.execute("CREATE FUNCTION ddl_seen_record() RETURNS event_trigger LANGUAGE plpgsql "
                         "SECURITY DEFINER AS $$ BEGIN INSERT INTO ddl_seen VALUES (current_query()); END $$")
            conn.execute("CREATE EVENT TRIGGER ddl_seen_trigger ON ddl_command_start "
                         "EXECUTE FUNCTION ddl_seen_record()")
        assert run_migrate(fresh_db).returncode == 0
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            rows = conn.execute("SELECT query, count(*) FROM ddl_seen GROUP BY query").fetchall()
            conn.execute("DROP EVENT TRIGGER ddl_seen_trigger")
        assert rows, "the event trigger saw no DDL"
        assert [(q, n) for q, n in rows if n > 1] == []

    def test_should_report_empty_partial_and_current_databases(self, fresh_db: str) -> None:
        empty = run_migrate(fresh_db, "--check")
        line = assert_clean_failure(empty, ExitCode.BEHIND)
        assert "checkpointer at v-1 needs v9" in line and "store at v-1" in line and "app at v-1" in line
        with psycopg.connect(fresh_db) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)

        # Partial: only the checkpointer, by LangGraph's own setup().
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(fresh_db) as saver:
            saver.setup()
        partial = run_migrate(fresh_db, "--check")
        line = assert_clean_failure(partial, ExitCode.BEHIND)
        assert "checkpointer" not in line and "store at v-1" in line

        dry = run_migrate(fresh_db, "--dry-run")
        assert dry.returncode == 0
        need = schema.required_versions()
        assert summary(dry)["pending"] == ([f"store:v{v}" for v in range(need["store"] + 1)]
                                           + [f"app:v{v}" for v in range(need["app"] + 1)])
        assert schema_state(fresh_db)[0]["store"] == -1

        assert run_migrate(fresh_db).returncode == 0
        assert run_migrate(fresh_db, "--check").returncode == 0

        # A newer database (a later release migrated it) is fine for this code.
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("INSERT INTO checkpoint_migrations (v) VALUES (99)")
        assert run_migrate(fresh_db, "--check").returncode == 0

    def test_should_neither_check_nor_find_a_current_schema_waiting_for_the_lock(self, fresh_db: str) -> None:
        assert run_migrate(fresh_db).returncode == 0
        with psycopg.connect(fresh_db, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (DEFAULT_LOCK_KEY,))
            check = run_migrate(fresh_db, "--check", "--lock-timeout", "30", timeout=10)
            again = run_migrate(fresh_db, "--lock-timeout", "30", timeout=10)
        assert check.returncode == 0, check
        assert again.returncode == 0, again
        assert summary(again)["outcome"] == "current"
        assert summary(again)["lock_wait_seconds"] == 0


class TestIndexes:
    def test_should_rebuild_an_index_left_invalid_by_an_interrupted_concurrent_build(
        self, fresh_db: str
    ) -> None:
        assert run_migrate(fresh_db).returncode == 0
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute("DROP INDEX checkpoints_thread_id_idx")
            conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_id, checkpoint) VALUES "
                "('t', '1', '{}'), ('t', '2', '{}')"
            )
            # A concurrent build that fails part-way leaves an invalid index under the real name.
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("CREATE UNIQUE INDEX CONCURRENTLY checkpoints_thread_id_idx ON checkpoints (thread_id)")
        assert schema_state(fresh_db)[1]["checkpoints_thread_id_idx"] is False

        check = run_migrate(fresh_db, "--check")
        assert "checkpoints_thread_id_idx" in assert_clean_failure(check, ExitCode.BEHIND)

        repaired = run_migrate(fresh_db)
        assert repaired.returncode == 0, repaired
        assert summary(repaired)["indexes_repaired"] == ["checkpoints_thread_id_idx"]
        assert_current(fresh_db)
        with psycopg.connect(fresh_db) as conn:
            row = conn.execute(
                "SELECT indisunique FROM pg_index WHERE indexrelid = 'checkpoints_thread_id_idx'::regclass"
            ).fetchone()
        assert row == (False,)  # rebuilt from the schema's own statement


class TestDdlLockTimeout:
    @staticmethod
    def _make_app_indexes_pending(conninfo: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("DROP INDEX threads_metadata_idx, threads_status_updated_idx, runs_active_idx")
            conn.execute("DELETE FROM langgraph_service_migrations WHERE v >= 1")

    @staticmethod
    def _hold_table_lock(conninfo: str, release: threading.Event, locked: threading.Event) -> None:
        with psycopg.connect(conninfo) as conn:
            conn.execute("LOCK TABLE threads IN SHARE UPDATE EXCLUSIVE MODE")
            locked.set()
            release.wait(120)

    def test_should_retry_ddl_that_hits_lock_timeout_and_finish(self, fresh_db: str) -> None:
        assert run_migrate(fresh_db).returncode == 0
        self._make_app_indexes_pending(fresh_db)
        locked, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=self._hold_table_lock, args=(fresh_db, release, locked))
        holder.start()
        assert locked.wait(60)
        # The lock is held until the job has hit lock_timeout once (its retry line), however long
        # the interpreter took to start; then the next attempt gets through.
        proc = subprocess.Popen(migrate_cmd("--ddl-lock-timeout", "0.2"), env=python_env(MIGRATE_DATABASE_URL=fresh_db),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.append(line)
                if "migration_step_retry" in line:
                    break
        finally:
            release.set()
            holder.join()
        rest, err = proc.communicate(timeout=120)
        result = Finished(proc.returncode, "".join(out) + rest, err)

        assert result.returncode == 0, result
        finished = summary(result)
        assert finished["steps_applied"] == [f"app:v{v}" for v in range(1, schema.required_versions()["app"] + 1)]
        assert finished["ddl_retries"] >= 1
        assert_current(fresh_db)

    def test_should_fail_cleanly_when_retries_run_out(self, fresh_db: str) -> None:
        assert run_migrate(fresh_db).returncode == 0
        self._make_app_indexes_pending(fresh_db)
        locked, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=self._hold_table_lock, args=(fresh_db, release, locked))
        holder.start()
        assert locked.wait(60)
        try:  # held until the job has given up, however slowly it starts
            result = run_migrate(fresh_db, "--ddl-lock-timeout", "0.2", "--ddl-retries", "1", timeout=120)
        finally:
            release.set()
            holder.join()

        line = assert_clean_failure(result, ExitCode.STEP_FAILED)
        assert "app:v1" in line and "lock timeout" in line
        # The failed concurrent build left nothing behind that a rerun cannot fix.
        assert run_migrate(fresh_db).returncode == 0
        assert_current(fresh_db)


class TestBadInput:
    def test_should_reject_an_unparsable_url(self) -> None:
        result = run_migrate("postgresql://user:hunter2@host:notaport/db")
        line = assert_clean_failure(result, ExitCode.INVALID_URL)
        assert "MIGRATE_DATABASE_URL" in line and "hunter2" not in result.stderr + result.stdout

    def test_should_reject_an_unknown_scheme(self) -> None:
        result = run_migrate("mysql://user:hunter2@host/db")
        assert "unsupported database URL scheme" in assert_clean_failure(result, ExitCode.INVALID_URL)
        assert "hunter2" not in result.stderr + result.stdout

    def test_should_give_up_on_an_unreachable_host_after_the_connect_timeout(self) -> None:
        started = time.monotonic()
        result = run_migrate("postgresql://u:hunter2@127.0.0.1:1/db", "--connect-timeout", "1")
        assert "cannot reach PostgreSQL at u@127.0.0.1:1/db" in assert_clean_failure(result, ExitCode.UNREACHABLE)
        assert time.monotonic() - started < 15
        assert "hunter2" not in result.stderr + result.stdout

    def test_should_report_a_wrong_password(self, pg_server: PgServer, fresh_db: str) -> None:
        if pg_server.embedded is None:
            pytest.skip("needs the embedded server, whose password authentication the test controls")
        bad = with_params(fresh_db, password="wrong-password-xyz")
        result = run_migrate(bad)
        assert "authentication failed" in assert_clean_failure(result, ExitCode.AUTHENTICATION)
        assert "wrong-password-xyz" not in result.stderr + result.stdout

    def test_should_report_a_missing_database(self, pg_server: PgServer) -> None:
        result = run_migrate(with_params(pg_server.admin, dbname="no_such_db_here"))
        assert "no_such_db_here" in assert_clean_failure(result, ExitCode.NO_DATABASE)

    def test_should_report_a_missing_privilege(self, pg_server: PgServer, fresh_db: str) -> None:
        dbname = psycopg.conninfo.conninfo_to_dict(fresh_db)["dbname"]
        role = f"weak_{dbname}"[:60]
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'weak-pw'").format(sql.Identifier(role)))
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        try:
            result = run_migrate(with_params(fresh_db, user=role, password="weak-pw"))
            line = assert_clean_failure(result, ExitCode.PRIVILEGE)
            assert "permission denied" in line
        finally:
            with psycopg.connect(fresh_db, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            with psycopg.connect(pg_server.admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

    @pytest.mark.parametrize(
        ("args", "env"),
        [
            (["--lock-timeout", "soon"], {}),
            (["--check", "--dry-run"], {}),
            (["--lock-timeout", "-1"], {}),
            ([], {"MIGRATE_LOCK_TIMEOUT": "forever"}),
            ([], {"MIGRATE_LOCK_KEY": "0x1" + "0" * 20}),
        ],
    )
    def test_should_reject_bad_options(self, fresh_db: str, args: list[str], env: dict[str, str]) -> None:
        assert_clean_failure(run_migrate(fresh_db, *args, **env), ExitCode.USAGE)


class TestPushgateway:
    def test_should_push_the_run_to_a_real_pushgateway(self, pg_server: PgServer, fresh_db: str) -> None:
        from tests.support.services import pushgateway, scrape

        with pushgateway() as url:
            assert run_migrate(fresh_db, PUSHGATEWAY_URL=url).returncode == 0
            metrics = scrape(url + "/metrics")
            for name in ("langgraph_migration_duration_seconds", "langgraph_migration_lock_wait_seconds",
                         "langgraph_migration_lock_timeouts_total",
                         "langgraph_migration_last_success_timestamp_seconds"):
                assert name in metrics, name
                assert metrics[name][0][0]["job"] == "langgraph-migrate"
            assert metrics["langgraph_migration_lock_timeouts_total"][0][1] == 0
            assert metrics["langgraph_migration_steps_applied"][0][1] == sum(len(c.steps) for c in schema.COMPONENTS)
            success_at = metrics["langgraph_migration_last_success_timestamp_seconds"][0][1]
            assert abs(success_at - time.time()) < 60

            with pg_server.database() as empty, psycopg.connect(empty, autocommit=True) as holder:
                holder.execute("SELECT pg_advisory_lock(%s)", (DEFAULT_LOCK_KEY,))
                failed = run_migrate(empty, "--lock-timeout", "0.5", PUSHGATEWAY_URL=url)
            assert failed.returncode == ExitCode.LOCK_TIMEOUT
            metrics = scrape(url + "/metrics")
            assert metrics["langgraph_migration_lock_timeouts_total"][0][1] == 1
            # A failed run keeps the last success's timestamp.
            assert metrics["langgraph_migration_last_success_timestamp_seconds"][0][1] == success_at

    def test_should_not_fail_the_migration_when_the_pushgateway_is_down(self, fresh_db: str) -> None:
        from tests.support.services import free_port

        result = run_migrate(fresh_db, PUSHGATEWAY_URL=f"http://127.0.0.1:{free_port()}")
        assert result.returncode == 0, result
        assert '"event": "pushgateway_failed"' in result.stdout
