"""A graph for the kind tests, mounted into the pods from a ConfigMap (PYTHONPATH=/k8s-graphs).

`slow` sleeps for the input's `delay` seconds in its second node, so a test can delete a pod
while a run is in flight on it. It is registered through the chart's config.graphs, the way a
user adds their own graph.
"""

from __future__ import annotations

import asyncio
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


_builder: StateGraph[SlowState] = StateGraph(SlowState)
_builder.add_node("first", first)
_builder.add_node("wait", wait)
_builder.add_edge(START, "first")
_builder.add_edge("first", "wait")
_builder.add_edge("wait", END)
slow = _builder.compile()
