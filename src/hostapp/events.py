"""Events and the event bus: one worker and one bounded queue per sink, nothing lost silently.

An :class:`Event` is a small immutable record (``type``, ``subtype``, ``data``, when, where,
who). :class:`EventBus` moves events from whoever emits them to every
:class:`~hostapp.types.EventSink` that accepts their type:

* :meth:`EventBus.emit` is thread-safe, O(1) per accepting sink and does not take a lock
  on its fast path: it appends to each accepting sink's ``collections.deque`` and wakes
  that sink's worker only when the worker is asleep and has something to do.
* Each sink has its own worker **thread** (``hostapp-sink-NAME``, a daemon thread), so a
  slow or failing sink never holds up the others. The worker batches by size and by time,
  calls ``handle(batch)``, retries a failed batch with exponential backoff and jitter,
  then keeps what it could not deliver as *dead letters* (in the store, else in memory).
* ``open``, ``handle`` and ``close`` may be ``async def`` (or return an awaitable): the
  worker runs them to completion on an asyncio event loop of its own, created on first
  use on the worker's thread and closed after ``close``. A sink's async resources (client
  sessions, ...) therefore live on that loop, not on the host's loop.
* When a queue is full, ``events.full_policy`` applies: ``block`` (wait at most
  ``events.max_block_ms`` for room, then spill if there is a store, else drop), ``spill``
  (to the store's spill table, delivered by the worker once it has caught up) or
  ``drop``. Every outcome is counted: see :meth:`EventBus.stats` for the counters and the
  identity they obey.

Importing this module is cheap: it does not import :mod:`sqlite3` or :mod:`asyncio`.
"""

from __future__ import annotations

import collections
import fnmatch
import inspect
import itertools
import logging
import os
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

from hostapp.errors import ConfigError, HostappError

if TYPE_CHECKING:
    import asyncio

    from hostapp.config import Config
    from hostapp.store import Store
    from hostapp.types import Contribution, EventSink

__all__ = [
    "FIELDS",
    "DeadLetter",
    "Event",
    "EventBus",
    "PermanentError",
    "RetryAfter",
    "SinkConfig",
    "SinkError",
    "id_timestamp_ns",
    "new_id",
    "redeliver",
]

#: The bus's own diagnostics (the ``logging`` sink writes *events* to ``hostapp.events``).
logger = logging.getLogger("hostapp.bus")

#: The fields of an :class:`Event`, in order (also the keys of :meth:`Event.to_dict`).
FIELDS: Final[tuple[str, ...]] = (
    "id", "type", "subtype", "data", "timestamp_ns", "run_id", "pid", "thread_id", "source",
)

_time_ns = time.time_ns
_monotonic = time.monotonic
_get_ident = threading.get_ident

# -- event ids ---------------------------------------------------------------------------
#
# An id is 128 bits written as 32 lowercase hex digits: the 64-bit ``time.time_ns()`` of
# the event, a 32-bit per-process sequence number and a 32-bit random per-process node.
# Sorting ids as strings sorts them by time (then by emission order within a process);
# two processes collide only if they draw the same random node *and* emit in the same
# nanosecond with the same sequence number. Making one costs one ``%`` format.

_M32: Final = 0xFFFFFFFF
_seq = itertools.count()
_node = int.from_bytes(os.urandom(4), "big")
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _node, _pid
    _node = int.from_bytes(os.urandom(4), "big")
    _pid = os.getpid()


# A forked child gets a new node (so its ids cannot repeat the parent's) and its own pid
# (cached because ``os.getpid()`` is a system call on every emit otherwise).
os.register_at_fork(after_in_child=_after_fork_in_child)


def new_id(timestamp_ns: int | None = None) -> str:
    """A new unique, time-ordered id: 32 hex digits (see the module source for the layout).

    Args:
        timestamp_ns: the time to put in the id, ns since the epoch (default: now).
    """
    ts = _time_ns() if timestamp_ns is None else timestamp_ns
    return "%032x" % ((ts << 64) | ((next(_seq) & _M32) << 32) | _node)


def id_timestamp_ns(event_id: str) -> int:
    """The ``time.time_ns()`` value encoded in an id made by :func:`new_id`.

    Raises:
        ValueError: ``event_id`` is not 32 hex digits.
    """
    if len(event_id) != 32:
        raise ValueError(f"not a hostapp id (expected 32 hex digits): {event_id!r}")
    return int(event_id[:16], 16)


