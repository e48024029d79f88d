"""The log pipeline redacts DSNs in any field, from structlog and from the standard library."""

from __future__ import annotations

import json
import logging

import pytest

from service import logging as service_logging


def test_should_redact_passwords_in_fields_and_stdlib_messages(capsys: pytest.CaptureFixture[str]) -> None:
    service_logging.configure("DEBUG", json=True)
    log = service_logging.get_logger("test")
    log.info("connecting", url="postgresql://app:hunter2@db:5432/x", dsn="host=db password=hunter2 user=app")
    logging.getLogger("psycopg").warning("retrying postgresql+asyncpg://app:hunter2@db/x")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    assert "hunter2" not in json.dumps(lines)
    assert lines[0]["url"] == "postgresql://app:***@db:5432/x"
    assert lines[1]["logger"] == "psycopg"
