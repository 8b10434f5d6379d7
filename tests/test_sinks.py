"""The built-in ``sqlite`` and ``webhook`` sinks, as plugins, against real things.

A real SQLite file, a real HTTP server on 127.0.0.1 (``http.server`` in a thread), a real
child process killed with SIGKILL. ``HOSTAPP_TEST_WEBHOOK_OUTAGE_S`` sets how long the
server answers 503 (default 3 s; the issue's run is 10).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hostapp.config import Config
from hostapp.events import Event, EventBus, SinkConfig
from hostapp.store import Store
from hostapp_plugins.sinks import sqlite as sqlite_module
from hostapp_plugins.sinks import webhook as webhook_module
from hostapp_plugins.sinks.webhook import WebhookSink, retry_after_seconds


def make_config(tmp_path: Path, sinks: dict[str, dict[str, Any]], **events: Any) -> Config:
    tables = {"sqlite": {"enabled": False}, **sinks}
    return Config.from_dict({"events": {"sinks": tables, **events}}, root=tmp_path, environ={})


def sinks_of(hostapp_pm: Any, hostapp_register: Callable[..., Any], *modules: Any) -> list[Any]:
    """Register plugin modules the way discovery does and collect their sinks."""
    for module in modules:
        hostapp_register(module, name=module.__name__.rsplit(".", 2)[-2] + "." + module.__name__.rsplit(".", 1)[-1])
    return hostapp_pm.collect("hostapp_event_sinks")


# -- sqlite ------------------------------------------------------------------------------


def test_sqlite_sink_is_a_plugin_writing_to_the_bus_store(tmp_path, hostapp_pm, hostapp_register):
    sinks = sinks_of(hostapp_pm, hostapp_register, sqlite_module)
    assert [(c.name, c.plugin) for c in sinks] == [("sqlite", "sinks.sqlite")]
    config = Config.from_dict({}, root=tmp_path, environ={})  # the default: sqlite enabled
    store = Store(tmp_path / ".hostapp" / "hostapp.sqlite3")
    bus = EventBus(sinks, config, store=store, run_id="r1")
    bus.start()
    sent = [bus.publish("monitoring_event", "tick", data={"i": i}) for i in range(1500)]
    stats = bus.stop(10)["sqlite"]
    assert stats["delivered"] == 1500
    assert store.events(run_id="r1") == sent
    assert not store.closed  # the sink shared the bus's store and left it open


def test_sqlite_sink_path_is_relative_to_the_config_root(tmp_path):
    sink = sqlite_module.SqliteSink()
    config = Config.from_dict({}, root=tmp_path, environ={})
    sink.open(SinkConfig({"path": "elsewhere/events.db"}, name="sqlite", config=config))
    assert sink.store is not None and sink.store.path == tmp_path / "elsewhere" / "events.db"
    event = Event.create("t")
    sink.handle([event])
    sink.handle([event])  # a retried batch does not duplicate rows
    sink.close()
    with Store(tmp_path / "elsewhere" / "events.db") as store:
        assert store.events() == [event]
    with pytest.raises(ValueError, match="events.sinks.sqlite.path"):
        sqlite_module.SqliteSink().open({"path": 3})


def test_sqlite_sink_that_cannot_open_keeps_events_as_dead_letters(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    store = Store(tmp_path / "bus.sqlite3")
    config = make_config(tmp_path, {"sqlite": {"path": "file/sub/x.db"}})
    bus = EventBus([_contribution(sqlite_module)], config, store=store)
    bus.start()
    bus.publish("t")
    stats = bus.stop(10)["sqlite"]
    assert stats["state"] == "failed" and "cannot open the store" in stats["error"]
    assert stats["dead_lettered"] == 1 and len(store.dead_letters(sink="sqlite")) == 1


def _contribution(module: Any) -> Any:
    from hostapp.types import Contribution

    return Contribution(module.hostapp_event_sinks(), f"sinks.{module.__name__.rsplit('.', 1)[-1]}")


CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from hostapp.config import Config
    from hostapp.events import Event, EventBus
    from hostapp.store import Store
    from hostapp.types import Contribution
    from hostapp_plugins.sinks import sqlite

    root = Path(sys.argv[1])
    config = Config.from_dict(
        {"events": {"flush_interval_ms": 20, "batch_size": 500, "max_block_ms": 600000}},
        root=root, environ={},
    )
    store = Store(root / ".hostapp" / "hostapp.sqlite3")
    bus = EventBus([Contribution(sqlite.hostapp_event_sinks(), "sinks.sqlite")], config,
                   store=store, run_id="killed")
    bus.start()

    def report():
        while True:
            print(bus.stats()["sqlite"]["delivered"], flush=True)
            time.sleep(0.01)

    threading.Thread(target=report, daemon=True).start()
    i = 0
    while True:
        bus.emit(Event.create("tick", data={"i": i}, run_id="killed"))
        i += 1
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_leaves_a_sound_store_with_every_flushed_event(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    delivered = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            delivered = int(line)
            if delivered >= 30_000:  # well into the run, while it is still writing
                break
        else:
            pytest.fail(f"child ended early: {child.stderr.read() if child.stderr else ''}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    path = tmp_path / ".hostapp" / "hostapp.sqlite3"
    assert Path(str(path) + "-wal").exists()  # killed before any clean close
    with Store(path) as store:
        assert store.integrity_check() == "ok"
        con = sqlite3.connect(path)
        count, below = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE json_extract(data, '$.i') < ?) FROM events",
            (delivered,),
        ).fetchone()
        con.close()
    # every event delivered (committed) before the last report is there, exactly once
    assert below == delivered
    assert count >= delivered


# -- webhook -----------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every event id it accepted."""

    def __init__(self, answer: Callable[[int, list[dict[str, Any]]], tuple[int, dict[str, str], float]]) -> None:
        self.answer = answer
        self.posts = 0
        self.accepted: list[str] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.headers["Content-Type"] == "application/json"
                with receiver.lock:
                    receiver.posts += 1
                    number = receiver.posts
                status, headers, delay = receiver.answer(number, body["events"])
                if status == 200:
                    with receiver.lock:
                        receiver.accepted.extend(e["id"] for e in body["events"])
                with receiver.lock:
                    receiver.statuses.append(status)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_sinks() -> Iterator[list[Any]]:
    """The webhook sink as its plugin contributes it (a fresh instance per test)."""
    yield [_contribution(webhook_module)]


