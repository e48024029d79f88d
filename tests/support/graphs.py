"""Graphs for tests: one that takes its time (to be caught mid-run), one that fails, and (for the
assistants tests) one with a context schema and one with nested subgraphs that pauses inside."""

from __future__ import annotations

import asyncio
import operator
from dataclasses import dataclass
from typing import Annotated, Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.types import interrupt
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


# A chat model that streams its reply token by token (LangChain's fake model: offline, deterministic),
# then a node that adds a whole message without streaming it.
REPLY = "Sure: your order ships on Monday."
SIGNATURE = "-- the order desk"


class ChatState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]


async def answer(state: ChatState) -> ChatState:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=REPLY)]))
    return {"messages": [await model.ainvoke(state.get("messages", []))]}


def sign(state: ChatState) -> ChatState:
    # A new id each turn: a message whose id the state already has is not streamed again.
    return {"messages": [AIMessage(content=SIGNATURE, id=f"signature-{len(state.get('messages', []))}")]}


_chatty: StateGraph[ChatState] = StateGraph(ChatState)
_chatty.add_node("answer", answer)
_chatty.add_node("sign", sign)
_chatty.add_edge(START, "answer")
_chatty.add_edge("answer", "sign")
_chatty.add_edge("sign", END)
chatty = _chatty.compile()

GRAPHS = (
    '{"support": "service.graphs.support:graph", "slow": "tests.support.graphs:slow", '
    '"failing": "tests.support.graphs:failing", "ledger": "tests.support.graphs:ledger", '
    '"ticker": "tests.support.graphs:ticker", "chatty": "tests.support.graphs:chatty"}'
)


# -- graphs for the assistants tests: a context schema with defaults, and nested subgraphs ---------

@dataclass
class ModelContext:
    model: str = "small"
    temperature: float = 0.0


class SeenState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    seen: dict[str, Any]


def look(state: SeenState, config: RunnableConfig, runtime: Runtime[ModelContext]) -> SeenState:
    """Reports what the run passed: the context (with its defaults) and the config's configurable."""
    configurable = config.get("configurable") or {}
    return {"seen": {"model": runtime.context.model, "temperature": runtime.context.temperature,
                     "configurable": {k: v for k, v in configurable.items() if not k.startswith("__")
                                      and isinstance(v, str | int | float | bool)},
                     "metadata": {k: v for k, v in (config.get("metadata") or {}).items()
                                  if isinstance(v, str | int | float | bool)}}}


_contextual: StateGraph[SeenState, ModelContext] = StateGraph(SeenState, context_schema=ModelContext)
_contextual.add_node("look", look)
_contextual.add_edge(START, "look")
_contextual.add_edge("look", END)
contextual = _contextual.compile(name="contextual")


class NestedState(TypedDict, total=False):
    answer: str
    trail: Annotated[list[str], operator.add]


def _deepest(state: NestedState) -> NestedState:
    return {"trail": ["deepest"]}


_deeper: StateGraph[NestedState] = StateGraph(NestedState)
_deeper.add_node("deepest", _deepest)
_deeper.add_edge(START, "deepest")
_deeper.add_edge("deepest", END)


def _ask(state: NestedState) -> NestedState:
    answer = interrupt({"question": "proceed?"})
    return {"answer": str(answer), "trail": ["ask"]}


_inner: StateGraph[NestedState] = StateGraph(NestedState)
_inner.add_node("ask", _ask)
_inner.add_node("deeper", _deeper.compile())
_inner.add_edge(START, "ask")
_inner.add_edge("ask", "deeper")
_inner.add_edge("deeper", END)


def _start(state: NestedState) -> NestedState:
    return {"trail": ["start"]}


_nested: StateGraph[NestedState] = StateGraph(NestedState)
_nested.add_node("start", _start)
_nested.add_node("inner", _inner.compile())
_nested.add_edge(START, "start")
_nested.add_edge("start", "inner")
_nested.add_edge("inner", END)
nested = _nested.compile()

ASSISTANT_GRAPHS = (
    '{"support": "service.graphs.support:graph", "slow": "tests.support.graphs:slow", '
    '"contextual": "tests.support.graphs:contextual", "nested": "tests.support.graphs:nested"}'
)
