"""The spec objects that registration hooks return (the conda ``types`` pattern).

Each registration hook (``hostapp_trace_processors()``, ``hostapp_event_sinks()``, ...)
returns one spec object, a list of them, or yields them. The plugin manager collects them
with :meth:`hostapp.PluginManager.collect`, which validates the type, tags each spec with
the plugin and distribution that provided it (:class:`Contribution`) and rejects two
specs of the same kind with the same name.

Every spec is a frozen dataclass with ``slots=True``; ``__post_init__`` validates the
fields and raises :class:`ValueError` naming the field. Raised inside a plugin's
registration hook, it is reported by ``PluginManager.collect`` as a hook error naming the
plugin (``hostapp plugins`` shows it), and that plugin's contributions are skipped.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "BackgroundTask",
    "CliCommand",
    "Contribution",
    "DriverSpec",
    "EventSink",
    "EventRenderer",
    "InstrumentType",
    "LOAD_VALUES",
    "Route",
    "SKIP",
    "TraceProcessor",
]

class _Skip:
    __slots__ = ()

    def __repr__(self) -> str:
        return "hostapp.tracing.SKIP"

    def __reduce__(self) -> str:
        return "SKIP"


#: What a call-record processor's ``capture`` returns to not record a call
#: (``TraceProcessor.capture``); also ``hostapp.tracing.SKIP``.
SKIP: Any = _Skip()

#: The values of a component's ``load`` key (opa-stack's ``LOAD``): ``auto`` (built when
#: its driver can connect, else unavailable and the host goes on), ``yes`` (the host
#: refuses to start without it), ``no`` (not built). Here, not in :mod:`hostapp.drivers`,
#: so that the configuration can check the key without importing the drivers.
LOAD_VALUES: tuple[str, ...] = ("auto", "yes", "no")

#: The events a trace processor can ask for (Kolo's names; ``unwind`` is the exception exit).
TRACE_EVENTS: frozenset[str] = frozenset({"call", "return", "unwind", "resume", "yield", "throw"})


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{kind}.name: expected a non-empty string, got {name!r}")


def _check_callable(kind: str, fld: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise ValueError(f"{kind}.{fld}: expected a callable, got {type(value).__name__}")


def _check_positive(kind: str, fld: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{kind}.{fld}: expected a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class TraceProcessor:
    """Selects code by function name and file path and turns its calls into events.

    The fields and their meaning are Kolo's processor config (``co_names``,
    ``path_fragment``, ``call``, ``call_type``, ``return_type``, ``subtype``, ``process``,
    ``build_context``, ``events`` and the undocumented ``*_type`` keys), so a Kolo processor
    dict converts unchanged with :meth:`from_kolo`.

    Attributes:
        name: unique processor name (``"urllib"``, ``"celery"``); shown in errors and
            used by ``--processor`` / ``--no-processor``.
        co_names: function names matched against ``code.co_name``. Empty means every
            function in the files that match ``path_fragment``.
        path_fragment: a substring of ``code.co_filename``, written with ``/`` (converted
            to ``os.sep`` for matching, as Kolo ``os.path.normpath``-s it).
        call_type: the event ``type`` for a call (``"outbound_http_request"``).
        return_type: the event ``type`` for a return (``"outbound_http_response"``).
        subtype: copied into every event (``"urllib"``); ``None`` for none.
        call: ``call(frame, event, arg, context) -> bool``, an extra filter run only after
            the name and path matched; ``False`` skips this call.
        process: ``process(frame, event, arg, context) -> dict``; the dict is merged over
            the event's base data.
        build_context: ``build_context(config) -> dict``, called once per run; the same
            (mutable) dict is passed to ``call`` and ``process``.
        events: which events to emit, a subset of ``call``, ``return``, ``unwind`` (the
            exception exit), ``resume``, ``yield``, ``throw``. Default: call, return, unwind.
        unwind_type, resume_type, yield_type, throw_type: event types for those events;
            default to ``return_type``, ``call_type``, ``return_type``, ``return_type``
            (Kolo's defaults).
        description: one line for listings.
        requires: top-level modules the selected code belongs to (``("requests",)``). A
            processor whose module is not installed is *not applicable*: it is skipped and
            reported as such (``TracingEngine.stats()``, the run summary), not as an error.
            Checked with :func:`importlib.util.find_spec`, without importing anything.
        record: ``"events"`` (Kolo's model, the default): an event per call and per
            return, built by ``process``. ``"call"`` (hostapp's): **one** event of type
            ``call_type`` per call, made when the call ends, with what ``capture`` kept at
            the call and the call's result; its data is built by ``build`` off the traced
            thread (on the sink's thread, in batches), so the traced program pays only for
            ``capture``. ``call``, ``process`` and ``events`` do not apply.
        capture: for ``record="call"``: ``capture(args, context) -> Any``, on the traced
            thread when the call starts; ``args`` maps the function's parameter names to the
            arguments (``args["self"]``, ``args["request"]``). Keep it cheap: return
            references (the request object), not copies; the value is handed to ``build``.
            Return :data:`hostapp.tracing.SKIP` to not record this call. Default: nothing
            kept.
        build: for ``record="call"``: ``build(captured, result, error, context) -> dict |
            None``, on the sink's thread: ``captured`` is what ``capture`` returned,
            ``result`` the return value (``None`` when the call raised), ``error`` the
            exception (``None`` when it returned). The dict is merged over the record's
            base data (``duration_ns``, ``call_site``, ``thread_name``, ``span_id``, ``via``,
            and ``error`` as ``{"type", "message"}``); a ``timestamp_ns`` in it moves the
            record's start (the duration follows). ``None``: no event for this call.
        group: for ``record="call"``: a name shared by processors that record the same kind
            of call at different layers (``"http"``: requests over urllib3 over
            http.client). While a call of the group is in progress in a thread (or an
            asyncio task), the calls the group's processors select inside it are not
            recorded again: only their processor names are added to the outer record's
            ``via`` list. One HTTP call is one record.
        redact: header, query-parameter and body-key names this processor's events must
            have redacted, added to the host's redaction policy (``tracing.redact_headers``,
            ``tracing.redact_params``); a processor can add names, never remove them.

    Raises:
        ValueError: on construction, naming the field that is missing or malformed.
    """

    name: str
    path_fragment: str
    call_type: str
    return_type: str = ""
    co_names: tuple[str, ...] = ()
    subtype: str | None = None
    call: Callable[[FrameType, str, Any, dict[str, Any]], bool] | None = None
    process: Callable[[FrameType, str, Any, dict[str, Any]], Mapping[str, Any]] | None = None
    build_context: Callable[[Any], dict[str, Any]] | None = None
    events: tuple[str, ...] = ("call", "return", "unwind")
    unwind_type: str | None = None
    resume_type: str | None = None
    yield_type: str | None = None
    throw_type: str | None = None
    description: str | None = None
    requires: tuple[str, ...] = ()
    record: str = "events"
    capture: Callable[[Mapping[str, Any], dict[str, Any]], Any] | None = None
    build: Callable[[Any, Any, BaseException | None, dict[str, Any]], Mapping[str, Any] | None] | None = None
    group: str | None = None
    redact: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        kind = "TraceProcessor"
        _check_name(kind, self.name)
        if isinstance(self.requires, str):
            raise ValueError(f"{kind}.requires: expected a list of module names, got a string")
        object.__setattr__(self, "requires", tuple(self.requires))
        for module in self.requires:
            if not isinstance(module, str) or not module or module.startswith("."):
                raise ValueError(f"{kind}.requires: expected absolute module names, got {module!r}")
        if isinstance(self.co_names, str):
            raise ValueError(f"{kind}.co_names: expected a list of function names, got a string")
        object.__setattr__(self, "co_names", tuple(self.co_names))
        for co_name in self.co_names:
            if not isinstance(co_name, str) or not co_name:
                raise ValueError(f"{kind}.co_names: expected non-empty strings, got {co_name!r}")
        if not isinstance(self.path_fragment, str) or not self.path_fragment:
            raise ValueError(f"{kind}.path_fragment: expected a non-empty string")
        if self.record not in ("events", "call"):
            raise ValueError(f"{kind}.record: expected 'events' or 'call', got {self.record!r}")
        for fld in ("call_type", "return_type") if self.record == "events" else ("call_type",):
            value = getattr(self, fld)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{kind}.{fld}: expected a non-empty string, got {value!r}")
        if self.record == "call":
            if not self.return_type:
                object.__setattr__(self, "return_type", self.call_type)
            for fld in ("call", "process"):
                if getattr(self, fld) is not None:
                    raise ValueError(
                        f"{kind}.{fld}: not used with record='call' (filter in capture by returning "
                        "hostapp.tracing.SKIP; build the data in build)"
                    )
        else:
            for fld in ("capture", "build", "group"):
                if getattr(self, fld) is not None:
                    raise ValueError(f"{kind}.{fld}: only used with record='call'")
        if self.group is not None and (not isinstance(self.group, str) or not self.group):
            raise ValueError(f"{kind}.group: expected a non-empty string, got {self.group!r}")
        if isinstance(self.redact, str):
            raise ValueError(f"{kind}.redact: expected a list of names, got a string")
        object.__setattr__(self, "redact", tuple(self.redact))
        if not all(isinstance(n, str) and n for n in self.redact):
            raise ValueError(f"{kind}.redact: expected non-empty strings, got {self.redact!r}")
        for fld in ("call", "process", "build_context", "capture", "build"):
            _check_callable(kind, fld, getattr(self, fld))
        if isinstance(self.events, str):
            raise ValueError(f"{kind}.events: expected a list of event names, got a string")
        object.__setattr__(self, "events", tuple(self.events))
        unknown = set(self.events) - TRACE_EVENTS
        if unknown:
            raise ValueError(
                f"{kind}.events: unknown event(s) {sorted(unknown)}; expected some of "
                f"{sorted(TRACE_EVENTS)}"
            )

    @property
    def normalized_fragment(self) -> str:
        """``path_fragment`` with ``/`` turned into this platform's separator."""
        return os.path.normpath(self.path_fragment) if os.sep != "/" else self.path_fragment

    def type_for(self, event: str) -> str:
        """The event ``type`` written for trace ``event`` (``"call"``, ``"return"``, ...)."""
        if event == "call":
            return self.call_type
        if event == "return":
            return self.return_type
        if event == "unwind":
            return self.unwind_type or self.return_type
        if event == "resume":
            return self.resume_type or self.call_type
        if event == "yield":
            return self.yield_type or self.return_type
        if event == "throw":
            return self.throw_type or self.return_type
        raise ValueError(f"unknown trace event {event!r}")

    @classmethod
    def from_kolo(cls, config: Mapping[str, Any], *, name: str | None = None) -> TraceProcessor:
        """Build a processor from a Kolo processor config dict, unchanged.

        Args:
            config: a dict as in Kolo's plugin documentation: ``co_names``,
                ``path_fragment``, ``call_type``, ``return_type`` (required), ``subtype``,
                ``call``, ``process``, ``build_context``, ``events``, ``unwind_type``,
                ``resume_type``, ``yield_type``, ``throw_type`` (optional).
            name: the processor name; defaults to ``config["name"]``, then ``subtype``,
                then ``call_type``.

        Raises:
            ValueError: a required key is missing or a value is malformed (names the key).
        """
        missing = [k for k in ("co_names", "path_fragment", "call_type", "return_type") if k not in config]
        if missing:
            raise ValueError(f"Kolo processor config: missing required key(s) {missing}")
        known = {
            "co_names", "path_fragment", "call_type", "return_type", "subtype", "call",
            "process", "build_context", "events", "unwind_type", "resume_type",
            "yield_type", "throw_type", "name", "description", "requires",
        }
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"Kolo processor config: unknown key(s) {sorted(unknown)}")
        kwargs = {k: v for k, v in config.items() if k != "name"}
        if "events" in kwargs and kwargs["events"] is not None:
            kwargs["events"] = tuple(kwargs["events"])
        elif "events" in kwargs:
            del kwargs["events"]
        resolved = name or config.get("name") or config.get("subtype") or config["call_type"]
        return cls(name=resolved, **kwargs)


@dataclass(frozen=True, slots=True)
class EventSink:
    """A destination for events (LUNA's event plugins, an exporter in OpenTelemetry's terms).

    The event bus gives every sink its own worker and queue, so a slow or failing sink
    never holds up the others; a batch that fails is retried with backoff, then kept as a
    dead letter.

    Attributes:
        name: unique sink name; configured under ``[events.sinks.NAME]``.
        handle: ``handle(events: list[Event]) -> None`` (or ``async def``); receives a batch
            of :class:`hostapp.events.Event`. Raising means the whole batch failed and will
            be retried.
        event_types: which event types it accepts: exact names
            (``"outbound_http_request"``), globs (``"background_job*"``) or ``"*"``.
        open: ``open(config: dict) -> None`` (or async), called once before the first
            batch with the sink's ``[events.sinks.NAME]`` table.
        close: ``close() -> None`` (or async), called once after the last batch.
        batch_size: most events per ``handle`` call (default: ``events.batch_size``).
        flush_interval_ms: longest wait in milliseconds before a partial batch is handed
            over (default: ``events.flush_interval_ms``).
        max_retries: retries of a failed batch before it becomes a dead letter (default:
            ``events.max_retries``).
        description: one line for listings.
        opt_in: ``False`` (the default): the sink runs whenever its plugin is loaded, its
            ``[events.sinks.NAME]`` table (if any) holding its settings, ``enabled = false``
            turning it off. ``True``: it runs only when the configuration has that table
            (for a sink that needs settings to do anything, or that every installation
            gets but few want: hostapp's ``jsonl``, ``logging`` and ``webhook``).
    """

    name: str
    handle: Callable[[list[Any]], Any]
    event_types: tuple[str, ...] = ("*",)
    open: Callable[[dict[str, Any]], Any] | None = None
    close: Callable[[], Any] | None = None
    batch_size: int | None = None
    flush_interval_ms: float | None = None
    max_retries: int | None = None
    description: str | None = None
    opt_in: bool = False

    def __post_init__(self) -> None:
        kind = "EventSink"
        _check_name(kind, self.name)
        _check_callable(kind, "handle", self.handle, optional=False)
        _check_callable(kind, "open", self.open)
        _check_callable(kind, "close", self.close)
        if isinstance(self.event_types, str):
            object.__setattr__(self, "event_types", (self.event_types,))
        object.__setattr__(self, "event_types", tuple(self.event_types))
        if not self.event_types or not all(isinstance(t, str) and t for t in self.event_types):
            raise ValueError(f"{kind}.event_types: expected non-empty strings, got {self.event_types!r}")
        _check_positive(kind, "batch_size", self.batch_size)
        _check_positive(kind, "flush_interval_ms", self.flush_interval_ms)
        if self.max_retries is not None and (not isinstance(self.max_retries, int) or self.max_retries < 0):
            raise ValueError(f"{kind}.max_retries: expected an integer >= 0, got {self.max_retries!r}")


@dataclass(frozen=True, slots=True)
class DriverSpec:
    """A driver: builds named components from configuration (opa-stack's drivers).

    A *component* is the object a driver's ``factory`` returns for one
    ``[components.NAME]`` table (``driver = "<DriverSpec.name>"``, ``load``, ``options``):
    a database handle, a cache client, a connection pool. It has opa-stack's Driver class
    shape: ``connect()``, and optionally ``validate()``, ``close()`` and ``health()``; each
    may be a plain or an ``async def`` method. The host builds every configured component
    at start, between ``hostapp_configure`` and the store (see ``docs/drivers.md``), and
    the application reaches it with ``host.component("NAME")``.

    Attributes:
        name: the driver name, the ``driver`` value of a component table (``"sqlite"``,
            ``"redis"``).
        factory: ``factory(options: dict) -> component`` (or ``async def``): the
            component's ``options`` table (a :class:`hostapp.drivers.ComponentOptions`, a
            ``dict`` that also knows the component's ``name`` and the config ``root``).
            Usually the component class itself. Raising (``TypeError``/``ValueError`` for
            bad options) makes the component unavailable with that error.
        description: one line for listings (``hostapp plugins``, ``hostapp components``).

    The component's methods (all optional but ``connect``; sync or async):

    * ``connect()``: open the connection; raising or returning ``False`` means the
      component is unavailable (opa-stack's ``connect``).
    * ``validate()``: called after a successful ``connect``; raising or returning
      ``False`` means unavailable (a ping, a schema check).
    * ``close()``: called once at stop, components in reverse build order.
    * ``health()``: a health check: ``False`` or raising is unhealthy, any other return
      value is healthy and kept as the detail (JSON-able: ``True``, a dict, a string).

    Raises:
        ValueError: on construction, naming the field that is missing or malformed.
    """

    name: str
    factory: Callable[[dict[str, Any]], Any]
    description: str | None = None

    def __post_init__(self) -> None:
        kind = "DriverSpec"
        _check_name(kind, self.name)
        _check_callable(kind, "factory", self.factory, optional=False)
        if self.description is not None and not isinstance(self.description, str):
            raise ValueError(f"{kind}.description: expected a string, got {type(self.description).__name__}")


@dataclass(frozen=True, slots=True)
class BackgroundTask:
    """A job that runs for the life of the host, supervised (LUNA's background plugins).

    The supervisor (:mod:`hostapp.tasks`) starts every task after ``hostapp_startup``,
    restarts it by its ``restart`` policy with exponential backoff, reports every failure
    (a ``background_task_failed`` event with the traceback, a warning, the task's record
    in the store) and stops it at host stop, waiting at most ``stop_timeout``.

    Attributes:
        name: unique task name (the supervisor's record, ``hostapp tasks``, the thread
            name ``hostapp-task-NAME`` of a sync task).
        run: the task body. ``async def run(host) -> None`` runs on the host's loop
            (``host.loop``) and is cancelled at stop. A plain function is called as
            ``run(host, stop_event) -> None`` in a daemon thread of its own
            (``hostapp-task-NAME``); ``stop_event`` is a :class:`threading.Event` set at
            stop, which the function must check (``stop_event.wait(seconds)`` instead of
            ``time.sleep``). Raising is a failure; returning ends the task (``"always"``
            restarts it). With ``interval``, ``run`` is one iteration.
        restart: ``"on-failure"`` (default: restart when ``run`` raises), ``"always"``
            (also when it returns) or ``"never"`` (a failure marks the task failed).
            systemd's ``Restart=`` values.
        backoff_initial: seconds before the first restart after a failure (> 0,
            default 1.0); each further consecutive failure doubles the delay.
        backoff_max: the longest delay in seconds (>= ``backoff_initial``, default 60.0).
            A run that returns, or that ran at least ``backoff_max`` seconds before it
            failed, resets the delay to ``backoff_initial`` (and the consecutive failures).
        jitter: a fraction in ``[0, 1]`` (default 0): each delay is multiplied by a random
            factor in ``[1 - jitter, 1 + jitter]`` (never above ``backoff_max``).
        interval: ``None`` (default: ``run`` is long-running) or seconds (> 0): ``run`` is
            one iteration, called every ``interval`` seconds. Iterations never overlap: the
            next starts at the later of ``interval`` after the previous start and the end
            of the previous iteration; the ticks an overrunning iteration swallows are
            counted as ``skipped``. The first iteration runs at start.
        stop_timeout: seconds (> 0, default 5.0) the task gets to finish once stopped
            (cancelled, or its ``stop_event`` set). A task still running after that is
            reported ``stuck`` and abandoned; the host's stop goes on.
        max_restarts: most consecutive restarts after failures (``None``, the default:
            unlimited). The failure after the last allowed restart marks the task failed.
        initialize: ``initialize(host) -> None`` (or ``async``), called once before the
            first run (LUNA's ``initialize``); raising is a failure, retried like ``run``.
            A plain function runs in the task's thread for a sync task, on the loop for an
            async one.
        close: ``close(host) -> None`` (or ``async``), called once when the task has ended
            (stopped, finished or failed) if ``initialize`` succeeded or there is none
            (LUNA's ``close``). Not called for a stuck task.
        description: one line for listings.

    Raises:
        ValueError: on construction, naming the field that is missing or malformed
            (e.g. a sync ``run`` that cannot be called as ``run(host, stop_event)``).
    """

    name: str
    run: Callable[..., Any]
    restart: Literal["on-failure", "always", "never"] = "on-failure"
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    jitter: float = 0.0
    interval: float | None = None
    stop_timeout: float = 5.0
    max_restarts: int | None = None
    initialize: Callable[[Any], Any] | None = None
    close: Callable[[Any], Any] | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        kind = "BackgroundTask"
        _check_name(kind, self.name)
        _check_callable(kind, "run", self.run, optional=False)
        _check_callable(kind, "initialize", self.initialize)
        _check_callable(kind, "close", self.close)
        if self.restart not in ("on-failure", "always", "never"):
            raise ValueError(
                f"{kind}.restart: expected 'on-failure', 'always' or 'never', got {self.restart!r}"
            )
        _check_positive(kind, "backoff_initial", self.backoff_initial, optional=False)
        _check_positive(kind, "backoff_max", self.backoff_max, optional=False)
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"{kind}.backoff_max: expected >= backoff_initial ({self.backoff_initial!r}), "
                f"got {self.backoff_max!r}"
            )
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) or not 0 <= self.jitter <= 1:
            raise ValueError(f"{kind}.jitter: expected a number from 0 to 1, got {self.jitter!r}")
        _check_positive(kind, "interval", self.interval)
        _check_positive(kind, "stop_timeout", self.stop_timeout, optional=False)
        if self.max_restarts is not None and (
            isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or self.max_restarts < 0
        ):
            raise ValueError(
                f"{kind}.max_restarts: expected None or an integer >= 0, got {self.max_restarts!r}"
            )
        args = ("host",) if self.kind == "async" else ("host", "stop_event")
        try:
            signature = inspect.signature(self.run)
        except (TypeError, ValueError):  # a builtin without a signature: checked when called
            return
        try:
            signature.bind(*args)
        except TypeError:
            shape = "async def run(host)" if self.kind == "async" else "run(host, stop_event)"
            raise ValueError(
                f"{kind}.run: {self.kind} tasks are called as {shape}; "
                f"{getattr(self.run, '__qualname__', self.run)!r} takes {signature}"
            ) from None

    @property
    def kind(self) -> Literal["async", "sync"]:
        """``"async"`` when ``run`` is a coroutine function (or an object whose
        ``__call__`` is one), else ``"sync"``."""
        return "async" if is_async_callable(self.run) else "sync"


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` makes a coroutine: a coroutine function (a
    :func:`functools.partial` of one included), or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


@dataclass(frozen=True, slots=True)
class InstrumentType:
    """A kind of probe instrument (Diagnose's instrument types: log, hist, incr).

    Attributes:
        name: the ``instrument.type`` value in a probe spec (``"log"``, ``"incr"``).
        factory: ``factory(spec: dict, host) -> instrument``: ``spec`` is the probe spec
            in Diagnose's format, ``host`` the running host or ``None``; the instrument is
            called as ``instrument(value)`` on the probed thread each time the probe fires
            (the optional ``snapshot()``, ``close()``, ``default_value``, ``pure`` and
            ``wants_elapsed`` are described at ``hostapp_instrument_types``).
        description: one line for listings.
    """

    name: str
    factory: Callable[..., Any]
    description: str | None = None

    def __post_init__(self) -> None:
        _check_name("InstrumentType", self.name)
        _check_callable("InstrumentType", "factory", self.factory, optional=False)


@dataclass(frozen=True, slots=True)
class CliCommand:
    """A subcommand added to the ``hostapp`` command (conda's ``CondaSubcommand``).

    Attributes:
        name: the subcommand name (``hostapp NAME ...``); must not clash with a built-in.
        command: a :class:`click.Command` (or group). Its own name is replaced by ``name``.
        summary: one line shown in ``hostapp --help``.
    """

    name: str
    command: Any
    summary: str | None = None

    def __post_init__(self) -> None:
        _check_name("CliCommand", self.name)
        if not hasattr(self.command, "main") or not callable(getattr(self.command, "invoke", None)):
            raise ValueError(
                f"CliCommand.command: expected a click.Command, got {type(self.command).__name__}"
            )


#: The values of :attr:`EventRenderer.shape`.
RENDER_SHAPES: tuple[str, ...] = ("span", "mark")


@dataclass(frozen=True, slots=True)
class EventRenderer:
    """How people see events of some types: one line in ``hostapp events``, the labelled
    fields of one event (``hostapp events show``, the web view's detail pane), and a bar or
    a mark on the web view's time axis.

    The CLI and the web view use the same renderers, so a plugin that defines its own event
    types draws them once for both. An event type no renderer claims is shown generically
    (its subtype and its data as ``key=value`` pairs). Renderers are looked up by event
    type: the first renderer (in plugin order) whose ``event_types`` has an exact match
    wins, else the first glob match.

    Attributes:
        name: unique renderer name (``"http"``, ``"probe"``).
        event_types: the event types it renders, exact names or globs
            (``fnmatch.fnmatchcase``: ``"acme.*"``).
        summary: ``summary(event) -> str``: one line, without the time, thread or run
            (``"GET https://api.example.org/v1/items -> 200"``). Keep it short: the CLI
            cuts it at the terminal's width.
        fields: ``fields(event) -> Iterable[tuple[str, Any]]``: the labelled values of one
            event in display order (``[("method", "GET"), ("status", 200), ...]``); values
            are shown as text, dicts and lists as JSON. ``None``: the event's data items.
        shape: ``"span"`` — the event has a duration (``data["duration_ns"]``, ns) and is
            drawn as a bar from its ``timestamp_ns``; ``"mark"`` — a point in time.
        label: a short kind label for listings and the web view's legend (``"HTTP"``,
            ``"job"``); default the renderer's name.
        description: one line for listings.

    A renderer that raises is reported once and the event is shown generically: a broken
    renderer never hides an event.

    Raises:
        ValueError: an empty ``name`` or ``event_types``, a non-callable ``summary`` or
            ``fields``, or an unknown ``shape``.
    """

    name: str
    event_types: tuple[str, ...]
    summary: Callable[[Any], str]
    fields: Callable[[Any], Any] | None = None
    shape: str = "mark"
    label: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        _check_name("EventRenderer", self.name)
        if isinstance(self.event_types, str) or not self.event_types or not all(
            isinstance(t, str) and t for t in self.event_types
        ):
            raise ValueError(
                f"EventRenderer.event_types: expected a non-empty tuple of event types, got {self.event_types!r}"
            )
        object.__setattr__(self, "event_types", tuple(self.event_types))
        _check_callable("EventRenderer", "summary", self.summary, optional=False)
        _check_callable("EventRenderer", "fields", self.fields)
        if self.shape not in RENDER_SHAPES:
            raise ValueError(f"EventRenderer.shape: expected one of {', '.join(RENDER_SHAPES)}, got {self.shape!r}")


#: HTTP methods a :class:`Route` may name (RFC 9110, plus PATCH from RFC 5789).
HTTP_METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


@dataclass(frozen=True, slots=True)
class Route:
    """An HTTP route ``hostapp serve`` mounts for a plugin (LUNA's ``app.addRoutes``,
    opa-stack's per-plugin ``router``), read the way Starlette's ``Route``/``Mount`` read.

    Attributes:
        path: where it answers, starting with ``/``: ``"/teapot"``, ``"/items/{item_id}"``
            (Starlette's path syntax, ``{name}`` and ``{name:int}`` parameters). Paths under
            hostapp's own ``/api``, ``/-`` and the web view (``/``, ``/runs``, ``/plugins``)
            are refused when the app is built.
        endpoint: one of
            * a function (``def`` or ``async def``) taking a Starlette ``Request`` and
              returning a Starlette ``Response`` — a *route*, answering exactly ``path``;
            * a Starlette ``HTTPEndpoint`` subclass (one method per HTTP verb) — a route too;
            * an ASGI application ``app(scope, receive, send)`` (a Starlette ``Router``, a
              FastAPI ``APIRouter``'s app, any ASGI callable) — a *mount*: it receives every
              request under ``path`` (Starlette's ``Mount``), with ``root_path`` set to it.
        methods: the HTTP methods a route answers (default ``("GET",)``; ``HEAD`` is
            added to ``GET`` as Starlette does). Ignored for a mount, which routes itself.
        name: the route's name, unique among all plugins' routes (Starlette's
            ``url_path_for`` name); default: ``path``.
        description: one line for listings (``hostapp routes``).

    A path claimed by two plugins (or two routes) is refused when ``hostapp serve``
    starts, naming both plugins; so is a route under another plugin's mount.

    Raises:
        ValueError: on construction: a ``path`` not starting with ``/`` (or a mount path
            ending with ``/``), an ``endpoint`` that is neither a one-argument callable, an
            ``HTTPEndpoint`` class nor a three-argument ASGI callable, or unknown methods.
    """

    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...] = ("GET",)
    name: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        kind = "Route"
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValueError(f"{kind}.path: expected a path starting with '/', got {self.path!r}")
        if any(c.isspace() for c in self.path) or "?" in self.path or "#" in self.path:
            raise ValueError(f"{kind}.path: expected a path without spaces, '?' or '#', got {self.path!r}")
        _check_callable(kind, "endpoint", self.endpoint, optional=False)
        if isinstance(self.methods, str):
            object.__setattr__(self, "methods", (self.methods,))
        methods = tuple(str(m).upper() for m in self.methods)
        unknown = sorted(set(methods) - HTTP_METHODS)
        if not methods or unknown:
            raise ValueError(f"{kind}.methods: expected HTTP methods, got {list(self.methods)!r}")
        object.__setattr__(self, "methods", methods)
        shape = _endpoint_shape(self.endpoint)
        if shape is None:
            raise ValueError(
                f"{kind}.endpoint: expected a function taking a Request, an HTTPEndpoint class or "
                f"an ASGI app (scope, receive, send); got {getattr(self.endpoint, '__qualname__', self.endpoint)!r}"
            )
        if shape == "mount" and self.path != "/" and self.path.endswith("/"):
            raise ValueError(f"{kind}.path: a mounted app's path must not end with '/', got {self.path!r}")
        if self.name is None:
            object.__setattr__(self, "name", self.path)
        _check_name(kind, self.name)

    @property
    def kind(self) -> Literal["route", "mount"]:
        """``"route"`` (a request endpoint answering ``path``) or ``"mount"`` (an ASGI app
        receiving everything under ``path``)."""
        return "mount" if _endpoint_shape(self.endpoint) == "mount" else "route"


def _endpoint_shape(endpoint: object) -> str | None:
    """``"route"`` for a class (Starlette's ``HTTPEndpoint``) or a callable taking one
    positional argument, ``"mount"`` for one taking three (ASGI), else ``None``."""
    if inspect.isclass(endpoint):
        return "route"
    try:
        signature = inspect.signature(endpoint)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    positional = [
        p for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) == 3:
        return "mount"
    if len(positional) == 1:
        return "route"
    return None


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Contribution(Generic[T]):
    """A spec object tagged with where it came from, as returned by ``PluginManager.collect``.

    Attributes:
        spec: the spec object (a :class:`TraceProcessor`, :class:`EventSink`, ...).
        plugin: the name of the plugin that returned it.
        distribution: that plugin's distribution name (``None`` outside entry points).
        version: that distribution's version.
    """

    spec: T
    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def name(self) -> str:
        """The spec's own ``name``."""
        return self.spec.name  # type: ignore[attr-defined, no-any-return]

    def describe(self) -> str:
        """``"plugin 'x' (distribution 'd' 1.0)"`` or ``"plugin 'x'"``, for messages."""
        if self.distribution:
            return f"plugin {self.plugin!r} (distribution {self.distribution!r} {self.version or '?'})"
        return f"plugin {self.plugin!r}"


#: Human names of the spec kinds, used in messages.
KIND_NAMES: dict[type, str] = {
    TraceProcessor: "trace processor",
    EventSink: "event sink",
    DriverSpec: "driver",
    BackgroundTask: "background task",
    InstrumentType: "instrument type",
    CliCommand: "CLI command",
    EventRenderer: "event renderer",
    Route: "route",
}

