"""``langgraph.json``: read, validate and resolve against the file's own directory.

The file the LangGraph CLI and Server read (``graphs``, ``env``, ``http``, ``store``,
``checkpointer``, ``auth``; build-only keys such as ``dependencies`` are ignored). Its path comes
from ``LANGGRAPH_CONFIG``. The LangGraph Server's environment variables carry the same sections
(``LANGSERVE_GRAPHS``, ``LANGGRAPH_HTTP``, ``LANGGRAPH_STORE``, ``LANGGRAPH_AUTH``) and win over
the file where both are set, as do this service's own (``GRAPHS``).

Relative graph, app and embedding paths (``./agent.py:graph``) are made absolute against the
directory of the file, so they work whatever the working directory of the process is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config import ConfigError

CONFIG_ENV = "LANGGRAPH_CONFIG"


@dataclass(frozen=True)
class LanggraphJson:
    """The sections of a ``langgraph.json`` this service uses, paths already resolved."""

    path: Path | None = None
    graphs: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    checkpointer: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] | None = None

    @property
    def base_dir(self) -> Path | None:
        return self.path.parent if self.path is not None else None


def is_file_target(target: str) -> bool:
    """``./agent.py`` or ``/srv/agent.py`` (a file) rather than ``pkg.agent`` (a module)."""
    return "/" in target or target.endswith(".py")


def is_file_path(spec: str) -> bool:
    """``./agent.py:graph`` or ``/srv/agent.py:graph`` (a file) rather than ``pkg.agent:graph``."""
    return is_file_target(spec.rpartition(":")[0])


def resolve_path(spec: str, base_dir: Path | None) -> str:
    """An import spec with a relative file path made absolute against ``base_dir``."""
    if base_dir is None or not is_file_path(spec):
        return spec
    target, _, attr = spec.rpartition(":")
    path = Path(target)
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    return f"{path}:{attr}"


def parse_graphs(value: Any, source: str, base_dir: Path | None = None) -> dict[str, str]:
    """Graph id to import spec: values are ``"path:attr"`` or ``{"path": ..., "description": ...}``."""
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{source} must be a non-empty JSON object of graph id to 'module:attr' or 'file.py:attr'")
    graphs: dict[str, str] = {}
    for name, item in value.items():
        spec = item.get("path") if isinstance(item, dict) else item
        if not isinstance(spec, str) or ":" not in spec or not spec.rsplit(":", 1)[1] or not name:
            raise ConfigError(f"{source}[{name!r}] must be a 'module:attr' or 'file.py:attr' path, got {item!r}")
        graphs[str(name)] = resolve_path(spec, base_dir)
    return graphs


def parse_json_env(env: Mapping[str, str], name: str) -> dict[str, Any] | None:
    """An environment variable holding a JSON object (None when unset or empty)."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def read_dotenv(path: Path, source: str) -> dict[str, str]:
    """A ``.env`` file: ``KEY=value`` lines, ``#`` comments, optional ``export`` and quotes."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"{source}: {path}:{number} is not a KEY=value line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def _section(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {name!r} must be an object, got {type(value).__name__}")
    return value


def load(path: Path) -> LanggraphJson:
    """Read one ``langgraph.json``; any problem is a one-line :class:`ConfigError`."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{CONFIG_ENV}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object")
    base_dir = path.resolve().parent
    graphs = parse_graphs(data["graphs"], f"{source}: graphs", base_dir) if "graphs" in data else {}
    raw_env = data.get("env")
    env: dict[str, str] = {}
    if isinstance(raw_env, str):
        env_path = Path(raw_env)
        env = read_dotenv(env_path if env_path.is_absolute() else base_dir / env_path, f"{source}: env")
    elif isinstance(raw_env, dict):
        env = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_env.items()}
    elif raw_env is not None:
        raise ConfigError(f"{source}: 'env' must be an object or the path of a .env file")
    http = _section(data, "http", source)
    if isinstance(http.get("app"), str):
        http = {**http, "app": resolve_path(http["app"], base_dir)}
    store = _section(data, "store", source)
    index = store.get("index")
    if isinstance(index, dict) and isinstance(index.get("embed"), str) and ".py:" in index["embed"]:
        store = {**store, "index": {**index, "embed": resolve_path(index["embed"], base_dir)}}
    auth = data.get("auth")
    if auth is not None and not isinstance(auth, dict):
        raise ConfigError(f"{source}: 'auth' must be an object")
    if auth is not None and isinstance(auth.get("path"), str):
        auth = {**auth, "path": resolve_path(auth["path"], base_dir)}
    return LanggraphJson(path=path, graphs=graphs, env=env, http=http, store=store,
                         checkpointer=_section(data, "checkpointer", source), auth=auth)


def from_env(env: Mapping[str, str]) -> LanggraphJson:
    """The file ``LANGGRAPH_CONFIG`` names, or an empty configuration when it is unset."""
    raw = env.get(CONFIG_ENV, "").strip()
    if not raw:
        return LanggraphJson()
    return load(Path(raw))
