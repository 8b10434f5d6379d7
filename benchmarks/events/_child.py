"""One measured process of the events suite: ``python _child.py MODE N DIR``.

Modes (each prints one JSON object on stdout; times in seconds, sizes in kB):

``bus``
    A :class:`hostapp.events.EventBus` with only the ``sqlite`` sink, writing to
    ``DIR/hostapp.sqlite3`` through the bus's :class:`~hostapp.store.Store`. The main
    thread creates and emits N events (``Event.create`` + ``bus.emit``), then
    ``bus.stop()`` drains the queue. ``total_s`` runs from just before the first
    ``create`` to just after ``stop()`` returned (every event committed); ``emit_s`` ends
    after the last ``emit``. Checks that N rows were stored.
``raw``
    The floor: the same N events are made first (untimed), turned into exactly the rows
    the sink writes (untimed), then inserted with plain ``sqlite3`` ``executemany`` in
    batches of ``events.batch_size`` (one transaction each) into the same schema with the
    same pragmas (WAL, ``synchronous=NORMAL``). ``total_s`` is the inserts alone.
``micro``
    Per-call costs in ns of ``Event.create`` and of ``bus.emit`` with 1 and with 3 accepting
    sinks (workers not started, so the figure is the emitting thread's own cost).

Every mode reports ``maxrss_kb``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any


def _data(i: int) -> dict[str, Any]:
    return {"i": i, "url": "https://example.com/api/items", "status": 200}


def bus_mode(n: int, directory: Path) -> dict[str, Any]:
    from hostapp.config import Config
    from hostapp.events import Event, EventBus
    from hostapp.store import Store, resolve_store_path
    from hostapp.types import Contribution
    from hostapp_plugins.sinks import sqlite

    config = Config.from_dict({"store": {"path": "hostapp.sqlite3"}}, root=directory, environ={})
    store = Store(resolve_store_path(config))  # the sink shares it (the default set-up)
    bus = EventBus(
        [Contribution(sqlite.hostapp_event_sinks(), "sinks.sqlite")], config, store=store, run_id="bench"
    )
    bus.start()
    create, emit = Event.create, bus.emit
    t0 = time.perf_counter()
    for i in range(n):
        emit(create("outbound_http_request", "urllib", data=_data(i), run_id="bench"))
    t1 = time.perf_counter()
    stats = bus.stop(600)["sqlite"]
    t2 = time.perf_counter()
    stored = store.count_events()
    store.close()
    if stored != n or stats["delivered"] != n:
        raise SystemExit(f"stored {stored}, delivered {stats['delivered']} of {n}: {stats}")
    return {"n": n, "emit_s": t1 - t0, "total_s": t2 - t0, "stats": stats}


def raw_mode(n: int, directory: Path) -> dict[str, Any]:
    from hostapp.config import SCHEMA
    from hostapp.events import Event
    from hostapp.store import Store, _encode_data

    path = directory / "hostapp.sqlite3"
    Store(path).close()  # the same schema
    events = [Event.create("outbound_http_request", "urllib", data=_data(i), run_id="bench") for i in range(n)]
    rows = [
        (e.id, e.run_id, e.type, e.subtype, e.timestamp_ns, e.pid, e.thread_id, e.source, _encode_data(e.data))
        for e in events
    ]
    del events
    batch = SCHEMA["events.batch_size"].default
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    sql = (
        "INSERT OR IGNORE INTO events (id, run_id, type, subtype, timestamp_ns, pid, thread_id, source, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        con.execute("BEGIN")
        con.executemany(sql, rows[start : start + batch])
        con.execute("COMMIT")
    t1 = time.perf_counter()
    stored = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    if stored != n:
        raise SystemExit(f"stored {stored} of {n}")
    return {"n": n, "total_s": t1 - t0}


def micro_mode(n: int, directory: Path) -> dict[str, Any]:
    from hostapp.config import Config
    from hostapp.events import Event, EventBus
    from hostapp.types import Contribution, EventSink

    def timed(function: Any, count: int) -> float:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            function(count)
            best = min(best, time.perf_counter() - t0)
        return best / count * 1e9

    data = _data(1)

    def create(count: int) -> None:
        make = Event.create
        for _ in range(count):
            make("outbound_http_request", "urllib", data=data)

    def bus_for(sinks: int) -> EventBus:
        names = [f"s{k}" for k in range(sinks)]
        config = Config.from_dict(
            {"events": {"sinks": {"sqlite": {"enabled": False}, **{name: {} for name in names}},
                        "queue_size": 10 * n}},
            root=directory, environ={},
        )
        specs = [Contribution(EventSink(name=name, handle=lambda events: None), "bench") for name in names]
        return EventBus(specs, config)

    event = Event.create("outbound_http_request", "urllib", data=data)
    results: dict[str, Any] = {"n": n, "create_ns": timed(create, n)}
    for sinks in (1, 3):
        bus = bus_for(sinks)

        def emit(count: int, bus: EventBus = bus) -> None:
            for queue in (w.queue for w in bus._workers):
                queue.clear()
            put = bus.emit
            for _ in range(count):
                put(event)

        results[f"emit_{sinks}_sink_ns"] = timed(emit, n)
    return results


def main() -> None:
    mode, n, directory = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    directory.mkdir(parents=True, exist_ok=True)
    result = {"bus": bus_mode, "raw": raw_mode, "micro": micro_mode}[mode](n, directory)
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result))


if __name__ == "__main__":
    main()
