"""The background-task supervisor: runs, restarts, reports and stops ``BackgroundTask``s.

A :class:`TaskSupervisor` is made by the host at start, after ``hostapp_startup`` (see
:mod:`hostapp.host` for the order), from the ``hostapp_background_tasks()``
contributions. Every task gets a supervising :class:`asyncio.Task` on ``host.loop``;
that coroutine runs the task's body, sleeps the backoff after a failure, waits the
``interval`` between iterations and keeps the task's :class:`TaskRecord`:

* an ``async def run(host)`` is awaited right there, on the host's loop;
* a plain ``run(host, stop_event)`` is handed to the task's own daemon thread
  (``hostapp-task-NAME``), which runs it (and a plain ``initialize``/``close``) while
  the coroutine waits for the result. Task threads are *not* marked
  ``hostapp_untraced``: the code a task runs is the application's and is traced like
  any other thread's (an async task is traced when the host runs on the caller's loop,
  ``async with Host()``, and not on the host's own ``hostapp-loop`` thread, which
  hostapp's tracing skips).

On every failure (``initialize`` or ``run`` raising, a stuck task at stop, ``close``
raising) the supervisor emits a ``background_task_failed`` event (data: ``task``,
``plugin``, ``phase``, ``error``, ``traceback``, ``attempt``, ``restarts``,
``next_retry_s``), logs a warning on the ``hostapp`` logger and writes the task's record
to the store (``Store.put_reports(run_id, "task", ...)``), which ``hostapp tasks`` reads
from another process. Routine changes (running <-> waiting of a periodic task) are
written at most once a second per task; every other state change at once.

Restart policy and backoff (the fields are documented on :class:`hostapp.BackgroundTask`)
follow systemd's ``Restart=on-failure|always|no`` and the usual doubling backoff with a
cap; stop follows asyncio's cancellation and a :class:`threading.Event` for threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from hostapp._bounded import describe_error
from hostapp.types import is_async_callable

if TYPE_CHECKING:
    from hostapp.host import Host
    from hostapp.types import BackgroundTask, Contribution

__all__ = ["FAILED_EVENT", "TASK_STATES", "TaskRecord", "TaskSupervisor", "dry_task_rows", "stored_task_rows"]

logger = logging.getLogger("hostapp")

#: The event type emitted on every failure of a background task.
FAILED_EVENT: Final = "background_task_failed"

#: Every state of a :class:`TaskRecord`, in the order a task usually goes through them.
TASK_STATES: Final = (
    "pending",   # made, not started yet
    "running",   # initialize or run is executing
    "sleeping",  # backing off before a restart
    "waiting",   # a periodic task between iterations
    "finished",  # run returned and the policy does not restart it
    "stopped",   # stopped by the host's stop (or never started: "not started" in dry listings)
    "failed",    # gave up: restart "never", or max_restarts used up
    "stuck",     # did not stop within stop_timeout; abandoned
)

#: Seconds between two routine reports (running <-> waiting) of one task to the store.
REPORT_EVERY_S: Final = 1.0

_ROUTINE: Final = frozenset({"running", "waiting"})


@dataclass
class TaskRecord:
    """What the supervisor knows about one background task (``host.tasks[name]``).

    Mutated only on the host's loop; read it from anywhere (the fields are plain values).

    Attributes:
        name: the task's name.
        plugin: the plugin that contributed it.
        distribution: that plugin's distribution, or ``None``.
        kind: ``"async"`` (on the host's loop) or ``"sync"`` (in ``hostapp-task-NAME``).
        restart: the policy, ``"on-failure"``, ``"always"`` or ``"never"``.
        interval: seconds between iterations of a periodic task, or ``None``.
        stop_timeout: seconds the task gets at stop.
        description: the task's one-line description, or ``None``.
        state: one of :data:`TASK_STATES`.
        runs: times ``run`` was called (iterations of a periodic task).
        failures: times ``initialize`` or ``run`` raised.
        restarts: restarts after a failure, and (``"always"``) after a return.
        skipped: ticks of a periodic task swallowed by an overrunning iteration.
        last_error: ``"ExcType: message"`` of the latest failure, or ``None``.
        last_traceback: the latest failure's traceback text (for a stuck task, where it
            was stuck), or ``None``.
        started_ns: when the supervisor started the task, ``time.time_ns()``.
        last_run_ns: when the latest ``run`` call started, ``time.time_ns()``.
        next_run_ns: when the next ``run`` call is due (backoff or interval), or ``None``.
        stopped_ns: when the task ended (finished, failed, stopped or declared stuck).
    """

    name: str
    plugin: str
    distribution: str | None
    kind: str
    restart: str
    interval: float | None
    stop_timeout: float
    description: str | None = None
    state: str = "pending"
    runs: int = 0
    failures: int = 0
    restarts: int = 0
    skipped: int = 0
    last_error: str | None = None
    last_traceback: str | None = None
    started_ns: int | None = None
    last_run_ns: int | None = None
    next_run_ns: int | None = None
    stopped_ns: int | None = None

    @classmethod
    def of(cls, contribution: Contribution[BackgroundTask]) -> TaskRecord:
        """A ``pending`` record for a collected task."""
        spec = contribution.spec
        return cls(
            name=spec.name, plugin=contribution.plugin, distribution=contribution.distribution,
            kind=spec.kind, restart=spec.restart, interval=spec.interval,
            stop_timeout=spec.stop_timeout, description=spec.description,
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (the shape of ``hostapp tasks --json`` rows)."""
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The short form kept in the run summary (``runs.summary["tasks"][name]``)."""
        return {
            "state": self.state, "runs": self.runs, "failures": self.failures,
            "restarts": self.restarts, "skipped": self.skipped, "last_error": self.last_error,
        }


class _Outcome:
    """The end of one call of a task's function: ``error`` is ``None`` when it returned."""

    __slots__ = ("error", "traceback")

    def __init__(self, error: BaseException | None = None, text: str | None = None) -> None:
        self.error = error
        self.traceback = text