# -- the event ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One event: what happened (``type``, ``subtype``, ``data``), when, where and who.

    Make events with :meth:`Event.create`, which fills in the id, the time, the process
    and the thread. Events are immutable; ``data`` is a plain dict that must not be
    changed after the event is emitted. Two events are equal when all fields are; the
    hash is the id's.

    Attributes:
        id: unique and time-ordered, 32 hex digits (:func:`new_id`). Receivers of an
            at-least-once sink (the webhook) de-duplicate by it.
        type: the event type sinks subscribe to (``"monitoring_event"``,
            ``"outbound_http_request"``).
        subtype: a finer kind within the type (``"urllib"``, ``"heartbeat"``), or ``None``.
        data: a JSON-serialisable dict. Values JSON cannot encode are stored by the
            built-in sinks as their ``repr()``.
        timestamp_ns: when the event was created, ``time.time_ns()`` (ns since the epoch).
        run_id: the run the event belongs to (``hostapp runs``), or ``None``.
        pid: the id of the process that created the event.
        thread_id: ``threading.get_ident()`` of the thread that created the event.
        source: the name of the plugin that emitted it, or ``None`` (the application).

    Raises:
        ValueError: on direct construction, ``type`` is not a non-empty string or
            ``data`` is not a dict.
    """

    id: str
    type: str
    subtype: str | None
    data: dict[str, Any]
    timestamp_ns: int
    run_id: str | None
    pid: int
    thread_id: int
    source: str | None

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type:
            raise ValueError(f"Event.type: expected a non-empty string, got {self.type!r}")
        if not isinstance(self.data, dict):
            raise ValueError(f"Event.data: expected a dict, got {type(self.data).__name__}")

    def __hash__(self) -> int:
        return hash(self.id)

    @classmethod
    def create(
        cls,
        type: str,
        subtype: str | None = None,
        *,
        data: dict[str, Any] | None = None,
        run_id: str | None = None,
        source: str | None = None,
    ) -> Event:
        """A new event stamped with a new id, ``time.time_ns()``, this pid and thread.

        This is the hot path of every emitter, so it does not validate its arguments:
        ``type`` must be a non-empty string and ``data`` a dict (not copied).

        Args:
            type: the event type.
            subtype: the subtype, or ``None``.
            data: the payload (default: a new empty dict).
            run_id: the run it belongs to.
            source: the emitting plugin's name.
        """
        ts = _time_ns()
        if cls is not Event or not _FAST_CREATE:
            return cls(
                new_id(ts), type, subtype, {} if data is None else data, ts, run_id, _pid,
                _get_ident(), source,
            )
        event = _EventBuilder()
        event.id = "%032x" % ((ts << 64) | ((next(_seq) & _M32) << 32) | _node)
        event.type = type
        event.subtype = subtype
        event.data = {} if data is None else data
        event.timestamp_ns = ts
        event.run_id = run_id
        event.pid = _pid
        event.thread_id = _get_ident()
        event.source = source
        event.__class__ = Event  # type: ignore[assignment]
        return event  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a new dict (``data`` is the same dict object, not a copy)."""
        return {
            "id": self.id,
            "type": self.type,
            "subtype": self.subtype,
            "data": self.data,
            "timestamp_ns": self.timestamp_ns,
            "run_id": self.run_id,
            "pid": self.pid,
            "thread_id": self.thread_id,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        """The event described by ``raw`` (as made by :meth:`to_dict`, or parsed from JSON).

        ``id``, ``type`` and ``timestamp_ns`` are required; ``subtype``, ``run_id`` and
        ``source`` default to ``None``, ``data`` to ``{}``, ``pid`` and ``thread_id`` to 0.
        Unknown keys are ignored.

        Raises:
            ValueError: a required key is missing or a value has the wrong type.
        """
        missing = [key for key in ("id", "type", "timestamp_ns") if raw.get(key) is None]
        if missing:
            raise ValueError(f"Event.from_dict: missing required key(s) {missing}")
        timestamp_ns = raw["timestamp_ns"]
        if isinstance(timestamp_ns, bool) or not isinstance(timestamp_ns, int):
            raise ValueError(f"Event.timestamp_ns: expected an integer, got {timestamp_ns!r}")
        data = raw.get("data")
        return cls(
            id=str(raw["id"]),
            type=raw["type"],
            subtype=raw.get("subtype"),
            data={} if data is None else data,
            timestamp_ns=timestamp_ns,
            run_id=raw.get("run_id"),
            pid=int(raw.get("pid") or 0),
            thread_id=int(raw.get("thread_id") or 0),
            source=raw.get("source"),
        )


class _EventBuilder:
    """Same slots as :class:`Event`, but assignable: ``Event.create`` fills one and then
    sets its ``__class__`` to ``Event`` (a frozen dataclass's ``__init__`` goes through
    ``object.__setattr__`` per field, which costs twice as much)."""

    __slots__ = Event.__slots__

    if TYPE_CHECKING:
        id: str
        type: str
        subtype: str | None
        data: dict[str, Any]
        timestamp_ns: int
        run_id: str | None
        pid: int
        thread_id: int
        source: str | None


def _check_fast_create() -> bool:
    try:
        probe = _EventBuilder()
        for name in FIELDS:
            setattr(probe, name, None)
        probe.__class__ = Event  # type: ignore[assignment]
    except TypeError:  # pragma: no cover - a Python whose layouts differ: use __init__
        return False
    return True


_FAST_CREATE: Final[bool] = _check_fast_create()


# -- what sinks raise and receive --------------------------------------------------------


class RetryAfter(Exception):
    """Raised by a sink's ``handle`` to ask for a retry no sooner than ``delay_s`` seconds.

    The bus waits exactly ``delay_s`` (no jitter, not capped by
    ``events.retry_max_backoff_ms``; a stop still ends the wait) before the next attempt.
    It counts as a failed attempt towards ``max_retries``. The webhook sink raises it for
    HTTP 429/503 with a ``Retry-After`` header.

    Args:
        delay_s: seconds to wait before retrying, >= 0.
        message: what happened (shown in errors and dead letters).
    """

    def __init__(self, delay_s: float, message: str | None = None) -> None:
        self.delay_s = max(0.0, float(delay_s))
        super().__init__(message or f"retry after {self.delay_s:g} s")


class PermanentError(Exception):
    """Raised by a sink's ``handle`` when retrying cannot help (a 400 from a server, ...).

    The bus dead-letters the batch at once, without retries. ``hostapp events redeliver``
    can still send it again later (after the configuration is fixed, say).
    """


class SinkConfig(dict[str, Any]):
    """The ``[events.sinks.NAME]`` table passed to ``EventSink.open``, with context.

    It is a plain ``dict`` of the table (a copy), plus three attributes for sinks that
    need more than their own table:

    Attributes:
        name: the sink's name.
        config: the host's :class:`~hostapp.config.Config` (``config.root`` resolves
            relative paths), or ``None``.
        store: the bus's :class:`~hostapp.store.Store`, or ``None`` (the ``sqlite`` sink
            shares it when the paths are the same file).
    """

    __slots__ = ("config", "name", "store")

    def __init__(
        self,
        table: Mapping[str, Any] = (),  # type: ignore[assignment]
        *,
        name: str = "",
        config: Config | None = None,
        store: Store | None = None,
    ) -> None:
        super().__init__(table)
        self.name = name
        self.config = config
        self.store = store


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a sink could not take, kept so that it can be redelivered.

    Attributes:
        id: the row id in the store's ``dead_letters`` table (for in-memory dead letters, a
            number unique within the bus).
        sink: the sink's name.
        event: the event.
        error: the last error, ``"ExceptionType: message"``.
        attempts: how many ``handle`` calls failed for it (0 when it was never tried: the
            sink failed to open, or the bus stopped first).
        created_ns: when it became a dead letter, ``time.time_ns()``.
    """

    id: int
    sink: str
    event: Event
    error: str
    attempts: int
    created_ns: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the event as :meth:`Event.to_dict`)."""
        return {
            "id": self.id,
            "sink": self.sink,
            "event": self.event.to_dict(),
            "error": self.error,
            "attempts": self.attempts,
            "created_ns": self.created_ns,
        }


@dataclass(frozen=True, slots=True)
class SinkError:
    """An exception a sink raised, as recorded by the bus (``EventBus.errors``).

    Attributes:
        sink: the sink's name.
        plugin: the plugin that contributed it.
        stage: ``"open"``, ``"handle"``, ``"close"``, ``"dead_letter"``, ``"spill"`` or
            ``"worker"`` (a bug in the bus itself).
        error: ``"ExceptionType: message"``.
        traceback: the formatted traceback.
        timestamp_ns: when, ``time.time_ns()``.
    """

    sink: str
    plugin: str
    stage: str
    error: str
    traceback: str
    timestamp_ns: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


