"""The built-in HTTP processors against a real HTTP server on 127.0.0.1, with the real
libraries (urllib, http.client, urllib3, requests, httpx sync and async), on the
interpreter's default tracing backend and on the profile fallback."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import requests
import urllib3

from hostapp import Config
from hostapp.events import Event, EventBus
from hostapp.events.redaction import REDACTED
from hostapp.tracing import TracingEngine
from hostapp.types import Contribution, EventSink
from hostapp_plugins.http import client as client_plugin
from hostapp_plugins.http import httpx as httpx_plugin
from hostapp_plugins.http import requests as requests_plugin
from hostapp_plugins.http import urllib as urllib_plugin
from hostapp_plugins.http import urllib3 as urllib3_plugin

PLUGINS = {
    "http.urllib": urllib_plugin,
    "http.client": client_plugin,
    "http.urllib3": urllib3_plugin,
    "http.requests": requests_plugin,
    "http.httpx": httpx_plugin,
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=s3cr3t")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/missing"):
            self._reply(404, b"no such thing")
        elif self.path.startswith("/redirect"):
            self._reply(302, b"", {"Location": "/ok"})
        elif self.path.startswith("/big"):
            self._reply(200, b"x" * 1000)
        else:
            self._reply(200, b"hello")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._reply(201, b"got:" + self.rfile.read(length))


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(params=["default", "profile"])
def backend(request: pytest.FixtureRequest) -> str:
    return "auto" if request.param == "default" else "profile"


@contextmanager
def tracing(backend: str, **settings: Any) -> Iterator[tuple[TracingEngine, list[Event]]]:
    """The HTTP processors on ``backend``, their records delivered through a real event bus
    (so the host's redaction policy applies, as in a run) to a sink collecting them."""
    events: list[Event] = []
    sink = Contribution(EventSink(name="collect", handle=events.extend, batch_size=10_000), "test")
    config = Config.from_dict({"tracing": settings, "events": {"sinks": {"collect": {}}}}, environ={})
    bus = EventBus([sink], config)
    bus.start()
    contributions = [Contribution(m.PROCESSOR, name) for name, m in PLUGINS.items()]
    engine = TracingEngine(contributions, bus.emit, config=config, backend=backend, bus=bus)
    engine.start()
    try:
        yield engine, events
    finally:
        engine.stop()
        bus.stop()
    for name, stats in engine.stats().items():
        assert stats["errors"] == 0, (name, stats)
    assert bus.stats()["collect"]["dead_lettered"] == 0


def calls(events: list[Event]) -> list[Event]:
    """The HTTP call records, in call order."""
    found = sorted((e for e in events if e.type == "outbound_http_request"), key=lambda e: (e.timestamp_ns, e.id))
    assert len(found) == len(events), [(e.type, e.subtype) for e in events]
    return found


def test_urllib_one_record_with_http_client_named_in_via(server: str, backend: str) -> None:
    with tracing(backend) as (_, events):
        with urllib.request.urlopen(f"{server}/ok?token=abc&page=2") as resp:
            assert resp.read() == b"hello"
    [call] = calls(events)
    assert call.subtype == "urllib"
    data = call.data
    assert data["method"] == "GET"
    assert data["url"] == f"{server}/ok?token={REDACTED}&page=2"
    assert data["status_code"] == 200 and data["duration_ns"] > 0
    assert data["response"]["headers"]["Set-Cookie"] == REDACTED
    assert data["response"]["body"] is None and data["response"]["body_size"] == 5
    assert data["via"] == ["http.client"]
    assert data["call_site"] == {"file": __file__, "line": data["call_site"]["line"]}
    assert data["thread_name"] == threading.current_thread().name
    assert len(data["span_id"]) == 16 and call.id.endswith(data["span_id"])


def test_urllib_error_status_is_recorded_before_urllib_raises(server: str, backend: str) -> None:
    with tracing(backend) as (_, events):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server}/missing")
    [call] = calls(events)
    assert call.data["status_code"] == 404 and "error" not in call.data


def test_requests_one_record_for_requests_urllib3_and_http_client(server: str, backend: str) -> None:
    with tracing(backend) as (engine, events):
        reply = requests.post(
            f"{server}/echo?api_key=k1", data=b"payload", headers={"Authorization": "Bearer xyz", "X-Trace": "1"},
        )
        assert reply.status_code == 201
    [call] = calls(events)
    assert call.subtype == "requests"
    data = call.data
    assert data["method"] == "POST"
    assert data["url"] == f"{server}/echo?api_key={REDACTED}"
    assert data["request"]["headers"]["Authorization"] == REDACTED
    assert data["request"]["headers"]["X-Trace"] == "1"
    assert data["request"]["body"] == "payload" and data["request"]["body_size"] == 7
    assert data["status_code"] == 201
    assert data["response"]["body"] == "got:payload"
    assert data["via"] == ["urllib3", "http.client"]
    assert "xyz" not in repr([e.data for e in events])
    stats = engine.stats()
    assert (stats["requests"]["events"], stats["urllib3"]["nested"], stats["urllib3"]["events"]) == (1, 1, 0)


