"""hostapp's pytest fixtures and helpers, for testing hostapp plugins.

The fixtures are registered by hostapp's pytest plugin (the package ``hostapp_pytest``,
entry point ``pytest11``), so a plugin author gets them with no ``conftest.py``:

``hostapp_host``
    a started :class:`hostapp.Host` with the plugins the test names
    (``@pytest.mark.hostapp(plugins=[...], config={...})``), no entry points of installed
    distributions unless asked (``autoload=True``), its store in ``tmp_path``, the
    ``HOSTAPP_*`` environment ignored; stopped after the test.
``hostapp_events``
    the events that host emitted, as pytest's ``caplog`` holds log records
    (:class:`EventCapture`: ``.events``, ``.of_type(...)``, ``.http_calls``,
    ``.wait_for(type, n, timeout)``).
``hostapp_trace``
    ``with hostapp_trace(*processors) as events:`` runs a block with those trace
    processors (and no configuration file) and gives its events (an
    :class:`EventCapture`, complete when the block ends).
``hostapp_pm``
    an isolated :class:`hostapp.PluginManager` with hostapp's hookspecs and no plugins at
    all (no entry points, folders or config modules are read).
``hostapp_register``
    ``register(plugin, name=None, *, priority=0) -> PluginInfo``: registers a module,
    class, instance or ``@hookimpl`` function with ``hostapp_pm`` under a name for this
    test, checks ``check_pending()``, and unregisters it after the test.
``hostapp_site``
    a temporary directory on ``sys.path`` (and ``PYTHONPATH`` for subprocesses) that
    distributions can be installed into.
``hostapp_dist``
    ``install(name, version="1.0", entry_points={...}, files={...}) -> Path``: writes a
    real installed distribution (a ``.dist-info`` with ``entry_points.txt``, and its
    modules) into ``hostapp_site``, so the plugin is found exactly as production finds it.
``hostapp_breakpoint``
    ``breakpoint(target, name=None, **options) -> Breakpoint``: a started
    :class:`Breakpoint` (Diagnose's, on hostapp's probes: ``wait``, ``release``,
    ``start_thread``, ``stackframe``, ``await async_wait()``); every one is released and
    removed at teardown, so a failing test never hangs on a held thread.

``Breakpoint`` itself is importable from here (``from hostapp.testing import Breakpoint``).

And two helpers for a plugin's own suite: :func:`check_plugin` (one line: the plugin keeps
hostapp's contract) and :func:`environment_plugin_locations` (the other hostapp plugins
installed in the environment, to keep them out of a test run).

Example::

    import hostapp
    from hostapp.discovery import DiscoveryOptions

    def test_my_plugin_is_found(hostapp_dist):
        hostapp_dist(
            "acme-hostapp",
            entry_points={"hostapp": {"acme": "acme_plugin"}},
            files={"acme_plugin.py": "import hostapp\n"},
        )
        pm = hostapp.PluginManager()
        pm.load(options=DiscoveryOptions(use_cache=False), environ={})
        assert pm.infos["acme"].state == "registered"
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from hostapp.events import Event
    from hostapp.host import Host
    from hostapp.lifecycle import PluginInfo
    from hostapp.manager import PluginManager
    from hostapp.types import TraceProcessor

__all__ = [
    "Breakpoint",
    "EventCapture",
    "check_plugin",
    "environment_plugin_locations",
    "hostapp_breakpoint",
    "hostapp_dist",
    "hostapp_events",
    "hostapp_host",
    "hostapp_pm",
    "hostapp_register",
    "hostapp_site",
    "hostapp_trace",
]

#: The name of the capturing sink (and its plugin) the fixtures add to a host.
CAPTURE = "hostapp.testing"


def __getattr__(name: str) -> Any:
    if name == "Breakpoint":  # imported on first use: the probes are not loaded with pytest
        from hostapp.probes.breakpoints import Breakpoint

        return Breakpoint
    raise AttributeError(f"module 'hostapp.testing' has no attribute {name!r}")


@pytest.fixture
def hostapp_pm() -> PluginManager:
    """A fresh :class:`hostapp.PluginManager` with hostapp's hookspecs and no plugins."""
    from hostapp.manager import PluginManager

    return PluginManager()