def _materialize(batch: list[Any], builders: list[Callable[[tuple[Any, ...]], Event]]) -> list[Event]:
    """Build the events of the raw items in ``batch`` (see :meth:`EventBus.raw_emitter`)."""
    for i, item in enumerate(batch):
        if type(item) is tuple:
            batch[i] = builders[item[0]](item)
    return batch


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- per-sink settings -------------------------------------------------------------------

#: Keys of ``[events.sinks.NAME]`` the bus reads itself (the rest is the sink's).
BUS_KEYS: Final[tuple[str, ...]] = (
    "enabled", "batch_size", "flush_interval_ms", "max_retries", "retry_backoff_ms",
    "retry_max_backoff_ms", "queue_size", "full_policy", "max_block_ms",
)


@dataclass(frozen=True, slots=True)
class _Settings:
    batch_size: int
    flush_s: float
    max_retries: int
    backoff_s: float
    max_backoff_s: float
    queue_size: int
    policy: str
    max_block_s: float


def _settings(spec: EventSink, table: Mapping[str, Any], config: Config) -> _Settings:
    """Resolve a sink's settings: its config table, then the spec, then ``events.*``."""
    name = spec.name

    def pick(key: str, spec_value: Any, kind: type, minimum: float) -> Any:
        if key in table:
            value = table[key]
            where = f"events.sinks.{name}.{key}"
            ok = isinstance(value, int) or (kind is float and isinstance(value, float))
            if isinstance(value, bool) or not ok:
                expected = "an integer" if kind is int else "a number"
                raise ConfigError(config.source, f"expected {expected}, got {value!r}", key=where)
            if value < minimum:
                raise ConfigError(config.source, f"must be >= {minimum}, got {value}", key=where)
            return value
        if spec_value is not None:
            return spec_value
        return config.get(f"events.{key}")

    policy = table.get("full_policy", config.get("events.full_policy"))
    if policy not in ("block", "spill", "drop"):
        raise ConfigError(
            config.source,
            f"expected one of block, spill, drop; got {policy!r}",
            key=f"events.sinks.{name}.full_policy",
        )
    return _Settings(
        batch_size=int(pick("batch_size", spec.batch_size, int, 1)),
        flush_s=float(pick("flush_interval_ms", spec.flush_interval_ms, float, 1)) / 1e3,
        max_retries=int(pick("max_retries", spec.max_retries, int, 0)),
        backoff_s=float(pick("retry_backoff_ms", None, float, 0)) / 1e3,
        max_backoff_s=float(pick("retry_max_backoff_ms", None, float, 0)) / 1e3,
        queue_size=int(pick("queue_size", None, int, 1)),
        policy=policy,
        max_block_s=float(pick("max_block_ms", None, float, 0)) / 1e3,
    )


def _matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    if "*" in patterns:
        return lambda event_type: True
    exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    globs = tuple(p for p in patterns if p not in exact)

    def match(event_type: str) -> bool:
        return event_type in exact or any(fnmatch.fnmatchcase(event_type, g) for g in globs)

    return match


# -- the worker --------------------------------------------------------------------------


