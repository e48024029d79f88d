"""What each stream mode costs a run_events table: events and JSON bytes per run, per mode.

    python bench/stream_mode_payloads.py

Runs the ``chatty`` test graph (tests/support/graphs.py: LangChain's fake chat model streams an
eleven-chunk reply, then a node adds a whole message) in process on an in-memory checkpointer,
through the same code a worker runs (``service.runs.execution``), and encodes every event it
would publish as the hub does. Prints the events and bytes of one run per mode and the ratio
to ``values``: what ``run_events`` stores per background or streamed run (plus one
``metadata`` event), and what a client joining it reads.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langgraph.checkpoint.memory import InMemorySaver

from service.runs.execution import RunCreate, RunTarget, _run
from tests.support.graphs import chatty

MODES = ("values", "updates", "messages-tuple", "messages", "events")


async def measure(mode: str) -> tuple[int, int]:
    graph = chatty.copy(update={"checkpointer": InMemorySaver()})
    sizes: list[int] = []

    async def emit(event: str, payload: object) -> None:
        sizes.append(len(msgspec.json.encode(payload)))

    body = RunCreate(assistant_id="chatty", stream_mode=mode,
                     input={"messages": [{"role": "user", "content": "When does my order ship?"}]})
    target = RunTarget("1b4e28ba-2fa1-11d2-883f-0016d3cca427", "bench", "chatty", {}, {})
    await _run(graph, {"configurable": {"thread_id": "bench"}, "metadata": {}}, body, target, emit, False)
    return len(sizes), sum(sizes)


async def main() -> None:
    rows = [(mode, *await measure(mode)) for mode in MODES]
    base = rows[0][2]
    print(f"{'stream_mode':<16}{'events':>8}{'bytes':>9}{'x values':>10}")
    for mode, events, size in rows:
        print(f"{mode:<16}{events:>8}{size:>9}{size / base:>10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