def _failed(exc: BaseException, skip: int) -> _Outcome:
    """The outcome of ``exc``, its traceback text without the first ``skip`` frames (ours)."""
    tb: TracebackType | None = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return _Outcome(exc, "".join(traceback.format_exception(type(exc), exc, tb)))


class _Worker:
    """The daemon thread of one sync task: runs the calls handed to it, one at a time."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[..., Any], args: Sequence[Any]) -> concurrent.futures.Future[_Outcome]:
        future: concurrent.futures.Future[_Outcome] = concurrent.futures.Future()
        self._jobs.put((fn, args, future))
        return future

    def shutdown(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
                if hasattr(result, "__await__"):
                    if hasattr(result, "close"):
                        result.close()
                    raise TypeError(
                        f"{getattr(fn, '__qualname__', fn)!r} returned an awaitable in the task's "
                        "thread; declare it with 'async def' to run it on the host's loop"
                    )
            except BaseException as exc:  # noqa: BLE001 - a thread's SystemExit is the task's failure too
                future.set_result(_failed(exc, 1))
            else:
                future.set_result(_Outcome())


class _Supervised:
    """One task under supervision: its record, its supervising coroutine, its thread."""

    def __init__(self, supervisor: TaskSupervisor, contribution: Contribution[BackgroundTask]) -> None:
        self.supervisor = supervisor
        self.host = supervisor.host
        self.spec = contribution.spec
        self.record = TaskRecord.of(contribution)
        self.stop_event = threading.Event()
        self.worker: _Worker | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.abandoned = False
        self._call_future: concurrent.futures.Future[_Outcome] | None = None
        self._initialized = self.spec.initialize is None
        self._backoff = self.spec.backoff_initial
        self._consecutive = 0  # restarts since the last healthy run
        self._reported_state: str | None = None
        self._reported_at = 0.0

    # -- running -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.spec.kind == "sync":
            self.worker = _Worker(f"hostapp-task-{self.spec.name}")
        self.record.started_ns = time.time_ns()
        self.task = loop.create_task(self._supervise(), name=f"hostapp-task-{self.spec.name}")

    async def _call(self, fn: Callable[..., Any], *args: Any) -> _Outcome:
        """Run one of the task's functions where it belongs; never raises but for our stop."""
        if self.worker is not None and not is_async_callable(fn):
            self._call_future = self.worker.submit(fn, args)
            return await asyncio.wrap_future(self._call_future)
        try:
            result = fn(*args)
            if hasattr(result, "__await__"):
                await result
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if self.stopping or (task is not None and task.cancelling()):
                raise
            return _failed(exc, 1)  # the task's own code raised CancelledError
        except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt must not end the host's loop
            return _failed(exc, 1)
        return _Outcome()

    async def _supervise(self) -> None:
        record = self.record
        try:
            await self._loop()
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()
            future = self._call_future
            if future is not None and not future.done():  # a sync call in flight: wait for it
                await asyncio.wrap_future(future)
            if not self.abandoned:
                record.state = "stopped"
        if self.abandoned:
            return
        record.next_run_ns = None
        if self._initialized and self.spec.close is not None:
            outcome = await self._call(self.spec.close, self.host)
            if outcome.error is not None and not self.abandoned:
                self._report_failure("close", outcome, None)
        if self.abandoned:
            return
        record.stopped_ns = time.time_ns()
        self.report(force=True)

    def _check_stop(self) -> None:
        if self.stopping:  # the task's code swallowed our cancellation; do not go on
            raise asyncio.CancelledError

    async def _loop(self) -> None:
        spec, record, host = self.spec, self.record, self.host
        args: tuple[Any, ...] = (host,) if spec.kind == "async" else (host, self.stop_event)
        while True:
            self._check_stop()
            phase, outcome, started = "initialize", _Outcome(), time.monotonic()
            if not self._initialized:
                record.state = "running"
                self.report()
                outcome = await self._call(spec.initialize, host)  # type: ignore[arg-type]
                self._initialized = outcome.error is None
                self._check_stop()
            if outcome.error is None:
                phase = "run"
                record.state = "running"
                record.next_run_ns = None
                record.runs += 1
                record.last_run_ns = time.time_ns()
                started = time.monotonic()
                self.report()
                outcome = await self._call(spec.run, *args)
                self._check_stop()
            ended = time.monotonic()
            if outcome.error is None:
                self._healthy()
                if spec.interval is not None:
                    due = max(started + spec.interval, ended)
                    if ended > started + spec.interval:
                        record.skipped += max(0, int((ended - started) / spec.interval) - 1)
                    record.state = "waiting"
                    record.next_run_ns = time.time_ns() + int((due - ended) * 1e9)
                    self.report()
                    await self._sleep(due - time.monotonic())
                    continue
                if spec.restart != "always":
                    record.state = "finished"
                    return
                await self._restart_after(self._next_delay())
                continue
            record.failures += 1
            if ended - started >= spec.backoff_max:
                self._healthy()
            give_up = spec.restart == "never" or (
                spec.max_restarts is not None and self._consecutive >= spec.max_restarts
            )
            delay = None if give_up else self._next_delay()
            self._report_failure(phase, outcome, delay)
            if delay is None:
                return
            await self._restart_after(delay)
            self._consecutive += 1

    async def _restart_after(self, delay: float) -> None:
        record = self.record
        record.state = "sleeping"
        record.next_run_ns = time.time_ns() + int(delay * 1e9)
        self.report()
        await self._sleep(delay)
        record.restarts += 1

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def _healthy(self) -> None:
        self._backoff = self.spec.backoff_initial
        self._consecutive = 0

    def _next_delay(self) -> float:
        spec = self.spec
        delay = self._backoff
        self._backoff = min(self._backoff * 2, spec.backoff_max)
        if spec.jitter:
            delay *= random.uniform(1 - spec.jitter, 1 + spec.jitter)  # noqa: S311 - not crypto
        return min(delay, spec.backoff_max)

    # -- reporting -----------------------------------------------------------------

    def _report_failure(self, phase: str, outcome: _Outcome, delay: float | None) -> None:
        """Record, log, emit and store one failure; ``delay`` is ``None`` when giving up."""
        record, error = self.record, outcome.error
        record.last_error = describe_error(error) if error is not None else None
        record.last_traceback = outcome.traceback
        if phase in ("initialize", "run"):
            record.state = "failed" if delay is None else "sleeping"
        if delay is not None:
            what = f"restarting in {delay:.2f} s"
        else:
            what = "the task is failed" if phase != "close" else "the task has ended"
        logger.warning(
            "background task %r (plugin %r) failed in %s: %s; %s",
            record.name, record.plugin, phase, record.last_error, what,
        )
        self.supervisor.emit_failure(record, phase, delay, attempt=self._consecutive + 1)
        self.report(force=True)

    def report(self, *, force: bool = False) -> None:
        """Write the record to the store: at once, or throttled for routine changes."""
        state, now = self.record.state, time.monotonic()
        routine = state in _ROUTINE and self._reported_state in _ROUTINE
        if not force and routine and now - self._reported_at < REPORT_EVERY_S:
            return
        if not force and not routine and state == self._reported_state and now - self._reported_at < REPORT_EVERY_S:
            return
        self._reported_state, self._reported_at = state, now
        self.supervisor.store([self.record])

    # -- stopping ------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stopping = True
        self.stop_event.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def wait_stopped(self, timeout: float) -> None:
        task = self.task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout)
        if task is not None and not task.done():
            self._declare_stuck(timeout)
        elif self.worker is not None:
            self.worker.shutdown()

    def _declare_stuck(self, waited: float) -> None:
        record = self.record
        self.abandoned = True
        record.state = "stuck"
        record.next_run_ns = None
        record.stopped_ns = time.time_ns()
        record.last_error = f"did not stop within {waited:.2f} s (stop_timeout {self.spec.stop_timeout} s)"
        where = self._where_stuck()
        record.last_traceback = where
        logger.warning(
            "background task %r (plugin %r) did not stop within %.2f s; abandoned%s",
            record.name, record.plugin, waited,
            " (its daemon thread keeps running until the process exits)" if self.worker else "",
        )
        self.supervisor.emit_failure(record, "stop", None, attempt=self._consecutive + 1)
        if self.task is not None:
            self.task.cancel()  # once more; a coroutine that ignores it is left behind
            # already warned about above: no "Task was destroyed but it is pending!" later
            self.task._log_destroy_pending = False  # type: ignore[attr-defined]

    def _where_stuck(self) -> str | None:
        """The stack the task is stuck in: its thread's, or its coroutine chain."""
        if self.worker is not None:
            frame = sys._current_frames().get(self.worker.thread.ident or -1)
            return "".join(traceback.format_stack(frame)) if frame is not None else None
        lines: list[str] = []
        awaited: Any = self.task.get_coro() if self.task is not None else None
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                break
            lines.append(f'  File "{frame.f_code.co_filename}", line {frame.f_lineno}, in {frame.f_code.co_name}\n')
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        return "".join(lines) or None


