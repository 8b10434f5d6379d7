"""The SQLite store: schema, migrations, runs, events, dead letters, spill, threads."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from hostapp.config import Config
from hostapp.errors import HostappError
from hostapp.events import Event
from hostapp.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Store,
    StoreError,
    StoreVersionError,
    resolve_store_path,
)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / ".hostapp" / "hostapp.sqlite3") as s:
        yield s


def test_a_new_store_is_wal_with_the_current_schema(tmp_path):
    path = tmp_path / "deep" / "dir" / "hostapp.sqlite3"
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.integrity_check() == "ok"
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "runs", "events", "dead_letters", "spill"} <= tables
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"events_run", "events_type"} <= indexes
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    con.close()


def test_store_path_is_resolved_against_the_config_root(tmp_path):
    config = Config.from_dict({}, root=tmp_path, environ={})
    assert resolve_store_path(config) == tmp_path / ".hostapp" / "hostapp.sqlite3"
    config = Config.from_dict({"store": {"path": "/abs/x.db"}}, root=tmp_path, environ={})
    assert resolve_store_path(config) == Path("/abs/x.db")


def test_a_store_from_a_newer_hostapp_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "hostapp.sqlite3"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 3),))
    con.commit()
    con.close()
    with pytest.raises(StoreVersionError) as info:
        Store(path)
    error = info.value
    assert isinstance(error, HostappError)
    assert (error.found, error.supported) == (SCHEMA_VERSION + 3, SCHEMA_VERSION)
    message = str(error)
    assert str(path) in message
    assert f"schema version {SCHEMA_VERSION + 3}" in message
    assert f"versions up to {SCHEMA_VERSION}" in message
    assert "upgrade hostapp" in message


def test_forward_migrations_apply_in_order_once(tmp_path):
    path = tmp_path / "hostapp.sqlite3"
    with Store(path) as store:
        store.add_events([Event.create("kept")])
    calls: list[int] = []

    def add_notes(con: sqlite3.Connection) -> None:
        calls.append(1)
        con.execute("CREATE TABLE notes (text TEXT)")

    newer = (*MIGRATIONS, add_notes)
    with Store(path, migrations=newer) as store:  # a newer hostapp opens the old store
        assert store.schema_version == SCHEMA_VERSION + 1
        assert [e.type for e in store.events()] == ["kept"]
    with Store(path, migrations=newer):
        pass
    assert calls == [1]
    with pytest.raises(StoreVersionError):  # and the older one refuses it now
        Store(path)


def test_a_failing_migration_leaves_the_store_as_it_was(tmp_path):
    path = tmp_path / "hostapp.sqlite3"

    def broken(con: sqlite3.Connection) -> None:
        con.execute("CREATE TABLE half (x)")
        raise RuntimeError("migration bug")

    with Store(path) as store:
        store.add_events([Event.create("kept")])
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(path, migrations=(*MIGRATIONS, broken))
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.count_events() == 1
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone()[0] == 0
    con.close()


def test_not_a_database_and_closed_store_errors(tmp_path):
    bogus = tmp_path / "bogus.sqlite3"
    bogus.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="bogus.sqlite3: cannot open the store"):
        Store(bogus)
    store = Store(tmp_path / "ok.sqlite3")
    store.close()
    store.close()  # idempotent
    assert store.closed
    with pytest.raises(StoreError, match="the store is closed"):
        store.runs()


def test_runs(store):
    assert store.last_run() is None
    first = store.begin_run(["hostapp", "run", "my script.py"], cwd="/srv", started_ns=1_000)
    second = store.begin_run("hostapp run other.py", started_ns=2_000)
    store.end_run(first, 0, {"sinks": {"sqlite": {"delivered": 3}}}, ended_ns=1_500_000_000)
    runs = store.runs()
    assert [r.id for r in runs] == [second, first]
    run = store.run(first)
    assert run is not None
    assert run.command == "hostapp run 'my script.py'" and run.cwd == "/srv"
    assert run.exit_status == 0 and run.summary == {"sinks": {"sqlite": {"delivered": 3}}}
    assert run.duration_s == pytest.approx(1.499999999)
    assert run.python is not None and sys.executable in run.python
    assert store.last_run().id == second and store.last_run().ended_ns is None
    assert store.run("nope") is None
    with pytest.raises(StoreError, match="no run with id 'nope'"):
        store.end_run("nope", 1)
    assert run.to_dict()["id"] == first


def test_events_round_trip_and_filters(store):
    events = [
        Event.create("monitoring_event", "heartbeat", data={"n": 1, "text": "héllo ✓"}, run_id="a"),
        Event.create("sending_event", data={"nested": {"list": [1, 2.5, None, True]}}, run_id="a"),
        Event.create("monitoring_event", "alert", data={"n": 3}, run_id="b", source="acme"),
    ]
    assert store.add_events(events) == 3
    assert store.events() == events
    assert store.events(run_id="a") == events[:2]
    assert store.events(type="monitoring_event") == [events[0], events[2]]
    assert store.events(type="monitoring_event", subtype="alert") == [events[2]]
    assert store.events(since_ns=events[1].timestamp_ns) == events[1:]
    assert store.events(until_ns=events[1].timestamp_ns) == events[:1]
    assert store.events(limit=2) == events[:2]
    assert store.events(limit=1, newest_first=True) == [events[2]]
    assert store.count_events(run_id="a") == 2 and store.count_events() == 3
    assert store.event_ids("b") == {events[2].id}


def test_duplicate_ids_are_ignored_and_odd_values_are_stored_as_repr(store):
    odd = Event.create("t", data={"when": Path("/x"), "ok": 1})
    assert store.add_events([odd]) == 1
    assert store.add_events([odd, Event.create("t")]) == 1  # redelivery is harmless
    assert store.events()[0].data == {"when": repr(Path("/x")), "ok": 1}
    assert store.add_events([]) == 0


def test_a_batch_larger_than_one_statement_is_one_transaction(store):
    events = [Event.create("t", data={"i": i}) for i in range(7_001)]
    assert store.add_events(iter(events)) == 7_001
    assert [e.data["i"] for e in store.events()] == list(range(7_001))


def test_dead_letters(store):
    events = [Event.create("t", data={"i": i}) for i in range(5)]
    assert store.add_dead_letters("webhook", events[:3], "HTTPError: 503", attempts=6) == 3
    store.add_dead_letters("jsonl", events[3:], "OSError: disk full")
    letters = store.dead_letters()
    assert [d.event for d in letters] == events
    assert letters[0].sink == "webhook" and letters[0].attempts == 6 and letters[0].error == "HTTPError: 503"
    assert store.dead_letter_counts() == {"jsonl": 2, "webhook": 3}
    page = store.dead_letters(sink="webhook", limit=2)
    assert [d.event for d in page] == events[:2]
    assert [d.event for d in store.dead_letters(sink="webhook", after_id=page[-1].id)] == events[2:3]
    assert store.update_dead_letters([letters[0].id], "again", 2) == 1
    assert store.dead_letters(limit=1)[0].attempts == 8
    assert store.delete_dead_letters([d.id for d in letters[:3]]) == 3
    assert store.dead_letter_counts() == {"jsonl": 2}
    assert letters[0].to_dict()["event"]["id"] == events[0].id


def test_spill(store):
    events = [Event.create("t", data={"i": i}) for i in range(6)]
    store.add_spill("owner-1", "slow", events[:4])
    store.add_spill("owner-2", "slow", events[4:])
    assert store.spill_owners() == ["owner-1", "owner-2"]
    assert store.spill_count() == 6 and store.spill_count(owner="owner-1", sink="slow") == 4
    peeked = store.peek_spill("owner-1", "slow", 3)
    assert [e for _, e in peeked] == events[:3]
    assert store.delete_spill([seq for seq, _ in peeked]) == 3
    assert store.spill_to_dead_letters("owner-2", "owner ended", sink="slow") == 2
    assert store.spill_count() == 1
    assert [d.event for d in store.dead_letters(sink="slow")] == events[4:]


def test_one_store_shared_by_many_threads(store):
    def writer(k: int) -> None:
        for chunk in range(20):
            store.add_events([Event.create("t", data={"k": k, "i": i}) for i in range(chunk * 50, chunk * 50 + 50)])
            store.count_events()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_events() == 4 * 1000
    assert store.integrity_check() == "ok"


def test_another_connection_reads_while_the_store_writes(tmp_path):
    path = tmp_path / "hostapp.sqlite3"
    with Store(path) as writer, Store(path) as reader:
        writer.add_events([Event.create("t") for _ in range(10)])
        assert reader.count_events() == 10


def test_reports_keep_the_latest_state_per_name_and_the_newest_run(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    first = store.begin_run("one")
    second = store.begin_run("two")
    store.put_reports(first, "component", [("cache", "available", {"driver": "redis"})], updated_ns=1)
    store.put_reports(second, "component", [("db", "unavailable", {"error": "refused"})], updated_ns=2)
    store.put_reports(second, "component", [("db", "available", {"error": None})], updated_ns=3)
    store.put_reports(second, "task", [("beat", "running", {"restarts": 2})], updated_ns=3)
    store.close()

    reopened = Store(tmp_path / "s.sqlite3")   # another process would see the same rows
    [db] = reopened.reports("component")
    assert (db.run_id, db.name, db.state, db.data) == (second, "db", "available", {"error": None})
    assert [r.to_dict() for r in reopened.reports("component", first)] == [
        {"name": "cache", "state": "available", "run_id": first, "updated_ns": 1, "driver": "redis"}
    ]
    assert [r.name for r in reopened.reports("task")] == ["beat"]
    assert reopened.reports("nothing") == []


def test_current_reports_prefer_a_live_run_over_a_newer_ended_one(tmp_path):
    """hostapp components / tasks show a running host's reports; without one, the newest
    run that reported the kind. A run whose process is gone is not live."""
    import os
    import subprocess
    import sys

    store = Store(tmp_path / "s.sqlite3")
    assert store.current_reports("task") == (None, [], False)
    import time

    now = time.time_ns()  # this process started before: its pid is the run's, not a reused one
    live = store.begin_run("live", pid=os.getpid(), started_ns=now)
    store.put_reports(live, "task", [("beat", "running", {})], updated_ns=1)
    ended = store.begin_run("ended", started_ns=now + 1)
    store.put_reports(ended, "task", [("beat", "stopped", {})], updated_ns=2)
    store.end_run(ended, 0)
    run, [report], is_live = store.current_reports("task")
    assert (run.id, report.state, is_live) == (live, "running", True)

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    store.end_run(live, 0)
    dead = store.begin_run("dead", pid=int(gone.stdout), started_ns=now + 2)
    store.put_reports(dead, "component", [("db", "available", {})], updated_ns=3)
    run, [report], is_live = store.current_reports("component")
    assert (run.id, report.name, is_live, run.is_live()) == (dead, "db", False, False)
    run, [report], is_live = store.current_reports("task")
    assert (run.id, report.state, is_live) == (ended, "stopped", False)
    store.close()


# -- the event record's columns (schema version 3) -------------------------------------------


def http_call(url: str, status: int | None, duration_ns: int, *, run_id: str = "r", **data) -> Event:
    return Event.create(
        "outbound_http_request", "requests", run_id=run_id,
        data={
            "method": "GET", "url": url, "status_code": status, "duration_ns": duration_ns,
            "call_site": {"file": "/srv/app/main.py", "line": 12}, "span_id": "00f067aa0ba902b7",
            "request": {"headers": {"Accept": "*/*"}, "body": None, "body_size": None, "body_truncated": False},
            **data,
        },
    )


def test_record_values_live_in_their_columns_once_and_come_back_in_data(store):
    call = http_call("http://127.0.0.1:8000/a?x=1", 200, 1_500_000)
    store.add_events([call])
    assert store.events() == [call]
    row = store._read("SELECT duration_ns, status, method, url, site, span_id, trace_id, data FROM events")[0]
    assert row[:7] == (1_500_000, 200, "GET", "http://127.0.0.1:8000/a?x=1", "/srv/app/main.py:12", "00f067aa0ba902b7", None)
    stored = json.loads(row[7])
    assert not {"method", "url", "status_code", "duration_ns", "call_site", "span_id"} & set(stored)
    assert stored["request"]["headers"] == {"Accept": "*/*"}


@pytest.mark.parametrize(
    "data",
    [
        {"status_code": True, "duration_ns": 1.5, "method": b"GET", "url": None},
        {"call_site": {"file": "C:\\app\\x.py", "line": 3}},
        {"call_site": {"file": "x.py", "line": "3"}},
        {"call_site": {"file": "x.py", "line": 3, "extra": 1}},
        {"url": ["not", "a", "str"], "trace_id": 7},
        {"big": 1 << 70, 3: "int key", "nested": {"deep": [1, 2.5, None]}},
    ],
)
def test_values_of_another_type_stay_in_the_json_and_round_trip(store, data):
    event = Event.create("custom", data=dict(data))
    store.add_events([event])
    [back] = store.events()
    expected = dict(data)
    if "method" in expected:
        expected["method"] = repr(b"GET")  # bytes: not JSON, kept as repr like any such value
    if 3 in expected:
        expected["3"] = expected.pop(3)  # JSON keys are strings
    assert back.data == expected


def test_filters_on_the_record_columns(store):
    calls = [
        http_call("http://a.example/ok", 200, 5_000_000),
        http_call("http://a.example/missing", 404, 1_000_000),
        http_call("http://b.example/fail", 503, 90_000_000),
        http_call("http://b.example/error", None, 2_000_000, error={"type": "ConnectionError", "message": "refused"}),
    ]
    other = Event.create("monitoring_event", "heartbeat", run_id="r", data={"service": "x"})
    store.add_events([*calls, other])
    assert store.events(status_min=400) == calls[1:3]
    assert store.events(status_min=500, status_max=599) == [calls[2]]
    assert store.events(url_contains="b.example") == calls[2:]
    assert store.events(min_duration_ns=2_000_000) == [calls[0], calls[2], calls[3]]
    assert store.events(type="outbound_http_*") == calls
    assert store.events(types=["monitoring_event", "nothing"]) == [other]
    assert store.events(subtypes=["req*"]) == calls
    assert store.events(type="outbound_http_request", subtypes=["heartbeat"]) == []
    assert store.count_events(status_min=400) == 2


def test_cursor_pagination_in_both_directions(store):
    events = [Event.create("tick", data={"i": i}, run_id="r") for i in range(25)]
    store.add_events(events)
    page1 = store.events(run_id="r", limit=10)
    page2 = store.events(run_id="r", limit=10, after=store.cursor(page1[-1]))
    page3 = store.events(run_id="r", limit=10, after=store.cursor(page2[-1]))
    assert page1 + page2 + page3 == events
    back = store.events(run_id="r", limit=10, newest_first=True, after=store.cursor(events[10]))
    assert back == list(reversed(events[:10]))
    with pytest.raises(ValueError, match="cursor"):
        store.events(after="nonsense")


def test_iter_events_streams_in_chunks(store):
    events = [Event.create("tick", data={"i": i}, run_id="r") for i in range(1_234)]
    store.add_events(events)
    assert list(store.iter_events(run_id="r", chunk=100)) == events
    assert list(store.iter_events(run_id="r", chunk=100, limit=250)) == events[:250]
    assert list(store.iter_events(run_id="r", chunk=7, newest_first=True, limit=20)) == list(reversed(events))[:20]
    with pytest.raises(ValueError):
        next(store.iter_events(chunk=0))


def test_a_store_of_the_previous_release_migrates_and_keeps_its_events(tmp_path):
    path = tmp_path / "old.sqlite3"
    with Store(path, migrations=MIGRATIONS[:2]) as old:  # what the previous release wrote
        assert old.schema_version == 2
        run_id = old.begin_run(command="python app.py")
        old._write([(
            "INSERT INTO events (id, run_id, type, subtype, timestamp_ns, pid, thread_id, source, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("%032x" % 1, run_id, "outbound_http_response", "urllib", 1, 7, 8, "http.urllib",
             json.dumps({"frame_id": "f1", "url": "http://x/", "method": "GET", "status_code": 500,
                         "duration_ns": 42, "headers": {}})),
        )])
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.runs()[0].command == "python app.py"
        [event] = store.events(run_id=run_id)
        assert event.data == {"frame_id": "f1", "url": "http://x/", "method": "GET", "status_code": 500,
                              "duration_ns": 42, "headers": {}}
        assert store.events(status_min=500) == [event]  # the columns were filled from the old JSON
        assert store.integrity_check() == "ok"
