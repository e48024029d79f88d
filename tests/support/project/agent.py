"""Graphs of a LangGraph project as users write them: a compiled graph and two factories."""

from __future__ import annotations

import os
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph_sdk.runtime import ServerRuntime
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    text: str
    built_with: str
    access: str


def greet(state: State) -> State:
    return {"text": f"{os.environ.get('AGENT_GREETING')} / {os.environ.get('AGENT_SIGNATURE')}"}


def _single(node: Any) -> Any:
    builder: StateGraph[State] = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder


graph = _single(greet).compile()


def make_graph(config: RunnableConfig) -> Any:
    """Reads the run's config when the graph is built (so each run builds its own)."""
    tone = (config.get("configurable") or {}).get("tone", "plain")

    def answer(state: State) -> State:
        return {"built_with": tone}

    return _single(answer)


async def make_with_runtime(runtime: ServerRuntime) -> Any:
    access = runtime.access_context

    def answer(state: State) -> State:
        return {"access": access}

    return _single(answer).compile()
