"""``hostapp.Host``: the composition root, its start and stop order, ``get_host()``.

Start order (``start()`` / ``await astart()``)::

    configuration -> discovery and registration -> required hooks checked
    -> hostapp_configure -> components (drivers) -> store and run record
    -> sinks opened (the event bus) -> hostapp_startup -> background tasks -> tracing

Tracing (``tracing.enabled``, on by default): the trace processors plugins contribute
(``hostapp_trace_processors()``), less those ``tracing.processors`` / ``tracing.disable``
leave out, run in a :class:`hostapp.tracing.TracingEngine` whose events go to the bus.

Components (``[components.NAME]``, built by the drivers plugins contribute; see
:mod:`hostapp.drivers`) are built before the store opens; their records are written to the
store (``reports``, kind ``"component"``) once it is open, and again at stop.

Background tasks (``hostapp_background_tasks()``) run under a
:class:`hostapp.tasks.TaskSupervisor`; ``host.tasks`` holds their records.

``stop()`` / ``await astop()`` runs the reverse: tracing stops, the background tasks stop
(each waited for at most its ``stop_timeout``; one that does not stop is reported
``stuck`` and left behind), ``hostapp_shutdown``, then the bus drains every sink's queue
and closes the sinks, then the components are closed (reverse build order), then the run
record is closed (its summary holds the sink, processor and task counters). The whole stop is
bounded by ``host.shutdown_timeout`` seconds, and stopping twice does nothing.

Plugin code is contained and bounded (:mod:`hostapp._bounded`): every import, hook
implementation, registration hook, driver call and processor ``build_context`` runs on a
helper thread, each within ``host.start_timeout`` seconds at start (a component's within its
``timeout``) and all of them within ``host.shutdown_timeout`` at stop. What one raises —
``SystemExit`` and ``KeyboardInterrupt`` included — marks that plugin failed at its stage;
one that does not return in time is abandoned (its thread left to the process's exit),
named in a warning, and the host goes on without it.

The host needs no asyncio loop of its own until some plugin code is async (an ``async
def`` hook, an async driver method, a background task): from synchronous code that loop
then runs on a thread of its own (``hostapp-loop``), so the application keeps its main
thread; from async code (``await host.astart()``, ``async with Host(...)``) it is the
running loop. :mod:`asyncio` is not imported for a host without async plugin code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hostapp._bounded import PluginCalls
from hostapp.errors import HostappError, PluginTimeoutError
from hostapp.lifecycle import PluginState

if TYPE_CHECKING:
    import asyncio
    from types import TracebackType

    from hostapp.config import Config
    from hostapp.drivers import ComponentSet
    from hostapp.events import Event, EventBus, SinkError
    from hostapp.manager import HookError, PluginManager
    from hostapp.store import Store
    from hostapp.tasks import TaskRecord, TaskSupervisor
    from hostapp.tracing import TracingEngine
    from hostapp.types import Contribution, DriverSpec, EventSink, TraceProcessor

__all__ = ["Host", "exit_on_signals", "get_host"]

logger = logging.getLogger("hostapp")

_current: Host | None = None
_current_lock = threading.Lock()

#: The stage a plugin is marked failed at when it raises in an isolated call hook
#: (``hostapp_configure``: :meth:`PluginManager.configure` fails and withdraws it).
_HOOK_STAGES = {"hostapp_startup": "start", "hostapp_shutdown": "stop"}


def get_host() -> Host:
    """The running :class:`Host` (the one most recently started and not yet stopped).

    Raises:
        HostappError: no host is running.
    """
    host = _current
    if host is None:
        raise HostappError("no hostapp Host is running; start one with 'with Host(...)'")
    return host


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into an orderly stop of a ``with Host(...)`` block.

    Inside the block, SIGTERM raises ``SystemExit(143)`` and SIGINT ``KeyboardInterrupt``
    (Python's default) in the main thread, so the block unwinds and the host stops in
    order: ``hostapp_shutdown``, sinks drained and closed, run recorded. The ``hostapp``
    commands that run a host use it; the previous handlers are restored on exit. Outside
    the main thread it does nothing (Python delivers signals to the main thread only).

    Example::

        with Host() as host, exit_on_signals():
            serve(host)
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


class Host:
    """The composition root: plugins, configuration, the event bus and the store.

    Args:
        config: a :class:`~hostapp.config.Config`, a dict as parsed from TOML (validated
            like a file), a path to a TOML file, or ``None`` for :func:`~hostapp.load_config`
            (``hostapp.toml``, ``[tool.hostapp]``, ``HOSTAPP_*``).
        plugins: plugins registered explicitly (source ``explicit``, first in precedence,
            never filtered): objects, or ``(name, object)`` pairs.
        pm: the plugin manager to use (default: a new :class:`~hostapp.PluginManager`).
        store: ``True`` opens the SQLite store at ``store.path``; ``False`` runs without a
            store (dead letters stay in memory, ``spill`` becomes ``drop``).
        command: the command line recorded on the run (default: ``sys.argv``).
        strict: any plugin failure is fatal (default: ``plugins.strict``).
        tracing: run the trace processors (default: ``tracing.enabled``).

    Attributes:
        config: the configuration in use.
        pm: the plugin manager.
        run_id: the id of this host's run (set at start).
        store: the open :class:`~hostapp.store.Store`, or ``None``.
        bus: the :class:`~hostapp.events.EventBus` (set at start).
        sinks: the sink contributions collected at start.
        components: the :class:`~hostapp.drivers.ComponentSet`: every configured
            component's :class:`~hostapp.drivers.ComponentRecord` (state, error, health,
            ``instance``) by name. The component objects: :meth:`component`.
        drivers: the driver contributions collected at start.
        state: ``"new"``, ``"starting"``, ``"running"``, ``"stopping"``, ``"stopped"`` or
            ``"failed"``.
        exit_status: recorded on the run at stop (``hostapp run`` sets the program's;
            ``-N`` for a program ended by signal ``N``, as :mod:`subprocess` reports it).
        ended_by: the name of the signal that ended the run (``"SIGTERM"``), recorded in
            the run's summary (``signal``); ``None`` otherwise.
        stats: the per-sink counters after stop (:meth:`EventBus.stats`).
        processors: the trace processor contributions in use (after start).
        tracer: the running :class:`~hostapp.tracing.TracingEngine`, or ``None``.
        tracing_stats: per processor name, its counters (``TracingEngine.stats()``),
            kept after stop.
        supervisor: the :class:`~hostapp.tasks.TaskSupervisor` of the background tasks
            (set at start), or ``None``.
        probes: the :class:`~hostapp.probes.ProbeManager` applying the store's probe
            specs in this host (set by the built-in ``probes`` task once a spec exists),
            or ``None``.
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        plugins: Sequence[object | tuple[str, object]] = (),
        *,
        pm: PluginManager | None = None,
        store: bool = True,
        command: str | Sequence[str] | None = None,
        strict: bool | None = None,
        tracing: bool | None = None,
    ) -> None:
        from hostapp.manager import PluginManager

        self.config = _as_config(config)
        self.pm = pm if pm is not None else PluginManager()
        self._explicit = [_named(p) for p in plugins]
        self._use_store = store
        self._command = list(sys.argv) if command is None else command
        self.strict = self.config.strict if strict is None else strict
        self.run_id: str | None = None
        self.store: Store | None = None
        self.bus: EventBus | None = None
        self.sinks: list[Contribution[EventSink]] = []
        from hostapp.drivers import ComponentSet

        self.components: ComponentSet = ComponentSet.from_config(self.config)
        self.drivers: list[Contribution[DriverSpec]] = []
        self.state = "new"
        self.exit_status: int | None = None
        self.ended_by: str | None = None
        self.hurried = False
        self.stats: dict[str, dict[str, Any]] = {}
        self.tracing = bool(self.config["tracing.enabled"]) if tracing is None else tracing
        self.processors: list[Contribution[TraceProcessor]] = []
        #: the program's own directories, beside ``tracing.app_paths`` (``hostapp run`` sets
        #: the script's directory or the ``-m`` module's package; read at start)
        self.app_paths: list[str] = []
        self.tracer: TracingEngine | None = None
        self.tracing_stats: dict[str, dict[str, Any]] = {}
        self.supervisor: TaskSupervisor | None = None
        self._calls: PluginCalls | None = None
        self._stuck_engine: TracingEngine | None = None
        self.probes: Any = None
        self._stop_lock = threading.Lock()
        self._stopped_event = threading.Event()

    # -- properties --------------------------------------------------------------------

    @property
    def shutdown_timeout(self) -> float:
        """``host.shutdown_timeout``: seconds the whole stop may take."""
        return float(self.config["host.shutdown_timeout"])

    @property
    def start_timeout(self) -> float:
        """``host.start_timeout``: seconds each plugin call at start may take."""
        return float(self.config["host.start_timeout"])

    @property
    def tasks(self) -> dict[str, TaskRecord]:
        """The background tasks' records by name (:class:`~hostapp.tasks.TaskRecord`:
        state, runs, failures, restarts, last error); ``{}`` before start. Kept after stop."""
        return self.supervisor.records if self.supervisor is not None else {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The asyncio loop async plugin code runs on: the caller's (``await
        host.astart()``), or the host's own ``hostapp-loop`` thread's once some plugin code
        needed it; ``None`` while none did."""
        return self._calls.started_loop if self._calls is not None else None

    def component(self, name: str) -> Any:
        """The component ``[components.NAME]`` built by its driver (opa-stack's
        ``get_component``).

        Raises:
            ComponentError: it is not configured, not built yet, disabled (``load =
                "no"``), unavailable (the message holds its error) or closed.
        """
        return self.components.instance(name)

    # -- emitting ------------------------------------------------------------------------

    def emit(self, event: Event | str, subtype: str | None = None, /, **data: Any) -> Event:
        """Send an event to every sink that accepts its type. Thread-safe, never awaits.

        ``host.emit(event)`` sends an :class:`~hostapp.events.Event`;
        ``host.emit("monitoring_event", "heartbeat", plugin="acme")`` makes one (with this
        run's id; the keyword arguments are its ``data``) and sends it.

        Never blocks longer than ``events.max_block_ms`` (per accepting sink, and only
        under ``full_policy = "block"`` with a full queue).

        Returns:
            the event sent.

        Raises:
            HostappError: the host was never started.
        """
        bus = self.bus
        if bus is None:
            raise HostappError("the host is not started; call start() or use 'with Host(...)'")
        if isinstance(event, str):
            return bus.publish(event, subtype, data=data)
        bus.emit(event)
        return event

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Host:
        """Start the host from synchronous code (see the module docstring for the order).

        Returns:
            the host.

        Raises:
            MissingHookError: a ``required=True`` hook has no implementation.
            PluginLoadError: a plugin failed while strict mode is on.
            ConfigError: a sink's configuration is invalid, a component names a driver no
                plugin contributes, or the store at ``store.path`` cannot be opened.
            ComponentError: a ``load = "yes"`` component is unavailable (one line naming
                the component, its driver and the cause).
            HostappError: the host was already started or stopped, or this is called
                inside a running event loop (use ``await host.astart()``).
            KeyboardInterrupt: Ctrl-C during the start (what started is stopped first).
        """
        if _loop_running() is not None:
            raise HostappError(
                "Host.start() was called inside a running event loop; "
                "use 'await host.astart()' or 'async with Host(...)'"
            )
        self._begin(PluginCalls())
        self._start_here()
        return self

    async def astart(self) -> Host:
        """Start the host from async code: async plugin code runs on the running loop.

        The start itself (the plugin calls, each bounded) is waited for in a thread, so the
        loop keeps running meanwhile.

        Returns:
            the host.

        Raises:
            Exception: whatever :meth:`start` raises (but not for the running loop).
        """
        import asyncio

        loop = asyncio.get_running_loop()
        self._begin(PluginCalls(lambda: loop))
        await asyncio.to_thread(self._start_here)
        return self

    def _begin(self, calls: PluginCalls) -> None:
        if self.state != "new":
            raise HostappError(f"this host is {self.state}; a Host starts once, make a new one")
        self.state = "starting"
        self._calls = calls

    def _start_here(self) -> None:
        try:
            self._start()
        except BaseException:
            self.state = "failed"
            self._teardown(exit_status=None)
            raise
        self.state = "running"
        _set_current(self)

    def _start(self) -> None:
        from hostapp.errors import PluginLoadError
        from hostapp.events import EventBus, new_id

        pm, config, calls = self.pm, self.config, self._calls
        assert calls is not None
        conflict = "raise" if self.strict else "report"
        pm.calls = calls
        pm.call_timeout, pm.call_timeout_setting = self.start_timeout, "host.start_timeout"
        pm.load(config, explicit=self._explicit, strict=self.strict)
        pm.check_required()
        pm.error_listeners.append(self._on_hook_error)
        pm.configure(config)  # a plugin failing here is withdrawn: it contributes nothing
        self._raise_if_strict_failure(PluginLoadError)
        self.drivers = pm.collect("hostapp_drivers", on_conflict=conflict)
        failed = {n: f"{i.stage}: {i.error}" for n, i in pm.infos.items() if i.state is PluginState.FAILED}
        self.components.build(self.drivers, calls=calls, timeout=self.start_timeout, failed=failed)
        self.sinks = pm.collect("hostapp_event_sinks", on_conflict=conflict)
        if self._use_store:
            self.store = _open_store(config)
            self.run_id = self.store.begin_run(self._command)
            self.store.put_reports(self.run_id, "component", self.components.reports())
        else:
            self.run_id = new_id()
        self.bus = EventBus(
            self.sinks, config, store=self.store, run_id=self.run_id, on_error=self._on_sink_error
        )
        self.bus.start(timeout=self.start_timeout)
        pm.call_each("hostapp_startup", {"host": self})
        self._raise_if_strict_failure(PluginLoadError)
        for info in pm.infos.values():
            if info.state is PluginState.REGISTERED:
                pm.set_state(info, PluginState.STARTED)
        self._start_tasks()
        if self.tracing:
            self._start_tracing()

    def _start_tasks(self) -> None:
        """Collect the background tasks and start them under a supervisor (on the loop,
        which they need: the first thing that starts it in a host without async plugins)."""
        found = self.pm.collect("hostapp_background_tasks", on_conflict="raise" if self.strict else "report")
        if not found:
            return
        from hostapp.tasks import TaskSupervisor

        calls = self._calls
        assert calls is not None
        supervisor = self.supervisor = TaskSupervisor(self, found)

        async def begin() -> None:
            supervisor.start()

        outcome = calls.call(begin, timeout=self.start_timeout)
        if not outcome.ok:  # pragma: no cover - only a loop another plugin blocks
            raise HostappError(f"the background tasks could not start: {outcome.describe('host.start_timeout')}")

    def _start_tracing(self) -> None:
        """Collect the trace processors, filter them by name, start the engine (last)."""
        from hostapp.tracing import TracingEngine, default_library_paths

        config = self.config
        found = self.pm.collect("hostapp_trace_processors", on_conflict="raise" if self.strict else "report")
        self.processors = select_processors(
            found, config["tracing.processors"], config["tracing.disable"], source=config.source
        )
        if not self.processors:
            return
        bus = self.bus
        assert bus is not None and self._calls is not None
        from hostapp.errors import ConfigError

        try:
            engine = TracingEngine(
                self._with_contexts(self.processors),
                bus.emit,
                config=config,
                run_id=self.run_id,
                backend=config["tracing.backend"],
                library_paths=[*default_library_paths(), *config["tracing.library_paths"]],
                app_paths=[*config["tracing.app_paths"], *self.app_paths],
                max_errors=config["tracing.max_errors"],
                bus=bus,
                supersede=config["tracing.supersede"],
                builtin=self._is_builtin,
            )
        except ValueError as exc:  # a backend this interpreter lacks, two processors of one name
            message = str(exc)
            key = "tracing.backend" if message.startswith("tracing.backend") else None
            if key:
                message = message.split(": ", 1)[1]
            raise ConfigError(_origin(config, "tracing.backend"), message, key=key) from None
        outcome = self._calls.call(engine.start, timeout=self.start_timeout)
        if outcome.timed_out:  # pragma: no cover - the engine calls no plugin code itself
            self._stuck_engine = engine
            logger.warning("tracing did not start: %s; the program runs untraced", outcome.describe("host.start_timeout"))
            return
        if outcome.error is not None:  # e.g. no free sys.monitoring tool id for backend = "monitoring"
            raise HostappError(f"tracing could not start: {outcome.error}") from None
        self.tracer = engine

    def _with_contexts(self, processors: Sequence[Contribution[TraceProcessor]]) -> list[Contribution[TraceProcessor]]:
        """The processors with each ``build_context(config)`` called now, bounded: a
        processor's context is the one its call gave, and one whose call raised or did not
        return in time gets a ``build_context`` that raises that (the engine switches it off
        and keeps the error in its ``last_error``)."""
        import dataclasses

        from hostapp.types import Contribution

        pending = [i for i, c in enumerate(processors) if c.spec.build_context is not None and _requires_met(c.spec)]
        if not pending:
            return list(processors)
        assert self._calls is not None
        config = self.config
        outcomes = self._calls.each(
            [lambda f=processors[i].spec.build_context: f(config) for i in pending], self.start_timeout,  # type: ignore[misc]
        )
        out = list(processors)
        for i, outcome in zip(pending, outcomes):
            c = out[i]
            if outcome.ok:
                context = outcome.value
                built = (lambda context: lambda config: context)(context)
            else:
                error: BaseException = outcome.error or PluginTimeoutError(outcome.describe("host.start_timeout"))
                if not isinstance(error, Exception):  # SystemExit, KeyboardInterrupt: the plugin's, not ours
                    error = PluginRaised(error)
                built = _raiser(error)
            out[i] = Contribution(dataclasses.replace(c.spec, build_context=built), c.plugin, c.distribution, c.version)
        return out

    def _is_builtin(self, contribution: Contribution[Any]) -> bool:
        """Whether a contribution comes from one of hostapp's built-in plugins."""
        info = self.pm.infos.get(contribution.plugin)
        return info.builtin if info is not None else (contribution.distribution or "").lower() == "hostapp"

    def _raise_if_strict_failure(self, error: type[Exception]) -> None:
        if not self.strict:
            return
        for info in self.pm.infos.values():
            if info.state is PluginState.FAILED:
                raise error(  # type: ignore[call-arg]
                    info,
                    f"plugin {info.name!r} from {info.provenance} failed at {info.stage}: "
                    f"{info.error} (strict mode)",
                )

    def _on_hook_error(self, record: HookError) -> None:
        """A plugin raising in ``hostapp_startup``/``hostapp_shutdown`` is failed at that
        stage; one that did not return in time is also withdrawn (abandoned: none of its
        hooks is called again)."""
        stage = _HOOK_STAGES.get(record.hook)
        if stage is not None:
            abandoned = record.error.startswith(f"{PluginTimeoutError.__name__}:")
            self.pm.fail_plugin(record.plugin, stage, record.error, record.traceback, withdraw=abandoned)

    def _on_sink_error(self, record: SinkError) -> None:
        """A sink that cannot open marks its plugin failed at stage ``sink-open`` (its
        events become dead letters; the other sinks and plugins go on)."""
        if record.stage != "open":
            return
        info = self.pm.infos.get(record.plugin)
        if info is None or info.state is PluginState.FAILED:
            return
        info.stage = "sink-open"
        info.error = f"event sink {record.sink!r}: {record.error}"
        info.traceback = record.traceback
        self.pm.set_state(info, PluginState.FAILED)

    def stop(self) -> dict[str, dict[str, Any]]:
        """Stop the host: the reverse of the start order, bounded by ``shutdown_timeout``.

        Idempotent: stopping a stopped (or never started) host does nothing; a second
        thread calling it meanwhile waits for the first.

        Returns:
            the per-sink counters (:meth:`EventBus.stats`), also kept in :attr:`stats`.

        Raises:
            HostappError: called on the host's own loop (use ``await host.astop()``).
        """
        calls = self._calls
        if calls is not None and calls.started_loop is not None and _loop_running() is calls.started_loop:
            raise HostappError("Host.stop() was called on the host's own loop; use 'await host.astop()'")
        with self._stop_lock:
            if self.state in ("new", "stopped", "failed"):
                return self.stats
            self.state = "stopping"
            try:
                self._teardown(exit_status=self.exit_status)
            finally:
                self.state = "stopped"
                self._stopped_event.set()
        return self.stats

    async def astop(self) -> dict[str, dict[str, Any]]:
        """:meth:`stop` from async code (waited for in a thread, so the loop keeps running:
        async ``hostapp_shutdown`` implementations and background tasks run on it)."""
        if self.state in ("new", "stopped", "failed"):
            return self.stats
        import asyncio

        return await asyncio.to_thread(self.stop)

    def hurry(self) -> None:
        """Cut a stop that is under way short (from another thread; ``hostapp run`` on a
        second Ctrl-C): the sinks stop delivering and every event not delivered yet is kept
        as a dead letter (counted in :attr:`stats`); the rest of the stop goes on, the run
        is recorded (its summary says ``flush_skipped``)."""
        self.hurried = True
        if self.bus is not None:
            self.bus.abort()

    def stop_tracing(self) -> dict[str, dict[str, Any]]:
        """Stop the trace processors now (the host stays up, its sinks drain as usual).

        ``stop()`` does this first; ``hostapp run`` calls it as soon as the program ends.
        Idempotent. Returns :attr:`tracing_stats`.
        """
        engine, self.tracer = self.tracer, None
        if engine is not None:
            engine.stop()
            self.tracing_stats = engine.stats()
        return self.tracing_stats

    def _teardown(self, exit_status: int | None) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        pm = self.pm
        self.stop_tracing()
        stuck, self._stuck_engine = self._stuck_engine, None
        if stuck is not None and self._calls is not None:  # pragma: no cover - see _start_tracing
            self._calls.call(stuck.stop, timeout=min(1.0, max(0.0, _left(deadline))))
        if self.supervisor is not None:
            self._stop_tasks(deadline)
        if self.bus is not None:
            pm.call_each(
                "hostapp_shutdown", {"host": self}, timeout=None,
                deadline=time.monotonic() + max(0.0, _left(deadline) / 2), setting="host.shutdown_timeout",
            )
            self.stats = self.bus.stop(max(0.0, _left(deadline)))
        for info in pm.infos.values():
            if info.state is PluginState.STARTED:
                pm.set_state(info, PluginState.STOPPED)
        self.components.close(max(0.0, _left(deadline)))
        if self.store is not None:
            try:
                if self.run_id is not None:
                    self.store.put_reports(self.run_id, "component", self.components.reports())
                    summary: dict[str, Any] = {"sinks": self.stats}
                    if self.ended_by is not None:
                        summary["signal"] = self.ended_by
                    if self.hurried:
                        summary["flush_skipped"] = True
                    if self.tracing_stats:
                        summary["processors"] = self.tracing_stats
                    if self.tasks:
                        summary["tasks"] = self.supervisor.summary()  # type: ignore[union-attr]
                    self.store.end_run(self.run_id, exit_status, summary)
            finally:
                self.store.close()
        if self._on_hook_error in pm.error_listeners:
            pm.error_listeners.remove(self._on_hook_error)
        _clear_current(self)
        if self._calls is not None:
            self._calls.close()

    def _stop_tasks(self, deadline: float) -> None:
        """Stop the background tasks on their loop, within half of what is left of the
        stop; a loop that a task blocks cannot run the stop: its tasks are abandoned."""
        supervisor, calls = self.supervisor, self._calls
        assert supervisor is not None and calls is not None
        budget = max(0.0, _left(deadline) / 2)

        async def stop() -> None:
            await supervisor.astop(budget)

        outcome = calls.call(stop, timeout=budget + 0.5)
        if not outcome.ok:
            supervisor.abandon(f"the tasks could not be stopped: {outcome.describe('host.shutdown_timeout')}")

    def __enter__(self) -> Host:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Host:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    def __repr__(self) -> str:
        return f"<Host {self.state} run={self.run_id}>"


def select_processors(
    found: Sequence[Contribution[TraceProcessor]],
    only: Sequence[str] | None,
    disable: Sequence[str],
    *,
    source: str = "<config>",
) -> list[Contribution[TraceProcessor]]:
    """The processors ``tracing.processors`` (``only``; ``None`` = all) and
    ``tracing.disable`` leave in, by processor name (glob or ``re:`` patterns, as in
    ``plugins.enable``/``plugins.disable``).

    Raises:
        ConfigError: a pattern does not compile (names ``source`` and the key).
    """
    from hostapp.discovery.filters import compile_pattern

    keep = (
        [compile_pattern(p, source=source, key="tracing.processors") for p in only] if only is not None else None
    )
    drop = [compile_pattern(p, source=source, key="tracing.disable") for p in disable]
    out = []
    for contribution in found:
        name = contribution.spec.name
        if keep is not None and not any(match(name) for match in keep):
            continue
        if any(match(name) for match in drop):
            continue
        out.append(contribution)
    return out


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


def _loop_running() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running in this thread, if any (none can when asyncio was never
    imported, and then it is not imported here)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.get_running_loop()  # type: ignore[no-any-return]
    except RuntimeError:
        return None


def _open_store(config: Config) -> Store:
    """The store at ``store.path``.

    Raises:
        ConfigError: it cannot be opened (damaged, foreign, newer, not writable); the one
            line names where ``store.path`` was set and what is wrong.
    """
    from hostapp.errors import ConfigError
    from hostapp.store import Store, StoreError, resolve_store_path

    try:
        return Store(resolve_store_path(config))
    except StoreError as exc:
        raise ConfigError(_origin(config, "store.path"), str(exc), key="store.path") from None


def _origin(config: Config, key: str) -> str:
    """Where ``key``'s value was set, for an error about it: the environment variable or
    the file that set it (:attr:`Config.origins`), else the configuration's source."""
    return config.origins.get(key) or config.source


def _requires_met(spec: TraceProcessor) -> bool:
    """Whether every module in ``spec.requires`` can be found (no import: ``find_spec``),
    as the tracing engine judges a processor applicable."""
    if not spec.requires:
        return True
    import importlib.util

    for module in spec.requires:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def _raiser(error: Exception) -> Any:
    def build_context(config: Any) -> Any:
        raise error

    return build_context


class PluginRaised(Exception):
    """Carries a ``SystemExit`` or ``KeyboardInterrupt`` a plugin raised (its failure, never
    the host's) where the code that records it takes only ``Exception``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        self.error = error


def _as_config(config: Any) -> Config:
    from hostapp.config import Config, load_config

    if config is None:
        return load_config()
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config.from_dict(config)
    return load_config(config)


def _named(plugin: object) -> tuple[str, object]:
    if isinstance(plugin, tuple) and len(plugin) == 2 and isinstance(plugin[0], str):
        return plugin  # type: ignore[return-value]
    name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return str(name), plugin


def _set_current(host: Host) -> None:
    global _current
    with _current_lock:
        _current = host


def _clear_current(host: Host) -> None:
    global _current
    with _current_lock:
        if _current is host:
            _current = None
