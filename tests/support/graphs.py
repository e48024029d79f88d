"""Graphs for tests: one that takes its time (to be caught mid-run) and one that fails."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


class SlowState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    delay: float
    steps: int


async def first(state: SlowState) -> SlowState:
    return {"steps": state.get("steps", 0) + 1}


async def wait(state: SlowState) -> SlowState:
    await asyncio.sleep(float(state.get("delay", 1.0)))
    text = state["messages"][-1].content if state.get("messages") else ""
    return {"messages": [AIMessage(content=f"done: {text}")], "steps": state.get("steps", 0) + 1}


_slow: StateGraph[SlowState] = StateGraph(SlowState)
_slow.add_node("first", first)
_slow.add_node("wait", wait)
_slow.add_edge(START, "first")
_slow.add_edge("first", "wait")
_slow.add_edge("wait", END)
slow = _slow.compile()


class FailState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]


def explode(state: FailState) -> FailState:
    raise ValueError("the tool backend refused the request")


_failing: StateGraph[FailState] = StateGraph(FailState)
_failing.add_node("explode", explode)
_failing.add_edge(START, "explode")
_failing.add_edge("explode", END)
failing = _failing.compile()

class LedgerState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    tag: str
    delay: float


async def record(state: LedgerState) -> LedgerState:
    """Append the run's tag after a pause: two runs of one thread at once would lose an entry."""
    await asyncio.sleep(float(state.get("delay", 0.0)))
    return {"log": [state.get("tag", "?")]}


_ledger: StateGraph[LedgerState] = StateGraph(LedgerState)
_ledger.add_node("record", record)
_ledger.add_edge(START, "record")
_ledger.add_edge("record", END)
ledger = _ledger.compile()


class TickerState(TypedDict, total=False):
    ticks: int
    until: int
    delay: float


async def tick(state: TickerState) -> TickerState:
    """One step per tick (a checkpoint and a values event each), so a run can be cut anywhere."""
    await asyncio.sleep(float(state.get("delay", 0.05)))
    return {"ticks": state.get("ticks", 0) + 1}


def more(state: TickerState) -> str:
    return "tick" if state.get("ticks", 0) < state.get("until", 10) else END


_ticker: StateGraph[TickerState] = StateGraph(TickerState)
_ticker.add_node("tick", tick)
_ticker.add_edge(START, "tick")
_ticker.add_conditional_edges("tick", more, ["tick", END])
ticker = _ticker.compile()

GRAPHS = (
    '{"support": "service.graphs.support:graph", "slow": "tests.support.graphs:slow", '
    '"failing": "tests.support.graphs:failing", "ledger": "tests.support.graphs:ledger", '
    '"ticker": "tests.support.graphs:ticker"}'
)
