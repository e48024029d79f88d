"""URL handling: every accepted form normalises to one conninfo; passwords never show."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from service.db import Failure, InvalidDatabaseURL, classify, describe, hosts, normalize_url, redact, to_url


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


class TestMultiHost:
    """High-availability clusters are reached with several hosts, in every form libpq takes."""

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://app:pw@db1:5432,db2:5433/agents?target_session_attrs=read-write",
            "postgres://app:pw@db1:5432,db2:5433/agents?target_session_attrs=read-write",
            "postgresql+asyncpg://app:pw@db1:5432,db2:5433/agents?target_session_attrs=read-write",
            "postgresql+psycopg://app:pw@db1:5432,db2:5433/agents?target_session_attrs=read-write",
            "postgresql://app:pw@/agents?host=db1,db2&port=5432,5433&target_session_attrs=read-write",
            "host=db1,db2 port=5432,5433 user=app password=pw dbname=agents target_session_attrs=read-write",
        ],
    )
    def test_should_accept_several_hosts_in_every_form(self, url: str) -> None:
        params = conninfo_to_dict(normalize_url(url))
        assert params == {"host": "db1,db2", "port": "5432,5433", "user": "app", "password": "pw",
                          "dbname": "agents", "target_session_attrs": "read-write"}

    def test_should_list_hosts_in_order_with_one_port_for_all(self) -> None:
        assert hosts(normalize_url("postgresql://u@a,b,c:6432/d")) == [("a", ""), ("b", ""), ("c", "6432")]
        assert hosts(normalize_url("host=a,b port=6432 user=u")) == [("a", "6432"), ("b", "6432")]

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://app:pw@db1:5432,db2:5433/agents?target_session_attrs=read-write",
            "postgresql://app@[::1]:5432,db2/agents",
            "postgresql://app@%2Fvar%2Frun%2Fpostgresql:5432,db2:5433/agents",
            "host=db1,db2 port=5432 user=app dbname=agents",
        ],
    )
    def test_should_round_trip_several_hosts_through_a_url(self, url: str) -> None:
        conninfo = normalize_url(url)
        again = normalize_url(to_url(conninfo))
        assert hosts(again) == hosts(conninfo) and len(hosts(again)) >= 2

        def rest(c: str) -> dict[str, object]:
            return {k: v for k, v in conninfo_to_dict(c).items() if k not in ("host", "port")}

        assert rest(again) == rest(conninfo)

    def test_should_describe_every_host_without_the_password(self) -> None:
        conninfo = normalize_url("postgresql://app:pw@db1:5432,db2/agents?target_session_attrs=read-write")
        assert describe(conninfo) == "app@db1:5432,db2:5432/agents"

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("postgresql://u:secretpw@db1:5432,db2:x/d", "port 'x' is not a number"),
            ("postgresql://u:secretpw@db1:70000/d", "port '70000' is not a number"),
            ("host=a,b,c port=1,2 password=secretpw", "2 ports for 3 hosts"),
            ("postgresql://u:secretpw@a,b/d?target_session_attrs=rw", "target_session_attrs must be one of"),
        ],
    )
    def test_should_reject_bad_host_lists_in_one_line(self, url: str, message: str) -> None:
        with pytest.raises(InvalidDatabaseURL) as info:
            normalize_url(url)
        assert message in str(info.value)
        assert "secretpw" not in str(info.value) and "\n" not in str(info.value)


class TestClassify:
    @pytest.mark.parametrize(
        ("message", "failure"),
        [
            ('connection to server at "127.0.0.1", port 5 failed: FATAL:  sorry, too many clients already',
             Failure.TOO_MANY),
            ('connection to server at "127.0.0.1", port 5 failed: server is in hot standby mode', Failure.STANDBY),
            ('connection to server at "127.0.0.1", port 5 failed: session is read-only', Failure.STANDBY),
            ('connection to server at "127.0.0.1", port 5 failed: Connection refused', Failure.UNREACHABLE),
        ],
    )
    def test_should_tell_a_full_server_and_a_standby_from_an_unreachable_one(
        self, message: str, failure: Failure
    ) -> None:
        assert classify(psycopg.OperationalError(message)) is failure
