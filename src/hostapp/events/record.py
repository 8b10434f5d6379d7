"""The event record: what every emitter, sink and the store share.

An :class:`Event` is a small immutable record (``type``, ``subtype``, ``data``, when, where,
who) with a unique, time-ordered id (:func:`new_id`). A :class:`DeadLetter` is an event a
sink could not take; :class:`SinkError` is an exception a sink raised, as the bus records
it. :class:`RetryAfter` and :class:`PermanentError` are what a sink's ``handle`` raises to
steer the bus's retries.

This module is a leaf: it imports nothing of hostapp but :mod:`hostapp.errors`, so the
store (:mod:`hostapp.store`) and every sink can use it without the bus.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

__all__ = [
    "FIELDS",
    "DeadLetter",
    "Event",
    "PermanentError",
    "RetryAfter",
    "SinkError",
    "id_timestamp_ns",
    "new_id",
    "process_alive",
]

#: The fields of an :class:`Event`, in order (also the keys of :meth:`Event.to_dict`).
FIELDS: Final[tuple[str, ...]] = (
    "id", "type", "subtype", "data", "timestamp_ns", "run_id", "pid", "thread_id", "source",
)

_time_ns = time.time_ns
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

    def with_data(self, data: dict[str, Any]) -> Event:
        """This event with another ``data`` (same id and every other field): what a policy
        that rewrites data (redaction) returns, without touching the original."""
        if not _FAST_CREATE or type(self) is not Event:  # pragma: no cover - see _FAST_CREATE
            return type(self)(
                self.id, self.type, self.subtype, data, self.timestamp_ns, self.run_id, self.pid,
                self.thread_id, self.source,
            )
        event = _EventBuilder()
        event.id = self.id
        event.type = self.type
        event.subtype = self.subtype
        event.data = data
        event.timestamp_ns = self.timestamp_ns
        event.run_id = self.run_id
        event.pid = self.pid
        event.thread_id = self.thread_id
        event.source = self.source
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


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine (``kill(pid, 0)``).

    A process owned by another user counts as alive. Used to tell the runs, spilled events
    and reports of ended processes from those of running ones.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