def test_requests_redirect_is_one_record(server: str, backend: str) -> None:
    with tracing(backend) as (_, events):
        assert requests.get(f"{server}/redirect").text == "hello"
    [call] = calls(events)
    assert call.data["url"] == f"{server}/redirect"
    assert call.data["status_code"] == 200  # the final response
    assert call.data["redirects"] == 1


def test_urllib3_direct(server: str, backend: str) -> None:
    pool = urllib3.PoolManager()
    with tracing(backend) as (_, events):
        assert pool.request("GET", f"{server}/ok").status == 200
    [call] = calls(events)
    assert call.subtype == "urllib3"
    assert call.data["url"] == f"{server}/ok"
    assert call.data["response"]["body"] == "hello"


def test_http_client_direct_is_one_record_from_request_to_getresponse(server: str, backend: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with tracing(backend) as (_, events):
        conn = http.client.HTTPConnection(host, int(port))
        conn.request("GET", "/ok", headers={"Cookie": "a=b"})
        assert conn.getresponse().read() == b"hello"
        conn.close()
    [call] = calls(events)
    assert call.subtype == "http.client"
    assert call.data["url"] == f"{server}/ok"
    assert call.data["request"]["headers"] == {"Cookie": REDACTED}
    assert call.data["status_code"] == 200 and call.data["response"]["body_size"] == 5
    assert call.data["call_site"]["line"] == call.data["call_site"]["line"]  # from the request() line


def test_connection_refused_is_a_record_with_the_error_redacted(backend: str) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with tracing(backend) as (_, events):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/x?token=s3cr3t", timeout=5)
    [call] = calls(events)
    assert call.data["status_code"] is None and call.data["response"] is None
    assert call.data["error"]["type"] == "requests.exceptions.ConnectionError"
    assert f"?token={REDACTED}" in call.data["error"]["message"]  # urllib3 puts the URL there
    assert "s3cr3t" not in repr(call.data)


def test_httpx_sync_and_body_truncation(server: str, backend: str) -> None:
    with tracing(backend, max_body_bytes=10) as (_, events):
        with httpx.Client() as client:
            assert client.get(f"{server}/big").status_code == 200
            assert client.post(f"{server}/echo", content=b"0123456789abcdef").status_code == 201
    first, second = calls(events)
    assert first.subtype == "httpx"
    assert first.data["response"]["body"] == "x" * 10 and first.data["response"]["body_truncated"] is True
    assert first.data["response"]["body_size"] == 1000
    assert second.data["request"]["body"] == "0123456789" and second.data["request"]["body_truncated"] is True
    assert second.data["status_code"] == 201


def test_httpx_async_concurrent_calls_are_one_record_each(server: str, backend: str) -> None:
    async def main() -> list[int]:
        async with httpx.AsyncClient() as client:
            replies = await asyncio.gather(*(client.get(f"{server}/ok?i={i}") for i in range(10)))
        return [r.status_code for r in replies]

    with tracing(backend) as (_, events):
        assert asyncio.run(main()) == [200] * 10
    found = calls(events)
    assert sorted(c.data["url"] for c in found) == sorted(f"{server}/ok?i={i}" for i in range(10))
    assert all(c.data["status_code"] == 200 and c.data["response"]["body"] == "hello" for c in found)
    assert all("via" not in c.data for c in found)  # concurrent tasks never nest in one another


def test_calls_from_other_threads(server: str, backend: str) -> None:
    def work() -> None:
        for _ in range(3):
            requests.get(f"{server}/ok")

    with tracing(backend) as (_, events):
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    found = calls(events)
    assert len(found) == 6
    assert len({c.thread_id for c in found}) == 2


def test_the_plugin_modules_import_no_http_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import hostapp_plugins.http.requests, hostapp_plugins.http.httpx, "
        "hostapp_plugins.http.urllib3, hostapp_plugins.http.client; "
        "print(sorted(m for m in ('requests', 'httpx', 'urllib3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_header_dict_reads_every_header_container_the_same_way() -> None:
    """The fast paths for requests' CaseInsensitiveDict and urllib3's HTTPHeaderDict give
    what the generic Mapping walk gives: original names, repeated values joined."""
    from email.message import Message

    from requests.structures import CaseInsensitiveDict
    from urllib3 import HTTPHeaderDict

    from hostapp_plugins.http import header_dict

    cid = CaseInsensitiveDict({"Content-Type": "text/plain", "AUTHORIZATION": "Bearer x"})
    assert header_dict(cid) == {"Content-Type": "text/plain", "AUTHORIZATION": "Bearer x"}
    hhd = HTTPHeaderDict()
    hhd.add("Set-Cookie", "a=1")
    hhd.add("set-cookie", "b=2")
    hhd.add("X-Many", "1")
    hhd.add("x-many", "2")
    assert header_dict(hhd) == {"Set-Cookie": "a=1, b=2", "X-Many": "1, 2"}
    message = Message()
    message["X-Many"] = "1"
    message["X-Many"] = "2"
    assert header_dict(message) == {"X-Many": "1, 2"}
    assert header_dict({b"Accept": b"*/*"}) == {"Accept": "*/*"}
    assert header_dict([("Accept", "a"), ("accept", "b")]) == {"Accept": "a", "accept": "b"}
    assert header_dict(None) == {}
