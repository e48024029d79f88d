"""Assistants: versioned configurations of the configured graphs, stored for every pod.

``store`` owns the rows (PostgreSQL, or memory with ``CHECKPOINTER=memory``), ``config`` the rules
by which an assistant's config and context enter its runs, ``introspect`` what a graph says about
itself (drawable graph, schemas, subgraphs).
"""

from service.assistants.config import assistant_for_run, merge_run_config, resolve_assistant, thread_metadata
from service.assistants.store import (
    Assistant,
    AssistantStore,
    Change,
    Filters,
    MemoryAssistantStore,
    PostgresAssistantStore,
)

__all__ = ["Assistant", "AssistantStore", "Change", "Filters", "MemoryAssistantStore", "PostgresAssistantStore",
           "assistant_for_run", "merge_run_config", "resolve_assistant", "thread_metadata"]