@pytest.fixture
def hostapp_register(hostapp_pm: PluginManager) -> Iterator[Callable[..., PluginInfo]]:
    """``register(plugin, name=None, *, priority=0) -> PluginInfo`` on ``hostapp_pm``.

    The plugin goes through the same path as a discovered one (a class is instantiated,
    a ``@hookimpl`` function becomes a one-hook plugin) and is unregistered after the test.

    Raises:
        hostapp.PluginLoadError: the plugin could not be registered (pluggy's validation
            error is in the message).
        pluggy.PluginValidationError: an implementation matches no hookspec
            (``check_pending``).
    """
    from hostapp.errors import PluginLoadError
    from hostapp.lifecycle import PluginInfo, PluginState, Source
    from hostapp.manager import _as_plugin

    registered: list[str] = []

    def register(plugin: object, name: str | None = None, *, priority: int = 0) -> PluginInfo:
        obj = _as_plugin(plugin)
        info = PluginInfo(
            name=name or hostapp_pm.get_canonical_name(obj),
            source=Source.EXPLICIT,
            priority=priority,
            obj=obj,
            state=PluginState.IMPORTED,
        )
        if not hostapp_pm.register_plugin(info):
            raise PluginLoadError(info, f"plugin {info.name!r} could not be registered: {info.error}")
        registered.append(info.name)
        hostapp_pm.check_pending()
        return info

    yield register
    for name in reversed(registered):
        if hostapp_pm.has_plugin(name):
            hostapp_pm.unregister(name=name)