class TaskSupervisor:
    """Runs the host's background tasks (see the module docstring).

    Args:
        host: the started :class:`~hostapp.Host` (its ``loop``, ``emit``, ``store`` and
            ``run_id`` are used).
        contributions: the collected ``hostapp_background_tasks()`` contributions.

    Attributes:
        records: ``{name: TaskRecord}`` in contribution order (``host.tasks``).
    """

    def __init__(self, host: Host, contributions: Iterable[Contribution[BackgroundTask]]) -> None:
        self.host = host
        self._tasks = [_Supervised(self, c) for c in contributions]
        self.records: dict[str, TaskRecord] = {t.record.name: t.record for t in self._tasks}
        self._store_failed = False
        self._closed = False

    def start(self) -> None:
        """Start every task on ``host.loop`` (call it on that loop) and report them.

        Raises:
            HostappError: the host has no loop (it is not starting).
        """
        from hostapp.errors import HostappError

        loop = self.host.loop
        if loop is None:
            raise HostappError("the background tasks start with the host; the host has no loop")
        for supervised in self._tasks:
            supervised.start(loop)
        self.store([s.record for s in self._tasks])

    async def astop(self, timeout: float) -> dict[str, str]:
        """Stop every task at once; wait for each at most ``min(stop_timeout, timeout)`` s.

        Async tasks are cancelled; sync tasks have their ``stop_event`` set (and a pending
        backoff or interval wait is cut short). A task still running after its wait is
        marked ``stuck``, warned about and abandoned: a sync task's daemon thread keeps
        running until the process exits, an async task that ignores cancellation stays on
        the loop. Idempotent.

        Args:
            timeout: seconds the whole stop of the tasks may take (>= 0).

        Returns:
            ``{name: final state}``.
        """
        if not self._closed:
            for supervised in self._tasks:
                supervised.request_stop()
            await asyncio.gather(
                *(s.wait_stopped(max(0.0, min(s.spec.stop_timeout, timeout))) for s in self._tasks)
            )
            self.store([s.record for s in self._tasks])
            self._closed = True
        return {name: record.state for name, record in self.records.items()}

    def abandon(self, reason: str) -> None:
        """Give up on stopping the tasks (their loop does not run: a task blocks it): every
        task not ended yet is marked ``stuck`` with ``reason``, warned about and left behind.
        Called by the host from another thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        for supervised in self._tasks:
            record, task = supervised.record, supervised.task
            if record.state == "stuck" or task is None or task.done():
                continue
            supervised.abandoned = True
            task._log_destroy_pending = False  # type: ignore[attr-defined]  # warned about below
            if record.state == "stopped":  # stopped, and stuck in its close()
                reason = f"{reason} (in close())"
            record.state, record.last_error, record.next_run_ns = "stuck", reason, None
            record.stopped_ns = time.time_ns()
            logger.warning("background task %r (plugin %r): %s; abandoned", record.name, record.plugin, reason)

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{name: TaskRecord.summary()}``, for the run summary."""
        return {name: record.summary() for name, record in self.records.items()}

    @property
    def stuck(self) -> list[str]:
        """The names of the tasks that did not stop in time."""
        return [name for name, record in self.records.items() if record.state == "stuck"]

    def emit_failure(self, record: TaskRecord, phase: str, delay: float | None, *, attempt: int) -> None:
        """Emit the ``background_task_failed`` event for ``record``'s latest failure."""
        try:
            self.host.emit(
                FAILED_EVENT, record.name, task=record.name, plugin=record.plugin, phase=phase,
                error=record.last_error, traceback=record.last_traceback, attempt=attempt,
                restarts=record.restarts, failures=record.failures, state=record.state,
                next_retry_s=None if delay is None else round(delay, 6),
            )
        except Exception as exc:  # noqa: BLE001 - the bus closing must not stop the supervisor
            logger.debug("background task %r: could not emit %s: %s", record.name, FAILED_EVENT, exc)

    def store(self, records: Sequence[TaskRecord]) -> None:
        """Write ``records`` to the store's ``reports`` table (kind ``"task"``), if any."""
        store, run_id = self.host.store, self.host.run_id
        if store is None or run_id is None or self._closed or not records:
            return
        try:
            store.put_reports(run_id, "task", [(r.name, r.state, _report_data(r)) for r in records])
        except Exception as exc:  # noqa: BLE001 - a store error is reported once, tasks go on
            if not self._store_failed:
                self._store_failed = True
                logger.warning("background tasks: could not write their state to the store: %s", exc)


