"""``python -m migrate``: apply the LangGraph and service schemas once, safely.

Exit codes (see ``migrate.runner.ExitCode``):
  0 success or schema current        6 database does not exist
  1 unexpected internal error        7 missing privilege
  2 invalid arguments                8 timed out waiting for the migration lock
  3 unparsable database URL          9 --check: schema behind what this code needs
  4 database unreachable            10 a migration step failed
  5 authentication failed           11 refused: the URL is a transaction pooler (PgBouncer)
                                    12 refused: the server is a read-only standby, not the primary
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from migrate import pushgateway
from migrate.runner import DEFAULT_LOCK_KEY, ExitCode, MigrationError, Options, Report, run
from service import logging as service_logging
from service import schema
from service.settings import ConfigError, DatabaseSettings, DatabaseURLError, StoreSettings, env_float, env_int

log = service_logging.get_logger("migrate")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(ExitCode.USAGE, f"migrate: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m migrate",
        description=(
            "Apply the LangGraph checkpointer and store schemas and the service's own tables, once, "
            "behind a PostgreSQL advisory lock. Connects to MIGRATE_DATABASE_URL, else DATABASE_URL; "
            "it must be a direct connection, not PgBouncer in transaction mode (session advisory "
            "locks do not survive transaction pooling)."
        ),
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="exit 0 if the schema is at or beyond what this code needs, 9 otherwise; "
                           "takes no lock and changes nothing")
    mode.add_argument("--dry-run", action="store_true", help="list the pending steps and change nothing")
    parser.add_argument("--allow-pooler", action="store_true",
                        help="connect even through a connection pooler that refuses session settings "
                             "(only safe with PgBouncer in session mode; env MIGRATE_ALLOW_POOLER)")
    parser.add_argument("--lock-key", type=lambda v: int(v, 0), default=None,
                        help=f"advisory lock key (env MIGRATE_LOCK_KEY; default {DEFAULT_LOCK_KEY})")
    parser.add_argument("--lock-timeout", type=float, default=None,
                        help="seconds to wait for the migration lock (env MIGRATE_LOCK_TIMEOUT; default 30)")
    parser.add_argument("--ddl-lock-timeout", type=float, default=None,
                        help="lock_timeout for each DDL statement in seconds before it is retried "
                             "(env MIGRATE_DDL_LOCK_TIMEOUT; default 5)")
    parser.add_argument("--ddl-retries", type=int, default=None,
                        help="retries of a DDL step that hit lock_timeout (env MIGRATE_DDL_RETRIES; default 10)")
    parser.add_argument("--connect-timeout", type=float, default=None,
                        help="seconds to keep retrying the first connection while the database starts "
                             "(env MIGRATE_CONNECT_TIMEOUT; default 30)")
    return parser


def options_from(args: argparse.Namespace, env: dict[str, str] | os._Environ[str]) -> Options:
    database = DatabaseSettings.from_env(env, names=("MIGRATE_DATABASE_URL", "DATABASE_URL"))

    def pick_float(value: float | None, name: str, default: float) -> float:
        if value is not None:
            if value < 0:
                raise ConfigError(f"--{name.lower().removeprefix('migrate_').replace('_', '-')} "
                                  f"must not be negative")
            return value
        return env_float(env, name, default)

    lock_key = args.lock_key if args.lock_key is not None else env_int(
        env, "MIGRATE_LOCK_KEY", DEFAULT_LOCK_KEY, minimum=-(2**63))
    if not -(2**63) <= lock_key < 2**63:
        raise ConfigError("the lock key must fit a signed 64-bit integer")
    retries = args.ddl_retries if args.ddl_retries is not None else env_int(env, "MIGRATE_DDL_RETRIES", 10)
    if retries < 0:
        raise ConfigError("--ddl-retries must not be negative")
    return Options(
        conninfo=database.conninfo,
        lock_key=lock_key,
        lock_timeout=pick_float(args.lock_timeout, "MIGRATE_LOCK_TIMEOUT", 30.0),
        ddl_lock_timeout=pick_float(args.ddl_lock_timeout, "MIGRATE_DDL_LOCK_TIMEOUT", 5.0),
        ddl_retries=retries,
        connect_timeout=pick_float(args.connect_timeout, "MIGRATE_CONNECT_TIMEOUT", 30.0),
        check=args.check,
        dry_run=args.dry_run,
        allow_pooler=args.allow_pooler or env.get("MIGRATE_ALLOW_POOLER", "").lower() in ("1", "true", "yes"),
        # The store index (LANGGRAPH_STORE or langgraph.json's store.index) decides the vector steps.
        components=schema.components(StoreSettings.from_env(env).index),
    )


def main(argv: Sequence[str] | None = None) -> int:
    service_logging.configure(os.environ.get("LOG_LEVEL", "INFO"))
    args = build_parser().parse_args(argv)
    try:
        options = options_from(args, os.environ)
    except DatabaseURLError as exc:
        return _fail(ExitCode.INVALID_URL, str(exc))
    except ConfigError as exc:
        return _fail(ExitCode.USAGE, str(exc))

    try:
        report = run(options)
    except MigrationError as exc:
        report = exc.details.get("report") or Report()
        log.error("migration_finished", **report.fields(), **_public(exc.details),
                  error=exc.message, exit_code=int(exc.code))
        _push(report, options, lock_timeout=exc.code == ExitCode.LOCK_TIMEOUT)
        return _fail(exc.code, exc.message)
    except Exception as exc:  # the last guard: one line, never a traceback
        log.error("migration_crashed", error_type=type(exc).__name__, error=str(exc).splitlines()[0:1])
        return _fail(ExitCode.INTERNAL, f"unexpected {type(exc).__name__}; see the log above")

    log.info("migration_finished", **report.fields(), exit_code=0)
    if not (options.check or options.dry_run):
        _push(report, options, lock_timeout=False, success=True)
    return ExitCode.OK


def _public(details: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in details.items() if k != "report"}


def _push(report: Report, options: Options, *, lock_timeout: bool, success: bool = False) -> None:
    url = os.environ.get("PUSHGATEWAY_URL", "").strip()
    if not url or options.check or options.dry_run:
        return
    try:
        pushgateway.push(url, report, lock_timeout=lock_timeout, success_at=time.time() if success else None)
    except Exception as exc:  # metrics must never fail a migration
        log.warning("pushgateway_failed", url=url, error=str(exc).splitlines()[0] if str(exc) else repr(exc))


def _fail(code: ExitCode, message: str) -> int:
    print(f"migrate: error: {message} (exit {int(code)})", file=sys.stderr)
    return int(code)


def entrypoint() -> None:
    """Console-script entry: run, flush, and leave without interpreter teardown.

    Tearing down the imported LangGraph modules costs about 60 ms of CPU per process; a rollout
    starts many copies of this job on small nodes, and nothing is left to clean up by then.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entrypoint()
