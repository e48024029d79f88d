"""A page in headless Chromium on another origin calls the service with the JS SDK, as agent-chat-ui does.

Debian's ``chromium`` (scripts/install-tools.sh) driven by ``playwright-core`` from npm
(tests/e2e/js/browser/drive.mjs); the page (tests/e2e/js/browser/index.html + page.js) loads
``@langchain/langgraph-sdk`` bundled for the browser by esbuild at test time, from a static server
on its own loopback port, so the browser applies CORS to every call: create a thread, stream a run
of ``refunds`` to its ``interrupt()``, reload, list the assistant's threads, approve from the page.
Without CORS configured for the page's origin the same page fails, and the browser never sends
the thread's POST.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import psycopg
import pytest
from langgraph_sdk import get_sync_client

from service.graphs import assistant_id_for
from tests.support.jsclient import JS_DIR, run_js
from tests.support.service import ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
PAGE_DIR = JS_DIR / "browser"
GRAPHS = json.dumps({"refunds": "service.graphs.refunds:graph"})
ASK = "Please refund $40.50 for order A-1234, it arrived broken."


@dataclass
class Site:
    """The page's static server: its origin and the paths the browser fetched from it."""

    origin: str
    fetched: list[str] = field(default_factory=list)

    def page_url(self, api: str) -> str:
        return f"{self.origin}/index.html?{urlencode({'api': api})}"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CHROMIUM.exists():
        pytest.skip("LOUD SKIP: /usr/bin/chromium is missing (scripts/install-tools.sh installs Debian's chromium)")
    root = tmp_path_factory.mktemp("page")
    for name in ("index.html", "page.js"):
        shutil.copy(PAGE_DIR / name, root / name)
    out = run_js("browser/bundle.mjs", "", str(root / "sdk.js"))
    assert out["bytes"] > 10_000
    return root


@pytest.fixture
def site(bundle: Path) -> Iterator[Site]:
    fetched: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(bundle), **kwargs)

        def do_GET(self) -> None:
            fetched.append(self.path.split("?")[0])
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}", fetched)
    finally:
        server.shutdown()
        server.server_close()


def drive(site: Site, pod: ServiceProcess) -> dict[str, Any]:
    out: dict[str, Any] = run_js("browser/drive.mjs", pod.url, PAGE_URL=site.page_url(pod.url))
    return out


def test_should_create_stream_reload_list_and_resume_from_a_page_on_another_origin(
        migrated_db: str, site: Site) -> None:
    assistant_id = assistant_id_for("refunds")
    with ServiceProcess(migrated_db, GRAPHS=GRAPHS, CORS_ALLOW_ORIGINS=site.origin) as pod:
        client = get_sync_client(url=pod.url)
        before = client.threads.create(metadata={"assistant_id": "someone-else"})["thread_id"]
        out = drive(site, pod)
        first, second, third = out["first"], out.get("second") or {}, out.get("third") or {}
        assert first["phase"] == "streamed", out
        assert not [line for line in out["console"] if line.startswith(("error", "pageerror"))], out["console"]
        browser = first["browser"]
        assert "HeadlessChrome" in browser["userAgent"] and browser["nodeProcess"] is False
        assert browser["origin"] == site.origin != pod.url
        assert {"/index.html", "/page.js", "/sdk.js"} <= set(site.fetched)
        thread_id = first["threadId"]
        assert first["events"][0] == "metadata" and {"values", "updates"} <= set(first["events"])
        (request,) = first["interrupt"][0]["value"]
        assert request["action_request"]["action"] == "issue_refund"
        assert request["action_request"]["args"]["order_id"] == "A-1234"

        assert second["phase"] == "listed", out
        assert second["assistantId"] == assistant_id
        assert second["listed"] == [thread_id] and before not in second["listed"]  # only the assistant's threads
        assert second["status"] == "interrupted" and second["request"] == request

        assert third["phase"] == "done", out
        assert third["decision"] == "accepted"
        assert third["answer"] == out["answerShown"] == "Refund of 40.50 USD issued for order A-1234."

        state = client.threads.get_state(thread_id)
        assert state["next"] == [] and state["values"]["decision"] == "accepted"
        assert client.threads.get(thread_id)["status"] == "idle"
    with psycopg.connect(migrated_db) as conn:
        thread = conn.execute("SELECT status, metadata, values FROM threads WHERE thread_id = %s",
                              (thread_id,)).fetchone()
        runs = conn.execute("SELECT status, kwargs FROM runs WHERE thread_id = %s ORDER BY created_at",
                            (thread_id,)).fetchall()
    assert thread is not None
    status, metadata, values = thread
    assert status == "idle" and metadata == {"graph_id": "refunds", "assistant_id": assistant_id}
    assert values["decision"] == "accepted" and values["messages"][0]["content"] == ASK
    assert [r[0] for r in runs] == ["interrupted", "success"]
    assert runs[1][1]["command"]["resume"] == [{"type": "accept", "args": None}]  # the HumanResponse, as sent


@pytest.mark.parametrize("cors", [None, "http://127.0.0.1:1"], ids=["no-cors", "another-origin"])
def test_should_fail_in_the_browser_without_cors_for_the_pages_origin(
        migrated_db: str, site: Site, cors: str | None) -> None:
    env = {"CORS_ALLOW_ORIGINS": cors} if cors else {}
    with ServiceProcess(migrated_db, GRAPHS=GRAPHS, **env) as pod:
        out = drive(site, pod)
    first = out["first"]
    assert first["phase"] == "error" and "second" not in out, out
    # The SDK's ConnectionError wraps what fetch says when the browser refuses a response to CORS.
    assert first["errorName"] == "ConnectionError" and "Failed to fetch" in first["error"], out
    assert any("blocked by CORS policy" in line for line in out["console"]), out["console"]
    assert "/sdk.js" in site.fetched  # the SDK loaded; the browser refused the call
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT count(*) FROM threads").fetchone() == (0,)  # the POST was never sent
