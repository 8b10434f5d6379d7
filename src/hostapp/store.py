"""The embedded SQLite store shared by the sinks and the CLI: runs, events, dead letters.

One file (``store.path``, default ``.hostapp/hostapp.sqlite3``) in WAL mode with
``synchronous=NORMAL``: a committed transaction survives the process being killed (not
necessarily a power cut), readers never block the writer, and other processes (``hostapp
events`` while a host runs) read it concurrently.

Tables (schema version :data:`SCHEMA_VERSION`):

``meta``
    ``key``, ``value``; ``schema_version`` is the number of migrations applied.
``runs``
    ``id``, ``command``, ``cwd``, ``python``, ``started_ns``, ``ended_ns``,
    ``exit_status``, ``pid``, ``summary`` (JSON).
``events``
    ``seq`` (insertion order), ``id`` (unique), ``run_id``, ``type``, ``subtype``,
    ``timestamp_ns``, ``pid``, ``thread_id``, ``source``, then (version 3) the record's
    own columns ``duration_ns``, ``status``, ``method``, ``url``, ``site`` (the call site,
    ``"file:line"``), ``trace_id``, ``span_id``, ``parent_span_id``, and ``data`` (JSON of
    the rest of ``Event.data``: each value is stored once, in its column or in the JSON);
    indexed by ``(run_id, timestamp_ns)`` and ``(type, timestamp_ns)``.
``dead_letters``
    ``id``, ``sink``, ``event`` (JSON of :meth:`Event.to_dict`), ``error``, ``attempts``,
    ``created_ns``.
``spill``
    ``seq``, ``owner`` (the spilling bus), ``sink``, ``event`` (JSON), ``created_ns``:
    events that overflowed a sink's queue, waiting for its worker.
``probe_specs``, ``probe_applied``, ``probe_marker`` (version 4)
    probe specs in Diagnose's format (``id``, ``spec`` JSON, ``lastmodified_ns``,
    ``created_ns``); per spec and process (``process`` = ``host:pid:run_id``) the
    ``applied`` record (``data`` JSON, ``updated_ns``); and a one-row ``version`` that
    triggers bump on every change to ``probe_specs`` (no row before the first): the cheap change marker the
    probe poller reads every ``probes.poll_interval``. (Planned as version 3; main's event
    record columns took 3 first, and a store main already migrated must go on from there.)
``reports`` (version 2)
    ``run_id``, ``kind`` (``"component"``, ``"task"``), ``name``, ``state``, ``data``
    (JSON), ``updated_ns``; primary key ``(run_id, kind, name)``: the latest state a
    running host reported for each of its components and background tasks, which
    ``hostapp components`` and ``hostapp tasks`` read from another process.

Schema changes are forward migrations: :data:`MIGRATIONS` is a list of functions, the
``n``-th brings a store from version ``n`` to ``n + 1``; opening a store applies the
missing ones in one transaction. A store written by a newer hostapp (a version above
``len(MIGRATIONS)``) is refused with :class:`StoreVersionError`.

Files: the store's directory is made ``0700`` when hostapp creates it, and the database
file (so also its ``-wal`` and ``-shm`` files, which SQLite gives the same mode) is
``0600``: they hold request headers, bodies and exception messages. A store file whose
mode lets others in is narrowed to ``0600`` when it is opened.

A damaged or foreign file is never written to: opening one, or reading a table it lacks
or a page that is corrupt, raises :class:`StoreDamagedError`, one line naming the file and
what is wrong, with the hint ``hostapp store check`` (:mod:`hostapp.storecheck`: integrity
check, schema version, counts, and ``--move-aside``).

Thread-safety: a :class:`Store` holds **one** connection (``check_same_thread=False``)
guarded by a re-entrant lock; every method takes the lock, so a store may be shared by
any number of threads (the bus's workers and emitters, the host). Python-side work
(building rows, encoding JSON) is done outside the lock. Use one :class:`Store` per
process and path; other processes open their own.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from hostapp.errors import HostappError
from hostapp.events.record import DeadLetter, Event, new_id, process_alive

if TYPE_CHECKING:
    from hostapp.config import Config

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Report",
    "Run",
    "Store",
    "StoreDamagedError",
    "StoreError",
    "StoreVersionError",
    "cursor",
    "resolve_store_path",
]


def _make_store_dir(folder: Path) -> None:
    """Create the store's directory when it is missing, owner-only (``0700``), with a
    ``.gitignore`` holding ``*`` (what Kolo does for ``.kolo/``): a store created inside a
    project never shows up in ``git status``. A directory that exists already is left as it
    is.
    """
    if folder.is_dir():
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # owner-only (mkdir's mode is cut by the umask; this one is exact)
    try:
        (folder / ".gitignore").write_text("*\n", encoding="utf-8")
    except OSError:
        pass  # an ignore file is a courtesy; the store works without it

class StoreError(HostappError):
    """The store cannot be opened or used (not a SQLite file, closed, unreadable)."""


class StoreDamagedError(StoreError):
    """The store file is damaged (a corrupt page, a missing table) or is not a hostapp
    store (not SQLite, or another program's SQLite database). hostapp never writes to it.

    Attributes:
        path: the store file.
        problem: what is wrong, as SQLite or the check said it.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"{path}: {problem}; 'hostapp store check --db {path}' says more "
            "(and --move-aside sets the file aside so that a new store is made)"
        )


#: What SQLite says of a file it cannot use as a database, or of a damaged one.
_DAMAGE_MARKS: Final = ("malformed", "not a database", "no such table", "no such column", "corrupt", "encrypted")


def _as_store_error(path: str, exc: sqlite3.Error, *, opening: bool = False) -> StoreError:
    """The :class:`StoreError` for ``exc``: :class:`StoreDamagedError` when it says the file
    is damaged or foreign (else, e.g. ``database is locked``, a plain one)."""
    text = str(exc)
    doing = "cannot open the store: " if opening else ""
    if any(mark in text for mark in _DAMAGE_MARKS):
        return StoreDamagedError(path, f"{doing}{text} (the file is damaged, or not a hostapp store)")
    return StoreError(f"{path}: {doing}{text}")