@pytest.fixture
def hostapp_site(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary site directory on ``sys.path`` and ``PYTHONPATH``, removed after the test.

    Modules imported from it during the test are removed from ``sys.modules`` afterwards.
    """
    site = tmp_path_factory.mktemp("site-packages")
    monkeypatch.syspath_prepend(str(site))
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(site) + (os.pathsep + old if old else ""))
    importlib.invalidate_caches()
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if str(getattr(module, "__file__", "") or "").startswith(str(site)):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def hostapp_dist(hostapp_site: Path) -> Callable[..., Path]:
    """``install(name, version="1.0", entry_points=None, files=None) -> Path``.

    Writes a real installed distribution into ``hostapp_site``: ``entry_points`` maps a
    group to ``{entry point name: "module:attr"}``; ``files`` maps a relative path to
    source text. Returns the ``.dist-info`` directory.
    """
    from hostapp.testing._distfactory import install_distribution

    def install(
        name: str,
        version: str = "1.0",
        entry_points: Mapping[str, Mapping[str, str]] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> Path:
        path = install_distribution(
            hostapp_site, name, version, entry_points=entry_points or {}, files=files or {}
        )
        importlib.invalidate_caches()
        return path

    return install


@pytest.fixture
def hostapp_breakpoint() -> Iterator[Callable[..., Any]]:
    """``breakpoint(target, name=None, **options) -> Breakpoint``, started.

    Options are :class:`hostapp.probes.breakpoints.Breakpoint`'s (``event``,
    ``condition``, ``block``, ``timeout``). At teardown every breakpoint made is
    released and removed, and the threads its ``start_thread`` started are given 5 s to
    end.
    """
    from hostapp.probes.breakpoints import Breakpoint

    made: list[Any] = []

    def make(target: Any, name: str | None = None, **options: Any) -> Any:
        bp = Breakpoint(target, name, **options)
        made.append(bp)
        return bp.start()

    yield make
    for bp in reversed(made):
        bp.stop()
    for bp in made:
        for thread in bp.threads:
            thread.join(5.0)


# -- a host and its events ------------------------------------------------------------------


class EventCapture:
    """The events a host emitted, for assertions (what pytest's ``caplog`` is for logs).

    A sink that accepts every event type, added to the host by the ``hostapp_host`` and
    ``hostapp_trace`` fixtures (as plugin ``hostapp.testing``). Delivery is asynchronous
    (each sink has its own worker), so reading :attr:`events` waits, at most ``settle``
    seconds, until every event the host had emitted by then has been delivered here; after
    the host stopped, nothing is waited for.

    Args:
        settle: seconds :attr:`events` waits for delivery.

    Attributes:
        host: the host it captures from (set by the fixtures), or ``None``.
    """

    def __init__(self, *, settle: float = 5.0) -> None:
        self.settle = settle
        self.host: Host | None = None
        self._events: list[Event] = []
        self._cond = threading.Condition()

    # -- the plugin ------------------------------------------------------------------

    def plugin(self) -> object:
        """The plugin object contributing the capturing sink (``hostapp.EventSink``)."""
        from hostapp._markers import hookimpl
        from hostapp.types import EventSink

        capture = self

        class _Capture:
            @hookimpl
            def hostapp_event_sinks(self) -> EventSink:
                return EventSink(
                    name=CAPTURE, handle=capture._handle, flush_interval_ms=1, max_retries=0,
                    description="hostapp.testing: every event, for the test",
                )

        return _Capture()

    def _handle(self, batch: list[Event]) -> None:
        with self._cond:
            self._events.extend(batch)
            self._cond.notify_all()

    # -- reading ---------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """Every event captured, in delivery order (a copy), after waiting for those
        emitted so far."""
        self._wait_delivered()
        with self._cond:
            return list(self._events)

    def of_type(self, *patterns: str) -> list[Event]:
        """The events whose type matches one of ``patterns`` (exact names or globs:
        ``"background_job*"``)."""
        return [e for e in self.events if any(fnmatch.fnmatchcase(e.type, p) for p in patterns)]

    @property
    def http_calls(self) -> list[Event]:
        """The HTTP calls, one ``outbound_http_request`` event per call: the built-in
        processors' call records as they are, Kolo-style request/response pairs joined
        (:func:`hostapp.events.calls.join_calls`). ``data`` has ``method``, ``url``,
        ``status_code``, ``duration_ns``, ``response``..."""
        from hostapp.events.calls import REQUEST, join_calls

        return [e for e in join_calls(self.events) if e.type == REQUEST and not e.data.get("nested_in")]

    def wait_for(self, type: str = "*", n: int = 1, timeout: float = 5.0) -> list[Event]:
        """Wait until at least ``n`` events whose type matches ``type`` (a glob) arrived.

        Returns:
            the matching events (``n`` or more).

        Raises:
            AssertionError: not there within ``timeout`` seconds; the message lists the
                types captured.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self._events if fnmatch.fnmatchcase(e.type, type)]
                left = deadline - time.monotonic()
                if len(found) >= n or left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            seen = sorted({e.type for e in self._events})
        if len(found) < n:
            raise AssertionError(
                f"waited {timeout:g} s for {n} event(s) of type {type!r}, got {len(found)}; captured types: {seen}"
            )
        return found

    def clear(self) -> None:
        """Forget the events captured so far."""
        self._wait_delivered()
        with self._cond:
            self._events.clear()

    def _wait_delivered(self) -> None:
        host = self.host
        bus = host.bus if host is not None else None
        if bus is None or host.state != "running":  # type: ignore[union-attr]
            return
        deadline = time.monotonic() + self.settle
        while time.monotonic() < deadline:
            stats = bus.stats().get(CAPTURE)
            if stats is None or not (stats["queue_depth"] or stats["in_flight"] or stats["spill_depth"]):
                return
            with self._cond:
                self._cond.wait(0.01)

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __repr__(self) -> str:
        with self._cond:
            return f"<EventCapture {len(self._events)} event(s)>"


def _test_config(raw: Mapping[str, Any], root: Path, *, autoload: bool, builtins: bool) -> Any:
    """A configuration for a test host: ``raw`` (as ``hostapp.toml``) over isolated
    defaults (store in ``root``, no entry-point cache, no ``HOSTAPP_*`` environment)."""
    from hostapp.config import Config

    merged: dict[str, Any] = {
        "plugins": {"autoload": autoload, "builtins": builtins, "cache": False},
        "store": {"path": str(root / "hostapp.sqlite3")},
        "events": {"flush_interval_ms": 10},
    }
    for section, table in raw.items():
        if isinstance(table, Mapping) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **table}
        else:
            merged[section] = table
    return Config.from_dict(merged, root=root, environ={})


@pytest.fixture
def hostapp_events() -> EventCapture:
    """The events of the test's host (``hostapp_host``) or traced block (``hostapp_trace``)."""
    return EventCapture()


