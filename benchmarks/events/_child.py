"""One measured process of the events suite: ``python _child.py MODE ARGS...``.

Modes (each prints one JSON object on stdout; times in seconds, sizes in kB):

``host N THREADS DIR``
    A started :class:`hostapp.Host` (its default sinks, i.e. the ``sqlite`` store at
    ``DIR/hostapp.sqlite3``; tracing off) and THREADS threads that each emit N/THREADS
    events through ``host.emit(type, subtype, **data)``, released together by a barrier.
    ``total_s`` runs from the release to just after ``host.stop()`` returned (every event
    committed); ``emit_s`` ends when the last thread has emitted its last event. Then the
    store is opened again and the run's stored events are counted (``lost`` = N - stored).
``raw SOURCE_DB DIR``
    The floor: the rows a ``host`` run stored in ``SOURCE_DB``, inserted again with plain
    :mod:`sqlite3` ``executemany`` into ``DIR/raw.sqlite3``. That file is created by
    :class:`hostapp.store.Store` (so it has the store's tables, indexes and triggers as the
    store module defines them now), and the raw connection runs the same ``PRAGMA``
    statements the store's own connection ran (recorded with
    :meth:`sqlite3.Connection.set_trace_callback` while the store opened). The tables
    copied are every non-empty table of ``SOURCE_DB`` but the store's bookkeeping
    (``meta``, ``runs``, ``reports``), in creation order, with every column but a rowid
    alias (``INTEGER PRIMARY KEY``), in batches of ``events.batch_size`` rows, one
    transaction each. ``total_s`` is the inserts alone (reading the source is not timed).
``micro N DIR``
    Per-call costs in ns of ``Event.create`` and of ``EventBus.emit`` with 1 and with 3
    accepting sinks (workers not started, so the figure is the emitting thread's own cost).

Every mode reports ``maxrss_kb``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Tables of the store that the host keeps for itself, not the sink's rows.
BOOKKEEPING = ("meta", "runs", "reports")
TYPE, SUBTYPE = "outbound_http_request", "urllib"


def _data(i: int) -> dict[str, Any]:
    return {"i": i, "url": "https://example.com/api/items", "status": 200}


def host_mode(n: int, threads: int, directory: Path) -> dict[str, Any]:
    from hostapp import Host
    from hostapp.store import Store

    db = directory / "hostapp.sqlite3"
    config = {"store": {"path": str(db)}, "host": {"shutdown_timeout": 300.0}}
    host = Host(config, command=["benchmarks.events", "host", str(n)], tracing=False)
    host.start()
    per = n // threads
    counts = [per] * threads
    counts[-1] += n - per * threads
    barrier = threading.Barrier(threads + 1)
    done_at: list[float] = []

    def emitter(start: int, count: int) -> None:
        emit = host.emit
        barrier.wait()
        for i in range(start, start + count):
            emit(TYPE, SUBTYPE, i=i, url="https://example.com/api/items", status=200)
        done_at.append(time.perf_counter())

    workers = [threading.Thread(target=emitter, args=(sum(counts[:k]), counts[k])) for k in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    t0 = time.perf_counter()
    for worker in workers:
        worker.join()
    stats = host.stop()
    t2 = time.perf_counter()
    run_id = host.run_id
    with Store(db) as store:
        stored = store.count_events(run_id=run_id)
    return {"n": n, "threads": threads, "emit_s": max(done_at) - t0, "total_s": t2 - t0, "stored": stored,
            "lost": n - stored, "stats": stats, "db": str(db)}


@contextmanager
def _recording_sql() -> Iterator[list[str]]:
    """Every SQL statement run by connections opened (through ``sqlite3.connect``) inside."""
    statements: list[str] = []
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        con = real(*args, **kwargs)
        con.set_trace_callback(statements.append)
        return con

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield statements
    finally:
        sqlite3.connect = real  # type: ignore[assignment]


def store_pragmas(path: Path) -> list[str]:
    """Create the store at ``path`` with :class:`hostapp.store.Store`; the ``PRAGMA name=value``
    statements its connection ran (``user_version`` excepted: that is the schema's)."""
    from hostapp.store import Store

    with _recording_sql() as statements:
        Store(path).close()
    pragmas = []
    for sql in statements:
        text = " ".join(sql.split())
        if text.upper().startswith("PRAGMA ") and "=" in text and "user_version" not in text.lower():
            pragmas.append(text)
    return pragmas


def sink_tables(con: sqlite3.Connection) -> list[tuple[str, list[str]]]:
    """``(table, columns)`` for each non-empty table of ``con`` but :data:`BOOKKEEPING`, in
    creation order; the columns leave out a rowid alias (a lone ``INTEGER PRIMARY KEY``)."""
    found = []
    names = [row[0] for row in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
    for name in names:
        if name in BOOKKEEPING or con.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone() is None:
            continue
        info = con.execute(f'PRAGMA table_info("{name}")').fetchall()  # cid, name, type, notnull, default, pk
        keys = [row for row in info if row[5]]
        alias = keys[0][1] if len(keys) == 1 and keys[0][2].upper() == "INTEGER" else None
        found.append((name, [row[1] for row in info if row[1] != alias]))
    return found


def batch_size() -> int:
    """``events.batch_size`` of a default configuration (1000 if the key is gone)."""
    from hostapp import Config

    try:
        return int(Config.from_dict({}, environ={})["events.batch_size"])
    except Exception:  # noqa: BLE001 - the key may be renamed; the floor still needs a size
        return 1000


def raw_mode(source: Path, directory: Path) -> dict[str, Any]:
    path = directory / "raw.sqlite3"
    pragmas = store_pragmas(path)
    batch = batch_size()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    tables = sink_tables(src)
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in pragmas:
        con.execute(pragma)
    timed = 0.0
    rows: dict[str, int] = {}
    perf = time.perf_counter
    for table, columns in tables:
        quoted = ", ".join(f'"{c}"' for c in columns)
        insert = f'INSERT INTO "{table}" ({quoted}) VALUES ({", ".join("?" * len(columns))})'
        cursor = src.execute(f'SELECT {quoted} FROM "{table}" ORDER BY rowid')
        while chunk := cursor.fetchmany(batch):
            t0 = perf()
            con.execute("BEGIN")
            con.executemany(insert, chunk)
            con.execute("COMMIT")
            timed += perf() - t0
        stored = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        expected = src.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        if stored != expected:
            raise SystemExit(f"{table}: stored {stored} of {expected} rows")
        rows[table] = stored
    src.close()
    con.close()
    if not rows:
        raise SystemExit(f"{source}: no rows to copy (tables other than {', '.join(BOOKKEEPING)} are empty)")
    return {"total_s": timed, "rows": rows, "pragmas": pragmas, "batch_size": batch,
            "columns": {table: columns for table, columns in tables}}


def micro_mode(n: int, directory: Path) -> dict[str, Any]:
    from hostapp import Config, Contribution, Event, EventSink
    from hostapp.events import EventBus

    def timed(function: Callable[[int], None], count: int) -> float:
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
            make(TYPE, SUBTYPE, data=data)

    def bus_for(sinks: int) -> EventBus:
        names = [f"s{k}" for k in range(sinks)]
        config = Config.from_dict(  # room for the 5 rounds: nothing is ever taken off the queues
            {"events": {"sinks": {"sqlite": {"enabled": False}, **{name: {} for name in names}},
                        "queue_size": 6 * n}},
            root=directory, environ={},
        )
        specs = [Contribution(EventSink(name=name, handle=lambda events: None), "bench") for name in names]
        return EventBus(specs, config)

    event = Event.create(TYPE, SUBTYPE, data=data)
    results: dict[str, Any] = {"n": n, "create_ns": timed(create, n)}
    for sinks in (1, 3):
        bus = bus_for(sinks)

        def emit(count: int, bus: EventBus = bus) -> None:
            put = bus.emit
            for _ in range(count):
                put(event)

        results[f"emit_{sinks}_sink_ns"] = timed(emit, n)
    return results


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    directory = Path(args[-1])
    directory.mkdir(parents=True, exist_ok=True)
    if mode == "host":
        result = host_mode(int(args[0]), int(args[1]), directory)
    elif mode == "raw":
        result = raw_mode(Path(args[0]), directory)
    elif mode == "micro":
        result = micro_mode(int(args[0]), directory)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result))


if __name__ == "__main__":
    main()
