"""The way the common tutorials serve a LangGraph graph, for bench/http_runs.py to compare against.

* ``setup()`` once per process at start-up;
* the stock ``AsyncPostgresSaver`` entered with ``from_conn_string()`` on every request
  (a new connection per request, no pool) and the graph compiled per request.

    DATABASE_URL=... PORT=... python bench/reference_app.py
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import uvicorn
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from litestar import Litestar, get, post

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.graphs.support import build
from service.serde import to_jsonable

DB_URI = os.environ["DATABASE_URL"]


@post("/threads/{thread_id:str}/runs/wait", status_code=200)
async def run_wait(thread_id: str, data: dict[str, Any]) -> dict[str, Any]:
    async with AsyncPostgresSaver.from_conn_string(DB_URI) as checkpointer:
        graph = build().compile(checkpointer=checkpointer, interrupt_before=["human_approval"])
        result = await graph.ainvoke(data.get("input"), {"configurable": {"thread_id": thread_id}})
    return to_jsonable(result)  # type: ignore[no-any-return]


async def setup_once() -> None:
    async with AsyncPostgresSaver.from_conn_string(DB_URI) as checkpointer:
        await checkpointer.setup()


@get("/ok")
async def ok() -> dict[str, bool]:
    return {"ok": True}


if __name__ == "__main__":
    asyncio.run(setup_once())
    app = Litestar(route_handlers=[run_wait, ok])
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