class _Request:
    """A function to run on a worker's thread, with its result (``bus.redeliver``)."""

    __slots__ = ("done", "error", "function", "result")

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Worker:
    """One sink's queue, counters and thread. Everything here is private to the bus.

    Counters (ints) are written by the worker thread, except ``dropped`` and ``spilled``
    (written by emitters); all of them under ``lock`` where two change together, so that
    :meth:`snapshot` sees them add up. ``accepted`` is derived:
    ``taken + len(queue) + dropped + spilled``.
    """

    __slots__ = (
        "blocked", "bus", "contribution", "dead_lettered", "delivered", "dropped",
        "error", "failed", "flush_s", "handle", "in_flight", "last_delivered_ns",
        "last_log", "lock", "loop", "match", "max_block_s", "max_retries", "maxsize",
        "name", "not_full", "opened", "plugin", "policy", "queue", "redelivered",
        "requests", "retried", "settings", "spec", "spill_buf", "spill_lock", "spilled",
        "stalled", "state", "table", "taken", "thread", "unspilled", "waiters", "waiting",
        "wake", "wake_at", "batch_size", "backoff_s", "max_backoff_s", "last_drop_log",
        "spill_chunk", "fast_limit",
    )

    def __init__(
        self,
        bus: EventBus,
        contribution: Contribution[EventSink],
        table: Mapping[str, Any],
        settings: _Settings,
    ) -> None:
        spec = contribution.spec
        self.bus = bus
        self.contribution = contribution
        self.spec = spec
        self.name: str = spec.name
        self.plugin: str = contribution.plugin
        self.table = dict(table)
        self.settings = settings
        self.match = _matcher(spec.event_types)
        self.handle = spec.handle
        self.batch_size = settings.batch_size
        self.flush_s = settings.flush_s
        self.max_retries = settings.max_retries
        self.backoff_s = settings.backoff_s
        self.max_backoff_s = settings.max_backoff_s
        self.maxsize = settings.queue_size
        #: emit()'s lock-free path appends while len(queue) < fast_limit (see block()).
        self.fast_limit = settings.queue_size
        self.policy = settings.policy
        self.max_block_s = settings.max_block_s
        self.queue: collections.deque[Event] = collections.deque()
        # Re-entrant: an on_error listener may call bus.stats() from inside a sweep.
        self.lock = threading.RLock()
        self.not_full = threading.Condition(self.lock)
        self.spill_lock = threading.Lock()
        self.spill_buf: list[Event] = []
        self.wake = threading.Event()
        self.waiting = False
        self.wake_at = 1
        self.waiters = 0
        self.stalled = False
        self.requests: collections.deque[_Request] = collections.deque()
        self.opened = threading.Event()
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state = "new"
        self.error: str | None = None
        self.last_log = self.last_drop_log = 0.0
        self.last_delivered_ns = 0
        self.spill_chunk = max(self.batch_size, 1000)
        self.taken = self.unspilled = self.delivered = self.dead_lettered = 0
        self.dropped = self.spilled = self.retried = self.failed = self.in_flight = 0
        self.redelivered = self.blocked = 0

    # -- emitter side (any thread) ---------------------------------------------------

    def block(self, event: Event, wait: bool) -> bool:
        """Append under the lock, waiting (with ``wait``) at most ``max_block_s`` for room.

        Returns ``False`` when there was no room. While any emitter waits here,
        ``fast_limit`` is 0, so every emitter comes here too and the room the worker frees
        goes to those already waiting instead of to the lock-free fast path.
        """
        with self.not_full:
            queue = self.queue
            if len(queue) < self.maxsize:
                queue.append(event)
            elif not wait:
                return False
            else:
                self.blocked += 1
                deadline = _monotonic() + self.max_block_s
                bus = self.bus
                while len(queue) >= self.maxsize:
                    remaining = deadline - _monotonic()
                    if remaining <= 0 or self.stalled or bus._closed:
                        # Further overflow skips the wait until the worker takes events
                        # again, so a stuck sink costs one max_block per stall, not per emit.
                        self.stalled = True
                        return False
                    self.waiters += 1
                    self.fast_limit = 0
                    try:
                        self.not_full.wait(remaining)
                    finally:
                        self.waiters -= 1
                        if not self.waiters:
                            self.fast_limit = self.maxsize
                queue.append(event)
        if self.waiting:
            self.wake.set()
        return True

    def spill(self, event: Event, store: Store) -> None:
        """Put ``event`` in the spill buffer; write the buffer to the store when full."""
        with self.lock:
            self.spill_buf.append(event)
            self.spilled += 1
            full = len(self.spill_buf) >= self.spill_chunk
        # One emitter writes the buffer; the others go on filling it meanwhile (instead
        # of queueing up behind the write), and the next one to find it full writes it.
        if not full or not self.spill_lock.acquire(blocking=False):
            return
        try:
            with self.lock:
                chunk, self.spill_buf = self.spill_buf, []
            if not chunk:
                return
            try:
                store.add_spill(self.bus.owner, self.name, chunk)
            except Exception as exc:
                with self.lock:
                    self.spilled -= len(chunk)
                    self.dropped += len(chunk)
                self.bus._report(self, "spill", exc)
        finally:
            self.spill_lock.release()

    def drop(self, count: int, reason: str) -> None:
        """Count ``count`` dropped events and log it (at most once per 10 s per sink)."""
        with self.lock:
            self.dropped += count
            total = self.dropped
            now = _monotonic()
            log = now - self.last_drop_log >= 10.0 or total == count
            if log:
                self.last_drop_log = now
        if log:
            logger.warning(
                "event sink %r (plugin %r): dropped %d event(s) so far: %s",
                self.name, self.plugin, total, reason,
            )

    # -- worker side (the worker's thread) -------------------------------------------

    def run(self) -> None:
        """The worker thread: open, deliver batches until stopped and drained, close."""
        try:
            self._open()
            self.opened.set()
            while True:
                got = self._next()
                if got is None:
                    break
                batch, seqs = got
                self._deliver(batch, seqs)
        except BaseException as exc:  # a bug in the bus: report it, keep the events
            self.state = "crashed"
            self.error = f"worker crashed: {_describe(exc)}"
            self.bus._report(self, "worker", exc)
        finally:
            self.opened.set()
            self._finish()

    def _await(self, awaitable: Any) -> Any:
        loop = self.loop
        if loop is None:
            import asyncio

            loop = self.loop = asyncio.new_event_loop()

        async def wrapper() -> Any:
            return await awaitable

        return loop.run_until_complete(wrapper())

    def _open(self) -> None:
        self.state = "opening"
        opener = self.spec.open
        if opener is not None:
            bus = self.bus
            table = SinkConfig(self.table, name=self.name, config=bus._config, store=bus._store)
            try:
                result = opener(table)
                if result is not None and inspect.isawaitable(result):
                    self._await(result)
            except Exception as exc:
                self.state = "failed"
                self.error = f"open failed: {_describe(exc)}"
                self.bus._report(self, "open", exc)
                return
        self.state = "running"

    def _take(self) -> list[Event]:
        queue = self.queue
        with self.lock:
            n = min(len(queue), self.batch_size)
            pop = queue.popleft
            batch = [pop() for _ in range(n)]
            self.taken += n
            self.in_flight = n
            self.stalled = False
            if self.waiters:
                self.not_full.notify_all()
        return _materialize(batch, self.bus._builders)

    def _take_spilled(self) -> tuple[list[Event], list[int] | None]:
        store = self.bus._store
        with self.spill_lock:
            rows: list[tuple[int, Event]] = []
            if store is not None:
                try:
                    rows = store.peek_spill(self.bus.owner, self.name, self.batch_size)
                except Exception as exc:  # left in the table: read again later, or at stop
                    self.bus._report(self, "spill", exc)
            with self.lock:
                if rows:
                    batch = [event for _, event in rows]
                    seqs: list[int] | None = [seq for seq, _ in rows]
                else:
                    batch = self.spill_buf[: self.batch_size]
                    del self.spill_buf[: len(batch)]
                    seqs = None
                self.unspilled += len(batch)
                self.in_flight = len(batch)
        return batch, seqs

    def _next(self) -> tuple[list[Event], list[int] | None] | None:
        """The next batch, waiting for it; ``None`` when stopped and drained (or aborted)."""
        bus = self.bus
        queue = self.queue
        wake = self.wake
        batch_size = self.batch_size
        first_seen = 0.0
        while True:
            if self.requests:
                self._run_requests()
            if bus._abort.is_set():
                return None
            n = len(queue)
            stopping = bus._stopping
            if n >= batch_size:
                return self._take(), None
            # Less than a full batch in memory: spilled events (older than most of what
            # is queued now) go first, so they drain whenever the sink keeps up.
            spill_waiting = self.spilled > self.unspilled
            if spill_waiting:
                batch, seqs = self._take_spilled()
                if batch:
                    return batch, seqs
            if n and stopping:
                return self._take(), None
            timeout: float | None
            if n:
                now = _monotonic()
                if not first_seen:
                    first_seen = now
                elif now - first_seen >= self.flush_s:
                    return self._take(), None
                timeout = max(0.0, first_seen + self.flush_s - now)
                wake_at = batch_size
            else:
                first_seen = 0.0
                if spill_waiting:  # counted but not readable yet: look again soon
                    timeout, wake_at = 0.01, 1
                elif stopping:
                    return None
                else:
                    timeout, wake_at = None, 1
            wake.clear()
            self.wake_at = wake_at
            self.waiting = True
            if len(queue) < wake_at and not bus._stopping and not self.requests:
                wake.wait(timeout)
            self.waiting = False

    def _backoff(self, attempt: int, exc: Exception) -> float:
        if isinstance(exc, RetryAfter):
            return exc.delay_s
        delay = min(self.max_backoff_s, self.backoff_s * (2.0**attempt))
        return delay * (0.5 + random.random() / 2)  # "equal jitter": [delay/2, delay]

    def _attempt(self, batch: list[Event]) -> tuple[bool, str, int]:
        """Hand ``batch`` to the sink, retrying; ``(delivered, last error, failed calls)``."""
        bus = self.bus
        handle = self.handle
        attempt = 0
        while True:
            try:
                result = handle(batch)
                if result is not None and inspect.isawaitable(result):
                    self._await(result)
            except Exception as exc:
                self.failed += 1
                bus._report(self, "handle", exc)
                error = _describe(exc)
                if (
                    isinstance(exc, PermanentError)
                    or attempt >= self.max_retries
                    or bus._abort.is_set()
                ):
                    return False, error, attempt + 1
                if bus._abort.wait(self._backoff(attempt, exc)):
                    return False, error, attempt + 1
                self.retried += 1
                attempt += 1
            else:
                return True, "", attempt

    def _deliver(self, batch: list[Event], seqs: list[int] | None) -> None:
        if self.state == "failed":
            self.dead_letter(batch, self.error or "sink failed", 0, in_flight=True)
        else:
            ok, error, attempts = self._attempt(batch)
            if ok:
                with self.lock:
                    self.delivered += len(batch)
                    self.in_flight = 0
                    self.last_delivered_ns = _time_ns()
            else:
                self.dead_letter(batch, error, attempts, in_flight=True)
        if seqs:
            try:
                self.bus._store.delete_spill(seqs)  # type: ignore[union-attr]
            except Exception as exc:  # they may be delivered again: at-least-once
                self.bus._report(self, "spill", exc)

    def dead_letter(self, batch: list[Event], error: str, attempts: int, *, in_flight: bool) -> None:
        """Keep ``batch`` as dead letters (store, else memory) and count them.

        With ``in_flight`` the batch is the worker's in-flight batch (the worker thread);
        otherwise the caller holds ``lock`` and has already counted the events as taken.
        """
        if not batch:
            return
        self.bus._keep_dead_letters(self, batch, error, attempts)
        if in_flight:
            with self.lock:
                self.dead_lettered += len(batch)
                self.in_flight = 0
        else:
            self.dead_lettered += len(batch)
        logger.warning(
            "event sink %r (plugin %r): %d event(s) kept as dead letters after %d failed "
            "attempt(s): %s",
            self.name, self.plugin, len(batch), attempts, error,
        )

    def sweep(self, error: str) -> None:
        """Dead-letter everything still queued or spilled (worker at the end, or stop())."""
        store = self.bus._store
        with self.spill_lock, self.lock:
            queue = self.queue
            rest = _materialize([queue.popleft() for _ in range(len(queue))], self.bus._builders)
            self.taken += len(rest)
            self.dead_letter(rest, error, 0, in_flight=False)
            buffered, self.spill_buf = self.spill_buf, []
            self.unspilled += len(buffered)
            self.dead_letter(buffered, error, 0, in_flight=False)
            if store is not None and self.spilled > self.unspilled:
                try:
                    moved = store.spill_to_dead_letters(self.bus.owner, error, sink=self.name)
                except Exception as exc:
                    self.bus._report(self, "spill", exc)
                else:
                    self.unspilled += moved
                    self.dead_lettered += moved
            if self.waiters:
                self.not_full.notify_all()

    def _finish(self) -> None:
        bus = self.bus
        if bus._abort.is_set() or self.state == "crashed":
            self.sweep("not delivered before the event bus stopped (stop timeout)")
        if self.state not in ("failed", "crashed") and self.spec.close is not None:
            try:
                result = self.spec.close()
                if result is not None and inspect.isawaitable(result):
                    self._await(result)
            except Exception as exc:
                bus._report(self, "close", exc)
        if self.loop is not None:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()
                self.loop = None
        if self.state not in ("failed", "crashed"):
            self.state = "closed"
        self._run_requests()

    def _run_requests(self) -> None:
        while self.requests:
            request = self.requests.popleft()
            try:
                request.result = request.function()
            except BaseException as exc:
                request.error = exc
            request.done.set()

    def redeliver_now(self) -> dict[str, Any]:
        """Send this sink's dead letters again (on the worker's thread); delete delivered ones."""
        bus = self.bus
        result: dict[str, Any] = {"redelivered": 0, "failed": 0, "error": None}
        if self.state == "failed":
            result["error"] = self.error
            return result
        store = bus._store
        after = 0
        while True:
            if store is not None:
                letters = store.dead_letters(sink=self.name, limit=self.batch_size, after_id=after)
            else:
                letters = bus._memory_letters(self.name, self.batch_size, after)
            if not letters:
                break
            after = letters[-1].id
            ok, error, attempts = self._attempt([letter.event for letter in letters])
            ids = [letter.id for letter in letters]
            if ok:
                if store is not None:
                    store.delete_dead_letters(ids)
                else:
                    bus._forget_memory_letters(ids)
                result["redelivered"] += len(ids)
            else:
                if store is not None:
                    store.update_dead_letters(ids, error, attempts)
                result["failed"] += len(ids)
                result["error"] = error
                break  # the sink is still failing: leave the rest for later
        with self.lock:
            self.redelivered += result["redelivered"]
        return result

    def snapshot(self) -> dict[str, Any]:
        """The counters, read together under ``lock`` so that they add up."""
        with self.lock:
            depth = len(self.queue)
            taken, dropped, spilled = self.taken, self.dropped, self.spilled
            unspilled, delivered = self.unspilled, self.delivered
            dead, in_flight = self.dead_lettered, self.in_flight
        return {
            "plugin": self.plugin,
            "state": self.state,
            "error": self.error,
            "event_types": list(self.spec.event_types),
            "accepted": taken + depth + dropped + spilled,
            "delivered": delivered,
            "dead_lettered": dead,
            "dropped": dropped,
            "queue_depth": depth,
            "spill_depth": spilled - unspilled,
            "in_flight": in_flight,
            "spilled": spilled,
            "retried": self.retried,
            "failed": self.failed,
            "blocked": self.blocked,
            "redelivered": self.redelivered,
            "last_delivered_ns": self.last_delivered_ns or None,
        }


