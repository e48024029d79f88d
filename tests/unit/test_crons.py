"""Cron schedules (no I/O): croniter's syntax, time zones, end_time, the run payload of a firing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from service.errors import Unprocessable
from service.runs.crons import check_schedule, first_run_date, next_after, run_payload, utc, zone

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_should_compute_the_next_firing_in_utc() -> None:
    assert next_after("*/15 * * * *", None, at(2026, 1, 1, 10, 7)) == at(2026, 1, 1, 10, 15)
    assert next_after("0 9 * * *", None, at(2026, 1, 1, 9, 0)) == at(2026, 1, 2, 9, 0)  # strictly after


def test_should_read_the_schedule_in_its_time_zone_across_daylight_saving() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer (DST began 2026-03-29).
    assert next_after("0 9 * * *", "Europe/Paris", at(2026, 3, 27, 12)) == at(2026, 3, 28, 8)
    assert next_after("0 9 * * *", "Europe/Paris", at(2026, 3, 28, 12)) == at(2026, 3, 29, 7)


def test_should_support_a_seconds_field_last() -> None:
    assert next_after("* * * * * */10", None, at(2026, 1, 1, 0, 0, 3)) == at(2026, 1, 1, 0, 0, 10)


def test_should_not_schedule_after_end_time() -> None:
    now = at(2026, 1, 1, 10, 7)
    assert first_run_date("*/15 * * * *", None, at(2026, 1, 1, 10, 15), now) == at(2026, 1, 1, 10, 15)
    assert first_run_date("*/15 * * * *", None, at(2026, 1, 1, 10, 14), now) is None


@pytest.mark.parametrize("schedule", ["", "   ", "61 * * * *", "* * *", "every day", "* * * * * * * *",
                                      "*/0 * * * *", "x" * 300, "0 0 31 2 *"])
def test_should_refuse_invalid_schedules_with_one_line(schedule: str) -> None:
    with pytest.raises(Unprocessable) as info:
        check_schedule(schedule, None)
    assert "\n" not in info.value.detail and len(info.value.detail) < 300


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "../../etc/passwd", "", "Europe/"])
def test_should_refuse_unknown_time_zones(timezone: str) -> None:
    with pytest.raises(Unprocessable, match="timezone"):
        zone(timezone)


def test_should_read_naive_end_times_as_utc() -> None:
    assert utc(dt.datetime(2026, 1, 1, 10)) == at(2026, 1, 1, 10)
    paris = dt.datetime(2026, 1, 1, 11, tzinfo=zone("Europe/Paris"))
    assert utc(paris) == at(2026, 1, 1, 10)


def test_should_build_the_payload_of_a_firing() -> None:
    cron_id = uuid.uuid4()
    claimed = {"cron_id": cron_id, "thread_id": None, "on_run_completed": "keep", "metadata": {"a": 1, "b": 1},
               "payload": {"assistant_id": "agent", "input": {"x": 1}, "metadata": {"b": 2},
                           "checkpoint_during": True}}
    payload = run_payload(claimed)
    assert payload["metadata"] == {"a": 1, "b": 2, "cron_id": str(cron_id)}
    assert payload["on_completion"] == "keep" and "checkpoint_during" not in payload
    assert run_payload({**claimed, "on_run_completed": None})["on_completion"] == "delete"
    assert "on_completion" not in run_payload({**claimed, "thread_id": "t-1"})
