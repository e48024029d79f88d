"""Plot the dashboard's key panels from Prometheus range queries into one PNG.

The test of tests/observability/test_prometheus.py calls :func:`render` on the data of its own
run (always into its temporary directory; with ``OBSERVABILITY_PNG=<path>`` also to that path,
which is how docs/observability/dashboard.png is made):

    OBSERVABILITY_PNG=docs/observability/dashboard.png .venv/bin/pytest tests/observability -q
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from tests.observability.prom import Prometheus, Query, panel_queries, substitute

# The panels shown, by title, in reading order (three columns).
KEY_PANELS = (
    "Requests by status code",
    "Checkpoint latency p99 by operation",
    "Checkpoint errors by kind",
    "Deadlocks by pod",
    "Lock timeouts by pod",
    "Requests waiting for a connection by pod",
    "Pool connections by state",
    "Runs by graph and status",
    "Readiness by pod",
)


def _legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text or ",".join(f"{k}={v}" for k, v in labels.items()) or "value"


def render(prom: Prometheus, start: float, end: float, variables: dict[str, str], out: Path) -> int:
    """Write the PNG; return how many lines were drawn (every one from a real range query)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_title: dict[str, list[Query]] = {}
    for query in panel_queries():
        title = query.source.split(": ", 1)[1].rsplit(" [", 1)[0]
        by_title.setdefault(title, []).append(query)
    fig, axes = plt.subplots(3, 3, figsize=(15, 10), constrained_layout=True)
    lines = 0
    for ax, title in zip(axes.flat, KEY_PANELS, strict=True):
        for query in by_title[title]:
            expr = substitute(query.expr, variables)
            for series in prom.range(expr, start, end, step=1.0):
                points = [(float(t) - start, float(v)) for t, v in series["values"]]
                points = [(t, v) for t, v in points if math.isfinite(v)]
                if not any(v for _, v in points):  # series that stay 0 (pre-created) are not drawn
                    continue
                label = _legend(query.legend, series["metric"])
                ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=1.2)
                lines += 1
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds into the test run", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left", ncol=2 if len(ax.lines) > 6 else 1)
        else:
            ax.text(0.5, 0.5, "all series 0", ha="center", va="center", transform=ax.transAxes)
    when = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    fig.suptitle(f"langgraph-pg dashboard, key panels: the observability test's run of {when} "
                 "(two pods, Prometheus range queries, step 1 s; series that stay 0 not drawn)", fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return lines
