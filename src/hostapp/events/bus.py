"""The event bus: routes events to every sink that accepts their type, nothing lost silently.

:class:`EventBus` moves events from whoever emits them to every
:class:`~hostapp.types.EventSink` that accepts their type:

* :meth:`EventBus.emit` is thread-safe, O(1) per accepting sink and does not take a lock
  on its fast path: it appends to each accepting sink's ``collections.deque`` and wakes
  that sink's worker only when the worker is asleep and has something to do.
* Each sink has its own worker (:mod:`hostapp.events.worker`): batching, retries with
  backoff, spill, dead letters.
* :func:`redeliver` sends the dead letters kept in a store again
  (``hostapp events redeliver``).

Importing this module is cheap: it does not import :mod:`sqlite3` or :mod:`asyncio`.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hostapp.errors import HostappError
from hostapp.events.record import DeadLetter, Event, SinkError, process_alive
from hostapp.events.redaction import RedactionPolicy
from hostapp.events.worker import _describe, _Request, _settings, _Worker, sink_table

if TYPE_CHECKING:
    from hostapp.config import Config
    from hostapp.store import Store
    from hostapp.types import Contribution, EventSink

__all__ = ["EventBus", "redeliver"]

#: The bus's own diagnostics (the ``logging`` sink writes *events* to ``hostapp.events``).
logger = logging.getLogger("hostapp.bus")

_time_ns = time.time_ns
_monotonic = time.monotonic

class EventBus:
    """Routes events to sinks, one worker thread and one bounded queue per sink.

    Which sinks run: every sink of ``sinks`` (a sink is on when its plugin is on), unless
    its ``[events.sinks.NAME]`` table says ``enabled = false``; an ``opt_in`` sink only
    with a table (:func:`~hostapp.events.worker.sink_table`). A table the configuration
    has (not a default one) that no plugin contributes a sink for is logged as a warning.

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
            configured = config.origin(f"events.sinks.{name}") != "default"  # not the default sqlite table
            if name not in contributed and configured and tables[name].get("enabled", True) is not False:
                logger.warning(
                    "[events.sinks.%s] is configured but no plugin contributes a sink named %r; "
                    "install or enable it, or remove the table",
                    name, name,
                )
        self._workers: list[_Worker] = []
        for contribution in sinks:
            table = sink_table(contribution.spec, tables)
            if table is None:
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
        self._builders: list[Callable[[tuple[Any, ...]], Event | None]] = []
        #: applied to every event of an HTTP type before any sink sees it
        self.redaction = RedactionPolicy.from_config(config)
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
                    overflow(worker, item)

            return emit_one

        def emit_many(item: tuple[Any, ...]) -> None:
            for worker in workers:
                queue = worker.queue
                if len(queue) < worker.fast_limit and not bus._closed:
                    queue.append(item)
                    if worker.waiting and len(queue) >= worker.wake_at:
                        worker.wake.set()
                else:
                    overflow(worker, item)

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

    def add_redaction(self, names: Iterable[str]) -> None:
        """Add header/parameter names to the redaction policy (a processor's ``redact``
        field): the defaults and the configured names are never removed."""
        self.redaction = self.redaction.extended(names)

    def _prepare(self, item: Any) -> Event | None:
        """The event of a queue item: a raw item built (``None`` when its builder made no
        event), then the redaction policy applied to the event types it covers."""
        event = self._builders[item[0]](item) if type(item) is tuple else item
        if event is not None and event.type in self.redaction.event_types:
            event = self.redaction.redact_event(event)
        return event

    def _materialize(self, batch: list[Any]) -> list[Event]:
        """``batch`` (raw items and events) as the events a sink receives (see :meth:`_prepare`);
        items that built no event are left out."""
        prepare = self._prepare
        types = self.redaction.event_types
        out: list[Event] = []
        append = out.append
        for item in batch:
            if type(item) is tuple or item.type in types:
                item = prepare(item)
                if item is None:
                    continue
            append(item)
        return out

    def _overflow(self, worker: _Worker, item: Any) -> None:
        event = self._prepare(item)
        if event is None:
            with worker.lock:
                worker.discarded += 1
            return
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
                if owner == self.owner or (pid and process_alive(pid)):
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
                    worker.abandon_in_flight(f"in handle() when the event bus stopped: {worker.error}")
                else:
                    worker.sweep("emitted while the event bus was stopping")
            self._stopped = True
        return self.stats()

    def abort(self) -> None:
        """Cut a running (or the next) :meth:`stop` short: the workers stop delivering and
        everything not delivered yet becomes a dead letter, counted (``hostapp run`` on a
        second Ctrl-C during its exit flush). Thread-safe."""
        self._abort.set()
        for worker in self._workers:
            worker.wake.set()

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
        * ``discarded``: raw items that built no event (a call-record processor's
          ``build`` returned ``None`` for a call: nothing was lost);
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

            accepted == delivered + dead_lettered + dropped + discarded
                        + queue_depth + spill_depth + in_flight

        After :meth:`stop` returns, ``queue_depth``, ``spill_depth`` and ``in_flight`` are 0
        (unless a sink was stuck in ``handle``), so
        ``accepted == delivered + dead_lettered + dropped + discarded``.

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
    # only the chosen sinks' tables: the others are configured, not missing
    tables = {n: t for n, t in (config.get("events.sinks") or {}).items() if n in {c.spec.name for c in chosen}}
    bus = EventBus(chosen, dataclasses.replace(config, data={**config.data, "events.sinks": tables}), store=store)
    results: dict[str, dict[str, Any]] = {}
    running = set(bus.sinks)
    for name in names:
        if pending.get(name) and name not in running:
            results[name] = {
                "redelivered": 0,
                "failed": pending[name],
                "error": f"event sink {name!r} is not installed, or is off (enabled = false in events.sinks)",
            }
    if not running:
        return results
    bus.start(timeout)
    try:
        results.update(bus.redeliver(timeout=timeout))
    finally:
        bus.stop(timeout)
    return results
