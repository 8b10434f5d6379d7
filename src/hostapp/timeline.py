"""What ``hostapp events`` shows: stored events in time order, filtered, one per HTTP call,
rendered by the plugins' renderers, streamed with bounded memory.

* :class:`Query` holds the filters (the store's own, run in SQL: run, types, libraries,
  status range, URL substring, minimum duration, time window; and those read in Python:
  a URL glob and ``--grep``).
* :func:`select` gives the events to show: all of them oldest first, read in chunks
  (``Store.iter_events``) and printed as read; or the newest ``limit`` in time order.
  Kolo-style request/response pairs become one call (:func:`hostapp.events.calls.join_calls`).
* :func:`follow` goes on reading what a live run adds.
* :func:`row` is one line of the table, :func:`details` one event whole.
* :func:`resolve_run` finds a run by a unique id prefix, as git finds commits.

Parsing of the command line's values (``5xx``, ``>=400``, ``100ms``, ``15m``, an ISO time)
is here too, so the web view can share it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hostapp.events.calls import REQUEST, RESPONSE, join_calls

if TYPE_CHECKING:
    from hostapp.events.record import Event
    from hostapp.render import Renderers
    from hostapp.store import Run, Store

__all__ = [
    "Query",
    "call_summary",
    "details",
    "follow",
    "parse_duration_ns",
    "parse_status",
    "parse_when_ns",
    "resolve_run",
    "row",
    "select",
    "why_empty",
]

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
             "h": 3_600_000_000_000, "d": 86_400_000_000_000}


def parse_duration_ns(text: str) -> int:
    """A duration with its unit: ``"100ms"``, ``"1.5s"``, ``"250us"``, ``"2m"`` -> ns.

    Units: ``ns``, ``us`` (``µs``), ``ms``, ``s``, ``m``, ``h``, ``d``; a bare number is
    seconds.

    Raises:
        ValueError: not a number with one of those units.
    """
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h|d)?\s*", text)
    if found is None:
        raise ValueError(f"{text!r}: expected a duration like 100ms, 1.5s, 250us or 2m")
    return int(float(found.group(1)) * _UNITS_NS[found.group(2) or "s"])


def parse_when_ns(text: str, *, now_ns: int | None = None) -> int:
    """A point in time: a duration back from now (``"30s"``, ``"15m"``, ``"2h"``, ``"7d"``) or
    an ISO 8601 time (local time unless it says otherwise) -> ns since the epoch.

    Raises:
        ValueError: neither.
    """
    now = time.time_ns() if now_ns is None else now_ns
    try:
        return now - parse_duration_ns(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r}: expected a duration back from now (30s, 15m, 2h, 7d) or an ISO 8601 time") from None
    return int(moment.timestamp() * 1e9)


def parse_status(text: str) -> tuple[int | None, int | None]:
    """An HTTP status filter -> ``(min, max)``, both inclusive (``None``: open).

    ``"404"``, ``"5xx"`` (500-599), ``"4xx-5xx"``, ``">=400"``, ``">399"``, ``"<300"``,
    ``"<=299"``, ``"200-299"``.

    Raises:
        ValueError: none of those shapes.
    """
    spec = text.strip().lower().replace(" ", "")

    def bound(part: str, high: bool) -> int:
        if re.fullmatch(r"[1-5]xx", part):
            return int(part[0]) * 100 + (99 if high else 0)
        if re.fullmatch(r"\d{3}", part):
            return int(part)
        raise ValueError(part)

    try:
        for prefix, make in ((">=", lambda n: (n, None)), ("<=", lambda n: (None, n)),
                             (">", lambda n: (n + 1, None)), ("<", lambda n: (None, n - 1))):
            if spec.startswith(prefix):
                return make(int(spec[len(prefix):]))
        if "-" in spec:
            low, _, high = spec.partition("-")
            return bound(low, False), bound(high, True)
        return bound(spec, False), bound(spec, True)
    except ValueError:
        raise ValueError(f"{text!r}: expected a status like 404, 5xx, >=400, <300 or 200-299") from None


def resolve_run(store: Store, text: str) -> Run:
    """The run whose id is ``text`` or starts with it (a unique prefix, as git takes them).

    Raises:
        LookupError: no run, or more than one, has that prefix (the message says which).
    """
    exact = store.run(text)
    if exact is not None:
        return exact
    found = [run for run in store.runs(None) if run.id.startswith(text)]
    if not found:
        raise LookupError(f"no run with an id starting {text!r}; 'hostapp runs' lists them")
    if len(found) > 1:
        shown = ", ".join(run.id for run in found[:5]) + (", ..." if len(found) > 5 else "")
        raise LookupError(f"run id prefix {text!r} is ambiguous: {shown}")
    return found[0]


@dataclass
class Query:
    """The filters of one listing.

    Attributes:
        run_id: one run's events (``None``: every run's).
        types: event types, exact names or globs (any of them).
        libraries: subtypes (the library of an HTTP call or a job).
        status_min / status_max: the HTTP status range, inclusive.
        url: a substring of the URL, or a glob (``*``, ``?``, ``[``) the whole URL matches.
        min_duration_ns: calls and spans at least this long.
        since_ns / until_ns: the time window (``until`` exclusive).
        grep: text that must appear in the event's subtype or data (as JSON).
    """

    run_id: str | None = None
    types: list[str] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)
    status_min: int | None = None
    status_max: int | None = None
    url: str | None = None
    min_duration_ns: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    grep: str | None = None

    @property
    def url_is_glob(self) -> bool:
        return self.url is not None and any(c in self.url for c in "*?[")

    def store_filters(self) -> dict[str, Any]:
        """The keyword filters of :meth:`Store.iter_events` for what SQL can decide."""
        filters: dict[str, Any] = {
            "run_id": self.run_id, "since_ns": self.since_ns, "until_ns": self.until_ns,
            "status_min": self.status_min, "status_max": self.status_max,
            "min_duration_ns": self.min_duration_ns,
        }
        types = list(self.types)
        if types and not any(fnmatch.fnmatchcase(RESPONSE, t) for t in types) and any(
            fnmatch.fnmatchcase(REQUEST, t) for t in types
        ):
            types.append(RESPONSE)  # Kolo-style responses complete the calls asked for
        if types:
            filters["types"] = types
        if self.libraries:
            filters["subtypes"] = list(self.libraries)
        if self.url is not None:
            filters["url_contains"] = self.url if not self.url_is_glob else _literal_part(self.url)
        return {k: v for k, v in filters.items() if v not in (None, "")}

    @property
    def in_python(self) -> bool:
        """Whether some filter is applied after reading (a URL glob, ``grep``)."""
        return self.url_is_glob or self.grep is not None

    def matches(self, event: Event) -> bool:
        """The filters SQL cannot apply: the URL glob, and ``grep`` over the event's subtype
        and data (as JSON; not its ids)."""
        if self.url_is_glob and not fnmatch.fnmatchcase(str(event.data.get("url") or ""), self.url or ""):
            return False
        if self.grep is None:
            return True
        text = json.dumps(event.data, ensure_ascii=False, default=repr)
        return self.grep in text or self.grep in (event.subtype or "")


def _literal_part(glob: str) -> str:
    """The longest run of plain characters of a glob (a SQL pre-filter for it)."""
    return max(re.split(r"[*?\[\]]", glob), key=len)


def _shown(events: Iterable[Event], query: Query) -> Iterator[Event]:
    """Calls joined; a response that joined no call is shown only when asked for."""
    wanted_responses = any(fnmatch.fnmatchcase(RESPONSE, t) for t in query.types) if query.types else True
    for event in join_calls(events):
        if event.type == RESPONSE and not wanted_responses:
            continue
        if query.in_python and not query.matches(event):
            continue
        yield event


def select(store: Store, query: Query, limit: int | None, *, chunk: int = 500) -> tuple[Iterator[Event], bool]:
    """The events to show, in time order.

    Args:
        store: the store.
        query: the filters.
        limit: ``None``: every match, read ``chunk`` at a time (memory bounded by the chunk
            and the join window, whatever the number of events); ``N``: the newest ``N``
            matches (``N`` + 1 held at most).
        chunk: events per query.

    Returns:
        ``(events, cut)``: ``cut`` is true when ``limit`` left matches out.
    """
    filters = query.store_filters()
    if limit is None:
        return _shown(store.iter_events(chunk=chunk, **filters), query), False
    wanted_responses = any(fnmatch.fnmatchcase(RESPONSE, t) for t in query.types)
    newest: list[Event] = []
    shown = pairs = 0
    cut = False
    for event in store.iter_events(chunk=min(chunk, limit + 1), newest_first=True, **filters):
        if event.type == RESPONSE and not wanted_responses:
            if pairs < 2 * limit + 100:  # a Kolo-style response: kept to complete its call
                newest.append(event)
                pairs += 1
            continue
        if query.in_python and not query.matches(event):  # judged again once joined
            continue
        if shown == limit:
            cut = True
            break
        newest.append(event)
        shown += 1
    newest.reverse()
    return _shown(newest, query), cut


def follow(
    store: Store, query: Query, after: str | None, *, poll_s: float = 0.25,
    until: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Event]:
    """The events stored after cursor ``after`` (``Store.cursor(event)``), as they arrive.

    Polls every ``poll_s`` seconds; stops once ``until()`` is true and a last read found
    nothing (a run that ended), or when the caller stops iterating (Ctrl-C).
    """
    filters = query.store_filters()
    while True:
        done = until()
        got = False
        raw = store.iter_events(after=after, **filters) if after else store.iter_events(**filters)
        for event in _shown(raw, query):
            got = True
            yield event
            after = store.cursor(event)
        if done and not got:
            return
        if not got:
            sleep(poll_s)


def why_empty(store: Store, query: Query, run: Run | None) -> str:
    """Why a listing has no rows, in one line: an unknown type (with the types there are),
    a run that is still running (its events are still reaching the store), a run that
    recorded nothing, or filters that matched nothing."""
    if run is not None and run.ended_ns is None and run.is_live:
        return (f"run {run.id} is still running (pid {run.pid}); its events reach the store as its sinks "
                f"flush: try again, or --follow")
    total = store.count_events(run_id=query.run_id)
    where = f"run {run.id}" if run is not None else "the store"
    if total == 0:
        if run is not None and run.ended_ns is None:
            return f"{where} recorded no events (its process is gone without ending the run)"
        return f"{where} has no events"
    if query.types:
        present = _types(store, query.run_id)
        unknown = [t for t in query.types if not any(fnmatch.fnmatchcase(p, t) for p in present)]
        if unknown:
            return (f"no event of type {', '.join(map(repr, unknown))} in {where}; "
                    f"its types: {', '.join(sorted(present)) or 'none'}")
    return f"no event of {where} matched the filters ({total} events in all)"


def _types(store: Store, run_id: str | None) -> set[str]:
    found: set[str] = set()
    for event in store.iter_events(run_id=run_id, chunk=2000):
        found.add(event.type)
        if len(found) > 200:
            break
    return found


# -- rendering ------------------------------------------------------------------------------


def when(ns: int | None) -> str:
    """``2026-12-04 20:07:29.522`` (local time, ms)."""
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / 1e9).isoformat(sep=" ", timespec="milliseconds")


def duration(ns: Any) -> str:
    """``6.5 ms``, ``1.20 s``, ``850 us`` for a duration in ns; ``""`` for none."""
    if not isinstance(ns, int) or isinstance(ns, bool):
        return ""
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} us"


def site(event: Event, cwd: str | None = None) -> str:
    """``examples/app.py:62``: the call site, relative to ``cwd`` when inside it."""
    import os

    found = event.data.get("call_site")
    if not isinstance(found, dict) or not found.get("file"):
        return ""
    path = str(found["file"])
    try:
        relative = os.path.relpath(path, cwd)
        path = relative if not relative.startswith("..") else path
    except ValueError:
        pass
    return f"{path}:{found.get('line')}"


#: Width of the Kind column.
KIND_WIDTH = 10


def call_summary(event: Event) -> str:
    """``GET http://host/path -> 200 requests`` (``-> ConnectionError``, ``-> …`` while
    unfinished): how the table shows an HTTP call when no plugin renders
    ``outbound_http_request``. The fields are the call record's (``docs/tracing.md``)."""
    data = event.data
    error = data.get("error")
    if data.get("status_code") is not None:
        outcome = str(data["status_code"])
    elif isinstance(error, dict):
        outcome = str(error.get("type") or "error").rsplit(".", 1)[-1]
    else:
        outcome = "…"
    return f"{data.get('method') or '?'} {data.get('url') or '?'} -> {outcome}  {event.subtype or ''}".rstrip()


