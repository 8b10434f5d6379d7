"""The processor runtime every backend shares: selection results in, events out.

A backend finds the calls; this module turns a matched call into events:

* :class:`ProcessorRuntime` holds one processor's spec, its context (``build_context``
  is called once per run), its counters and its on/off switch;
* :func:`make_dispatch` returns the two hot functions a backend calls, ``enter`` (the
  call side: allocates the ``frame_id``, works out the call site, emits ``call`` events)
  and ``leave`` (``return``, ``unwind``, ``yield``, ``resume``, ``throw``), with the
  processors' ``call`` filter and ``process`` data, error isolation and switching a
  failing processor off;
* the library-code test used for the user-code call site.

Nothing here knows which backend is running.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import site
import struct
import sys
import sysconfig
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from hostapp.events import record as _record
from hostapp.events.record import FIELDS, Event
from hostapp.types import SKIP

if TYPE_CHECKING:
    from types import FrameType

    from hostapp.types import Contribution, TraceProcessor

__all__ = [
    "SKIP",
    "Dispatch",
    "FastPath",
    "ProcessorRuntime",
    "default_library_paths",
    "fast_processor",
    "make_dispatch",
    "normalize_path",
]

logger = logging.getLogger("hostapp.tracing")

_RETURN_SIDE: Final = frozenset({"return", "unwind", "yield", "resume", "throw"})
_M64: Final = (1 << 64) - 1



#: The innermost call of a processor *group* in progress in this context (thread or
#: asyncio task): ``[captured, via, group, epoch, token, name]`` (see ``make_dispatch``).
_GROUP: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("hostapp_call_group", default=None)


def normalize_path(path: str) -> str:
    """``path`` written with ``/`` (what ``path_fragment`` is matched against)."""
    return path if os.sep == "/" else path.replace(os.sep, "/")


# -- processors --------------------------------------------------------------------------


class ProcessorRuntime:
    """One processor for one run: its spec, context, counters and on/off switch.

    Attributes read on the hot path are plain slots, copied out of the spec once.
    ``off`` is set when ``build_context`` failed or after ``max_errors`` consecutive
    errors in ``call``/``process``; an ``off`` processor is skipped everywhere.
    """

    __slots__ = (
        "build_fn", "call", "call_type", "calls", "capture", "co_names", "consecutive", "context",
        "contribution", "errors", "events", "fragment", "group", "index", "last_error", "logged",
        "missing", "name", "nested", "off", "plugin", "process", "raw_call", "raw_events",
        "raw_return", "record_call", "return_type", "simple", "spec", "subtype", "superseded_by",
        "types", "wants", "want_call", "want_return",
    )

    def __init__(self, contribution: Contribution[TraceProcessor], index: int) -> None:
        spec = contribution.spec
        self.contribution = contribution
        self.spec = spec
        self.index = index
        self.name: str = spec.name
        self.plugin: str = contribution.plugin
        self.co_names: frozenset[str] = frozenset(spec.co_names)
        self.fragment: str = spec.path_fragment.replace("\\", "/")
        self.call = spec.call
        self.process = spec.process
        self.subtype = spec.subtype
        self.call_type: str = spec.call_type
        self.return_type: str = spec.return_type
        #: one event per call, built off the traced thread (TraceProcessor.record == "call")
        self.record_call: bool = spec.record == "call"
        self.capture = spec.capture
        self.build_fn = spec.build
        self.group: str | None = spec.group
        self.simple: bool = (
            _FAST_EVENTS and spec.call is None and spec.process is None and not self.record_call
        )
        self.wants: frozenset[str] = frozenset(("call", "return", "unwind") if self.record_call else spec.events)
        self.want_call: bool = "call" in self.wants
        self.want_return: bool = "return" in self.wants
        self.types: dict[str, str] = {event: spec.type_for(event) for event in _RETURN_SIDE | {"call"}}
        self.context: dict[str, Any] = {}
        self.calls = 0
        self.events = 0
        self.errors = 0
        self.consecutive = 0
        self.last_error: str | None = None
        self.logged = False
        self.off = False
        self.missing: str | None = None
        #: calls of this processor made inside another call of its group (not recorded)
        self.nested = 0
        #: the processor that records this one's calls instead (see hostapp.tracing.superseded)
        self.superseded_by: str | None = None
        # set by the engine for a simple processor when its events can be deferred to the
        # bus (EventBus.raw_emitter): called with a raw item instead of an Event
        self.raw_call: Callable[[tuple[Any, ...]], None] | None = None
        self.raw_return: Callable[[tuple[Any, ...]], None] | None = None
        # with a bus, for every processor: event name -> raw emitter of its type (the
        # events of processors with call/process are built on the sink's thread too)
        self.raw_events: dict[str, Callable[[tuple[Any, ...]], None]] | None = None

    def describe(self) -> str:
        """``"trace processor 'x' (plugin 'p')"``, for messages."""
        return f"trace processor {self.name!r} ({self.contribution.describe()})"

    def applicable(self) -> bool:
        """Whether every module in ``requires`` is installed (no import: ``find_spec``).

        A processor that is not applicable is switched off and :attr:`missing` names the
        first missing module; that is not an error.
        """
        import importlib.util

        for module in self.spec.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                self.missing = module
                self.off = True
                return False
        return True

    def build(self, config: Any) -> None:
        """Call ``build_context(config)`` once; a failure switches the processor off.

        A processor that is not :meth:`applicable` is skipped (no ``build_context``)."""
        if not self.applicable():
            return
        factory = self.spec.build_context
        if factory is None:
            return
        try:
            context = factory(config)
            if not isinstance(context, dict):
                raise TypeError(f"build_context() returned {type(context).__name__}, expected a dict")
        except Exception as exc:
            self.errors += 1
            self.last_error = f"build_context: {type(exc).__name__}: {exc}"
            self.logged = True
            self.off = True
            logger.warning(
                "%s: build_context(config) raised %s: %s; the processor is switched off for "
                "this run", self.describe(), type(exc).__name__, exc, exc_info=exc,
            )
            return
        self.context = context

    def needs_frame(self) -> bool:
        """Whether ``call`` or ``process`` will look at the frame (a call-record processor's
        ``capture`` gets the arguments, not the frame)."""
        return self.call is not None or self.process is not None

    def needs_args(self) -> bool:
        """Whether ``capture`` will look at the call's arguments."""
        return self.record_call and self.capture is not None

    def stats(self) -> dict[str, Any]:
        """``{"calls", "events", "nested", "errors", "disabled", "superseded_by",
        "last_error", "applicable", "not_applicable"}`` plus where it came from
        (``plugin``). ``not_applicable`` is the reason (``"requests is not installed"``) or
        ``None``; ``nested`` counts calls made inside another call of the processor's group
        (recorded by the outer call's processor, in its ``via``); ``superseded_by`` names the
        built-in processor that records this one's calls instead."""
        return {
            "applicable": self.missing is None,
            "not_applicable": None if self.missing is None else f"{self.missing} is not installed",
            "calls": self.calls,
            "events": self.events,
            "nested": self.nested,
            "errors": self.errors,
            "disabled": self.off and self.missing is None and self.superseded_by is None,
            "superseded_by": self.superseded_by,
            "last_error": self.last_error,
            "plugin": self.plugin,
        }


