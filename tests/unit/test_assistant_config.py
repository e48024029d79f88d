"""How an assistant's config and context are kept in step and merged into its runs (no I/O)."""

from __future__ import annotations

import pytest

from service.assistants import Assistant, Change
from service.assistants.config import merge_run_config, reconcile, thread_metadata
from service.errors import BadRequest, Unprocessable
from tests.support.graphs import contextual, slow


def assistant(**kw: object) -> Assistant:
    return Assistant(assistant_id="a1", graph_id="contextual", name="n", **kw)  # type: ignore[arg-type]


def test_should_mirror_configurable_and_context() -> None:
    assert reconcile({"configurable": {"m": 1}, "tags": ["t"]}, None) == (
        {"configurable": {"m": 1}, "tags": ["t"]}, {"m": 1})
    assert reconcile(None, {"m": 2}) == ({"configurable": {"m": 2}}, {"m": 2})
    assert reconcile(None, None) == ({}, None)
    with pytest.raises(BadRequest):
        reconcile({"configurable": {"m": 1}}, {"m": 2})
    with pytest.raises(Unprocessable):
        reconcile({"tags": "one"}, None)


def test_should_layer_the_request_over_the_assistant() -> None:
    a = assistant(config={"tags": ["a"], "configurable": {"model": "big", "keep": 1}},
                  context={"model": "big"}, metadata={"owner": "ops"})
    config, context = merge_run_config(a, {"configurable": {"model": "small"}, "metadata": {"x": 1}}, None,
                                       contextual)
    assert config["tags"] == ["a"]
    assert config["configurable"] == {"model": "small", "keep": 1}
    assert config["metadata"] == {"owner": "ops", "x": 1}
    assert context == {"model": "small"}  # configurable mirrored in, keys outside the schema dropped


def test_should_drop_undeclared_context_keys_only_for_a_schema() -> None:
    config, context = merge_run_config(assistant(), None, {"temperature": 1.0, "other": 2}, contextual)
    assert context == {"temperature": 1.0}
    assert config["configurable"] == {"temperature": 1.0}
    _, untyped = merge_run_config(assistant(), None, {"other": 2}, slow)
    assert untyped == {"other": 2}


def test_should_pass_an_empty_context_so_defaults_apply() -> None:
    config, context = merge_run_config(assistant(), None, None, contextual)
    assert context == {} and config["configurable"] == {}
    with pytest.raises(BadRequest):
        merge_run_config(assistant(), {"configurable": {"a": 1}}, {"a": 2}, contextual)
    for bad in ({"configurable": "x"}, {"metadata": [1]}, {"tags": [1]}, {"recursion_limit": True}):
        with pytest.raises(Unprocessable):
            merge_run_config(assistant(), bad, None, contextual)


def test_should_tag_threads_with_graph_and_assistant() -> None:
    meta = thread_metadata(assistant(), {"metadata": {"from_config": 1}}, {"run": 2})
    assert meta == {"graph_id": "contextual", "assistant_id": "a1", "from_config": 1, "run": 2}


def test_should_patch_like_the_langgraph_server() -> None:
    current = assistant(config={"tags": ["a"]}, context={"m": 1}, metadata={"k": 1}, description="d")
    same = Change(config={}, metadata={"j": 2}).apply(current, 2)
    assert (same.config, same.context, same.metadata, same.description, same.version) == (
        {"tags": ["a"]}, {"m": 1}, {"k": 1, "j": 2}, "d", 2)
    moved = Change(graph_id="slow", context={}, name="new").apply(current, 3)
    assert (moved.graph_id, moved.context, moved.name) == ("slow", {}, "new")
