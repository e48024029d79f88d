"""CORS settings read as the LangGraph Server reads them (no I/O)."""

from __future__ import annotations

import pytest

from service.settings import DEFAULT_EXPOSE_HEADERS, ConfigError, CorsSettings


def test_should_be_off_unless_configured() -> None:
    assert CorsSettings.from_sources({}) is None
    assert CorsSettings.from_sources({"CORS_ALLOW_ORIGINS": " , "}) is None


def test_should_allow_listed_origins_with_any_method_and_header() -> None:
    cors = CorsSettings.from_sources({"CORS_ALLOW_ORIGINS": "http://a.example, http://b.example"})
    assert cors == CorsSettings(allow_origins=("http://a.example", "http://b.example"), allow_methods=("*",),
                                allow_headers=("*",), allow_credentials=True)
    assert cors.expose_headers == DEFAULT_EXPOSE_HEADERS and "content-location" in cors.expose_headers
    anyone = CorsSettings.from_sources({"CORS_ALLOW_ORIGINS": "*"})
    assert anyone is not None and anyone.allow_credentials is False


def test_should_read_cors_config_with_starlette_defaults() -> None:
    cors = CorsSettings.from_sources({"CORS_CONFIG": '{"allow_origins": ["http://a.example"], "max_age": 5}'})
    assert cors == CorsSettings(allow_origins=("http://a.example",), allow_methods=("GET",), max_age=5)
    borrowed = CorsSettings.from_sources({"CORS_CONFIG": '{"allow_methods": ["post"]}',
                                          "CORS_ALLOW_ORIGINS": "http://c.example"})
    assert borrowed is not None
    assert borrowed.allow_origins == ("http://c.example",) and borrowed.allow_methods == ("POST",)


def test_should_let_the_environment_win_over_langgraph_json() -> None:
    from_file = {"allow_origins": ["http://file.example"], "expose_headers": []}
    cors = CorsSettings.from_sources({}, from_file)
    assert cors is not None and cors.allow_origins == ("http://file.example",) and cors.expose_headers == ()
    env = CorsSettings.from_sources({"CORS_CONFIG": '{"allow_origins": ["http://env.example"]}'}, from_file)
    assert env is not None and env.allow_origins == ("http://env.example",)


@pytest.mark.parametrize("raw", ['{"allow_origins": "x"}', '{"allow_credentials": "yes"}', '{"max_age": 1.5}',
                                 '{"allow_origin_regex": "("}', '{"extra": 1}', "[]", "{"])
def test_should_refuse_bad_values_in_one_line(raw: str) -> None:
    with pytest.raises(ConfigError) as exc:
        CorsSettings.from_sources({"CORS_CONFIG": raw})
    assert str(exc.value).startswith("CORS_CONFIG") and "\n" not in str(exc.value)