class StoreVersionError(StoreError):
    """The store was written by a newer hostapp (its schema version is above ours).

    Attributes:
        path: the store file.
        found: the store's schema version.
        supported: the newest version this hostapp knows (:data:`SCHEMA_VERSION`).
    """

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"{path}: the store has schema version {found}, but this hostapp supports "
            f"versions up to {supported}; upgrade hostapp (pip install --upgrade hostapp) "
            f"or point store.path at another file"
        )


Migration = Callable[[sqlite3.Connection], None]


def _migration_1(con: sqlite3.Connection) -> None:
    """Version 1: runs, events, dead letters and the spill table."""
    con.execute(
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            command TEXT,
            cwd TEXT,
            python TEXT,
            started_ns INTEGER NOT NULL,
            ended_ns INTEGER,
            exit_status INTEGER,
            pid INTEGER,
            summary TEXT
        )"""
    )
    con.execute("CREATE INDEX runs_started ON runs (started_ns)")
    con.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            run_id TEXT,
            type TEXT NOT NULL,
            subtype TEXT,
            timestamp_ns INTEGER NOT NULL,
            pid INTEGER,
            thread_id INTEGER,
            source TEXT,
            data TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    # Two composite indexes serve the queries by run and by type, each over a time range.
    # A third one on timestamp_ns alone would cost ~30 % of the insert rate for the rare
    # query by time across every run and type, which a scan in seq order answers.
    con.execute("CREATE INDEX events_run ON events (run_id, timestamp_ns)")
    con.execute("CREATE INDEX events_type ON events (type, timestamp_ns)")
    con.execute(
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY,
            sink TEXT NOT NULL,
            event TEXT NOT NULL,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_ns INTEGER NOT NULL
        )"""
    )
    con.execute("CREATE INDEX dead_letters_sink ON dead_letters (sink, id)")
    con.execute(
        """CREATE TABLE spill (
            seq INTEGER PRIMARY KEY,
            owner TEXT NOT NULL,
            sink TEXT NOT NULL,
            event TEXT NOT NULL,
            created_ns INTEGER NOT NULL
        )"""
    )
    con.execute("CREATE INDEX spill_owner ON spill (owner, sink, seq)")


def _migration_2(con: sqlite3.Connection) -> None:
    """Version 2: the ``reports`` table (component and background-task states per run)."""
    con.execute(
        """CREATE TABLE reports (
            run_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            state TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            updated_ns INTEGER NOT NULL,
            PRIMARY KEY (run_id, kind, name)
        )"""
    )
    con.execute("CREATE INDEX reports_kind ON reports (kind, updated_ns)")


#: The columns version 3 adds to ``events``, each with the ``Event.data`` key it holds and
#: the JSON type a value must have to be moved there (anything else stays in ``data``).
_PROMOTED: Final[tuple[tuple[str, str, str], ...]] = (
    ("duration_ns", "duration_ns", "INTEGER"),
    ("status", "status_code", "INTEGER"),
    ("method", "method", "TEXT"),
    ("url", "url", "TEXT"),
    ("site", "call_site", "TEXT"),
    ("trace_id", "trace_id", "TEXT"),
    ("span_id", "span_id", "TEXT"),
    ("parent_span_id", "parent_span_id", "TEXT"),
)


def _migration_3(con: sqlite3.Connection) -> None:
    """Version 3: the event record's own columns (one record per HTTP call).

    ``events`` gains ``duration_ns``, ``status``, ``method``, ``url``, ``site`` (the call
    site, ``"file:line"``), ``trace_id``, ``span_id`` and ``parent_span_id``: what the CLI
    and the web view filter and sort on. New rows keep those values in the columns only (not
    again in ``data``). Rows written by earlier versions keep their ``data`` as it was; the
    columns are filled from it where SQLite's JSON functions are available, so the filters
    find old rows too.
    """
    for column, _key, sql_type in _PROMOTED:
        con.execute(f"ALTER TABLE events ADD COLUMN {column} {sql_type}")
    try:
        con.execute(
            """UPDATE events SET
                duration_ns = CASE json_type(data, '$.duration_ns') WHEN 'integer' THEN json_extract(data, '$.duration_ns') END,
                status = CASE json_type(data, '$.status_code') WHEN 'integer' THEN json_extract(data, '$.status_code') END,
                method = CASE json_type(data, '$.method') WHEN 'text' THEN json_extract(data, '$.method') END,
                url = CASE json_type(data, '$.url') WHEN 'text' THEN json_extract(data, '$.url') END
            WHERE json_valid(data)"""
        )
    except sqlite3.OperationalError:  # pragma: no cover - an SQLite built without JSON functions
        pass