OUTAGE_S = float(os.environ.get("HOSTAPP_TEST_WEBHOOK_OUTAGE_S", "3"))


def test_webhook_rides_out_an_outage_and_loses_nothing(tmp_path, webhook_sinks):
    started = time.monotonic()

    def answer(number: int, events: list[dict[str, Any]]) -> tuple[int, dict[str, str], float]:
        if time.monotonic() - started < OUTAGE_S:
            return 503, {"Retry-After": "1"}, 0.0
        return 200, {}, 0.0

    with Receiver(answer) as receiver:
        config = make_config(
            tmp_path,
            {"webhook": {"url": receiver.url, "timeout": 5, "max_retries": int(OUTAGE_S) * 2 + 5}},
            batch_size=100,
        )
        store = Store(tmp_path / "s.sqlite3")
        bus = EventBus(webhook_sinks, config, store=store)
        bus.start()
        sent = [bus.publish("monitoring_event", data={"i": i}) for i in range(1000)]
        stats = bus.stop(OUTAGE_S + 60)["webhook"]

    assert stats["delivered"] == 1000 and stats["dead_lettered"] == 0
    assert stats["failed"] >= 1 and stats["retried"] == stats["failed"]
    assert 503 in receiver.statuses and receiver.statuses[-1] == 200
    # every event arrived; a 503 means "not taken", so nothing arrived twice
    assert sorted(receiver.accepted) == sorted(e.id for e in sent)
    assert len(receiver.accepted) == len(set(receiver.accepted))


def test_webhook_is_at_least_once_when_an_answer_is_lost(tmp_path, webhook_sinks):
    def answer(number: int, events: list[dict[str, Any]]) -> tuple[int, dict[str, str], float]:
        return 200, {}, (2.0 if number == 1 else 0.0)  # took the batch, answered too late

    with Receiver(answer) as receiver:
        config = make_config(
            tmp_path, {"webhook": {"url": receiver.url, "timeout": 0.5, "retry_backoff_ms": 10}},
            batch_size=50,
        )
        bus = EventBus(webhook_sinks, config)
        bus.start()
        sent = [bus.publish("t", data={"i": i}) for i in range(120)]
        stats = bus.stop(30)["webhook"]

    assert stats["delivered"] == 120 and stats["failed"] == 1
    ids = [e.id for e in sent]
    assert sorted(set(receiver.accepted)) == sorted(ids)  # de-duplicated by id: exactly the events
    duplicates = len(receiver.accepted) - len(set(receiver.accepted))
    assert duplicates == 50  # the first batch, whose answer was lost, arrived twice


def test_webhook_client_error_is_dead_lettered_at_once(tmp_path, webhook_sinks):
    with Receiver(lambda number, events: (400, {}, 0.0)) as receiver:
        store = Store(tmp_path / "s.sqlite3")
        config = make_config(tmp_path, {"webhook": {"url": receiver.url}})
        bus = EventBus(webhook_sinks, config, store=store)
        bus.start()
        bus.publish("t")
        stats = bus.stop(10)["webhook"]
    assert (stats["failed"], stats["retried"], stats["dead_lettered"]) == (1, 0, 1)
    assert "400" in store.dead_letters()[0].error


def test_webhook_503_without_retry_after_uses_the_backoff(tmp_path, webhook_sinks):
    with Receiver(lambda number, events: ((503, {}, 0.0) if number == 1 else (200, {}, 0.0))) as receiver:
        config = make_config(tmp_path, {"webhook": {"url": receiver.url, "retry_backoff_ms": 10}})
        bus = EventBus(webhook_sinks, config)
        bus.start()
        bus.publish("t")
        stats = bus.stop(10)["webhook"]
    assert (stats["failed"], stats["retried"], stats["delivered"]) == (1, 1, 1)


def test_retry_after_header_values():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    now = time.time()
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "webhook.url: expected an http"),
        ({"url": "ftp://x"}, "webhook.url"),
        ({"url": "http://x", "timeout": 0}, "webhook.timeout"),
        ({"url": "http://x", "headers": {"a": 1}}, "webhook.headers"),
    ],
)
def test_webhook_config_errors_name_the_key(table, message):
    with pytest.raises(ValueError, match=message):
        WebhookSink().open(table)
