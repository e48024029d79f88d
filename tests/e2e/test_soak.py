"""The soak's 60-second version (bench/soak.py runs 10 minutes by default)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.race import ROOT, python_env


def test_should_meet_the_soak_targets_in_a_minute() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", "60"], cwd=ROOT,
                            env=python_env(), capture_output=True, text=True, timeout=240, check=False)
    report = result.stdout[result.stdout.find("soak:"):]
    print("\n" + report)
    assert result.returncode == 0, report + result.stderr[-2000:]
    assert "lost 0" in report
    assert report.count(": met") == 4
