"""Settings read from the environment: multi-host URLs, and timeouts below clients' timeouts."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from service.settings import DatabaseSettings, DatabaseURLError, PoolSettings


def test_should_read_a_multi_host_database_url() -> None:
    url = "postgresql://app@db1:5432,db2:5433/agents?target_session_attrs=read-write"
    params = conninfo_to_dict(DatabaseSettings.from_env({"DATABASE_URL": url}).conninfo)
    assert (params["host"], params["port"], params["target_session_attrs"]) == ("db1,db2", "5432,5433", "read-write")


def test_should_name_the_variable_of_a_bad_host_list_in_one_line() -> None:
    with pytest.raises(DatabaseURLError) as info:
        DatabaseSettings.from_env({"MIGRATE_DATABASE_URL": "postgresql://u:pw@db1:x,db2/d"},
                                  names=("MIGRATE_DATABASE_URL",))
    assert str(info.value).startswith("MIGRATE_DATABASE_URL: cannot parse database URL")
    assert "pw" not in str(info.value).replace("postgresql", "") and "\n" not in str(info.value)


def test_should_keep_the_default_io_timeout_below_a_30_second_client_timeout() -> None:
    # A COMMIT waiting for a departed synchronous standby is bounded by io_timeout only.
    pool = PoolSettings.from_env({})
    assert (pool.statement_timeout, pool.io_timeout) == (10.0, 15.0)
    assert pool.io_timeout + pool.timeout < 30
    assert PoolSettings.from_env({"DB_STATEMENT_TIMEOUT": "20"}).io_timeout == 25.0
    assert PoolSettings.from_env({"DB_STATEMENT_TIMEOUT": "20", "DB_IO_TIMEOUT": "8"}).io_timeout == 8.0
