"""langgraph.json and the LangGraph Server's environment variables, as Settings reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.config import ConfigError
from service.settings import DEFAULT_GRAPHS, CorsSettings, Settings, StoreSettings


def settings(tmp_path: Path, config: dict[str, Any] | None = None, **env: str) -> Settings:
    base = {"CHECKPOINTER": "memory"}
    if config is not None:
        (tmp_path / "langgraph.json").write_text(json.dumps(config))
        base["LANGGRAPH_CONFIG"] = str(tmp_path / "langgraph.json")
    return Settings.from_env({**base, **env})


class TestGraphs:
    def test_should_resolve_file_paths_against_the_files_directory(self, tmp_path: Path) -> None:
        s = settings(tmp_path, {"graphs": {"a": "./agents/a.py:graph", "b": "pkg.mod:graph",
                                           "c": {"path": "agents/c.py:make", "description": "x"}}})
        assert s.graphs == {"a": f"{tmp_path}/agents/a.py:graph", "b": "pkg.mod:graph",
                            "c": f"{tmp_path}/agents/c.py:make"}

    def test_should_let_the_environment_win(self, tmp_path: Path) -> None:
        config = {"graphs": {"file": "pkg.file:graph"}}
        assert settings(tmp_path, config).graphs == {"file": "pkg.file:graph"}
        assert settings(tmp_path, config, LANGSERVE_GRAPHS='{"lg": "pkg.lg:graph"}').graphs == {"lg": "pkg.lg:graph"}
        both = settings(tmp_path, config, LANGSERVE_GRAPHS='{"lg": "pkg.lg:graph"}', GRAPHS='{"own": "pkg.o:g"}')
        assert both.graphs == {"own": "pkg.o:g"}
        assert settings(tmp_path).graphs == DEFAULT_GRAPHS

    @pytest.mark.parametrize("graphs", [{}, {"g": "no_attr"}, {"g": 3}, {"g": {"description": "x"}}, []])
    def test_should_refuse_bad_graphs(self, tmp_path: Path, graphs: Any) -> None:
        with pytest.raises(ConfigError, match="graphs"):
            settings(tmp_path, {"graphs": graphs})


class TestEnv:
    def test_should_fill_in_what_the_process_environment_does_not_set(self, tmp_path: Path) -> None:
        s = settings(tmp_path, {"env": {"A": "file", "B": "file", "LOG_LEVEL": "debug"}}, B="process")
        assert s.extra_env == {"A": "file", "LOG_LEVEL": "debug"}
        assert s.log_level == "DEBUG"  # the file's env configures the service too

    def test_should_read_a_dotenv_file(self, tmp_path: Path) -> None:
        (tmp_path / "app.env").write_text("# comment\nA=1\nexport B='two words'\n\nC=\"x=y\"\n")
        assert settings(tmp_path, {"env": "app.env"}).extra_env == {"A": "1", "B": "two words", "C": "x=y"}

    def test_should_refuse_a_malformed_dotenv_line(self, tmp_path: Path) -> None:
        (tmp_path / "app.env").write_text("A=1\njust words\n")
        with pytest.raises(ConfigError, match=r"app.env:2 is not a KEY=value line"):
            settings(tmp_path, {"env": "app.env"})


class TestHttp:
    def test_should_read_cors_and_app_from_the_file_or_langgraph_http(self, tmp_path: Path) -> None:
        config = {"http": {"app": "./routes.py:app", "cors": {"allow_origins": ["https://a.example"],
                                                              "expose_headers": ["Content-Location"],
                                                              "allow_credentials": True}}}
        s = settings(tmp_path, config)
        assert s.http_app == f"{tmp_path}/routes.py:app"
        assert s.cors == CorsSettings(allow_origins=("https://a.example",), expose_headers=("Content-Location",),
                                      allow_credentials=True)
        env = settings(tmp_path, config, LANGGRAPH_HTTP='{"cors": {"allow_origins": ["https://b.example"]}}')
        assert env.http_app is None and env.cors is not None and env.cors.allow_origins == ("https://b.example",)
        assert settings(tmp_path).cors is None  # off unless configured

    @pytest.mark.parametrize("cors", [{"allow_origins": "x", "max_age": -1}, {"allow_credentials": "yes"},
                                      {"allow_origin": ["typo"]}, ["*"]])
    def test_should_refuse_bad_cors(self, tmp_path: Path, cors: Any) -> None:
        with pytest.raises(ConfigError, match="cors"):
            settings(tmp_path, {"http": {"cors": cors}})


class TestStore:
    def test_should_let_langgraph_store_win_over_the_file(self, tmp_path: Path) -> None:
        config = {"store": {"index": {"dims": 8, "embed": "./e.py:embed"}, "ttl": {"default_ttl": 5}}}
        s = settings(tmp_path, config)
        assert s.store.index is not None and s.store.index.dims == 8
        assert s.store.index.embed == f"{tmp_path}/e.py:embed"
        assert s.store.ttl is not None and s.store.ttl.default_ttl == 5 and s.store.ttl.refresh_on_read
        env = settings(tmp_path, config, LANGGRAPH_STORE='{"ttl": {"refresh_on_read": false}}')
        assert env.store.index is None and env.store.ttl is not None and not env.store.ttl.refresh_on_read

    @pytest.mark.parametrize(("store", "says"), [
        ({"index": {"dims": "8", "embed": "m:f"}}, "dims"),
        ({"index": {"dims": 8}}, "embed"),
        ({"index": {"dims": 8, "embed": "m:f", "distance_type": "manhattan"}}, "distance_type"),
        ({"index": {"dims": 8, "embed": "m:f", "ann_index_config": {"kind": "lsh"}}}, "kind"),
        ({"ttl": {"default_ttl": -1}}, "default_ttl"),
        ({"ttl": {"sweep_interval_minutes": 0}}, "sweep_interval_minutes"),
        ({"path": "./my_store.py:store"}, "custom store"),
    ])
    def test_should_refuse_bad_store_config(self, store: dict[str, Any], says: str) -> None:
        with pytest.raises(ConfigError, match=says):
            StoreSettings.from_mapping(store, "store")


class TestServerVariables:
    def test_should_map_n_jobs_per_worker_and_resolve_auth_and_keep_checkpointer_ttl(self, tmp_path: Path) -> None:
        config = {"auth": {"path": "./auth.py:auth"}, "checkpointer": {"ttl": {"strategy": "keep_latest",
                                                                               "default_ttl": 60}}}
        s = settings(tmp_path, config, N_JOBS_PER_WORKER="4")
        assert s.server.jobs_per_worker == 4
        assert s.auth == {"path": f"{tmp_path.resolve() / 'auth.py'}:auth"}  # relative to the file, as graphs
        assert s.checkpointer_ttl is not None and s.checkpointer_ttl.strategy == "keep_latest"
        assert settings(tmp_path, LANGGRAPH_AUTH='{"path": "x.py:a"}').auth == {"path": "x.py:a"}
        assert settings(tmp_path).server.jobs_per_worker == 10

    @pytest.mark.parametrize(("name", "value"), [("LANGGRAPH_HTTP", "{"), ("LANGGRAPH_AUTH", "[]"),
                                                 ("N_JOBS_PER_WORKER", "0"), ("LANGSERVE_GRAPHS", "nope")])
    def test_should_name_the_bad_variable(self, tmp_path: Path, name: str, value: str) -> None:
        with pytest.raises(ConfigError, match=name):
            settings(tmp_path, **{name: value})
