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
from hostapp.events import Event
from hostapp.tracing import TracingEngine
from hostapp.types import Contribution
from hostapp_plugins.http import REDACTED, redact_headers, redact_url
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
    events: list[Event] = []
    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            events.append(event)

    contributions = [Contribution(m.PROCESSOR, name) for name, m in PLUGINS.items()]
    config = Config.from_dict({"tracing": settings}, environ={})
    engine = TracingEngine(contributions, emit, config=config, backend=backend)
    engine.start()
    try:
        yield engine, events
    finally:
        engine.stop()
    for name, stats in engine.stats().items():
        assert stats["errors"] == 0, (name, stats)


def top_level(events: list[Event]) -> list[Event]:
    """The default view: calls not nested in another HTTP call."""
    return [e for e in events if e.data.get("nested_in") is None]


def pairs(events: list[Event]) -> list[tuple[Event, Event]]:
    """(request, response) per call of the default view, in call order."""
    shown = top_level(events)
    responses = {e.data["frame_id"]: e for e in shown if e.type == "outbound_http_response"}
    out = []
    for request in shown:
        if request.type == "outbound_http_request":
            out.append((request, responses[request.data["frame_id"]]))
    assert len(out) * 2 == len(shown), [(e.type, e.data.get("library")) for e in shown]
    return out


def test_urllib_request_and_response(server: str, backend: str) -> None:
    with tracing(backend) as (_, events):
        with urllib.request.urlopen(f"{server}/ok?token=abc&page=2") as resp:
            assert resp.read() == b"hello"
    [(request, response)] = pairs(events)
    assert request.subtype == response.subtype == "urllib"
    assert request.data["library"] == "urllib"
    assert request.data["method"] == "GET"
    assert request.data["url"] == f"{server}/ok?token={REDACTED}&page=2"
    assert request.data["method_and_full_url"] == f"GET {server}/ok?token={REDACTED}&page=2"
    assert response.data["status_code"] == 200
    assert response.data["headers"]["Set-Cookie"] == REDACTED
    assert response.data["body"] is None and response.data["body_size"] == 5
    assert response.data["duration_ns"] > 0
    # the http.client calls urllib makes are there, linked to the urllib call
    inner = [e for e in events if e.data.get("nested_in") == request.data["frame_id"]]
    assert {e.data["library"] for e in inner} == {"http.client"}
    assert sorted(e.type for e in inner) == ["outbound_http_request", "outbound_http_response"]


def test_urllib_error_status_is_recorded_before_urllib_raises(server: str, backend: str) -> None:
    with tracing(backend) as (_, events):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server}/missing")
    [(_, response)] = pairs(events)
    assert response.data["status_code"] == 404


def test_requests_one_call_in_the_default_view_with_urllib3_and_http_client_linked(
    server: str, backend: str,
) -> None:
    with tracing(backend) as (_, events):
        reply = requests.post(
            f"{server}/echo?api_key=k1", data=b"payload", headers={"Authorization": "Bearer xyz", "X-Trace": "1"},
        )
        assert reply.status_code == 201
    [(request, response)] = pairs(events)
    assert request.data["library"] == "requests" and request.subtype == "requests"
    assert request.data["method"] == "POST"
    assert request.data["url"] == f"{server}/echo?api_key={REDACTED}"
    assert request.data["headers"]["Authorization"] == REDACTED
    assert request.data["headers"]["X-Trace"] == "1"
    assert request.data["body"] == "payload" and request.data["body_size"] == 7
    assert response.data["status_code"] == 201
    assert response.data["body"] == "got:payload"
    nested = [e for e in events if e.data.get("nested_in") is not None]
    assert {e.data["library"] for e in nested} == {"urllib3"}  # urllib3 2.x sends by itself
    assert all(e.data["nested_in"] == request.data["frame_id"] for e in nested)
    assert "xyz" not in repr([e.data for e in events])


def test_requests_redirect_is_one_call(server: str, backend: str) -> None:
    with tracing(backend) as (_, events):
        assert requests.get(f"{server}/redirect").text == "hello"
    [(request, response)] = pairs(events)
    assert request.data["url"] == f"{server}/redirect"
    assert response.data["status_code"] == 200
    hops = [e for e in events if e.data["library"] == "requests" and e.data["nested_in"] is not None]
    assert len(hops) == 2  # the redirected send, nested in the first


def test_urllib3_direct(server: str, backend: str) -> None:
    pool = urllib3.PoolManager()
    with tracing(backend) as (_, events):
        assert pool.request("GET", f"{server}/ok").status == 200
    [(request, response)] = pairs(events)
    assert request.data["library"] == "urllib3"
    assert request.data["url"] == f"{server}/ok"
    assert response.data["body"] == "hello"


