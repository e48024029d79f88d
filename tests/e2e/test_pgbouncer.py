"""Behind PgBouncer in transaction pooling mode: the service works (tests/e2e/test_two_pods.py runs
its core flows both directly and through PgBouncer); the migration job refuses it."""

from __future__ import annotations

import subprocess

from migrate.runner import ExitCode
from tests.support.pg import ADMIN_PASSWORD
from tests.support.pgbouncer import pgbouncer
from tests.support.race import ROOT, migrate_cmd, python_env


def migrate(conninfo: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(migrate_cmd(*args), env=python_env(MIGRATE_DATABASE_URL=conninfo), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


class TestMigrateThroughPgBouncer:
    def test_should_refuse_to_migrate_through_a_transaction_pooler(self, fresh_db: str) -> None:
        with pgbouncer(fresh_db) as through:
            refused = migrate(through, "--connect-timeout", "5")
        assert refused.returncode == ExitCode.POOLER, refused
        line = refused.stderr.strip()
        assert len(line.splitlines()) == 1 and "pooler" in line and "direct" in line
        assert "Traceback" not in refused.stdout + refused.stderr and ADMIN_PASSWORD not in line

    def test_should_check_the_schema_through_the_pooler(self, migrated_db: str) -> None:
        # The chart's wait-for-schema init container runs --check with the pods' URL, which may
        # be PgBouncer: a read-only check takes no lock and works there.
        with pgbouncer(migrated_db) as through:
            assert migrate(through, "--check").returncode == 0

    def test_should_migrate_through_a_session_pooler_when_allowed(self, fresh_db: str) -> None:
        with pgbouncer(fresh_db, pool_mode="session") as through:
            refused = migrate(through, "--connect-timeout", "5")
            allowed = migrate(through, "--allow-pooler")
        assert refused.returncode == ExitCode.POOLER
        assert allowed.returncode == 0, allowed.stderr
        assert migrate(fresh_db, "--check").returncode == 0