@pytest.fixture
def hostapp_host(
    request: pytest.FixtureRequest, tmp_path: Path, hostapp_events: EventCapture
) -> Iterator[Host]:
    """A started :class:`hostapp.Host`, stopped after the test.

    Set up by the test's marker ``@pytest.mark.hostapp(...)``, all optional:

    * ``plugins``: the plugins to register (modules, classes, instances, ``@hookimpl``
      functions, or ``(name, plugin)`` pairs);
    * ``config``: the configuration, as ``hostapp.toml`` would give it
      (``{"plugins": {"config": {"acme": {...}}}}``);
    * ``autoload``: read the entry points of installed distributions (default ``False``:
      only ``plugins`` and hostapp's built-ins);
    * ``builtins``: hostapp's built-in plugins (default ``True``: the ``sqlite`` store sink
      and the HTTP and job processors);
    * ``tracing``: run the trace processors (default ``False``).

    The store is ``tmp_path / "hostapp.sqlite3"``; ``HOSTAPP_*`` variables are ignored.
    ``hostapp_events`` holds what the host emits.
    """
    from hostapp.host import Host

    marker = request.node.get_closest_marker("hostapp")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    unknown = set(options) - {"plugins", "config", "autoload", "builtins", "tracing"}
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.hostapp: unknown argument(s) {sorted(unknown)}")
    config = _test_config(
        options.get("config", {}), tmp_path,
        autoload=options.get("autoload", False), builtins=options.get("builtins", True),
    )
    plugins = [*options.get("plugins", ()), (CAPTURE, hostapp_events.plugin())]
    host = Host(config, plugins, command=[request.node.nodeid], tracing=options.get("tracing", False))
    hostapp_events.host = host
    host.start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def hostapp_trace(
    tmp_path: Path, hostapp_events: EventCapture
) -> Callable[..., contextlib.AbstractContextManager[EventCapture]]:
    """``with hostapp_trace(*processors, builtins=False, config=None) as events:``.

    Runs the block under a host with tracing on and only these
    :class:`hostapp.TraceProcessor` objects (``builtins=True`` adds hostapp's HTTP and job
    processors), no configuration file and no ``HOSTAPP_*`` environment; the store is in
    ``tmp_path``. ``events`` (the ``hostapp_events`` capture) is complete when the block
    ends.
    """
    from hostapp.run import trace

    @contextlib.contextmanager
    def run(
        *processors: TraceProcessor, builtins: bool = False, config: Mapping[str, Any] | None = None,
    ) -> Iterator[EventCapture]:
        settings = _test_config(config or {}, tmp_path, autoload=False, builtins=builtins)
        with trace(settings, processors=processors, plugins=[(CAPTURE, hostapp_events.plugin())]) as host:
            hostapp_events.host = host
            yield hostapp_events

    return run


# -- the contract check -----------------------------------------------------------------------