def test_http_client_direct_pairs_request_and_getresponse(server: str, backend: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with tracing(backend) as (_, events):
        conn = http.client.HTTPConnection(host, int(port))
        conn.request("GET", "/ok", headers={"Cookie": "a=b"})
        assert conn.getresponse().read() == b"hello"
        conn.close()
    [(request, response)] = pairs(events)
    assert request.data["library"] == "http.client"
    assert request.data["url"] == f"{server}/ok"
    assert request.data["headers"] == {"Cookie": REDACTED}
    assert response.data["status_code"] == 200 and response.data["body_size"] == 5


def test_connection_refused_is_a_response_with_the_exception(backend: str) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with tracing(backend) as (_, events):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    [(request, response)] = pairs(events)
    assert response.data["status_code"] is None
    assert response.data["exception_type"] == "requests.exceptions.ConnectionError"


def test_httpx_sync_and_body_truncation(server: str, backend: str) -> None:
    with tracing(backend, max_body_bytes=10) as (_, events):
        with httpx.Client() as client:
            assert client.get(f"{server}/big").status_code == 200
            assert client.post(f"{server}/echo", content=b"0123456789abcdef").status_code == 201
    (req1, resp1), (req2, resp2) = pairs(events)
    assert req1.data["library"] == "httpx"
    assert resp1.data["body"] == "x" * 10 and resp1.data["body_truncated"] is True
    assert resp1.data["body_size"] == 1000
    assert req2.data["body"] == "0123456789" and req2.data["body_truncated"] is True
    assert resp2.data["status_code"] == 201


def test_httpx_async_concurrent_calls_do_not_nest(server: str, backend: str) -> None:
    async def main() -> list[int]:
        async with httpx.AsyncClient() as client:
            replies = await asyncio.gather(*(client.get(f"{server}/ok?i={i}") for i in range(10)))
        return [r.status_code for r in replies]

    with tracing(backend) as (_, events):
        assert asyncio.run(main()) == [200] * 10
    found = pairs(events)
    assert len(found) == 10
    assert sorted(req.data["url"] for req, _ in found) == sorted(f"{server}/ok?i={i}" for i in range(10))
    assert all(resp.data["status_code"] == 200 and resp.data["body"] == "hello" for _, resp in found)
    assert all(e.data["nested_in"] is None for e in events)


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
    found = pairs(events)
    assert len(found) == 6
    assert len({req.thread_id for req, _ in found}) == 2


def test_redaction_helpers() -> None:
    names = frozenset({"authorization", "x-api-key"})
    assert redact_headers([("Authorization", "a"), ("Accept", "*/*"), ("Accept", "x")], names) == {
        "Authorization": REDACTED, "Accept": "*/*, x",
    }
    assert redact_headers(None, names) == {}
    params = frozenset({"token", "password"})
    assert redact_url("https://h/p?Token=1&a=%20b&password=&x#frag", params) == (
        f"https://h/p?Token={REDACTED}&a=%20b&password={REDACTED}&x#frag"
    )
    assert redact_url("https://user:pw@h:1/p", params) == f"https://user:{REDACTED}@h:1/p"
    assert redact_url("https://h/p", params) == "https://h/p"


def test_the_plugin_modules_import_no_http_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import hostapp_plugins.http.requests, hostapp_plugins.http.httpx, "
        "hostapp_plugins.http.urllib3; "
        "print(sorted(m for m in ('requests', 'httpx', 'urllib3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_redact_headers_reads_every_header_container_the_same_way() -> None:
    """The fast paths for requests' CaseInsensitiveDict and urllib3's HTTPHeaderDict give
    what the generic Mapping walk gives: original names, repeated values joined, secrets
    redacted (case-insensitively)."""
    from email.message import Message

    from requests.structures import CaseInsensitiveDict
    from urllib3 import HTTPHeaderDict

    from hostapp_plugins.http import REDACTED, redact_headers

    names = frozenset({"authorization", "set-cookie"})
    cid = CaseInsensitiveDict({"Content-Type": "text/plain", "AUTHORIZATION": "Bearer x"})
    assert redact_headers(cid, names) == {"Content-Type": "text/plain", "AUTHORIZATION": REDACTED}
    hhd = HTTPHeaderDict()
    hhd.add("Set-Cookie", "a=1")
    hhd.add("set-cookie", "b=2")
    hhd.add("X-Many", "1")
    hhd.add("x-many", "2")
    assert redact_headers(hhd, names) == {"Set-Cookie": REDACTED, "X-Many": "1, 2"}
    message = Message()
    message["X-Many"] = "1"
    message["X-Many"] = "2"
    assert redact_headers(message, names) == {"X-Many": "1, 2"}
    assert redact_headers({"Authorization": "t", "Accept": "*/*"}, names) == {"Authorization": REDACTED, "Accept": "*/*"}
    assert redact_headers({b"Accept": b"*/*"}, names) == {"Accept": "*/*"}
    assert redact_headers([("Accept", "a"), ("accept", "b")], names) == {"Accept": "a", "accept": "b"}