def _report_data(record: TaskRecord) -> dict[str, Any]:
    data = record.to_dict()
    del data["name"], data["state"]
    return data


def stored_task_rows(store: Any) -> tuple[Any, bool, list[dict[str, Any]]]:
    """The task reports ``hostapp tasks`` shows: the live run's, else the latest run's.

    A run is live when it has not ended and its process is alive. Searched among the
    50 most recent runs; otherwise the newest run that reported tasks is used.

    Args:
        store: an open :class:`~hostapp.store.Store`.

    Returns:
        ``(run, live, rows)``: the :class:`~hostapp.store.Run` (or ``None`` when no run
        reported tasks), whether it is live, and one dict per task (the
        :class:`TaskRecord` fields plus ``run_id``, ``live`` and ``updated_ns``).
    """
    chosen, reports, live = store.current_reports("task")
    rows = [
        {"name": r.name, "state": r.state, **r.data, "run_id": r.run_id, "live": live, "updated_ns": r.updated_ns}
        for r in reports
    ]
    return chosen, live, rows


def dry_task_rows(contributions: Iterable[Contribution[BackgroundTask]]) -> list[dict[str, Any]]:
    """One row per contributed task, as :func:`stored_task_rows` shapes them, with state
    ``"not started"`` (``hostapp tasks --dry-run``, or no run reported tasks yet)."""
    rows = []
    for contribution in contributions:
        record = TaskRecord.of(contribution)
        record.state = "not started"
        rows.append({**record.to_dict(), "run_id": None, "live": False, "updated_ns": None})
    return rows
