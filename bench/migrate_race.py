"""N concurrent migrators on a fresh database, three ways, side by side in one run.

    python bench/migrate_race.py [--processes 50]

* ``migrate job``: ``python -m migrate`` (try-lock polling, one session applies everything);
* ``naive setup()``: every process calls the checkpointer's and the store's ``setup()``;
* ``setup() under pg_advisory_lock``: the same, behind a blocking advisory lock.

Each pattern gets its own empty database; all processes are released at the same moment
(see tests/support/race.py). Wall time is measured from the release to the last exit.
Target: every migrate-job process succeeds, in under 3 s.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.pg import PgServer
from tests.support.race import ROOT, migrate_cmd, python_env, run_together

NAIVE = str(ROOT / "bench" / "naive_setup.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=50)
    args = parser.parse_args()
    n = args.processes

    server = PgServer()
    server_version = server.version()
    rows = []
    try:
        patterns = [
            ("migrate job", lambda db: [migrate_cmd("--connect-timeout", "120")] * n,
             lambda db: python_env(MIGRATE_DATABASE_URL=db)),
            ("naive setup()", lambda db: [[sys.executable, NAIVE, "setup", db]] * n, None),
            ("setup() under pg_advisory_lock", lambda db: [[sys.executable, NAIVE, "blocking-lock", db]] * n, None),
        ]
        for name, build, env in patterns:
            with server.database("bench") as db:
                print(f"running {name} x{n} ...", file=sys.stderr, flush=True)
                results, wall = run_together(db, build, env, timeout=300)
                ok = sum(1 for r in results if r.returncode == 0)
                errors: Counter[str] = Counter()
                for r in results:
                    if r.returncode:
                        text = r.stdout + r.stderr
                        match = re.search(r"failed: (\w+)|([A-Z]\w+(?:Error|Violation))", text)
                        errors[(match.group(1) or match.group(2)) if match else "other"] += 1
                rows.append((name, ok, n - ok, wall, ", ".join(f"{k} x{v}" for k, v in errors.most_common())))
    finally:
        server.close()

    base_wall = rows[0][3]
    print(f"\nPostgreSQL {server_version} | {n} processes released together\n")
    header = f"{'pattern':<32} {'ok':>4} {'failed':>6} {'wall s':>7} {'wall/job':>8}  failures"
    print(header)
    print("-" * len(header))
    for name, ok, failed, wall, errs in rows:
        print(f"{name:<32} {ok:>4} {failed:>6} {wall:>7.2f} {wall / base_wall:>7.2f}x  {errs or '-'}")
    target = rows[0][1] == n and rows[0][3] < 3.0
    print(f"\ntarget (migrate job {n}/{n} ok in < 3 s): {'met' if target else 'NOT met'}")
    return 0 if target else 1


if __name__ == "__main__":
    sys.exit(main())