def _migration_4(con: sqlite3.Connection) -> None:
    """Version 4: probe specs (``hostapp.probes``), their ``applied`` records per process,
    and a change marker bumped by triggers on every change to the specs."""
    con.execute(
        """CREATE TABLE probe_specs (
            id TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            lastmodified_ns INTEGER NOT NULL,
            created_ns INTEGER NOT NULL
        )"""
    )
    con.execute(
        """CREATE TABLE probe_applied (
            spec_id TEXT NOT NULL,
            process TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            updated_ns INTEGER NOT NULL,
            PRIMARY KEY (spec_id, process)
        )"""
    )
    # one row (id 1) once a spec was ever written; no row reads as version 0
    con.execute("CREATE TABLE probe_marker (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
    for name, what in (("insert", "INSERT"), ("update", "UPDATE"), ("delete", "DELETE")):
        con.execute(
            f"CREATE TRIGGER probe_specs_{name} AFTER {what} ON probe_specs BEGIN "
            "INSERT INTO probe_marker (id, version) VALUES (1, 1) "
            "ON CONFLICT (id) DO UPDATE SET version = version + 1; END"
        )


#: The forward migrations; ``MIGRATIONS[n]`` brings a store from version ``n`` to ``n + 1``.
MIGRATIONS: Final[tuple[Migration, ...]] = (_migration_1, _migration_2, _migration_3, _migration_4)

#: The schema version this hostapp writes.
SCHEMA_VERSION: Final[int] = len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a host (``hostapp runs``).

    Attributes:
        id: the run id (time-ordered, 32 hex digits).
        command: the command line, or ``None``.
        cwd: the working directory.
        python: ``sys.executable`` and version.
        started_ns: start, ``time.time_ns()``.
        ended_ns: end, or ``None`` while running (or when the process died).
        exit_status: the exit status, or ``None``.
        pid: the process id.
        summary: a JSON-serialisable dict (the bus's counters, ...), or ``None``.
    """

    id: str
    command: str | None
    cwd: str | None
    python: str | None
    started_ns: int
    ended_ns: int | None
    exit_status: int | None
    pid: int | None
    summary: dict[str, Any] | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, or ``None`` when the run has not ended."""
        return None if self.ended_ns is None else (self.ended_ns - self.started_ns) / 1e9

    def is_live(self) -> bool:
        """Whether the run's host is running now: not ended, and its process exists
        (``os.kill(pid, 0)``; a process of another user counts as existing) and is the one
        that started the run (where the system tells when a process started: Linux)."""
        return self.state == "running"

    @property
    def state(self) -> str:
        """``"ended"`` (its end was recorded), ``"running"`` (its process is alive), or
        ``"crashed"``: not ended and its process is gone (``kill -9``, a power cut) or its
        pid now belongs to a process started after the run (a reused pid)."""
        if self.ended_ns is not None:
            return "ended"
        if not self.pid:
            return "crashed"
        try:
            alive = process_alive(self.pid)
        except OSError:
            alive = False
        if not alive:
            return "crashed"
        started = _process_started_ns(self.pid)
        if started is not None and started > self.started_ns + _PID_REUSE_SLACK_NS:
            return "crashed"
        return "running"

    def status_text(self) -> str:
        """What ``hostapp runs`` shows for how the run ended: the exit status (``"0"``), the
        signal that ended it (``"SIGTERM"``), ``"running"`` or ``"crashed"``."""
        state = self.state
        if state != "ended":
            return state
        signal_name = (self.summary or {}).get("signal")
        if signal_name:
            return str(signal_name)
        return "" if self.exit_status is None else str(self.exit_status)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields, and ``state`` (see :attr:`state`)."""
        return {
            "id": self.id,
            "command": self.command,
            "cwd": self.cwd,
            "python": self.python,
            "started_ns": self.started_ns,
            "ended_ns": self.ended_ns,
            "exit_status": self.exit_status,
            "pid": self.pid,
            "summary": self.summary,
            "state": self.state,
        }


#: A process that started this much after its run did holds a reused pid (the run's host
#: started before it recorded the run, so its own start time is always earlier).
_PID_REUSE_SLACK_NS: Final = 2_000_000_000


def _process_started_ns(pid: int) -> int | None:
    """When process ``pid`` started, ns since the epoch, or ``None`` where the system does
    not say (read from ``/proc/PID/stat`` and ``/proc/stat``'s ``btime`` on Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])  # field 22, after "pid (comm) "
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return (btime * hz + ticks) * 1_000_000_000 // hz


@dataclass(frozen=True, slots=True)
class Report:
    """The latest state a host reported for one component or background task.

    Attributes:
        run_id: the reporting host's run.
        kind: ``"component"`` or ``"task"``.
        name: the component's or task's name.
        state: e.g. ``"available"`` / ``"unavailable"`` (components), ``"running"`` /
            ``"failed"`` / ``"stopped"`` (tasks).
        data: the rest of the report (error, restarts, ...), a JSON dict.
        updated_ns: when it was written, ``time.time_ns()``.
    """

    run_id: str
    kind: str
    name: str
    state: str
    data: dict[str, Any]
    updated_ns: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``name``, ``state``, ``run_id``, ``updated_ns``, then ``data``."""
        return {"name": self.name, "state": self.state, "run_id": self.run_id,
                "updated_ns": self.updated_ns, **self.data}


def resolve_store_path(config: Config) -> Path:
    """``store.path`` of ``config``, made absolute against ``config.root``."""
    path = Path(str(config.get("store.path"))).expanduser()
    return path if path.is_absolute() else Path(config.root) / path


def _json_fallback(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr, check_circular=False)


def _make_data_encoder() -> Callable[[Any], str]:
    """The JSON encoder of ``Event.data``: orjson (compact, UTF-8), ``repr()`` for values JSON
    cannot take, non-string keys as strings; what orjson refuses (an integer beyond 64 bits,
    nesting deeper than 254 levels, a cycle) goes through :func:`json.dumps` instead."""
    import orjson

    dumps = orjson.dumps
    option = orjson.OPT_NON_STR_KEYS

    def encode(value: Any) -> str:
        try:
            return dumps(value, default=repr, option=option).decode()
        except (TypeError, ValueError, RecursionError):  # orjson.JSONEncodeError is a TypeError
            try:
                return _json_fallback(value)
            except (ValueError, RecursionError):  # a cycle: keep what can be said of it
                return _json_fallback(repr(value))

    return encode


def _chunks(total: int, step: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` pieces covering ``total`` rows, each a power of two no larger than
    ``step`` (largest first: 1000 rows are 512 + 256 + 128 + 64 + 32 + 8).

    So a store prepares at most ~11 statements of each kind whatever the batch sizes, and
    the statements it caches (``_statements``, and SQLite's statement cache: each prepared
    statement of N rows holds a program for N rows) stay bounded. With one statement per
    batch size, a long run met up to a thousand sizes and its memory grew with them
    (~0.1 MB a size: 120 MB after 500 of them).
    """
    cap = 1 << (max(1, step).bit_length() - 1)
    start = 0
    while start < total:
        size = min(cap, 1 << ((total - start).bit_length() - 1))
        yield start, size
        start += size


def _owner_only(path: Path) -> None:
    """Make ``path``'s directory (:func:`_make_store_dir`: ``0700`` when made here) and the
    database file (``0600``) before SQLite opens it."""
    _make_store_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _narrow(path: Path) -> None:
    """A store file (and its ``-wal``/``-shm``) of this user whose mode lets others in is
    narrowed to ``0600``; called once the file is known to be a hostapp store."""
    for suffix in ("", "-wal", "-shm"):
        name = f"{path}{suffix}"
        try:
            st = os.stat(name)
            if st.st_mode & 0o077 and st.st_uid == os.getuid():
                os.chmod(name, 0o600)
        except OSError:
            continue


def _refuse_foreign(con: sqlite3.Connection, shown: str) -> None:
    """Raise :class:`StoreDamagedError` for a SQLite database that is not a hostapp store:
    it has tables but no ``meta`` table (hostapp never creates tables in it). A file that is
    not SQLite at all makes this first read fail (``file is not a database``)."""
    names = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if names and "meta" not in names:
        shown_names = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise StoreDamagedError(shown, f"not a hostapp store: a SQLite database of another program (tables {shown_names})")


_encode_data: Final = _make_data_encoder()


def _decode_data(text: str | bytes) -> Any:
    import orjson

    return orjson.loads(text)


#: Columns of ``events`` in the order rows are written and read; ``data`` last.
_EVENT_COLUMNS: Final = (
    "id", "run_id", "type", "subtype", "timestamp_ns", "pid", "thread_id", "source",
    *(column for column, _key, _type in _PROMOTED), "data",
)
_COLUMNS: Final = ", ".join(_EVENT_COLUMNS)
_event_columns = attrgetter("id", "run_id", "type", "subtype", "timestamp_ns", "pid", "thread_id", "source")
#: ``Event.data`` keys that live in their own column.
_PROMOTED_KEYS: Final = frozenset(key for _column, key, _type in _PROMOTED)
_NONE_COLUMNS: Final = (None,) * len(_PROMOTED)


def _site_text(site: Any) -> str | None:
    """A call site ``{"file": str, "line": int}`` as ``"file:line"``, else ``None``."""
    if type(site) is dict and len(site) == 2:
        file, line = site.get("file"), site.get("line")
        if type(file) is str and type(line) is int:
            return f"{file}:{line}"
    return None


def _split(data: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``data`` as the values of the promoted columns and the dict of the rest (the JSON).

    A value moves to its column only when it has the column's type (an ``int`` that is not
    a ``bool``; a ``str``; a call site ``{"file": str, "line": int}``); anything else, ``None``
    included, stays in the JSON, so that reading the row back gives ``data`` exactly. Written
    out per column: this runs for every stored event."""
    if data.keys().isdisjoint(_PROMOTED_KEYS):
        return _NONE_COLUMNS, data
    rest = dict(data)
    get = rest.get
    duration = get("duration_ns")
    if type(duration) is int:
        del rest["duration_ns"]
    else:
        duration = None
    status = get("status_code")
    if type(status) is int:
        del rest["status_code"]
    else:
        status = None
    method = get("method")
    if type(method) is str:
        del rest["method"]
    else:
        method = None
    url = get("url")
    if type(url) is str:
        del rest["url"]
    else:
        url = None
    site = _site_text(get("call_site"))
    if site is not None:
        del rest["call_site"]
    trace_id = get("trace_id")
    if type(trace_id) is str:
        del rest["trace_id"]
    else:
        trace_id = None
    span_id = get("span_id")
    if type(span_id) is str:
        del rest["span_id"]
    else:
        span_id = None
    parent = get("parent_span_id")
    if type(parent) is str:
        del rest["parent_span_id"]
    else:
        parent = None
    return (duration, status, method, url, site, trace_id, span_id, parent), rest


def _joined(row: Sequence[Any]) -> Event:
    """The :class:`Event` of a row of :data:`_EVENT_COLUMNS` (columns merged into data)."""
    data = _decode_data(row[16])
    if row[8] is not None:
        data["duration_ns"] = row[8]
    if row[9] is not None:
        data["status_code"] = row[9]
    if row[10] is not None:
        data["method"] = row[10]
    if row[11] is not None:
        data["url"] = row[11]
    if row[12] is not None:
        file, _, line = row[12].rpartition(":")
        data["call_site"] = {"file": file, "line": int(line)}
    if row[13] is not None:
        data["trace_id"] = row[13]
    if row[14] is not None:
        data["span_id"] = row[14]
    if row[15] is not None:
        data["parent_span_id"] = row[15]
    return Event(row[0], row[2], row[3], data, row[4], row[1], row[5], row[6], row[7])


def cursor(event: Event) -> str:
    """The cursor of ``event`` for :meth:`Store.events` (``after=``): an opaque string that
    resumes a listing in time order right after this event (keyset pagination)."""
    return f"{event.timestamp_ns}.{event.id}"


def _parse_cursor(value: str) -> tuple[int, str]:
    ts, sep, event_id = value.partition(".")
    if not sep or not ts.isdigit() or not event_id:
        raise ValueError(f"not a hostapp event cursor: {value!r} (use Store.cursor(event))")
    return int(ts), event_id


#: Most rows per INSERT statement (also capped by SQLite's variable limit). A batch that
#: fits is written by **one** statement in autocommit mode: one ``sqlite3_step``, so the GIL
#: is released and re-taken once per batch, not once per row as with ``executemany`` (nor
#: four times, with BEGIN and COMMIT). That matters when other threads are busy: re-taking
#: the GIL from a busy thread waits for its switch interval (5 ms), so ``executemany`` of
#: 1,000 rows next to one busy emitting thread takes seconds.
_ROWS_PER_STATEMENT: Final = 2000


def _event_json(event: Event) -> str:
    return _encode_data(event.to_dict())


def _event_from_json(text: str) -> Event:
    return Event.from_dict(_decode_data(text))


def _pattern_clause(column: str, patterns: Sequence[str], params: list[Any]) -> str:
    """``(column = ? OR column GLOB ? ...)`` for exact names and globs (``fnmatch`` syntax:
    ``*``, ``?``, ``[...]``; SQLite's GLOB is the same, case-sensitive)."""
    parts = []
    for pattern in patterns:
        parts.append(f"{column} GLOB ?" if any(c in pattern for c in "*?[") else f"{column} = ?")
        params.append(pattern)
    return "(" + " OR ".join(parts) + ")"


class Store:
    """The SQLite store at ``path`` (created, with its directory, if missing).

    Args:
        path: the database file; ``":memory:"`` for a private in-memory store (tests).
        timeout: seconds to wait for another process's write lock (``busy_timeout``).
        migrations: the forward migrations to apply (default :data:`MIGRATIONS`); tests
            pass a longer list to play a newer hostapp.

    Raises:
        StoreVersionError: the store's schema version is newer than ``len(migrations)``.
        StoreError: the file is not a SQLite database, or cannot be created or opened.

    Attributes:
        path: the database file, as given (absolute when it was).
        schema_version: the store's schema version after opening.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path) if str(path) != ":memory:" else Path(":memory:")
        self._lock = threading.RLock()
        self._statements: dict[tuple[str, int], str] = {}
        shown = self._shown = str(path)
        try:
            if shown != ":memory:":
                _owner_only(self.path)
            con = sqlite3.connect(
                shown, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error, ValueError) as exc:
            raise StoreError(f"{shown}: cannot open the store: {exc}") from None
        self._con: sqlite3.Connection | None = con
        try:
            _refuse_foreign(con, shown)
            if shown != ":memory:":
                _narrow(self.path)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self.schema_version = self._migrate(con, shown, migrations)
        except StoreError:
            con.close()
            self._con = None
            raise
        except sqlite3.Error as exc:
            con.close()
            self._con = None
            raise _as_store_error(shown, exc, opening=True) from None
        self._max_variables = con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_statement = max(1, min(_ROWS_PER_STATEMENT, self._max_variables // len(_EVENT_COLUMNS)))

    @staticmethod
    def _version(con: sqlite3.Connection) -> int:
        row = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if row is None:
            return 0
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return 0 if row is None else int(row[0])
        except (TypeError, ValueError):
            raise sqlite3.DatabaseError(f"malformed schema version {row[0]!r} in the meta table") from None

    def _migrate(self, con: sqlite3.Connection, shown: str, migrations: Sequence[Migration]) -> int:
        supported = len(migrations)
        version = self._version(con)
        if version > supported:
            raise StoreVersionError(shown, version, supported)
        if version == supported:
            return version
        con.execute("BEGIN IMMEDIATE")
        try:
            version = self._version(con)  # another process may have migrated meanwhile
            if version > supported:
                raise StoreVersionError(shown, version, supported)
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for migration in migrations[version:]:
                migration(con)
            con.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(supported),),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return supported

    # -- plumbing --------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        con = self._con
        if con is None:
            raise StoreError(f"{self.path}: the store is closed")
        return con

    def _write(self, statements: Iterable[tuple[str, Any]]) -> int:
        """Run ``statements`` in one write transaction; the number of rows changed.

        Raises:
            StoreDamagedError: the file is damaged (a corrupt page, a missing table).
            StoreError: another SQLite error (the store is locked too long, the disk is full).
        """
        statements = list(statements)
        with self._lock:
            con = self._connection()
            before = con.total_changes
            try:
                if len(statements) == 1:  # one statement is its own transaction
                    con.execute(*statements[0])
                    return con.total_changes - before
                con.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in statements:
                        con.execute(sql, params)
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise _as_store_error(self._shown, exc) from None
            return con.total_changes - before

    def _where_in(self, head: str, keys: Sequence[Any], leading: tuple[Any, ...] = ()) -> int:
        """``head`` + ``(?, ?, ...)`` over ``keys`` in chunks, one transaction; rows changed."""
        step = max(1, min(_ROWS_PER_STATEMENT, self._max_variables - len(leading)))
        statements = []
        for start, size in _chunks(len(keys), step):
            chunk = keys[start : start + size]
            statements.append((head + "(" + ", ".join(["?"] * len(chunk)) + ")", (*leading, *chunk)))
        return self._write(statements)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of ``sql``.

        Raises:
            StoreDamagedError, StoreError: as :meth:`_write`.
        """
        with self._lock:
            con = self._connection()
            try:
                return con.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise _as_store_error(self._shown, exc) from None

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL); idempotent."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._con is None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"``, or the problems found, one per line."""
        rows = self._read("PRAGMA integrity_check")
        return "\n".join(str(row[0]) for row in rows)

    # -- runs ------------------------------------------------------------------------

    def begin_run(
        self,
        command: str | Sequence[str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        python: str | None = None,
        pid: int | None = None,
        run_id: str | None = None,
        started_ns: int | None = None,
    ) -> str:
        """Record the start of a run and return its id.

        Args:
            command: the command line (a list is joined with :func:`shlex.join`).
            cwd: the working directory (default: the current one).
            python: the interpreter (default: ``sys.executable`` and version).
            pid: the process id (default: this process).
            run_id: the id to use (default: a new time-ordered id).
            started_ns: start time, ``time.time_ns()`` (default: now).
        """
        if command is not None and not isinstance(command, str):
            command = shlex.join(command)
        started = time.time_ns() if started_ns is None else started_ns
        run_id = run_id or new_id(started)
        self._write([(
            "INSERT INTO runs (id, command, cwd, python, started_ns, pid) VALUES (?, ?, ?, ?, ?, ?)",
            (
                run_id,
                command,
                str(cwd if cwd is not None else os.getcwd()),
                python or f"{sys.executable} {sys.version.split()[0]}",
                started,
                os.getpid() if pid is None else pid,
            ),
        )])
        return run_id

    def end_run(
        self,
        run_id: str,
        exit_status: int | None = None,
        summary: dict[str, Any] | None = None,
        *,
        ended_ns: int | None = None,
    ) -> None:
        """Record the end of run ``run_id``.

        Args:
            run_id: as returned by :meth:`begin_run`.
            exit_status: the process exit status.
            summary: a JSON-serialisable dict (values JSON cannot encode become ``repr()``).
            ended_ns: end time, ``time.time_ns()`` (default: now).

        Raises:
            StoreError: no run has this id.
        """
        changed = self._write([(
            "UPDATE runs SET ended_ns = ?, exit_status = ?, summary = ? WHERE id = ?",
            (
                time.time_ns() if ended_ns is None else ended_ns,
                exit_status,
                None if summary is None else json.dumps(summary, default=repr),
                run_id,
            ),
        )])
        if not changed:
            raise StoreError(f"{self.path}: no run with id {run_id!r}")

    @staticmethod
    def _run(row: tuple[Any, ...]) -> Run:
        summary = None if row[8] is None else json.loads(row[8])
        return Run(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], summary)

    _RUN_COLUMNS: Final = "id, command, cwd, python, started_ns, ended_ns, exit_status, pid, summary"

    def runs(self, limit: int | None = 20) -> list[Run]:
        """The most recent runs, newest first (``limit=None``: all of them)."""
        sql = f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started_ns DESC, id DESC"
        params: tuple[Any, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (limit,)
        return [self._run(row) for row in self._read(sql, params)]

    def run(self, run_id: str) -> Run | None:
        """The run with id ``run_id``, or ``None``."""
        rows = self._read(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return self._run(rows[0]) if rows else None

    def last_run(self) -> Run | None:
        """The most recently started run, or ``None`` when there is none."""
        runs = self.runs(1)
        return runs[0] if runs else None

    # -- reports ---------------------------------------------------------------------

    def put_reports(
        self,
        run_id: str,
        kind: str,
        reports: Iterable[tuple[str, str, Mapping[str, Any]]],
        *,
        updated_ns: int | None = None,
    ) -> int:
        """Record the latest state of named things of one kind for a run (upsert).

        Args:
            run_id: the run the reporting host belongs to.
            kind: what is reported: ``"component"`` or ``"task"``.
            reports: ``(name, state, data)`` triples; ``data`` is a JSON-serialisable dict
                (values JSON cannot encode become ``repr()``).
            updated_ns: time of the report, ``time.time_ns()`` (default: now).

        Returns:
            the number of rows written.
        """
        now = time.time_ns() if updated_ns is None else updated_ns
        statements = [
            (
                "INSERT INTO reports (run_id, kind, name, state, data, updated_ns) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, kind, name) DO UPDATE SET state = excluded.state,"
                " data = excluded.data, updated_ns = excluded.updated_ns",
                (run_id, kind, name, state, json.dumps(dict(data), default=repr), now),
            )
            for name, state, data in reports
        ]
        return self._write(statements) if statements else 0

    def current_reports(self, kind: str) -> tuple[Run | None, list[Report], bool]:
        """The reports of ``kind`` ``hostapp components`` / ``hostapp tasks`` show: those of a
        live run (:meth:`Run.is_live`, among the 50 newest runs), else those of the newest
        run that reported ``kind``.

        Returns:
            ``(run, reports, live)``: the run (``None`` when no run reported ``kind``, or
            its record is gone), its reports in name order, and whether it is live.
        """
        for run in self.runs(50):
            if run.is_live():
                reports = self.reports(kind, run.id)
                if reports:
                    return run, reports, True
        reports = self.reports(kind)
        if not reports:
            return None, [], False
        found = self.run(reports[0].run_id)
        return found, reports, found is not None and found.is_live()

    def reports(self, kind: str, run_id: str | None = None) -> list[Report]:
        """The reports of ``kind`` for ``run_id`` (default: the newest run that has any).

        Returns:
            :class:`Report` objects in name order; ``[]`` when no run reported ``kind``.
        """
        if run_id is None:
            rows = self._read(
                "SELECT run_id FROM reports WHERE kind = ? ORDER BY updated_ns DESC LIMIT 1", (kind,)
            )
            if not rows:
                return []
            run_id = rows[0][0]
        rows = self._read(
            "SELECT run_id, kind, name, state, data, updated_ns FROM reports"
            " WHERE kind = ? AND run_id = ? ORDER BY name",
            (kind, run_id),
        )
        return [Report(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    # -- events ----------------------------------------------------------------------

    def _insert_sql(self, rows: int) -> str:
        return self._values_sql(
            f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES ", len(_EVENT_COLUMNS), rows
        )

    def _values_sql(self, head: str, width: int, rows: int) -> str:
        key = (head, rows)
        sql = self._statements.get(key)
        if sql is None:
            one = "(" + ", ".join(["?"] * width) + ")"
            sql = self._statements[key] = head + ", ".join([one] * rows)
        return sql

    def _insert_rows(self, head: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """``head`` + ``VALUES (...), (...)`` for all ``rows`` in one transaction; rows added."""
        if not rows:
            return 0
        width = len(rows[0])
        step = max(1, min(_ROWS_PER_STATEMENT, self._max_variables // width))
        statements = []
        for start, size in _chunks(len(rows), step):
            chunk = rows[start : start + size]
            params = [value for row in chunk for value in row]
            statements.append((self._values_sql(head, width, len(chunk)), params))
        return self._write(statements)

    def add_events(self, events: Iterable[Event]) -> int:
        """Insert ``events`` in one transaction; the number inserted.

        An event whose id is already stored is skipped (so redelivering a batch is
        harmless). The values of ``data`` that have a column of their own (``duration_ns``,
        ``status_code``, ``method``, ``url``, ``call_site``, ``trace_id``, ``span_id``,
        ``parent_span_id``) are stored there and not again in the ``data`` JSON; values JSON
        cannot encode are stored as their ``repr()``.
        """
        batch = events if isinstance(events, list) else list(events)
        if not batch:
            return 0
        step = self._rows_per_statement
        columns = _event_columns
        encode = _encode_data
        split = _split
        statements = []
        for start, size in _chunks(len(batch), step):
            chunk = batch[start : start + size]
            params: list[Any] = []
            extend = params.extend
            append = params.append
            for event in chunk:
                extend(columns(event))
                promoted, rest = split(event.data)
                extend(promoted)
                append(encode(rest))
            statements.append((self._insert_sql(len(chunk)), params))
        return self._write(statements)

    def events(
        self,
        run_id: str | None = None,
        type: str | None = None,
        subtype: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        types: Iterable[str] | None = None,
        subtypes: Iterable[str] | None = None,
        status_min: int | None = None,
        status_max: int | None = None,
        url_contains: str | None = None,
        min_duration_ns: int | None = None,
        after: str | None = None,
    ) -> list[Event]:
        """Stored events matching every given filter, ordered by time (then id).

        Each event's ``data`` is as it was emitted: the values kept in columns are merged
        back in.

        Args:
            run_id: only this run's events.
            type: only this type: an exact name, or a glob (``"outbound_http_*"``).
            subtype: only this subtype (exact, or a glob).
            since_ns: only events with ``timestamp_ns >= since_ns`` (ns since the epoch).
            until_ns: only events with ``timestamp_ns < until_ns``.
            limit: at most this many (the oldest, or the newest with ``newest_first``).
            newest_first: order newest first.
            types: only these types (exact names or globs; any of them).
            subtypes: only these subtypes (exact or globs; any of them).
            status_min: only events whose ``status_code`` is ``>= status_min``.
            status_max: only events whose ``status_code`` is ``<= status_max``.
            url_contains: only events whose ``url`` contains this text (case-sensitive).
            min_duration_ns: only events whose ``duration_ns`` is ``>= min_duration_ns``.
            after: a cursor from :func:`cursor` (``Store.cursor(event)``): only events after
                that one in this order (before it, with ``newest_first``).

        Raises:
            ValueError: ``after`` is not a cursor.
        """
        sql, params = self._events_sql(
            run_id, type, subtype, since_ns, until_ns, types, subtypes, status_min,
            status_max, url_contains, min_duration_ns, after, newest_first,
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_joined(row) for row in self._read(sql, params)]

    def iter_events(self, *, chunk: int = 500, limit: int | None = None, **filters: Any) -> Iterator[Event]:
        """The events of :meth:`events` (same keyword filters), read ``chunk`` at a time.

        Memory stays bounded whatever the number of events: each chunk is one query that
        resumes after the last event of the previous one (keyset pagination), and the store's
        lock is not held between chunks, so the sinks go on writing meanwhile. Events stored
        after the iteration began, later in the order, are included.

        Args:
            chunk: events per query (>= 1).
            limit: at most this many in all (``None``: every match).
            **filters: as for :meth:`events` (``run_id``, ``types``, ``status_min``, ...,
                ``newest_first``, ``after``).

        Raises:
            ValueError: ``chunk`` < 1, or ``after`` is not a cursor.
        """
        if chunk < 1:
            raise ValueError(f"iter_events: chunk must be >= 1, got {chunk}")
        after = filters.pop("after", None)
        left = limit
        while left is None or left > 0:
            size = chunk if left is None else min(chunk, left)
            page = self.events(limit=size, after=after, **filters)
            yield from page
            if len(page) < size:
                return
            after = cursor(page[-1])
            if left is not None:
                left -= len(page)

    cursor = staticmethod(cursor)

    def count_events(
        self,
        run_id: str | None = None,
        type: str | None = None,
        subtype: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        **filters: Any,
    ) -> int:
        """How many stored events match (the filters of :meth:`events`)."""
        sql, params = self._events_sql(
            run_id, type, subtype, since_ns, until_ns, filters.get("types"), filters.get("subtypes"),
            filters.get("status_min"), filters.get("status_max"), filters.get("url_contains"),
            filters.get("min_duration_ns"), filters.get("after"), bool(filters.get("newest_first")),
            select="count(*)",
        )
        return int(self._read(sql, params)[0][0])

    def find_events(self, id_prefix: str, limit: int = 10) -> list[Event]:
        """The stored events whose id starts with ``id_prefix`` (ids are 32 lower-case hex
        digits; ``hostapp events show`` takes a unique prefix, as git does), by id, at most
        ``limit``. Uses the index of ``id``."""
        low = id_prefix.strip().lower()
        rows = self._read(
            f"SELECT {_COLUMNS} FROM events WHERE id >= ? AND id < ? ORDER BY id LIMIT ?", (low, low + "~", limit)
        )
        return [_joined(row) for row in rows]

    def event_ids(self, run_id: str | None = None) -> set[str]:
        """The ids of the stored events (of one run), without decoding the rows."""
        if run_id is None:
            rows = self._read("SELECT id FROM events")
        else:
            rows = self._read("SELECT id FROM events WHERE run_id = ?", (run_id,))
        return {row[0] for row in rows}

    @staticmethod
    def _events_sql(
        run_id: str | None,
        type: str | None,
        subtype: str | None,
        since_ns: int | None,
        until_ns: int | None,
        types: Iterable[str] | None,
        subtypes: Iterable[str] | None,
        status_min: int | None,
        status_max: int | None,
        url_contains: str | None,
        min_duration_ns: int | None,
        after: str | None,
        newest_first: bool,
        *,
        select: str = _COLUMNS,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("run_id = ?", run_id),
            ("timestamp_ns >= ?", since_ns),
            ("timestamp_ns < ?", until_ns),
            ("status >= ?", status_min),
            ("status <= ?", status_max),
            ("duration_ns >= ?", min_duration_ns),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        for column, one, many in (("type", type, types), ("subtype", subtype, subtypes)):
            patterns = ([one] if one is not None else []) + (list(many) if many is not None else [])
            if one is not None and many is not None:
                clauses.append(_pattern_clause(column, [one], params))
                patterns = list(many)
            if patterns:
                clauses.append(_pattern_clause(column, patterns, params))
        if url_contains is not None:
            clauses.append("instr(url, ?) > 0")
            params.append(url_contains)
        order = "DESC" if newest_first else "ASC"
        if after is not None:
            ts, event_id = _parse_cursor(after)
            clauses.append("(timestamp_ns, id) < (?, ?)" if newest_first else "(timestamp_ns, id) > (?, ?)")
            params.extend((ts, event_id))
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        sql = f"SELECT {select} FROM events{where}"
        if select == _COLUMNS:
            sql += f" ORDER BY timestamp_ns {order}, id {order}"
        return sql, params

    # -- dead letters ----------------------------------------------------------------

    def add_dead_letters(
        self, sink: str, events: Iterable[Event], error: str, *, attempts: int = 0
    ) -> int:
        """Keep ``events`` as dead letters of ``sink`` (one row each); the number added.

        Args:
            sink: the sink's name.
            events: the events it could not take.
            error: why (``"ExceptionType: message"``).
            attempts: how many ``handle`` calls failed for them.
        """
        now = time.time_ns()
        rows = [(sink, _event_json(event), error, attempts, now) for event in events]
        return self._insert_rows(
            "INSERT INTO dead_letters (sink, event, error, attempts, created_ns) VALUES ", rows
        )

    def dead_letters(
        self, sink: str | None = None, limit: int | None = None, *, after_id: int = 0
    ) -> list[DeadLetter]:
        """Dead letters, oldest first.

        Args:
            sink: only this sink's.
            limit: at most this many.
            after_id: only those with a row id above this (for paging).
        """
        sql = "SELECT id, sink, event, error, attempts, created_ns FROM dead_letters WHERE id > ?"
        params: list[Any] = [after_id]
        if sink is not None:
            sql += " AND sink = ?"
            params.append(sink)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [
            DeadLetter(row[0], row[1], _event_from_json(row[2]), row[3] or "", row[4], row[5])
            for row in self._read(sql, params)
        ]

    def dead_letter_counts(self) -> dict[str, int]:
        """``{sink: number of dead letters}`` for every sink that has some."""
        rows = self._read("SELECT sink, count(*) FROM dead_letters GROUP BY sink ORDER BY sink")
        return {row[0]: int(row[1]) for row in rows}

    def delete_dead_letters(self, ids: Iterable[int]) -> int:
        """Delete the dead letters with these row ids; the number deleted."""
        rows = [(i,) for i in ids]
        if not rows:
            return 0
        return self._where_in("DELETE FROM dead_letters WHERE id IN ", [i for (i,) in rows])

    def update_dead_letters(self, ids: Iterable[int], error: str, attempts: int) -> int:
        """Record a failed redelivery: set ``error``, add ``attempts``; the number updated."""
        rows = [(error, attempts, i) for i in ids]
        if not rows:
            return 0
        return self._where_in(
            "UPDATE dead_letters SET error = ?, attempts = attempts + ? WHERE id IN ",
            [i for _, _, i in rows],
            (error, attempts),
        )

    # -- spill -----------------------------------------------------------------------

    def add_spill(self, owner: str, sink: str, events: Iterable[Event]) -> int:
        """Spill ``events`` of ``sink`` for bus ``owner``; the number added."""
        now = time.time_ns()
        rows = [(owner, sink, _event_json(event), now) for event in events]
        return self._insert_rows("INSERT INTO spill (owner, sink, event, created_ns) VALUES ", rows)

    def peek_spill(self, owner: str, sink: str, limit: int) -> list[tuple[int, Event]]:
        """The oldest ``limit`` spilled events of ``owner``/``sink`` as ``(seq, event)``;
        they stay in the table until :meth:`delete_spill`."""
        rows = self._read(
            "SELECT seq, event FROM spill WHERE owner = ? AND sink = ? ORDER BY seq LIMIT ?",
            (owner, sink, limit),
        )
        return [(row[0], _event_from_json(row[1])) for row in rows]

    def delete_spill(self, seqs: Iterable[int]) -> int:
        """Delete spilled events by ``seq``; the number deleted."""
        rows = [(s,) for s in seqs]
        if not rows:
            return 0
        return self._where_in("DELETE FROM spill WHERE seq IN ", [i for (i,) in rows])

    def spill_count(self, owner: str | None = None, sink: str | None = None) -> int:
        """How many spilled events wait (of one owner and/or sink)."""
        sql = "SELECT count(*) FROM spill WHERE 1"
        params: list[Any] = []
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        if sink is not None:
            sql += " AND sink = ?"
            params.append(sink)
        return int(self._read(sql, params)[0][0])

    def spill_owners(self) -> list[str]:
        """The owners (buses) that have spilled events waiting."""
        return [row[0] for row in self._read("SELECT DISTINCT owner FROM spill ORDER BY owner")]

    def spill_to_dead_letters(self, owner: str, error: str, *, sink: str | None = None) -> int:
        """Move ``owner``'s spilled events (of one sink) to dead letters; the number moved."""
        condition = "owner = ?" + (" AND sink = ?" if sink is not None else "")
        params: tuple[Any, ...] = (owner,) if sink is None else (owner, sink)
        with self._lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                cursor = con.execute(
                    "INSERT INTO dead_letters (sink, event, error, attempts, created_ns) "
                    f"SELECT sink, event, ?, 0, ? FROM spill WHERE {condition} ORDER BY seq",
                    (error, time.time_ns(), *params),
                )
                moved = cursor.rowcount
                con.execute(f"DELETE FROM spill WHERE {condition}", params)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        return max(0, moved)

    # -- probe specs (hostapp.probes) ------------------------------------------------

    def probe_marker(self) -> int:
        """The probe specs' change marker: bumped by every insert, update and delete."""
        rows = self._read("SELECT version FROM probe_marker WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    def probe_specs(self) -> dict[str, dict[str, Any]]:
        """Every probe spec by id (the JSON stored by :meth:`put_probe_spec`), in id order."""
        return {row[0]: json.loads(row[1]) for row in self._read("SELECT id, spec FROM probe_specs ORDER BY id")}

    def put_probe_spec(self, spec_id: str, spec: Mapping[str, Any], lastmodified_ns: int) -> None:
        """Add or replace probe spec ``spec_id`` (a JSON-serialisable dict)."""
        self._write([(
            "INSERT INTO probe_specs (id, spec, lastmodified_ns, created_ns) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, lastmodified_ns = excluded.lastmodified_ns",
            (spec_id, json.dumps(dict(spec), default=repr), lastmodified_ns, time.time_ns()),
        )])

    def delete_probe_specs(self, ids: Iterable[str] | None = None) -> int:
        """Delete these probe specs (``None``: all of them) and their applied records;
        the number of specs deleted."""
        if ids is None:
            with self._lock:
                con = self._connection()
                con.execute("BEGIN IMMEDIATE")
                try:
                    deleted = con.execute("DELETE FROM probe_specs").rowcount
                    con.execute("DELETE FROM probe_applied")
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
            return max(0, deleted)
        keys = list(ids)
        if not keys:
            return 0
        before = len(self._read(
            "SELECT id FROM probe_specs WHERE id IN (" + ", ".join("?" * len(keys)) + ")", keys))
        self._write([
            ("DELETE FROM probe_specs WHERE id IN (" + ", ".join("?" * len(keys)) + ")", keys),
            ("DELETE FROM probe_applied WHERE spec_id IN (" + ", ".join("?" * len(keys)) + ")", keys),
        ])
        return before

    def put_probe_applied(self, rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> int:
        """Upsert ``(spec_id, process, data)`` applied records; the number written."""
        now = time.time_ns()
        statements = [
            (
                "INSERT INTO probe_applied (spec_id, process, data, updated_ns) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (spec_id, process) DO UPDATE SET data = excluded.data, updated_ns = excluded.updated_ns",
                (spec_id, process, json.dumps(dict(data), default=repr), now),
            )
            for spec_id, process, data in rows
        ]
        return self._write(statements) if statements else 0

    def probe_applied(self, spec_id: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """``{spec_id: {process: data}}`` of the applied records (of one spec)."""
        sql = "SELECT spec_id, process, data FROM probe_applied"
        params: tuple[Any, ...] = ()
        if spec_id is not None:
            sql += " WHERE spec_id = ?"
            params = (spec_id,)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for row in self._read(sql + " ORDER BY spec_id, process", params):
            out.setdefault(row[0], {})[row[1]] = json.loads(row[2])
        return out
