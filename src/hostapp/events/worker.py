"""One sink's worker: its bounded queue, batching, retries, spill and dead letters.

Everything here is private to the bus (:mod:`hostapp.events.bus`), except
:class:`SinkConfig` (what ``EventSink.open`` receives) and :data:`BUS_KEYS`:

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
  ``drop``. Every outcome is counted.
"""

from __future__ import annotations

import collections
import fnmatch
import inspect
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from hostapp.config import SINK_BUS_KEYS
from hostapp.errors import ConfigError
from hostapp.events.record import Event, RetryAfter, PermanentError

if TYPE_CHECKING:
    import asyncio

    from hostapp.config import Config
    from hostapp.events.bus import EventBus
    from hostapp.store import Store
    from hostapp.types import Contribution, EventSink

__all__ = ["BUS_KEYS", "SinkConfig", "sink_table"]

#: The bus's own diagnostics (the ``logging`` sink writes *events* to ``hostapp.events``).
logger = logging.getLogger("hostapp.bus")

_time_ns = time.time_ns
_monotonic = time.monotonic

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





def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- per-sink settings -------------------------------------------------------------------

#: Keys of ``[events.sinks.NAME]`` the bus reads itself (the rest is the sink's).
BUS_KEYS: Final[tuple[str, ...]] = SINK_BUS_KEYS


def sink_table(spec: EventSink, tables: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``[events.sinks.NAME]`` settings of a sink that runs, or ``None`` when it does not.

    A sink runs when its plugin is loaded, unless its table says ``enabled = false``; an
    ``opt_in`` sink runs only when it has a table (see :class:`~hostapp.types.EventSink`).

    Args:
        spec: the contributed sink.
        tables: the ``events.sinks`` configuration (name -> table).

    Returns:
        its table (``{}`` when it has none), or ``None``.
    """
    table = tables.get(spec.name)
    if table is None:
        return None if spec.opt_in else {}
    return None if table.get("enabled", True) is False else table


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
    ``taken + len(queue) + dropped + spilled``; ``discarded`` counts raw items that built
    no event (a call-record processor's ``build`` returned ``None``).
    """

    __slots__ = (
        "blocked", "bus", "contribution", "dead_lettered", "delivered", "dropped",
        "error", "failed", "flush_s", "handle", "in_flight", "last_delivered_ns",
        "last_log", "lock", "loop", "match", "max_block_s", "max_retries", "maxsize",
        "name", "not_full", "opened", "plugin", "policy", "queue", "redelivered",
        "requests", "retried", "settings", "spec", "spill_buf", "spill_lock", "spilled",
        "stalled", "state", "table", "taken", "thread", "unspilled", "waiters", "waiting",
        "wake", "wake_at", "batch_size", "backoff_s", "max_backoff_s", "last_drop_log",
        "spill_chunk", "fast_limit", "discarded", "batch",
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
        self.redelivered = self.blocked = self.discarded = 0
        #: the batch handle() has now (abandon_in_flight() keeps it when handle is stuck)
        self.batch: list[Event] | None = None

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
            except BaseException as exc:  # SystemExit too: the sink's failure, not the host's
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
        batch = self.bus._materialize(batch)
        if len(batch) != n:  # raw items that built no event (a processor discarded the call)
            with self.lock:
                self.discarded += n - len(batch)
                self.in_flight = len(batch)
        return batch

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
            except BaseException as exc:  # SystemExit too: the batch is retried, then kept
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
            self.batch = batch
            ok, error, attempts = self._attempt(batch)
            with self.lock:
                self.batch = None
                if self.state == "stuck":  # abandoned at stop: the batch is a dead letter already
                    return
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

    def abandon_in_flight(self, error: str) -> None:
        """Keep the batch a stuck ``handle()`` holds as dead letters (the bus's stop, once
        it gave up on the worker; were ``handle`` to return later, it is not counted twice)."""
        with self.lock:
            batch = self.batch
            if batch and self.in_flight:
                self.dead_letter(batch, error, 0, in_flight=True)

    def sweep(self, error: str) -> None:
        """Dead-letter everything still queued or spilled (worker at the end, or stop())."""
        store = self.bus._store
        with self.spill_lock, self.lock:
            queue = self.queue
            taken = [queue.popleft() for _ in range(len(queue))]
            rest = self.bus._materialize(taken)
            self.taken += len(taken)
            self.discarded += len(taken) - len(rest)
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
            except BaseException as exc:
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
            dead, in_flight, discarded = self.dead_lettered, self.in_flight, self.discarded
        return {
            "plugin": self.plugin,
            "state": self.state,
            "error": self.error,
            "event_types": list(self.spec.event_types),
            "accepted": taken + depth + dropped + spilled,
            "delivered": delivered,
            "dead_lettered": dead,
            "dropped": dropped,
            "discarded": discarded,
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

