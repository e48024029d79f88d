"""``store.index`` and ``store.ttl`` turned into what ``AsyncPostgresStore`` takes.

The embedding function is named the way langgraph.json names it: ``path/to/file.py:function``
or ``package.module:function`` (a function from a list of texts to a list of vectors, sync or
async, or a LangChain ``Embeddings`` object), or ``provider:model`` for LangChain's
``init_embeddings`` (only when ``langchain`` is installed; this image does not ship it).
"""

from __future__ import annotations

import importlib
from typing import Any

from langgraph.store.base import TTLConfig
from langgraph.store.postgres.base import PostgresIndexConfig

from service import schema
from service.config import ConfigError
from service.config.langgraph_json import is_file_path
from service.settings import StoreSettings


def load_embeddings(embed: str) -> Any:
    """The object ``embed`` names, checked to be usable; a bad name is a one-line ConfigError."""
    from service.graphs import import_object

    if is_file_path(embed):
        obj = import_object("store.index.embed", embed)
    else:
        module_name, _, attr = embed.rpartition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        if module is not None and hasattr(module, attr):
            obj = getattr(module, attr)
        else:
            try:
                from langchain.embeddings import init_embeddings
            except ImportError:
                raise ConfigError(f"store.index.embed: {embed!r} is neither an importable 'module:function' nor "
                                  "usable as 'provider:model' (that needs the langchain package)") from None
            try:
                obj = init_embeddings(embed)
            except Exception as exc:
                raise ConfigError(f"store.index.embed: cannot initialise {embed!r}: {exc}") from None
    if not callable(obj) and not hasattr(obj, "embed_documents"):
        raise ConfigError(f"store.index.embed: {embed} is a {type(obj).__name__}, not an embedding function")
    return obj


def index_config(settings: StoreSettings) -> PostgresIndexConfig | None:
    if settings.index is None:
        return None
    config: dict[str, Any] = schema.index_mapping(settings.index)
    config["embed"] = load_embeddings(settings.index.embed)
    return config  # type: ignore[return-value]


def ttl_config(settings: StoreSettings) -> TTLConfig | None:
    if settings.ttl is None:
        return None
    ttl = settings.ttl
    # omit_expired: an item past its expiry is never read, whether or not a sweep has removed it yet.
    out: dict[str, Any] = {"refresh_on_read": ttl.refresh_on_read, "omit_expired": True}
    if ttl.default_ttl is not None:
        out["default_ttl"] = ttl.default_ttl
    if ttl.sweep_interval_minutes is not None:
        out["sweep_interval_minutes"] = ttl.sweep_interval_minutes
    return out  # type: ignore[return-value]
