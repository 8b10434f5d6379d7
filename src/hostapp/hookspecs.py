"""Every hookspec of hostapp. Each docstring is that hook's contract.

Two shapes of hook (see ``docs/writing-plugins.md``):

* **Registration hooks** return spec objects from :mod:`hostapp.types` — one object, a
  list, or a generator. The host collects them once at start with
  ``PluginManager.collect(NAME)``: each object's type is checked, it is tagged with the
  plugin and distribution that returned it, and two objects of one kind with the same
  name are an error naming both plugins. All registration hooks are *isolated*: a plugin
  whose implementation raises is reported and skipped.
* **Call hooks** are called by the host while it runs. They are isolated too: a plugin
  that raises is reported with its name and the other plugins still run.

Every hook may be implemented with ``def`` or ``async def``; the host awaits what needs
awaiting (``await pm.ahook.NAME(...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hostapp._markers import hookspec
from hostapp.types import (
    BackgroundTask,
    CliCommand,
    DriverSpec,
    EventRenderer,
    EventSink,
    InstrumentType,
    Route,
    TraceProcessor,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hostapp.config import Config
    from hostapp.lifecycle import PluginInfo

#: Names of the registration hooks, in the order the host collects them.
REGISTRATION_HOOKS: tuple[str, ...] = (
    "hostapp_trace_processors",
    "hostapp_event_sinks",
    "hostapp_drivers",
    "hostapp_background_tasks",
    "hostapp_instrument_types",
    "hostapp_cli_commands",
    "hostapp_event_renderers",
    "hostapp_routes",
)

#: Names of the call hooks, in the order the host calls them during a run.
CALL_HOOKS: tuple[str, ...] = (
    "hostapp_plugin_state",
    "hostapp_configure",
    "hostapp_startup",
    "hostapp_shutdown",
)


# --------------------------------------------------------------------------------------
# Registration hooks
# --------------------------------------------------------------------------------------


@hookspec(isolate=True, collect=TraceProcessor)
def hostapp_trace_processors() -> TraceProcessor | Iterable[TraceProcessor]:
    """Contribute trace processors: code selected by function name and file path.

    Called once at host start. Return (or yield) :class:`hostapp.TraceProcessor` objects;
    their fields are Kolo's processor config. The tracing engine instruments only the code
    objects they select.

    Returns:
        a ``TraceProcessor``, an iterable of them, or ``None``.

    Errors:
        isolated — an implementation that raises, or returns something that is not a
        ``TraceProcessor``, is reported with the plugin's name and its processors are
        skipped. Two processors with the same ``name`` are a ``DuplicateNameError``.

    Example::

        import hostapp

        def process_fetch(frame, event, arg, context):
            context["calls"] += 1
            return {"url": frame.f_locals["url"], "n": context["calls"]}

        @hostapp.hookimpl
        def hostapp_trace_processors():
            yield hostapp.TraceProcessor(
                name="fetch",
                co_names=("fetch",),
                path_fragment="myapp/client.py",
                call_type="fetch_start",
                return_type="fetch_end",
                process=process_fetch,
                build_context=lambda config: {"calls": 0},
            )
    """


@hookspec(isolate=True, collect=EventSink)
def hostapp_event_sinks() -> EventSink | Iterable[EventSink]:
    """Contribute event sinks: destinations for events (LUNA's event plugins).

    Called once at host start. Each :class:`hostapp.EventSink` gets its own worker and
    queue; it receives batches of the event types it accepts.

    Returns:
        an ``EventSink``, an iterable of them, or ``None``.

    Errors:
        isolated — see :func:`hostapp_trace_processors`. Duplicate sink names are a
        ``DuplicateNameError``.

    Example::

        import hostapp

        def handle(events):
            for event in events:
                print(event.type, event.data)

        @hostapp.hookimpl
        def hostapp_event_sinks():
            return hostapp.EventSink(
                name="printer", handle=handle, event_types=("monitoring_event",)
            )
    """


@hookspec(isolate=True, collect=DriverSpec)
def hostapp_drivers() -> DriverSpec | Iterable[DriverSpec]:
    """Contribute drivers: named factories of components (opa-stack's drivers).

    Called once at host start, after ``hostapp_configure``. Each ``[components.NAME]``
    table names a driver (``driver = "..."``); the host calls that driver's
    ``factory(options)``, then the component's ``connect()`` and ``validate()`` (each may
    be ``async def``). ``load = "auto"`` (the default): a component that fails is marked
    unavailable with its error and the host goes on; ``load = "yes"``: the host does not
    start; ``load = "no"``: not built. ``host.component("NAME")`` returns the component;
    ``close()`` is called at stop, in reverse build order. See ``docs/drivers.md``.

    Returns:
        a ``DriverSpec``, an iterable of them, or ``None``.

    Errors:
        isolated — see :func:`hostapp_trace_processors`. Duplicate driver names are a
        ``DuplicateNameError``. A component that cannot connect does not mark the
        driver's plugin failed (the resource is at fault, not the plugin). A component
        table naming a driver nobody contributes is a ``ConfigError`` (exit status 2).

    Example::

        import json
        import pathlib

        import hostapp

        class JsonFile:
            "A component: one JSON document on disk."

            def __init__(self, options):
                self.path = pathlib.Path(options["path"])

            def connect(self):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not self.path.exists():
                    self.path.write_text("{}")

            def validate(self):
                json.loads(self.path.read_text())  # raises when the file is not JSON

            def health(self):
                return {"bytes": self.path.stat().st_size}

            def close(self):
                pass

        @hostapp.hookimpl
        def hostapp_drivers():
            return hostapp.DriverSpec(name="jsonfile", factory=JsonFile,
                                      description="a JSON document on disk")

    configured as::

        [components.settings]
        driver = "jsonfile"
        load = "yes"
        options = { path = "var/settings.json" }
    """


@hookspec(isolate=True, collect=BackgroundTask)
def hostapp_background_tasks() -> BackgroundTask | Iterable[BackgroundTask]:
    """Contribute background tasks: jobs that run for the life of the host, supervised (LUNA).

    Called once at host start, after ``hostapp_startup``; the tasks start right away under
    the host's :class:`~hostapp.tasks.TaskSupervisor` (before tracing). An ``async def
    run(host)`` runs on the host's loop; a plain ``run(host, stop_event)`` in a daemon
    thread ``hostapp-task-NAME``. A task that raises is restarted by its ``restart``
    policy after an exponential backoff, and every failure is reported: a
    ``background_task_failed`` event (with the traceback text), a warning on the
    ``hostapp`` logger and the task's record in the store (``hostapp tasks``). At stop,
    after tracing stops and before ``hostapp_shutdown``, async tasks are cancelled and
    sync tasks' ``stop_event`` is set; each gets ``stop_timeout`` seconds, and one still
    running is reported ``stuck`` and abandoned (the stop goes on). See
    ``docs/background-tasks.md``.

    Returns:
        a ``BackgroundTask``, an iterable of them, or ``None``.

    Errors:
        isolated — see :func:`hostapp_trace_processors`. Duplicate task names are a
        ``DuplicateNameError``. A malformed ``BackgroundTask`` raises ``ValueError``
        naming the field, reported like any error of the hook.

    Example::

        import asyncio
        import hostapp

        async def heartbeat(host):
            while True:
                host.emit("monitoring_event", "heartbeat")
                await asyncio.sleep(30)

        @hostapp.hookimpl
        def hostapp_background_tasks():
            return hostapp.BackgroundTask(name="heartbeat", run=heartbeat)
    """


@hookspec(isolate=True, collect=InstrumentType)
def hostapp_instrument_types() -> InstrumentType | Iterable[InstrumentType]:
    """Contribute probe instrument types (Diagnose's log, hist, incr; hostapp's built-ins
    are ``log``, ``incr``, ``hist`` and ``event``, each a plugin ``instruments.NAME``).

    Called once when a host's probe manager starts (the built-in ``probes`` task, at the
    first probe spec it finds). A probe spec whose ``instrument.type`` equals an instrument
    type's ``name`` is built with that type's ``factory(spec, host)`` in every process that
    applies it, where ``spec`` is the probe spec in Diagnose's format (``id``, ``target``,
    ``instrument`` with ``type``, ``name``, ``value``, ``event``, ``custom``,
    ``condition``; ``expires``) and ``host`` the running :class:`~hostapp.Host` (or
    ``None`` for ``hostapp.probes.attach_to`` without one). The object it returns is the
    *instrument*: it is called as ``instrument(value)`` on the probed thread every time
    the probe fires (after its ``condition``), with ``value`` the result of the spec's
    ``value`` expression. Optional attributes: ``default_value`` (the expression used
    when the spec has none), ``snapshot()`` (a JSON-able dict of its current value, read
    off the probed thread: ``hostapp probes show`` prints it), ``close()`` (when the probe
    is removed), ``pure = True`` (it never calls the program's code: no re-entry guard on
    3.11), ``wants_elapsed = True`` (called as ``instrument(value, elapsed_ns)``).
    Whatever it raises is counted against the spec, never raised into the probed code;
    after ``probes.max_errors`` errors it is switched off in that process. It must not
    block: hand slow work to a thread of your own (see ``docs/probes.md``).

    Returns:
        an ``InstrumentType``, an iterable of them, or ``None``.

    Errors:
        isolated — see :func:`hostapp_trace_processors`. Duplicate names are a
        ``DuplicateNameError``. A factory that raises makes that spec's ``applied``
        record an error in that process; other specs are not affected.

    Example::

        import hostapp

        class Maximum:  # keeps the largest value seen
            pure = True

            def __init__(self, spec, host):
                self.largest = None

            def __call__(self, value):
                if self.largest is None or value > self.largest:
                    self.largest = value

            def snapshot(self):
                return {"kind": "maximum", "largest": self.largest}

        @hostapp.hookimpl
        def hostapp_instrument_types():
            return hostapp.InstrumentType(name="max", factory=Maximum)
    """


@hookspec(isolate=True, collect=CliCommand)
def hostapp_cli_commands() -> CliCommand | Iterable[CliCommand]:
    """Contribute subcommands to the ``hostapp`` command.

    Called once when the ``hostapp`` command starts, after discovery. A command whose
    name clashes with a built-in command or another plugin's is reported and skipped.

    Returns:
        a ``CliCommand``, an iterable of them, or ``None``.

    Errors:
        isolated — see :func:`hostapp_trace_processors`.

    Example::

        import click
        import hostapp

        @click.command()
        @click.argument("name")
        def hello(name):
            "Say hello."
            click.echo(f"hello {name}")

        @hostapp.hookimpl
        def hostapp_cli_commands():
            return hostapp.CliCommand(name="hello", command=hello, summary="Say hello.")
    """


@hookspec(isolate=True, collect=EventRenderer)
def hostapp_event_renderers() -> EventRenderer | Iterable[EventRenderer]:
    """Contribute event renderers: how people see your event types.

    Called when something shows events to a person: ``hostapp events`` (one line per event,
    ``hostapp events show`` for one event whole) and the web view of ``hostapp serve`` (the
    run's time axis and the detail pane) use the same renderers, so an event type is drawn
    once for both. An event type no renderer claims is shown generically. The built-in
    renderers cover the HTTP calls, background jobs, probes, tasks and ``monitoring_event``.

    Returns:
        an ``EventRenderer``, an iterable of them, or ``None``.

    Errors:
        isolated — see :func:`hostapp_trace_processors`. Duplicate names are a
        ``DuplicateNameError``. A renderer that raises for an event is reported once and that
        event is shown generically.

    Example::

        import hostapp

        @hostapp.hookimpl
        def hostapp_event_renderers():
            return hostapp.EventRenderer(
                name="charge",
                event_types=("charge_end",),
                summary=lambda e: f"charged {e.data['amount']} in {e.data['duration_ns'] / 1e6:.1f} ms",
                fields=lambda e: [("amount", e.data["amount"]), ("customer", e.data.get("customer"))],
                shape="span",
                label="payment",
            )
    """


@hookspec(isolate=True, collect=Route)
def hostapp_routes() -> Route | Iterable[Route]:
    """Contribute HTTP routes that ``hostapp serve`` mounts (LUNA's ``app.addRoutes``,
    opa-stack's per-plugin ``router``).

    Called once when the ASGI app is built (``hostapp serve``, or
    ``hostapp.asgi.create_app(host)`` once the host has started). A route's endpoint is a
    function taking a Starlette ``Request`` (``def`` or ``async def``), an ``HTTPEndpoint``
    class, or an ASGI app mounted under the path. Requests to plugin routes go through the
    same security as hostapp's own (a method other than GET/HEAD/OPTIONS needs the token,
    every request does on a non-loopback bind) and each one emits a ``monitoring_event``.
    ``hostapp routes`` lists them. Needs the ``hostapp[serve]`` extra (Starlette, uvicorn).
    See ``docs/serve.md``.

    Returns:
        a ``Route``, an iterable of them, or ``None``.

    Errors:
        isolated — see :func:`hostapp_trace_processors`. Two routes with the same ``name``
        or the same ``path``, a route under another plugin's mount, or a path under
        hostapp's own (``/api``, ``/-``, the web view) are refused when the app is built,
        naming both plugins (a ``DuplicateNameError``; ``hostapp serve`` exits 1).

    Example::

        from starlette.responses import PlainTextResponse

        import hostapp

        async def teapot(request):
            return PlainTextResponse("I'm a teapot", status_code=418)

        @hostapp.hookimpl
        def hostapp_routes():
            return hostapp.Route("/teapot", teapot, methods=("GET",))
    """


# --------------------------------------------------------------------------------------
# Call hooks
# --------------------------------------------------------------------------------------


@hookspec(isolate=True)
def hostapp_plugin_state(info: PluginInfo) -> None:
    """Called on every plugin state transition (plux's lifecycle listener).

    Args:
        info: the :class:`hostapp.PluginInfo` whose ``state`` just changed; for
            ``failed``, ``stage``, ``error`` and ``traceback`` are set; for ``filtered``,
            ``rule``. Read it, do not change it.

    The transitions made while ``PluginManager.load()`` runs (discovered, filtered,
    shadowed, imported, registered, failed) are delivered once loading is done, in order,
    as snapshots, so every listener sees every plugin's transitions, its own included.
    Later transitions (started, stopped, failed at configure or start) are delivered as
    they happen.

    Returns:
        nothing; return values are ignored.

    Errors:
        isolated — a listener that raises is reported and skipped; loading goes on.

    Example::

        @hostapp.hookimpl
        def hostapp_plugin_state(info):
            if info.state == "failed":
                print(f"{info.name} failed at {info.stage}: {info.error}")
    """


@hookspec(isolate=True)
def hostapp_configure(config: Config) -> None:
    """Called once after every plugin is registered, before anything starts.

    Args:
        config: the validated :class:`hostapp.config.Config`. A plugin's own table
            ``[plugins.config.NAME]`` is ``config.plugin_config("NAME")`` (a dict, empty
            when absent).

    Returns:
        nothing; return values are ignored.

    Errors:
        isolated — a plugin that raises is reported, marked failed at stage
        ``configure``, and the host goes on.

    Example::

        @hostapp.hookimpl
        def hostapp_configure(config):
            settings = config.plugin_config("acme")
            ACME.endpoint = settings.get("endpoint", "http://127.0.0.1:9000")
    """


@hookspec(isolate=True)
def hostapp_startup(host: Any) -> None:
    """Called once when the host starts, after components and sinks are ready.

    Args:
        host: the starting :class:`hostapp.Host`; ``host.emit(...)`` works from here on.

    Returns:
        nothing; may be ``async def`` (awaited in call order on the host's loop).

    Errors:
        isolated — a plugin that raises is reported, marked failed at stage ``start``,
        and the host goes on.

    Example::

        @hostapp.hookimpl
        async def hostapp_startup(host):
            host.emit("monitoring_event", "started", plugin="acme")
    """


@hookspec(isolate=True)
def hostapp_shutdown(host: Any) -> None:
    """Called once when the host stops, before sinks are drained and closed.

    Args:
        host: the stopping :class:`hostapp.Host`; ``host.emit(...)`` still delivers.

    Returns:
        nothing; may be ``async def``. The whole stop is bounded by
        ``host.shutdown_timeout`` seconds.

    Errors:
        isolated — a plugin that raises is reported and the others still run.

    Example::

        @hostapp.hookimpl
        def hostapp_shutdown(host):
            host.emit("monitoring_event", subtype="stopping", plugin="acme")
    """
