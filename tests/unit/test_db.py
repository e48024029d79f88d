"""URL handling: every accepted form normalises to one conninfo; passwords never show."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from service.db import InvalidDatabaseURL, describe, normalize_url, redact, to_url


class TestNormalizeUrl:
    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://app:pw@db.example:6432/agents",
            "postgres://app:pw@db.example:6432/agents",
            "postgresql+asyncpg://app:pw@db.example:6432/agents",
            "postgresql+psycopg2://app:pw@db.example:6432/agents",
            "postgresql+psycopg://app:pw@db.example:6432/agents",
            "host=db.example port=6432 user=app password=pw dbname=agents",
        ],
    )
    def test_should_accept_libpq_and_sqlalchemy_forms(self, url: str) -> None:
        params = conninfo_to_dict(normalize_url(url))
        assert params == {"host": "db.example", "port": "6432", "user": "app", "password": "pw",
                          "dbname": "agents"}

    def test_should_keep_query_parameters_and_rename_asyncpg_ssl(self) -> None:
        params = conninfo_to_dict(normalize_url("postgresql+asyncpg://u@h/d?ssl=require&application_name=x"))
        assert params["sslmode"] == "require"
        assert params["application_name"] == "x"

    def test_should_decode_percent_encoded_passwords(self) -> None:
        assert conninfo_to_dict(normalize_url("postgresql://u:p%40ss%3Aw@h/d"))["password"] == "p@ss:w"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("", "empty"),
            ("mysql://u:secretpw@h/d", "unsupported database URL scheme 'mysql'"),
            ("postgresql://u:secretpw@h:port/d", "cannot parse"),
            ("host=h password=secretpw bogus", "cannot parse"),
        ],
    )
    def test_should_reject_bad_urls_without_showing_the_password(self, url: str, message: str) -> None:
        with pytest.raises(InvalidDatabaseURL) as info:
            normalize_url(url)
        assert message in str(info.value)
        assert "secretpw" not in str(info.value)


class TestRedact:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("postgresql://app:pw@h:5432/d", "postgresql://app:***@h:5432/d"),
            ("postgresql+asyncpg://app:p%40w@h/d?sslmode=require", "postgresql+asyncpg://app:***@h/d?sslmode=require"),
            ("postgresql://app@h/d", "postgresql://app@h/d"),
            ("postgresql://h/d?password=pw", "postgresql://h/d?password=***"),
            ("host=h password=pw user=u", "host=h password=*** user=u"),
            ("host=h password='p w' user=u", "host=h password=*** user=u"),
        ],
    )
    def test_should_hide_passwords(self, url: str, expected: str) -> None:
        assert redact(url) == expected


def test_should_describe_without_the_password() -> None:
    conninfo = normalize_url("postgresql://app:pw@db:6432/agents")
    assert describe(conninfo) == "app@db:6432/agents"


def test_should_round_trip_through_a_url() -> None:
    conninfo = normalize_url("host=h port=5 user=u password='p @w' dbname=d sslmode=disable")
    assert conninfo_to_dict(normalize_url(to_url(conninfo))) == conninfo_to_dict(conninfo)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("retrying postgresql+asyncpg://app:pw@db/x now", "retrying postgresql+asyncpg://app:***@db/x now"),
        ("a=postgresql://u:p%40w@h:1/d?password=q&x=1 b", "a=postgresql://u:***@h:1/d?password=***&x=1 b"),
        ("failed: host=h password=secret dbname=d", "failed: host=h password=*** dbname=d"),
        ("http://example.com/path is fine", "http://example.com/path is fine"),
    ],
)
def test_should_scrub_passwords_out_of_free_text(text: str, expected: str) -> None:
    from service.db import scrub

    assert scrub(text) == expected
