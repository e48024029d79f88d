"""Every error is RFC 9457 problem+json with the right status; nothing leaks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from service.db import with_params
from tests.support.pg import ADMIN_PASSWORD
from tests.support.service import ServiceProcess
from tests.support.services import free_port


def assert_problem(response: httpx.Response, status: int, *needles: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    for needle in needles:
        assert needle in str(body), (needle, body)
    assert "Traceback" not in response.text and ADMIN_PASSWORD not in response.text
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def pod(pg_server: object) -> Iterator[ServiceProcess]:
    from migrate.runner import Options, run

    conninfo = pg_server.create_database("errors")  # type: ignore[attr-defined]
    run(Options(conninfo=conninfo))
    with ServiceProcess(conninfo, MAX_BODY_BYTES="4096") as p:
        yield p
    assert "Traceback" not in p.logs()
    assert ADMIN_PASSWORD not in p.logs()
    pg_server.drop_database(conninfo)  # type: ignore[attr-defined]


class TestBadRequests:
    def test_should_reject_malformed_json_with_422(self, pod: ServiceProcess) -> None:
        response = httpx.post(pod.url + "/threads", content=b'{"metadata": ',
                              headers={"content-type": "application/json"})
        assert_problem(response, 422)

    def test_should_name_the_field_that_violates_the_schema(self, pod: ServiceProcess) -> None:
        thread_id = httpx.post(pod.url + "/threads", json={}).json()["thread_id"]
        assert_problem(httpx.post(f"{pod.url}/threads/{thread_id}/runs/wait", json={"input": {}}), 422, "assistant_id")
        assert_problem(httpx.post(f"{pod.url}/threads/{thread_id}/runs/wait", json={"assistant_id": 7}), 422,
                       "assistant_id")
        assert_problem(httpx.post(pod.url + "/threads/search", json={"limit": "many"}), 422, "limit")
        assert_problem(httpx.post(pod.url + "/threads/search", json={"limit": -1}), 422, "negative")
        assert_problem(httpx.post(pod.url + "/threads/search", json={"status": "sleeping"}), 422, "status")
        assert_problem(httpx.post(f"{pod.url}/threads/{thread_id}/runs/wait",
                                  json={"assistant_id": "support", "stream_mode": "telepathy"}), 422, "stream_mode")

    def test_should_answer_404_for_unknown_things(self, pod: ServiceProcess) -> None:
        assert_problem(httpx.get(pod.url + "/threads/no-such-thread"), 404, "no-such-thread")
        assert_problem(httpx.get(pod.url + "/assistants/no-such-graph"), 404, "no-such-graph")
        assert_problem(httpx.post(pod.url + "/threads/no-such-thread/runs/wait", json={"assistant_id": "support"}),
                       404)
        thread_id = httpx.post(pod.url + "/threads", json={"graph_id": "support"}).json()["thread_id"]
        assert_problem(httpx.post(f"{pod.url}/threads/{thread_id}/runs/wait", json={"assistant_id": "nope"}), 404)
        httpx.post(f"{pod.url}/threads/{thread_id}/runs/wait",
                   json={"assistant_id": "support", "input": {"messages": [{"role": "user", "content": "hi"}]}})
        assert_problem(httpx.get(f"{pod.url}/threads/{thread_id}/state/1f000000-0000-6000-8000-000000000000"), 404,
                       "checkpoint")
        assert_problem(httpx.get(pod.url + "/no/such/route"), 404)

    def test_should_reject_a_body_over_the_limit_with_413(self, pod: ServiceProcess) -> None:
        big = {"metadata": {"blob": "x" * 10_000}}
        assert_problem(httpx.post(pod.url + "/threads", json=big), 413)

    def test_should_refuse_a_duplicate_thread_with_409_unless_asked_not_to(self, pod: ServiceProcess) -> None:
        httpx.post(pod.url + "/threads", json={"thread_id": "dup-1"}).raise_for_status()
        assert_problem(httpx.post(pod.url + "/threads", json={"thread_id": "dup-1"}), 409)
        again = httpx.post(pod.url + "/threads", json={"thread_id": "dup-1", "if_exists": "do_nothing"})
        assert again.status_code == 200

    def test_should_leave_the_thread_in_error_when_the_graph_raises(self, pod: ServiceProcess) -> None:
        thread_id = httpx.post(pod.url + "/threads", json={"graph_id": "failing"}).json()["thread_id"]
        response = httpx.post(f"{pod.url}/threads/{thread_id}/runs/wait",
                              json={"assistant_id": "failing",
                                    "input": {"messages": [{"role": "user", "content": "x"}]}})
        assert response.status_code == 200
        error = {"error": "ValueError", "message": "the tool backend refused the request"}
        assert response.json()["__error__"] == error
        thread = httpx.get(f"{pod.url}/threads/{thread_id}").json()
        assert thread["status"] == "error"
        assert thread["error"]["message"] == "the tool backend refused the request"
        state = httpx.get(f"{pod.url}/threads/{thread_id}/state").json()
        assert state["values"]["messages"][0]["content"] == "x"  # the checkpoint before the failure is intact
        stream = httpx.post(f"{pod.url}/threads/{thread_id}/runs/stream",
                            json={"assistant_id": "failing", "input": {"messages": []}})
        assert "event: error" in stream.text and "ValueError" in stream.text


class TestDatabaseTrouble:
    def test_should_answer_503_with_retry_after_when_the_database_is_unreachable(self) -> None:
        dead = f"postgresql://nobody:{ADMIN_PASSWORD}@127.0.0.1:{free_port()}/nothing"
        with ServiceProcess(None, DATABASE_URL=dead, DB_POOL_TIMEOUT="1").start(wait="/ok") as p:
            assert httpx.get(p.url + "/ok").status_code == 200
            assert_problem(httpx.get(p.url + "/ready"), 503, "database unreachable")
            started = time.monotonic()
            response = httpx.post(p.url + "/threads", json={}, timeout=10)
            assert time.monotonic() - started < 5
            assert_problem(response, 503)
            assert response.headers["retry-after"]
        assert ADMIN_PASSWORD not in p.logs() and "Traceback" not in p.logs()

    def test_should_answer_503_when_the_pool_is_exhausted(self, migrated_db: str) -> None:
        with ServiceProcess(migrated_db, DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="1", DB_POOL_TIMEOUT="0.5",
                            DB_STATEMENT_TIMEOUT="3") as p:
            thread_id = httpx.post(p.url + "/threads", json={}).json()["thread_id"]
            blocker = psycopg.connect(with_params(migrated_db, application_name="blocker"))
            blocker.execute("LOCK TABLE threads IN ACCESS EXCLUSIVE MODE")
            held: list[httpx.Response] = []
            t = threading.Thread(target=lambda: held.append(httpx.get(f"{p.url}/threads/{thread_id}", timeout=10)))
            t.start()
            deadline = time.monotonic() + 60
            while not _waits_for_a_lock(migrated_db):  # the only pooled connection waits for the table lock
                assert time.monotonic() < deadline, "the pooled connection never waited for the lock"
                time.sleep(0.05)
            response = httpx.get(f"{p.url}/threads/{thread_id}", timeout=10)
            blocker.rollback()
            blocker.close()
            t.join()
            assert_problem(response, 503, "no database connection")
            assert response.headers["retry-after"]
            assert held[0].status_code == 200


def _waits_for_a_lock(conninfo: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock' AND application_name LIKE 'langgraph-service:%'").fetchone()
    return bool(row and row[0])


class TestRacingADelete:
    """A write that refers to a thread another transaction is deleting: the foreign key check waits
    for the delete and fails when it commits. The thread is gone, so the answer is 404, not 500."""

    @pytest.mark.parametrize("write", ["cron", "ttl", "run"])
    def test_should_answer_404_when_the_thread_is_deleted_under_the_write(self, migrated_db: str,
                                                                          write: str) -> None:
        with ServiceProcess(migrated_db) as p, psycopg.connect(migrated_db) as deleter, \
                psycopg.connect(migrated_db, autocommit=True) as watcher, ThreadPoolExecutor(1) as pool:
            thread_id = httpx.post(p.url + "/threads", json={"graph_id": "support"}).json()["thread_id"]
            deleter.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))  # not committed yet
            request = {
                "cron": lambda: httpx.post(f"{p.url}/threads/{thread_id}/runs/crons", timeout=60,
                                           json={"assistant_id": "support", "schedule": "0 0 * * *"}),
                "ttl": lambda: httpx.patch(f"{p.url}/threads/{thread_id}", timeout=60,
                                           json={"ttl": {"strategy": "delete", "ttl": 60}}),
                "run": lambda: httpx.post(f"{p.url}/threads/{thread_id}/runs", timeout=60,
                                          json={"assistant_id": "support", "input": {"messages": []}}),
            }[write]
            answer = pool.submit(request)
            deadline = time.monotonic() + 30
            # The service's statement waits for the deleter's row lock (or answers first, if it never needs it).
            while not answer.done() and not watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND application_name LIKE 'langgraph-service%'").fetchone():
                assert time.monotonic() < deadline, "the write never waited for the delete"
                time.sleep(0.02)
            deleter.commit()
            assert_problem(answer.result(), 404)
        assert "unhandled_error" not in p.logs() and "Traceback" not in p.logs()