def _summary(event: Event, renderers: Renderers) -> tuple[str, str]:
    if event.type == REQUEST and renderers.lookup(REQUEST) is None:
        return "HTTP", call_summary(event)
    return renderers.label(event), renderers.summary(event)


def row(event: Event, renderers: Renderers, width: int | None = None, *, cwd: str | None = None) -> str:
    """One line of the table: time, kind (the renderer's label), duration, the renderer's
    summary, the call site; cut to ``width`` characters."""
    kind, summary = _summary(event, renderers)
    line = (f"{when(event.timestamp_ns)}  {kind[:KIND_WIDTH]:<{KIND_WIDTH}} "
            f"{duration(event.data.get('duration_ns')):>9}  {summary}")
    where = site(event, cwd)
    if where:
        line += f"  {where}"
    if width is not None and len(line) > width:
        line = line[: max(width - 1, 10)] + "…"
    return line


def details(event: Event, renderers: Renderers, children: Sequence[Event] = ()) -> list[tuple[str, Any]]:
    """One event whole, as labelled sections for ``hostapp events show``: the record's own
    fields, then its renderer's fields, then (for an HTTP call) ``request`` and
    ``response`` and the ``nested`` calls made inside it."""
    out: list[tuple[str, Any]] = [
        ("id", event.id), ("type", event.type), ("subtype", event.subtype), ("time", when(event.timestamp_ns)),
        ("duration", duration(event.data.get("duration_ns"))), ("run", event.run_id),
        ("pid / thread", f"{event.pid} / {event.data.get('thread_name') or event.thread_id}"),
        ("source", event.source), ("call site", site(event)),
    ]
    shown = {"subtype", "source", "call_site", "duration_ns", "thread_name", "request", "response"}
    out += [(str(name), value) for name, value in renderers.fields(event) if name not in shown]
    if children:
        out.append(("nested", [f"{when(c.timestamp_ns)} {_summary(c, renderers)[1]}" for c in children]))
    return [(k, v) for k, v in out if v not in (None, "", [])]