# -- library code ------------------------------------------------------------------------


def default_library_paths() -> list[str]:
    """The directories whose code is *library code* for the call site.

    The standard library, every ``site-packages`` this interpreter knows (system, venv,
    user) and hostapp's own packages. A call site is the nearest frame whose file is
    outside all of them.
    """
    paths: list[str] = []
    for scheme_path in ("stdlib", "platstdlib", "purelib", "platlib"):
        value = sysconfig.get_paths().get(scheme_path)
        if value:
            paths.append(value)
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        vars_ = {"base": prefix, "platbase": prefix, "installed_base": prefix, "installed_platbase": prefix}
        for scheme_path in ("stdlib", "platstdlib"):
            try:
                paths.append(sysconfig.get_path(scheme_path, vars=vars_))
            except KeyError:  # pragma: no cover - an unusual install scheme
                pass
    try:
        paths.extend(site.getsitepackages())
    except AttributeError:  # pragma: no cover - old virtualenv's site.py
        pass
    if site.ENABLE_USER_SITE and site.USER_SITE:
        paths.append(site.USER_SITE)
    paths.extend(_hostapp_dirs())
    return paths


def _prefixes(paths: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for path in paths:
        if not path:
            continue
        for variant in {os.path.abspath(path), os.path.realpath(path)}:
            variant = normalize_path(variant).rstrip("/") + "/"
            if variant not in out:
                out.append(variant)
    return tuple(out)


def _hostapp_dirs() -> list[str]:
    import hostapp

    hostapp_dir = os.path.dirname(os.path.abspath(hostapp.__file__))
    return [hostapp_dir, os.path.join(os.path.dirname(hostapp_dir), "hostapp_plugins")]


def _library_test(
    paths: Sequence[str], app_paths: Sequence[str] = (), library_fragments: Sequence[str] = (),
) -> Callable[[str], bool]:
    """``is_library(filename)``: whether a frame of that file is passed over when looking for
    the call site.

    Library code is the code under ``paths`` (the standard library, site-packages, hostapp).
    The program being run is never library code, even when it is installed there itself
    (``hostapp run -m pip``: pip lives in site-packages): files under an ``app_paths``
    directory that is inside a library directory count as the program's, except the libraries
    it carries along (a path containing one of ``library_fragments``, the directories of the
    processors' libraries: ``pip/_vendor/requests/``). hostapp's own code is always library.
    """
    prefixes = _prefixes(paths)
    own = _prefixes(_hostapp_dirs())
    apps = tuple(a for a in _prefixes(app_paths) if a.startswith(prefixes))
    fragments = tuple(library_fragments)

    def is_library(filename: str) -> bool:
        if filename.startswith("<"):
            return filename.startswith("<frozen")
        norm = normalize_path(filename)
        if not norm.startswith(prefixes):
            return False
        if apps and norm.startswith(apps) and not norm.startswith(own):
            return any(fragment in norm for fragment in fragments)
        return True

    return is_library


def library_fragments(runtimes: Iterable[ProcessorRuntime]) -> list[str]:
    """The directory parts of the path fragments of the group processors (the layered
    libraries: ``/requests/``, ``/urllib3/``, ``/http/``): a frame under one of them is the
    library's, not the program's, even inside the program's own tree (a vendored copy)."""
    out: list[str] = []
    for rt in runtimes:
        if rt.group is None:
            continue
        fragment = rt.fragment
        head = fragment.rpartition("/")[0]
        if head.strip("/"):
            piece = ("/" + head.strip("/") + "/")
            if piece not in out:
                out.append(piece)
    return out


# -- events ------------------------------------------------------------------------------


# The events module's builder: same slots as ``Event``, filled, then re-classed to
# ``Event`` (``Event.create`` without its argument handling and with our own clock
# reading, so that an event, its id and its ``data["timestamp_ns"]`` share one).
_EventBuilder = _record._EventBuilder


_threads = threading.local()
#: Every thread that made a traced call: ``(ident, {"ident", "name"})``; a thread's index
#: here is its ``_threads.t``, and what call records hold (an int: see make_dispatch).
_THREAD_TABLE: list[tuple[int, dict[str, Any]]] = []
_NO_THREAD: Final = (0, {})


def _thread_info() -> int:
    """This thread's index in :data:`_THREAD_TABLE`, or ``-1`` for a thread that is never
    traced. Made on the thread's first traced call and kept in a thread-local (so a thread
    that reuses a dead thread's ident gets its own entry and name).

    Never traced: hostapp's own threads (the event bus's sink workers, the host's loop
    thread: ``thread.hostapp_untraced = True``), whose calls - a webhook sink's HTTP
    requests, say - would otherwise be traced."""
    ident = threading.get_ident()
    current = threading.current_thread()
    if getattr(current, "hostapp_untraced", False):
        index = -1
    else:
        _THREAD_TABLE.append((ident, {"ident": ident, "name": current.name}))
        index = len(_THREAD_TABLE) - 1  # list.append and len under the GIL: no lock needed
        while _THREAD_TABLE[index][0] != ident:  # pragma: no cover - another thread appended too
            index -= 1
    _threads.t = index
    return index


def _thread_row(index: int) -> tuple[int, dict[str, Any]]:
    """``(ident, info)`` of a record's thread index (``-1``: none)."""
    return _THREAD_TABLE[index] if index >= 0 else _NO_THREAD


#: The record ``enter`` returns for a call on an untraced thread; ``leave`` ignores it.
_SKIP: Final = (0, 0, -1, -1)
#: A record's call site not worked out yet: the record is a list, its caller frame last.
_LAZY: Final = -2


def _exception_fields(exc: BaseException | None) -> dict[str, Any]:
    if exc is None:
        return {"exception_type": None, "exception_message": None}
    cls = type(exc)
    module = cls.__module__
    name = cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    try:
        message = str(exc)
    except Exception as err:  # a broken __str__ must not reach the traced program
        message = f"<str() failed: {type(err).__name__}>"
    return {"exception_type": name, "exception_message": message}


_FAST_EVENTS: Final = _record._FAST_CREATE and tuple(FIELDS) == (
    "id", "type", "subtype", "data", "timestamp_ns", "run_id", "pid", "thread_id", "source"
)


class Dispatch:
    """The call side and return side of a matched call, as two plain functions.

    Attributes:
        enter: ``enter(procs, frame, caller) -> record``: called when a selected call
            starts, with the processors that select its code, the frame handed to them
            and the frame the call site search starts from (the caller).
        leave: ``leave(record, procs, frame, event, arg)``: called for ``return``,
            ``unwind`` (``arg`` is the exception), ``yield``, ``resume``, ``throw``.
        on_disable: set by the backend; called with a processor that was switched off.
        internal_error: report an unexpected error of the engine itself (logged once).
    """

    __slots__ = ("__weakref__", "enter", "fast", "internal_error", "leave", "on_disable", "pid")

    def __init__(self) -> None:
        self.enter: Callable[..., tuple[Any, ...]]
        self.leave: Callable[..., None]
        self.on_disable: Callable[[ProcessorRuntime], None] = lambda rt: None
        self.internal_error: Callable[[BaseException], None]
        self.fast: FastPath
        self.pid = os.getpid()


class FastPath:
    """The pieces a backend inlines for a call selected by **one** processor whose
    events are deferred to the bus (no ``call``/``process``; ``raw_call``/``raw_return``
    set): the same records, ids and raw items as :class:`Dispatch` makes, without its two
    extra Python calls and its loop over processors.

    A backend's call side for such a call does, inline::

        thread = threads.t            # AttributeError: thread_info()
        if thread < 0: return         # hostapp's own threads are never traced
        site = sites.get(...) / call_site(caller)
        seq = next(lows)
        record = (seq, time_ns(), site, thread)
        rt.calls += 1
        if rt.want_call: rt.raw_call((call_key, rt.index, record, seq)); rt.events += 1

    and its return side ``rt.raw_return((return_key, rt.index, record, next(lows), time_ns()))``.

    Attributes:
        lows: the event-id sequence (``next(lows)``).
        time_ns: ``time.time_ns``.
        threads: the thread-local holding ``t``, the thread's index (``-1``: untraced).
        thread_info: makes and stores ``threads.t`` for the calling thread.
        sites: ``id(code) | f_lasti << 48 -> (code, site index)`` for user-code call sites.
        call_site: the full call-site search from a frame (a site index, ``-1``: none).
        call_key, return_key: the bus's keys (``item[0]``) of the raw items' builders.
        failed: ``failed(rt, where, exc, frame)``, the error accounting of the slow path.
    """

    __slots__ = (
        "call_key", "call_site", "failed", "lows", "return_key", "sites", "thread_info",
        "threads", "time_ns",
    )

    def __init__(self, **parts: Any) -> None:
        for name, value in parts.items():
            setattr(self, name, value)


_UNSET: Final = object()


def _only_group(procs: tuple[ProcessorRuntime, ...]) -> str | None:
    """The group every processor of ``procs`` is a call-record processor of, else ``None``."""
    groups = {rt.group if rt.record_call else None for rt in procs}
    if len(groups) == 1:
        return next(iter(groups))
    return None


def fast_processor(procs: tuple[ProcessorRuntime, ...]) -> ProcessorRuntime | None:
    """The processor of :class:`FastPath` when ``procs`` qualifies for it, else ``None``."""
    if len(procs) != 1:
        return None
    rt = procs[0]
    if rt.raw_call is None or rt.raw_return is None:
        return None
    return rt


def make_dispatch(
    emit: Callable[[Event], None],
    *,
    run_id: str | None,
    library_paths: Sequence[str],
    app_paths: Sequence[str] = (),
    max_errors: int,
    runtimes: Sequence[ProcessorRuntime] = (),
    raw_builder: Callable[[Callable[[tuple[Any, ...]], Event]], int] | None = None,
) -> Dispatch:
    """Build the :class:`Dispatch` for one engine (see the module docstring).

    A call record is ``(seq, ts, site, thread)``, four ints: the sequence number and
    ``time_ns()`` that make the ``frame_id``, the index of the call site in this
    dispatch's site table (``-1``: none) and the thread's index in the thread table.

    The common case - a processor without ``call``/``process``, whose runtime has
    ``raw_call``/``raw_return`` (set by the engine from ``EventBus.raw_emitter``) - hands the
    bus a small tuple and lets the sink's worker thread build the :class:`Event`: the id,
    the data dict and the event object are made off the traced thread. This is the
    per-call cost every backend pays on a matched call. The tuples hold only ints (the
    builder's key from ``raw_builder``, ``runtimes`` index, the record), so the garbage
    collector stops tracking them the first time it sees them: events waiting in a sink's
    queue cost the traced program nothing at its collections.
    """
    dispatch = Dispatch()
    time_ns = time.time_ns
    # Event ids have Event.create's layout: (time_ns << 64) | (sequence << 32) | node,
    # as 32 hex digits; the low 64 bits come from one counter stepping the sequence.
    node = int.from_bytes(os.urandom(4), "big")
    lows = itertools.count(node, 1 << 32)
    pack = struct.Struct(">QQ").pack  # (time_ns, low 64 bits) -> 16 bytes -> 32 hex digits
    is_library = _library_test(library_paths, app_paths, library_fragments(runtimes))
    library: dict[str, bool] = {}  # co_filename -> library code?
    threads = _threads
    thread_info = _thread_info
    fast = _FAST_EVENTS
    builder = _EventBuilder
    event_cls = Event
    create = Event.create
    internal_logged: list[BaseException] = []
    skip = _SKIP

    def internal_error(exc: BaseException) -> None:
        """A bug in the engine itself: logged once, never raised into the traced program."""
        if not internal_logged:
            internal_logged.append(exc)
            logger.error("tracing: internal error (the traced program is not affected)", exc_info=exc)

    # id(code) | f_lasti << 48 -> (code, site index): the code object is kept (and
    # compared) so that a reused id cannot hit. Keys are ints: hashing a code object
    # hashes its whole contents, on every lookup, and a tuple key costs a tuple comparison
    # on every hit. The site table holds one dict per (file, line), shared by its events.
    sites: dict[int, tuple[Any, int]] = {}
    site_table: list[dict[str, Any]] = []
    site_ids: dict[tuple[str, int], int] = {}
    thread_row = _thread_row

    def call_site(frame: FrameType | None) -> int:
        """The site index of the first frame from ``frame`` up that is not library code
        (``-1``: none); the table holds ``{"file", "line"}``."""
        while frame is not None:
            code = frame.f_code
            filename = code.co_filename
            lib = library.get(filename)
            if lib is None:
                lib = library[filename] = is_library(filename)
            if not lib:
                key = id(code) | frame.f_lasti << 48
                hit = sites.get(key)
                if hit is not None and hit[0] is code:
                    return hit[1]
                if len(sites) > 100_000:
                    sites.clear()
                where = (filename, frame.f_lineno)
                index = site_ids.get(where)
                if index is None:
                    site_table.append({"file": where[0], "line": where[1]})
                    index = site_ids[where] = len(site_table) - 1
                sites[key] = (code, index)
                return index
            frame = frame.f_back
        return -1

    def resolve(record: list[Any]) -> None:
        """Work out a lazy record's call site now (on the traced thread, before its first
        event is handed on): the caller is still at the call, so its line is right."""
        try:
            record[2] = call_site(record[4])
        except Exception as exc:  # pragma: no cover - an engine bug
            record[2] = -1
            internal_error(exc)
        record[4] = None

    def site_of(record: tuple[Any, ...]) -> dict[str, Any] | None:
        index = record[2]
        return site_table[index] if index >= 0 else None

    def frame_id_of(record: tuple[Any, ...]) -> str:
        """The ``frame_id`` of a call record ``(seq, ts, site, thread)``: 32 hex digits."""
        return pack(record[1], record[0] & _M64).hex()

    def failed(rt: ProcessorRuntime, where: str, exc: BaseException, frame: FrameType | None) -> None:
        rt.errors += 1
        rt.consecutive += 1
        rt.last_error = f"{where}: {type(exc).__name__}: {exc}"
        if not rt.logged:
            rt.logged = True
            code = frame.f_code if frame is not None else None
            logger.warning(
                "%s raised in %s() for %s (%s); the traced program is not affected. "
                "Further errors are counted (TracingEngine.stats()), not logged; after %d "
                "in a row the processor is switched off for this run.",
                rt.describe(), where,
                code.co_qualname if code is not None else "?",
                f"{code.co_filename}:{frame.f_lineno}" if code is not None and frame is not None else "?",
                max_errors, exc_info=exc,
            )
        if rt.consecutive >= max_errors and not rt.off:
            rt.off = True
            logger.warning(
                "%s switched off for this run after %d consecutive errors; last: %s",
                rt.describe(), rt.consecutive, rt.last_error,
            )
            try:
                dispatch.on_disable(rt)
            except Exception as err:  # pragma: no cover - uninstrumenting is best effort
                internal_error(err)

    def build(
        meta: tuple[str, dict[str, str], str | None, str], event: str, data: dict[str, Any],
        ts: int, seq: int, thread_id: int,
    ) -> Event:
        """An :class:`Event` of the processor whose ``meta`` is ``(name, types, subtype,
        plugin)`` (the builder: same slots as ``Event``, re-classed)."""
        if fast:
            ev = builder()
            ev.id = pack(ts, seq & _M64).hex()
            ev.type = meta[1][event]
            ev.subtype = meta[2]
            ev.data = data
            ev.timestamp_ns = ts
            ev.run_id = run_id
            ev.pid = dispatch.pid
            ev.thread_id = thread_id
            ev.source = meta[3]
            ev.__class__ = event_cls  # type: ignore[assignment]
            return ev  # type: ignore[return-value]
        return create(  # pragma: no cover - see _FAST_EVENTS
            meta[1][event], meta[2], data=data, run_id=run_id, source=meta[3],
        )

    # What the sinks' threads read of each processor, apart from its runtime: the traced
    # thread writes the runtime's counters on every call, and a worker reading the same
    # object (its reference count, its slots) would pull those cache lines to its core.
    metas = [(rt.name, rt.types, rt.subtype, rt.plugin) for rt in runtimes]

    # Deferred events: for a processor without call/process, the traced thread hands the
    # bus a tuple (key, runtime index, record, event seq[, ts]); the sink's worker thread
    # builds the Event from it (same id, data and fields as the direct path builds).
    def base_data(meta: tuple[Any, ...], record: tuple[Any, ...], ts: int, thread: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        """The fields every event of a call starts with (``process`` output is merged over)."""
        return {
            "frame_id": frame_id_of(record), "timestamp_ns": ts, "thread": thread[1],
            "call_site": site_of(record), "processor": meta[0],
        }

    def materialize_call(item: tuple[Any, ...]) -> Event:
        meta, record = metas[item[1]], item[2]
        thread = thread_row(record[3])
        return build(meta, "call", base_data(meta, record, record[1], thread), record[1], item[3], thread[0])

    def materialize_return(item: tuple[Any, ...]) -> Event:
        meta, record, ts = metas[item[1]], item[2], item[4]
        thread = thread_row(record[3])
        data = base_data(meta, record, ts, thread)
        data["duration_ns"] = ts - record[1]
        return build(meta, "return", data, ts, item[3], thread[0])

    def materialize_event(item: tuple[Any, ...]) -> Event:
        # (key, runtime index, record, event, seq, ts, extra, process output)
        meta, record, event, ts = metas[item[1]], item[2], item[3], item[5]
        thread = thread_row(record[3])
        data = base_data(meta, record, ts, thread)
        if item[6] is not None:
            data.update(item[6])
        if item[7] is not None:
            data.update(item[7])
        return build(meta, event, data, ts, item[4], thread[0])

    # Call records (TraceProcessor.record == "call"): one event per call, made when the
    # call ends. The traced thread keeps what capture() returned and the result; the
    # data (build()) and the Event are made on the sink's thread from the raw item
    # (key, runtime index, record, end ts, captured, result, error, via).
    builders = [rt.build_fn for rt in runtimes]
    contexts = [rt.context for rt in runtimes]
    build_errors: dict[int, int] = {}

    def materialize_record(item: tuple[Any, ...]) -> Event | None:
        index, record, end = item[1], item[2], item[3]
        meta = metas[index]
        start = record[1]
        thread = thread_row(record[3])
        data: dict[str, Any] = {
            "duration_ns": end - start, "call_site": site_of(record),
            "thread_name": thread[1].get("name"), "span_id": "%016x" % (record[0] & _M64),
        }
        if item[7]:
            data["via"] = item[7]
        error = item[6]
        if error is not None:
            fields = _exception_fields(error)
            data["error"] = {"type": fields["exception_type"], "message": fields["exception_message"]}
        build_fn = builders[index]
        if build_fn is not None:
            try:
                out = build_fn(item[4], item[5], error, contexts[index])
            except Exception as exc:  # on the sink's thread: the call is still recorded
                out = {"build_error": f"{type(exc).__name__}: {exc}"}
                if index not in build_errors:
                    logger.warning(
                        "trace processor %r: build() raised %s: %s; its calls are recorded "
                        "without the data build() makes (further errors are not logged)",
                        meta[0], type(exc).__name__, exc, exc_info=exc,
                    )
                build_errors[index] = build_errors.get(index, 0) + 1
            if out is None:
                return None
            if "timestamp_ns" in out:
                out = dict(out)
                moved = out.pop("timestamp_ns")
                if type(moved) is int:
                    start = moved
                    data["duration_ns"] = end - start
            data.update(out)
        return build(meta, "call", data, start, record[0], thread[0])

    epoch = object()  # group states of this dispatch only (not of an engine stopped mid-call)
    group_var = _GROUP

    def call_enter(rt: ProcessorRuntime, frame: FrameType | None, args: Any) -> list[Any] | None:
        """The call side of a call-record processor: ``[captured, via, group, epoch,
        token, processor name]``, or ``None`` when the call is not recorded (nested in a call of the
        processor's group, or ``capture`` returned SKIP or raised)."""
        group = rt.group
        if group is not None:
            outer = group_var.get()
            if outer is not None and outer[3] is epoch and outer[2] == group:
                name = rt.name
                if name != outer[5]:  # the processor's own nested calls (redirects) are not "via"
                    via = outer[1]
                    if via is None:
                        outer[1] = [name]
                    elif name not in via:
                        via.append(name)
                rt.nested += 1
                return None
        captured = None
        if rt.capture is not None:
            if args is None:
                args = frame.f_locals if frame is not None else {}
            elif type(args) is tuple:  # (parameter names, values), from the trampoline
                args = dict(zip(*args))
            try:
                captured = rt.capture(args, rt.context)
            except Exception as exc:
                failed(rt, "capture", exc, frame)
                return None
            rt.consecutive = 0
            if captured is SKIP:
                return None
        state = [captured, None, group, epoch, None, rt.name]
        if group is not None:
            state[4] = group_var.set(state)
        return state

    def call_leave(
        rt: ProcessorRuntime, record: list[Any], frame: FrameType | None, ts: int, result: Any,
        error: BaseException | None,
    ) -> None:
        """The return side of a call-record processor: hand the call to the bus."""
        state = record[5].pop(rt.index, None)
        if state is None:
            return
        token = state[4]
        if token is not None:
            try:
                group_var.reset(token)
            except ValueError:  # ended in another context than it began in
                old = token.old_value
                group_var.set(None if old is contextvars.Token.MISSING else old)
        if rt.off:
            return
        if record[2] == _LAZY:
            resolve(record)
        item = (record_key, rt.index, record, ts, state[0], result, error, state[1])
        raw = rt.raw_events.get("call") if rt.raw_events is not None else None
        try:
            if raw is not None:
                raw(item)
            else:
                event = materialize_record(item)
                if event is not None:
                    emit(event)
        except Exception as exc:
            failed(rt, "emit", exc, frame)
            return
        rt.events += 1

    #: procs tuple -> the group all of them belong to, or None (see enter)
    group_of: dict[tuple[ProcessorRuntime, ...], str | None] = {}

    #: procs tuple -> (has a call-record processor, some processor's capture wants the args)
    proc_flags: dict[tuple[ProcessorRuntime, ...], tuple[bool, bool]] = {}

    def flags_of(procs: tuple[ProcessorRuntime, ...]) -> tuple[bool, bool]:
        found = proc_flags.get(procs)
        if found is None:
            found = proc_flags[procs] = (
                any(rt.record_call for rt in procs), any(rt.needs_args() for rt in procs),
            )
        return found

    call_key = raw_builder(materialize_call) if raw_builder is not None else -1
    return_key = raw_builder(materialize_return) if raw_builder is not None else -1
    event_key = raw_builder(materialize_event) if raw_builder is not None else -1
    record_key = raw_builder(materialize_record) if raw_builder is not None else -1  # type: ignore[arg-type]

    def fire(
        rt: ProcessorRuntime, record: tuple[Any, ...], frame: FrameType | None, event: str, arg: Any,
        ts: int, seq: int, extra: dict[str, Any] | None,
    ) -> None:
        """One event through ``call``/``process``; never raises.

        ``call`` and ``process`` run here (they need the frame). With a bus, the event's
        data and the :class:`Event` are made on the sink's thread (``materialize_event``)
        from a raw item holding what ``process`` returned; without one, here."""
        if rt.call is not None:
            try:
                ok = rt.call(frame, event, arg, rt.context)  # type: ignore[arg-type]
            except BaseException as exc:  # SystemExit too: the processor's error, not the program's
                failed(rt, "call", exc, frame)
                return
            if not ok:
                rt.consecutive = 0
                return
        if record[2] == _LAZY:
            resolve(record)
        out = None
        if rt.process is not None:
            try:
                out = rt.process(frame, event, arg, rt.context)  # type: ignore[arg-type]
                if out and type(out) is not dict:
                    out = dict(out)  # a mapping or pairs, as dict.update takes; checked here
            except BaseException as exc:  # SystemExit too: the processor's error, not the program's
                failed(rt, "process", exc, frame)
                return
        rt.consecutive = 0
        item = (event_key, rt.index, record, event, seq, ts, extra, out or None)
        raw = rt.raw_events.get(event) if rt.raw_events is not None else None
        try:
            if raw is not None:
                raw(item)
            else:
                emit(materialize_event(item))
        except Exception as exc:
            failed(rt, "emit", exc, frame)
            return
        rt.events += 1

    def enter(
        procs: tuple[ProcessorRuntime, ...], frame: FrameType | None, caller: FrameType | None,
        args: Any = None,
    ) -> tuple[Any, ...]:
        try:
            group = group_of.get(procs, _UNSET)
            if group is _UNSET:
                group = group_of[procs] = _only_group(procs)
            if group is not None:
                # every processor of this code is of one group: a call inside a call of
                # that group is only named in the outer record (no record, clock or site)
                outer = group_var.get()
                if outer is not None and outer[3] is epoch and outer[2] == group:
                    for rt in procs:
                        if rt.off:
                            continue
                        rt.calls += 1
                        rt.nested += 1
                        if rt.name != outer[5]:
                            via = outer[1]
                            if via is None:
                                outer[1] = [rt.name]
                            elif rt.name not in via:
                                via.append(rt.name)
                    return skip
            ts = time_ns()
            seq = next(lows)
            try:
                thread = threads.t
            except AttributeError:
                thread = thread_info()
            if thread < 0:
                return skip
            # the call site, inline for the common case (the caller is not library code);
            # a library caller means walking up the stack, done only when an event of
            # this call is made (see resolve): a call whose events the processors' call
            # filters all reject - http.client's getresponse under urllib3 - never walks
            record: Any
            if caller is not None:
                code = caller.f_code
                lib = library.get(code.co_filename)
                if lib is False:
                    hit = sites.get(id(code) | caller.f_lasti << 48)
                    site = hit[1] if hit is not None and hit[0] is code else call_site(caller)
                    record = (seq, ts, site, thread)
                else:
                    record = [seq, ts, _LAZY, thread, caller]
            else:
                record = (seq, ts, -1, thread)
            has_calls, wants_args = flags_of(procs)
            if has_calls:  # [seq, ts, site, thread, caller (lazy site), call-record states]
                record = [*record[:4], record[4] if len(record) == 5 else None, {}]
                if wants_args and args is None:
                    args = frame.f_locals if frame is not None else {}
            event_seq = seq  # the first call event's id is the frame_id
            for rt in procs:
                if rt.off:
                    continue
                rt.calls += 1
                if rt.record_call:
                    state = call_enter(rt, frame, args)
                    if state is not None:
                        record[5][rt.index] = state  # type: ignore[index]
                    continue
                if not rt.want_call:
                    continue
                if event_seq < 0:
                    event_seq = next(lows)
                raw = rt.raw_call
                if raw is not None:
                    if record[2] == _LAZY:
                        resolve(record)
                    try:
                        raw((call_key, rt.index, record, event_seq))
                    except Exception as exc:
                        failed(rt, "emit", exc, frame)
                    else:
                        rt.events += 1
                else:
                    fire(rt, record, frame, "call", None, ts, event_seq, None)
                event_seq = -1
            return record
        except Exception as exc:  # an engine bug: never into the traced program
            internal_error(exc)
            return (0, 0, -1, -2)  # not _SKIP: its return side is still run

    def leave(
        record: tuple[Any, ...], procs: tuple[ProcessorRuntime, ...], frame: FrameType | None,
        event: str, arg: Any,
    ) -> None:
        if record is skip:
            return
        try:
            ts = time_ns()
            calls = record[5] if type(record) is list and len(record) == 6 else None
            if event == "return":
                for rt in procs:
                    if rt.record_call:
                        if calls:
                            call_leave(rt, record, frame, ts, arg, None)  # type: ignore[arg-type]
                        continue
                    if rt.off or not rt.want_return:
                        continue
                    raw = rt.raw_return
                    if raw is not None:
                        if record[2] == _LAZY:
                            resolve(record)
                        try:
                            raw((return_key, rt.index, record, next(lows), ts))
                        except Exception as exc:
                            failed(rt, "emit", exc, frame)
                        else:
                            rt.events += 1
                    else:
                        fire(rt, record, frame, "return", arg, ts, next(lows), {"duration_ns": ts - record[1]})
                return
            if event == "unwind":
                extra: dict[str, Any] | None = {"duration_ns": ts - record[1], **_exception_fields(arg)}
            elif event == "throw":
                extra = _exception_fields(arg)
            else:
                extra = None
            for rt in procs:
                if rt.record_call:
                    if calls and event == "unwind":
                        call_leave(rt, record, frame, ts, None, arg)  # type: ignore[arg-type]
                    continue
                if rt.off or event not in rt.wants:
                    continue
                fire(rt, record, frame, event, arg, ts, next(lows), extra)
        except Exception as exc:  # an engine bug: never into the traced program
            internal_error(exc)

    dispatch.enter = enter
    dispatch.leave = leave
    dispatch.internal_error = internal_error
    dispatch.fast = FastPath(
        lows=lows, time_ns=time_ns, threads=threads, thread_info=thread_info, sites=sites,
        call_site=call_site, call_key=call_key, return_key=return_key,
        failed=failed,
    )
    ref = weakref.ref(dispatch)

    def after_fork_in_child() -> None:  # events made in a forked child carry its pid
        alive = ref()
        if alive is not None:
            alive.pid = os.getpid()

    os.register_at_fork(after_in_child=after_fork_in_child)
    return dispatch
