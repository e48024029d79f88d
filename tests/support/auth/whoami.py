"""A graph factory that reports who runs it: the runtime's user and the config's ``langgraph_auth_user``."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph_sdk.runtime import ServerRuntime
from typing_extensions import TypedDict


class WhoState(TypedDict, total=False):
    note: str
    config_user: str
    config_user_item: str
    config_user_id: str
    permissions: list[str]
    runtime_user: str


def make(runtime: ServerRuntime) -> Any:
    built_for = runtime.user.identity if runtime.user is not None else ""

    def node(state: WhoState, config: RunnableConfig) -> WhoState:
        configurable = config.get("configurable") or {}
        user = configurable.get("langgraph_auth_user")
        return {"config_user": user.identity if user is not None else "",
                "config_user_item": user["identity"] if user is not None else "",
                "config_user_id": str(configurable.get("langgraph_auth_user_id") or ""),
                "permissions": list(configurable.get("langgraph_auth_permissions") or []),
                "runtime_user": built_for}

    graph: StateGraph[WhoState] = StateGraph(WhoState)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    return graph.compile()