def check_plugin(plugin: object, name: str | None = None) -> dict[str, list[str]]:
    """Check that a plugin keeps hostapp's contract; one line in a plugin's own suite.

    ``hostapp.testing.check_plugin(acme_hostapp)`` registers the plugin (a module, class,
    instance or ``@hookimpl`` function) with a fresh plugin manager beside hostapp's
    built-ins, the way a host does, and checks:

    * every hook implementation matches a hookspec by name and arguments (pluggy's
      validation and ``check_pending``), and no function named ``hostapp_*`` lacks its
      ``@hostapp.hookimpl`` marker (it would never be called);
    * every registration hook returns valid spec objects of the right type (each spec
      validates itself on construction);
    * no contributed name clashes with one of hostapp's built-ins;
    * ``hostapp_configure`` accepts the default configuration;
    * every ``hostapp`` entry point naming the plugin's module, and every other entry
      point of that distribution, resolves.

    Args:
        plugin: the plugin object, as an entry point would name it.
        name: its plugin name (default: the entry point naming it, else the module name).

    Returns:
        what it contributes: registration hook (without ``hostapp_``) -> names.

    Raises:
        PluginContractError: every problem found, one per line, naming the plugin.
    """
    import inspect
    import types

    import pluggy

    from hostapp.config import Config
    from hostapp.discovery import DiscoveryOptions, discover, load_object
    from hostapp.discovery.sources import parse_value
    from hostapp.errors import PluginContractError
    from hostapp.hookspecs import REGISTRATION_HOOKS
    from hostapp.lifecycle import PluginState, Source
    from hostapp.manager import PluginManager, _as_plugin

    module = plugin if isinstance(plugin, types.ModuleType) else inspect.getmodule(plugin)
    module_name = module.__name__ if module is not None else None
    found = [
        info for info in discover(DiscoveryOptions(use_cache=False), environ={})
        if info.source is Source.ENTRY_POINT and module_name is not None
        and parse_value(info.value or "")[0] == module_name
    ]
    name = name or (found[0].name if found else module_name or type(plugin).__name__)
    problems: list[str] = []
    pm = PluginManager()
    hooks = {n for n in vars(pm.hook) if n.startswith("hostapp_")}
    for attr in dir(plugin):
        value = getattr(plugin, attr, None)
        if attr in hooks and callable(value) and getattr(value, "hostapp_impl", None) is None:
            problems.append(f"{attr} is named like a hook but is not marked @hostapp.hookimpl: it is never called")
    builtin_same = [i.name for i in found if i.builtin]  # checking a built-in itself: not beside its twin
    config = Config.from_dict(
        {"plugins": {"autoload": False, "cache": False, "disable": builtin_same}}, environ={}
    )
    pm.load(config, explicit=[(name, _as_plugin(plugin, name))], environ={})
    info = pm.infos[name]
    if info.state is PluginState.FAILED:
        problems.append(f"{info.stage}: {info.error}")
    else:
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            problems.append(str(exc))
        for failed in pm.configure(config):
            if failed.name == name:
                problems.append(f"hostapp_configure with the default configuration: {failed.error}")
    contributes: dict[str, list[str]] = {}
    for hook_name in REGISTRATION_HOOKS:
        for contribution in pm.collect(hook_name, on_conflict="report"):
            if contribution.plugin == name:
                contributes.setdefault(hook_name.removeprefix("hostapp_"), []).append(contribution.name)
    problems += [
        f"{e.hook}: {e.error}" for e in pm.hook_errors
        if e.hook in REGISTRATION_HOOKS and (e.plugin == name or f"plugin {name!r}" in e.error)
    ]
    distributions = {i.distribution for i in found}
    every = [i for i in discover(DiscoveryOptions(use_cache=False), environ={})
             if i.source is Source.ENTRY_POINT and i.distribution in distributions]
    for entry_point in every:
        try:
            load_object(entry_point)
        except Exception as exc:  # noqa: BLE001 - each failure is a problem to report
            problems.append(f"entry point {entry_point.name} = {entry_point.value} "
                            f"({entry_point.distribution}): {type(exc).__name__}: {exc}")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise PluginContractError(f"plugin {name!r} does not keep hostapp's contract:\n{lines}")
    return contributes


def environment_plugin_locations(*, keep: Iterable[str] = ()) -> list[str]:
    """The ``.dist-info`` directories of the installed distributions that declare
    ``hostapp`` entry points, hostapp's own and those named in ``keep`` excepted.

    For a test suite that must see only the plugins it installs itself (the other plugins
    of the environment would add their sinks and events to every host): set
    ``HOSTAPP_PLUGINS__DISABLE_LOCATIONS`` to them (comma-separated, as
    :func:`glob.escape` gives them), in ``conftest.py``::

        import glob, os
        from hostapp.testing import environment_plugin_locations

        def pytest_configure(config):
            others = environment_plugin_locations(keep=["acme-hostapp"])
            os.environ["HOSTAPP_PLUGINS__DISABLE_LOCATIONS"] = ",".join(map(glob.escape, others))

    Args:
        keep: distribution names to leave out of the list (the one under test).
    """
    from hostapp.discovery import DiscoveryOptions, discover
    from hostapp.discovery._names import normalize_name
    from hostapp.lifecycle import Source

    kept = {normalize_name(n) for n in keep}
    return sorted({
        info.location for info in discover(DiscoveryOptions(use_cache=False), environ={})
        if info.source is Source.ENTRY_POINT and not info.builtin and info.location
        and normalize_name(info.distribution or "") not in kept
    })


def pytest_configure(config: Any) -> None:
    """Register hostapp's marker."""
    config.addinivalue_line(
        "markers",
        "hostapp(plugins=[...], config={...}, autoload=False, builtins=True, tracing=False): "
        "the host of the hostapp_host fixture",
    )