# -- the bus -----------------------------------------------------------------------------


class EventBus:
    """Routes events to sinks, one worker thread and one bounded queue per sink.

    Which sinks run: those of ``sinks`` that have a table in ``events.sinks`` (the
    default configuration has ``[events.sinks.sqlite]``) without ``enabled = false``.
    A configured name that no plugin contributes is logged as a warning.

    Settings per sink, first found wins: the sink's ``[events.sinks.NAME]`` table (keys
    ``batch_size``, ``flush_interval_ms``, ``max_retries``, ``retry_backoff_ms``,
    ``retry_max_backoff_ms``, ``queue_size``, ``full_policy``, ``max_block_ms``), then
    the :class:`~hostapp.types.EventSink` field of the same name (``batch_size``,
    ``flush_interval_ms``, ``max_retries``), then ``events.*``.

    Lifecycle: :meth:`start` -> :meth:`emit` ... -> :meth:`stop`. Events emitted before
    ``start`` wait in the queues; events emitted after ``stop`` are counted as dropped.
    A bus cannot be restarted.

    Args:
        sinks: the contributed sinks (``pm.collect("hostapp_event_sinks")``).
        config: the host configuration (``events.*`` keys).
        store: where dead letters and spilled events go; ``None`` keeps dead letters in
            memory (:meth:`dead_letters`) and turns ``spill`` into ``drop``.
        run_id: stamped on events made by :meth:`publish`.
        on_error: called with a :class:`SinkError` each time a sink raises (from the
            worker's thread; exceptions it raises are logged and ignored).

    Raises:
        ConfigError: a sink's table has an invalid bus key (names ``events.sinks.NAME.KEY``).

    Attributes:
        run_id: the run id given.
        owner: this bus's id in the store's spill table (``"<pid>-<random hex>"``).
        errors: the most recent 1,000 :class:`SinkError` records.
    """

    def __init__(
        self,
        sinks: Sequence[Contribution[EventSink]],
        config: Config,
        *,
        store: Store | None = None,
        run_id: str | None = None,
        on_error: Callable[[SinkError], None] | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self.run_id = run_id
        self.owner = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._on_error = on_error
        self.errors: collections.deque[SinkError] = collections.deque(maxlen=1000)
        tables: Mapping[str, Any] = config.get("events.sinks") or {}
        contributed = {c.spec.name for c in sinks}
        for name in tables:
            if name not in contributed and tables[name].get("enabled", True) is not False:
                logger.warning(
                    "[events.sinks.%s] is configured but no plugin contributes a sink named %r; "
                    "install or enable it, or remove the table",
                    name, name,
                )
        self._workers: list[_Worker] = []
        for contribution in sinks:
            table = tables.get(contribution.spec.name)
            if table is None or table.get("enabled", True) is False:
                continue
            settings = _settings(contribution.spec, table, config)
            self._workers.append(_Worker(self, contribution, table, settings))
        for worker in self._workers:
            if worker.policy == "spill" and store is None:
                logger.warning(
                    "event sink %r: full_policy = spill but the bus has no store; "
                    "a full queue drops events (counted)", worker.name,
                )
        self._routes: dict[str, tuple[_Worker, ...]] = {}
        #: raw_builder() keys -> the functions that build an Event from a raw item
        self._builders: list[Callable[[tuple[Any, ...]], Event]] = []
        self._memory: list[DeadLetter] = []
        self._memory_lock = threading.Lock()
        self._memory_ids = itertools.count(1)
        self._lifecycle = threading.Lock()
        self._started = False
        self._stopping = False
        self._closed = False
        self._stopped = False
        self._abort = threading.Event()

    # -- emitting --------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Queue ``event`` for every sink that accepts ``event.type``.

        Thread-safe, callable from any thread and from async code (it never awaits).
        O(1) per accepting sink; the routing of each event type is computed once and
        cached. Never blocks longer than ``max_block_ms`` per accepting sink, and only
        with ``full_policy = "block"`` when that sink's queue is full.

        Raises:
            TypeError: ``event.type`` is not a string (the first time that type is seen).
        """
        try:
            workers = self._routes[event.type]
        except KeyError:
            workers = self._route(event.type)
        for worker in workers:
            queue = worker.queue
            if len(queue) < worker.fast_limit:
                queue.append(event)
                if worker.waiting and len(queue) >= worker.wake_at:
                    worker.wake.set()
            else:
                self._overflow(worker, event)

    def raw_builder(self, build: Callable[[tuple[Any, ...]], Event]) -> int:
        """Register a builder of raw items and return its key (see :meth:`raw_emitter`).

        Args:
            build: ``build(item) -> Event``; it must give the same event (same ``id``)
                every time it is called for an item, must not raise, and must return an
                event of the type the item was emitted for.

        Returns:
            the key to put first in the raw items this function builds (an ``int``, so
            that an item made only of ints and strings is not tracked by the garbage
            collector once it has been seen by it: a queue of such items costs the
            traced program nothing at collection time).
        """
        self._builders.append(build)
        return len(self._builders) - 1

    def raw_emitter(self, event_type: str) -> Callable[[tuple[Any, ...]], None]:
        """A fast ``emit`` for events of one type whose :class:`Event` is built later.

        The returned function takes a *raw item*: a tuple whose first element is a key
        from :meth:`raw_builder`, and queues it like :meth:`emit` would queue the event,
        for every sink accepting ``event_type``. The event is built on each sink's
        worker thread when the batch is taken (or at once, on the emitting thread, when
        a queue is full), so the emitting thread pays for a tuple and a queue append
        only. The tracing engine uses this for its call and return events.

        Raises:
            TypeError: ``event_type`` is not a string.
        """
        workers = self._route(event_type) if event_type not in self._routes else self._routes[event_type]
        overflow = self._overflow
        builders = self._builders
        bus = self

        def emit_none(item: tuple[Any, ...]) -> None:
            return None

        if not workers:
            return emit_none
        if len(workers) == 1:
            [worker] = workers
            queue = worker.queue

            def emit_one(item: tuple[Any, ...]) -> None:
                if len(queue) < worker.fast_limit and not bus._closed:
                    queue.append(item)
                    if worker.waiting and len(queue) >= worker.wake_at:
                        worker.wake.set()
                else:
                    overflow(worker, builders[item[0]](item))

            return emit_one

        def emit_many(item: tuple[Any, ...]) -> None:
            for worker in workers:
                queue = worker.queue
                if len(queue) < worker.fast_limit and not bus._closed:
                    queue.append(item)
                    if worker.waiting and len(queue) >= worker.wake_at:
                        worker.wake.set()
                else:
                    overflow(worker, builders[item[0]](item))

        return emit_many

    def publish(
        self,
        type: str,
        subtype: str | None = None,
        *,
        data: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> Event:
        """Create an event with this bus's ``run_id`` (:meth:`Event.create`), emit it, return it."""
        event = Event.create(type, subtype, data=data, run_id=self.run_id, source=source)
        self.emit(event)
        return event

    def _route(self, event_type: str) -> tuple[_Worker, ...]:
        if not isinstance(event_type, str):
            raise TypeError(f"Event.type: expected a string, got {type(event_type).__name__}")
        workers = tuple(w for w in self._workers if w.match(event_type))
        if self._closed:
            for worker in workers:
                worker.drop(1, "emitted after the event bus stopped")
            return ()
        if len(self._routes) >= 10_000:  # an unbounded set of types: do not grow forever
            self._routes = {}
        self._routes[event_type] = workers
        return workers

    def _overflow(self, worker: _Worker, event: Event) -> None:
        policy = worker.policy
        if policy == "block" and not self._closed:
            wait = not worker.stalled and worker.max_block_s > 0
            if worker.block(event, wait):
                return
            policy = "spill"
        if self._closed:
            worker.drop(1, "emitted after the event bus stopped")
        elif policy == "spill" and self._store is not None:
            worker.spill(event, self._store)
        else:
            worker.drop(1, f"queue full ({worker.maxsize} events; full_policy = {worker.policy})")

    # -- lifecycle -------------------------------------------------------------------

    @property
    def sinks(self) -> list[str]:
        """The names of the running (enabled) sinks, in contribution order."""
        return [w.name for w in self._workers]

    def start(self, timeout: float | None = 10.0) -> None:
        """Start one worker thread per sink; each opens its sink, then delivers.

        Waits until every sink has opened (or failed to), at most ``timeout`` seconds; a
        sink still opening after that keeps opening in the background while events wait
        in its queue. A sink whose ``open`` raises is reported (:attr:`errors`,
        ``on_error``, the ``hostapp.bus`` logger), marked ``failed``, and its events
        become dead letters. Starting twice does nothing.

        Args:
            timeout: seconds to wait for the sinks to open; ``None`` waits for ever.

        Raises:
            HostappError: the bus was already stopped.
        """
        with self._lifecycle:
            if self._stopped or self._stopping:
                raise HostappError("this event bus was stopped; make a new EventBus")
            if self._started:
                return
            self._started = True
            self._recover_orphaned_spill()
            for worker in self._workers:
                worker.thread = threading.Thread(
                    target=worker.run, name=f"hostapp-sink-{worker.name}", daemon=True
                )
                worker.thread.hostapp_untraced = True  # type: ignore[attr-defined]  # never traced
                worker.thread.start()
        deadline = None if timeout is None else _monotonic() + timeout
        for worker in self._workers:
            remaining = None if deadline is None else max(0.0, deadline - _monotonic())
            if not worker.opened.wait(remaining):
                logger.warning("event sink %r is still opening after %s s", worker.name, timeout)

    async def astart(self, timeout: float | None = 10.0) -> None:
        """:meth:`start` from async code (the waiting happens in a thread)."""
        import asyncio

        await asyncio.to_thread(self.start, timeout)

    def _recover_orphaned_spill(self) -> None:
        store = self._store
        if store is None:
            return
        try:
            for owner in store.spill_owners():
                pid = int(owner.split("-", 1)[0]) if owner.split("-", 1)[0].isdigit() else 0
                if owner == self.owner or (pid and _process_alive(pid)):
                    continue
                moved = store.spill_to_dead_letters(
                    owner, f"spilled by process {pid or owner} which ended before delivering them"
                )
                if moved:
                    logger.warning(
                        "moved %d spilled event(s) of ended process %s to dead letters "
                        "(hostapp events redeliver sends them)", moved, pid or owner,
                    )
        except Exception:
            logger.exception("could not recover spilled events of ended processes")

    def stop(self, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """Drain every queue, close the sinks, dead-letter what is left; idempotent.

        The workers deliver everything queued and spilled (retrying as usual) until
        ``timeout`` seconds minus a grace period of ``min(0.5, timeout / 10)`` s. Then
        backoff waits are cut short: a batch still failing, and everything still queued
        or spilled, becomes a dead letter with error ``"not delivered before the event
        bus stopped (stop timeout)"``. A sink stuck inside ``handle`` is left running on
        its daemon thread (state ``"stuck"``, its batch counted as ``in_flight``) and is
        not closed. Each sink that finished is closed (``close()``) on its own thread.

        Args:
            timeout: seconds for the whole stop.

        Returns:
            :meth:`stats` after the stop.
        """
        with self._lifecycle:
            if self._stopped:
                return self.stats()
            self._stopping = True
            deadline = _monotonic() + max(0.0, timeout)
            grace = min(0.5, max(0.0, timeout) / 10)
            for worker in self._workers:
                worker.wake.set()
            for worker in self._workers:
                if worker.thread is not None:
                    worker.thread.join(max(0.0, deadline - grace - _monotonic()))
            if any(w.thread is not None and w.thread.is_alive() for w in self._workers):
                self._abort.set()
                for worker in self._workers:
                    worker.wake.set()
                    if worker.thread is not None:
                        worker.thread.join(max(0.0, deadline - _monotonic()))
            self._closed = True
            self._routes = {}
            for worker in self._workers:
                with worker.not_full:
                    worker.not_full.notify_all()
                if worker.thread is None:
                    worker.sweep("the event bus was stopped before it started")
                    worker.state = "closed" if worker.state == "new" else worker.state
                elif worker.thread.is_alive():
                    worker.state = "stuck"
                    worker.error = f"handle() did not return within the stop timeout ({timeout} s)"
                    logger.error("event sink %r (plugin %r): %s", worker.name, worker.plugin, worker.error)
                    worker.sweep("not delivered before the event bus stopped (stop timeout)")
                else:
                    worker.sweep("emitted while the event bus was stopping")
            self._stopped = True
        return self.stats()

    async def astop(self, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """:meth:`stop` from async code (the draining happens in a thread)."""
        import asyncio

        return await asyncio.to_thread(self.stop, timeout)

    # -- counters, errors, dead letters ------------------------------------------------

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-sink state and counters, by sink name.

        Counters (events unless said otherwise):

        * ``accepted``: events routed to the sink by :meth:`emit` (whatever happened next);
        * ``delivered``: events in batches ``handle`` returned for;
        * ``dead_lettered``: events kept as dead letters (store, else memory);
        * ``dropped``: events discarded: queue full under ``drop`` (or ``block``/``spill``
          with no store), or emitted after :meth:`stop`;
        * ``queue_depth``: events waiting in the memory queue now;
        * ``spill_depth``: spilled events waiting in the spill buffer or table now;
        * ``in_flight``: events in the batch the worker is handling (or retrying) now;
        * ``spilled``: events ever written to the spill buffer/table (they are also in one
          of the other counters: ``spill_depth`` or, once taken back, the outcome);
        * ``retried``: batch retries; ``failed``: ``handle`` calls that raised;
        * ``blocked``: :meth:`emit` calls that had to wait for room;
        * ``redelivered``: dead letters delivered by :meth:`redeliver` (not part of the
          identity: they were counted as dead letters when they failed).

        The identity, exact for every snapshot (the counters are read under the
        sink's lock)::

            accepted == delivered + dead_lettered + dropped
                        + queue_depth + spill_depth + in_flight

        After :meth:`stop` returns, ``queue_depth``, ``spill_depth`` and ``in_flight`` are 0
        (unless a sink was stuck in ``handle``), so
        ``accepted == delivered + dead_lettered + dropped``.

        Also: ``plugin``, ``state`` (``new``, ``opening``, ``running``, ``failed``,
        ``closed``, ``stuck``, ``crashed``), ``error`` (the reason of a failed state),
        ``event_types`` and ``last_delivered_ns`` (``time.time_ns()`` of the last
        delivered batch, or ``None``).
        """
        return {w.name: w.snapshot() for w in self._workers}

    def _report(self, worker: _Worker, stage: str, exc: BaseException) -> None:
        record = SinkError(
            sink=worker.name,
            plugin=worker.plugin,
            stage=stage,
            error=_describe(exc),
            traceback="".join(traceback.format_exception(exc)),
            timestamp_ns=_time_ns(),
        )
        self.errors.append(record)
        if stage == "handle":
            now = _monotonic()
            if now - worker.last_log >= 1.0:
                worker.last_log = now
                logger.warning(
                    "event sink %r (plugin %r) failed to handle a batch (will retry or "
                    "dead-letter): %s", worker.name, worker.plugin, record.error,
                )
        else:
            logger.error(
                "event sink %r (plugin %r) failed at %s: %s",
                worker.name, worker.plugin, stage, record.error,
            )
        if self._on_error is not None:
            try:
                self._on_error(record)
            except Exception:
                logger.exception("on_error listener raised")

    def _keep_dead_letters(self, worker: _Worker, batch: list[Event], error: str, attempts: int) -> None:
        store = self._store
        if store is not None:
            try:
                store.add_dead_letters(worker.name, batch, error, attempts=attempts)
                return
            except Exception as exc:
                self._report(worker, "dead_letter", exc)
        now = _time_ns()
        with self._memory_lock:
            self._memory.extend(
                DeadLetter(next(self._memory_ids), worker.name, event, error, attempts, now)
                for event in batch
            )

    def _memory_letters(self, sink: str, limit: int, after: int) -> list[DeadLetter]:
        with self._memory_lock:
            found = [d for d in self._memory if d.sink == sink and d.id > after]
        return found[:limit]

    def _forget_memory_letters(self, ids: Iterable[int]) -> None:
        gone = set(ids)
        with self._memory_lock:
            self._memory = [d for d in self._memory if d.id not in gone]

    def dead_letters(self, sink: str | None = None) -> list[DeadLetter]:
        """Dead letters of ``sink`` (default: every sink): the store's, then those kept in
        memory (no store, or the store failed), oldest first."""
        found: list[DeadLetter] = []
        if self._store is not None:
            found.extend(self._store.dead_letters(sink=sink))
        with self._memory_lock:
            found.extend(d for d in self._memory if sink is None or d.sink == sink)
        return found

    def redeliver(self, sink: str | None = None, *, timeout: float | None = 60.0) -> dict[str, dict[str, Any]]:
        """Send dead letters again through their (running) sink; delete the delivered ones.

        Runs on each sink's own worker thread, between batches, with the usual retries.
        A chunk that still fails keeps its dead letters (``attempts`` and ``error``
        updated) and ends that sink's redelivery.

        Args:
            sink: only this sink (default: every running sink).
            timeout: seconds to wait for each sink; ``None`` waits for ever.

        Returns:
            ``{sink: {"redelivered": n, "failed": n, "error": str | None}}``.

        Raises:
            HostappError: the bus is not running, ``sink`` is not one of its sinks, or a
                sink did not finish within ``timeout``.
        """
        if not self._started or self._stopping:
            raise HostappError("the event bus is not running; start() it first")
        workers = [w for w in self._workers if sink is None or w.name == sink]
        if sink is not None and not workers:
            raise HostappError(f"no running event sink named {sink!r}; running: {self.sinks}")
        requests = []
        for worker in workers:
            request = _Request(worker.redeliver_now)
            worker.requests.append(request)
            worker.wake.set()
            requests.append((worker, request))
        results: dict[str, dict[str, Any]] = {}
        for worker, request in requests:
            if not request.done.wait(timeout):
                raise HostappError(f"event sink {worker.name!r} did not finish redelivery in {timeout} s")
            if request.error is not None:
                raise request.error
            results[worker.name] = request.result
        return results


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def redeliver(
    store: Store,
    sinks: Sequence[Contribution[EventSink]],
    config: Config,
    sink: str | None = None,
    *,
    timeout: float = 60.0,
) -> dict[str, dict[str, Any]]:
    """Send the dead letters in ``store`` again (``hostapp events redeliver``).

    Starts a bus with the configured ``sinks`` (opening them), redelivers through each
    one that has dead letters, deletes the delivered dead letters and stops the bus.

    Args:
        store: the store holding the dead letters.
        sinks: the contributed sinks (``pm.collect("hostapp_event_sinks")``).
        config: the host configuration.
        sink: only this sink's dead letters (default: every sink's).
        timeout: seconds for each sink's redelivery and for the stop.

    Returns:
        ``{sink: {"redelivered": n, "failed": n, "error": str | None}}`` for each sink
        that had dead letters; a sink with dead letters that is not configured or not
        installed gets ``"error"`` saying so.

    Raises:
        HostappError: ``sink`` names no sink with dead letters or configuration.
    """
    pending = store.dead_letter_counts()
    names = [sink] if sink is not None else sorted(pending)
    if sink is not None and sink not in pending and sink not in {c.spec.name for c in sinks}:
        raise HostappError(f"no event sink or dead letters named {sink!r}")
    chosen = [c for c in sinks if c.spec.name in names and pending.get(c.spec.name)]
    bus = EventBus(chosen, config, store=store)
    results: dict[str, dict[str, Any]] = {}
    running = set(bus.sinks)
    for name in names:
        if pending.get(name) and name not in running:
            results[name] = {
                "redelivered": 0,
                "failed": pending[name],
                "error": f"event sink {name!r} is not installed or not enabled in events.sinks",
            }
    if not running:
        return results
    bus.start(timeout)
    try:
        results.update(bus.redeliver(timeout=timeout))
    finally:
        bus.stop(timeout)
    return results
