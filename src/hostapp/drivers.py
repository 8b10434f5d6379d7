"""Components built by drivers from configuration (opa-stack's drivers, ``load = auto|yes|no``).

A plugin contributes drivers (:class:`hostapp.DriverSpec`, hook ``hostapp_drivers()``);
the configuration names components, one table each::

    [components.cache]
    driver = "redis"                  # a DriverSpec.name
    load = "auto"                     # auto (default) | yes | no
    options = { url = "redis://127.0.0.1:6379/0" }

At start the host builds every component in configuration order (:meth:`ComponentSet.abuild`):
the driver's ``factory(options)``, then the component's ``connect()``, then its
``validate()`` when it has one; each may be ``async def``. ``False`` or an exception from
``connect``/``validate`` (or an exception from the factory) makes the component
*unavailable*:

========  ===========================================================================
``load``  when the component is unavailable
========  ===========================================================================
``auto``  recorded with its error (``hostapp components``), a warning is logged, the
          host goes on; ``host.component(NAME)`` raises :class:`ComponentError` saying why
``yes``   the host does not start: :class:`ComponentError`, one line naming the
          component, its driver and the cause
``no``    never built (state ``disabled``)
========  ===========================================================================

Whatever happens, the driver's *plugin* is not marked failed: a database that is down is
the resource's fault, not the plugin's. A component table whose ``driver`` no plugin
contributes is a :class:`~hostapp.errors.ConfigError` naming the component, the driver
and the drivers that exist (``hostapp`` exits with status 2).

At stop, after the sinks drained, ``close()`` is called on every built component in
reverse build order (errors are logged and recorded, never raised).

Every call into a driver (``factory``, ``connect``, ``validate``, ``health``, ``close``) is a
bounded call (:mod:`hostapp._bounded`) on a helper thread: a component's build (factory,
connect and validate together) may take at most ``[components.NAME] timeout`` seconds
(default ``host.start_timeout``), its ``close()`` as long, within ``host.shutdown_timeout``
for all of them. One that takes longer is abandoned and the component is ``unavailable``
(at start) or ``closed`` with the error recorded (at stop). ``async def`` methods are
awaited on the host's loop.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback as traceback_module
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostapp._bounded import Outcome, PluginCalls, describe_error, resolve
from hostapp.errors import ComponentError, ConfigError, HostappError
from hostapp.types import LOAD_VALUES

if TYPE_CHECKING:
    from collections.abc import Callable

    from hostapp.config import Config
    from hostapp.manager import PluginManager
    from hostapp.store import Store
    from hostapp.types import Contribution, DriverSpec

__all__ = [
    "LOAD_VALUES", "ComponentOptions", "ComponentRecord", "ComponentSet", "adry_run", "component_rows", "dry_run",
]

logger = logging.getLogger("hostapp")



class ComponentOptions(dict):  # type: ignore[type-arg]
    """The ``options`` table handed to a driver's ``factory``: a plain ``dict`` of the
    component's options, plus where they came from.

    Args:
        options: the ``[components.NAME] options`` table.
        name: the component's name (``NAME``).
        root: the directory relative paths are resolved against (the configuration
            file's directory, else the working directory: ``Config.root``).
    """

    def __init__(self, options: Mapping[str, Any], *, name: str, root: str | os.PathLike[str]) -> None:
        super().__init__(options)
        self.name = name
        self.root = Path(root)

    def path(self, key: str, default: str | None = None) -> Path | None:
        """Option ``key`` as a path: ``~`` expanded, relative ones against :attr:`root`.

        Returns:
            the absolute path, or ``None`` when the option is absent and ``default`` is
            ``None``.

        Raises:
            TypeError: the option is not a string.
        """
        value = self.get(key, default)
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"option {key!r} of component {self.name!r}: expected a path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path


@dataclass(eq=False)
class ComponentRecord:
    """One configured component: its configuration, its state and, when available, the
    component object itself.

    Attributes:
        name: the component name (``[components.NAME]``).
        driver: the driver name (``driver = "..."``).
        load: ``"auto"``, ``"yes"`` or ``"no"``.
        options: the ``options`` table (not written to the store: it may hold secrets).
        plugin: the plugin that contributes the driver (``None`` until resolved).
        distribution: that plugin's distribution, or ``None``.
        state: ``"pending"`` (not built yet), ``"available"``, ``"unavailable"``,
            ``"disabled"`` (``load = "no"``) or ``"closed"`` (after stop).
        error: why it is unavailable (``"ConnectionError: ..."``), or why ``close()``
            failed; ``None`` otherwise.
        traceback: the formatted traceback of ``error`` when an exception caused it.
        stage: where it failed: ``"factory"``, ``"connect"`` or ``"validate"``
            (``"close"`` for a failed close), or ``None``.
        health: the last health check, ``{"ok": bool, "detail": ..., "error": str | None,
            "checked_ns": int}``; ``None`` when the component has no ``health()`` or was
            never checked.
        timeout: ``[components.NAME] timeout``: seconds its build (and, at stop, its
            ``close()``) may take; ``None``: ``host.start_timeout``.
        instance: the component object while it is available, else ``None``.
    """

    name: str
    driver: str
    load: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    plugin: str | None = None
    distribution: str | None = None
    state: str = "pending"
    error: str | None = None
    traceback: str | None = None
    stage: str | None = None
    health: dict[str, Any] | None = None
    timeout: float | None = None
    instance: Any = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        """Whether :attr:`instance` is usable (state ``available``)."""
        return self.state == "available"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields but ``options`` and ``instance``."""
        return {
            "name": self.name,
            "driver": self.driver,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "load": self.load,
            "state": self.state,
            "stage": self.stage,
            "error": self.error,
            "traceback": self.traceback,
            "health": self.health,
        }

    def report(self) -> tuple[str, str, dict[str, Any]]:
        """``(name, state, data)`` for :meth:`hostapp.store.Store.put_reports` (kind ``"component"``)."""
        data = self.to_dict()
        del data["name"], data["state"]
        return self.name, self.state, data


class ComponentSet(Mapping[str, ComponentRecord]):
    """Every configured component, by name, in configuration order (``host.components``).

    A read-only mapping of name to :class:`ComponentRecord`; the component objects are
    ``record.instance`` or, raising when they are not there, :meth:`instance`.

    Args:
        tables: the validated ``components`` configuration: ``{NAME: {"driver": str,
            "load": "auto" | "yes" | "no", "options": dict}}``.
        source: the configuration's source, named in errors (``"hostapp.toml"``).
        root: the directory relative option paths are resolved against.
    """

    def __init__(
        self,
        tables: Mapping[str, Mapping[str, Any]],
        *,
        source: str = "<config>",
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.source = source
        self.root = Path(root) if root is not None else Path.cwd()
        self._records: dict[str, ComponentRecord] = {
            name: ComponentRecord(
                name=name,
                driver=str(table["driver"]),
                load=str(table.get("load", "auto")),
                options=dict(table.get("options", {})),
                state="disabled" if table.get("load") == "no" else "pending",
                timeout=table.get("timeout"),
            )
            for name, table in tables.items()
        }
        self._built: list[ComponentRecord] = []
        self._calls: PluginCalls | None = None
        self._timeout: float | None = None

    @classmethod
    def from_config(cls, config: Config) -> ComponentSet:
        """The components ``config`` names (its ``components`` key), none built yet."""
        return cls(config.get("components") or {}, source=config.source, root=config.root)

    # -- the mapping -----------------------------------------------------------------------

    def __getitem__(self, name: str) -> ComponentRecord:
        return self._records[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        states = ", ".join(f"{r.name}={r.state}" for r in self._records.values())
        return f"<ComponentSet {states}>"

    def instance(self, name: str) -> Any:
        """The component object of ``name``.

        Raises:
            ComponentError: ``name`` is not configured (the message lists those that are),
                or the component is pending (the host has not started), disabled
                (``load = "no"``), unavailable (the message holds its error) or closed.
        """
        record = self._records.get(name)
        if record is None:
            known = ", ".join(self._records) or "none"
            raise ComponentError(
                name, "unknown",
                f"no component {name!r} is configured ([components.{name}] in {self.source}); "
                f"configured components: {known}",
            )
        if record.state == "available":
            return record.instance
        reasons = {
            "pending": "the host has not built it yet (start the host first)",
            "disabled": 'it is disabled (load = "no")',
            "closed": "it was closed when the host stopped",
            "unavailable": f"it is unavailable: {record.error}",
        }
        raise ComponentError(
            name, record.state,
            f"component {name!r} (driver {record.driver!r}): {reasons.get(record.state, record.state)}",
        )

    def reports(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every record as ``(name, state, data)``, for ``store.put_reports(run_id, "component", ...)``."""
        return [record.report() for record in self._records.values()]

    # -- building ----------------------------------------------------------------------------

    def resolve(
        self, drivers: Sequence[Contribution[DriverSpec]], failed: Mapping[str, str] | None = None,
    ) -> dict[str, Contribution[DriverSpec]]:
        """Match every component to its driver (before anything is built).

        Args:
            drivers: the contributions of ``hostapp_drivers()``
                (``PluginManager.collect``).
            failed: the plugins that failed (name -> ``"stage: error"``): one of them may
                have been the one to contribute a missing driver, so a component naming
                a driver nobody contributes is then *unavailable*, with that said, rather
                than a configuration error.

        Returns:
            component name -> its driver's contribution (every component whose driver
            exists, ``load = "no"`` included; sets ``plugin`` and ``distribution`` on the
            records).

        Raises:
            ConfigError: a component names a driver that no plugin contributes, and no
                plugin failed; the message names the component (key
                ``components.NAME.driver``), the driver and the drivers that exist.
        """
        by_name = {c.spec.name: c for c in drivers}
        out: dict[str, Contribution[DriverSpec]] = {}
        for record in self._records.values():
            contribution = by_name.get(record.driver)
            if contribution is None:
                exist = ", ".join(sorted(by_name)) or "none"
                if not failed:
                    raise ConfigError(
                        self.source,
                        f"unknown driver {record.driver!r} for component {record.name!r}; "
                        f"the drivers that exist: {exist}",
                        key=f"components.{record.name}.driver",
                    )
                if record.load != "no":
                    why = "; ".join(f"{name} ({error})" for name, error in failed.items())
                    record.state, record.stage = "unavailable", "driver"
                    record.error = f"no plugin contributes driver {record.driver!r}; plugins that failed: {why}"
                continue
            record.plugin, record.distribution = contribution.plugin, contribution.distribution
            out[record.name] = contribution
        return out

    def build(
        self,
        drivers: Sequence[Contribution[DriverSpec]],
        *,
        calls: PluginCalls | None = None,
        timeout: float | None = 10.0,
        required: bool = True,
        failed: Mapping[str, str] | None = None,
    ) -> None:
        """Build every component in configuration order.

        Args:
            drivers: the contributions of ``hostapp_drivers()``.
            calls: the bounded calls to run the drivers' code through (the host's, whose
                loop ``async def`` methods are awaited on); default: new ones.
            timeout: seconds each component's build may take unless its table says
                ``timeout`` (the host passes ``host.start_timeout``); ``None``: no bound.
            required: ``True`` (the host): a ``load = "yes"`` component that is unavailable
                raises; ``False`` (``hostapp components``' dry run): it is only recorded.
            failed: the plugins that failed, for :meth:`resolve`.

        Raises:
            ConfigError: an unknown driver (see :meth:`resolve`); nothing was built.
            ComponentError: a ``load = "yes"`` component is unavailable (``required``);
                the components built before it stay built, for :meth:`close`.
        """
        self._calls = calls if calls is not None else PluginCalls()
        self._timeout = timeout
        resolved = self.resolve(drivers, failed)
        for record in self._records.values():
            if record.load == "no":
                record.state = "disabled"
                continue
            if record.name in resolved:
                self._build(record, resolved[record.name].spec)
            if record.state == "available":
                self._built.append(record)
                self._check(record)
                continue
            message = (
                f"component {record.name!r} (driver {record.driver!r}, plugin {record.plugin!r}) "
                f"is unavailable: {_one_line(record.error)}"
            )
            if record.load == "yes" and required:
                raise ComponentError(record.name, record.state, message + ' (load = "yes")')
            logger.warning("%s; the host goes on without it (load = %r)", message, record.load)

    async def abuild(self, drivers: Sequence[Contribution[DriverSpec]], *, required: bool = True) -> None:
        """:meth:`build` from async code (waited for in a thread). Raises as :meth:`build`."""
        import asyncio

        await asyncio.to_thread(self.build, drivers, required=required)

    def _bound(self, record: ComponentRecord) -> tuple[float | None, str]:
        """The bound of ``record``'s calls and the setting it comes from."""
        if record.timeout is not None:
            return float(record.timeout), f"components.{record.name}.timeout"
        return self._timeout, "host.start_timeout"

    def _run(self, function: Callable[[], Any], record: ComponentRecord, deadline: float | None = None) -> Outcome:
        calls = self._calls if self._calls is not None else PluginCalls()
        self._calls = calls
        return calls.call(function, timeout=self._bound(record)[0], deadline=deadline)

    def _build(self, record: ComponentRecord, spec: DriverSpec) -> None:
        options = ComponentOptions(record.options, name=record.name, root=self.root)
        progress: list[Any] = ["factory", None]  # the stage reached, the instance once made

        def build() -> Any:
            progress[1] = instance = resolve(spec.factory(options))
            for stage in ("connect", "validate"):
                method = getattr(instance, stage, None)
                if method is None:
                    continue
                progress[0] = stage
                if resolve(method()) is False:
                    raise _ReturnedFalse(f"{stage}() returned False")
            return instance

        outcome = self._run(build, record)
        if outcome.ok:
            record.state, record.instance = "available", outcome.value
            record.error = record.traceback = record.stage = None
            return
        record.state, record.stage = "unavailable", progress[0]
        exc = outcome.error
        if outcome.timed_out:
            record.error, record.traceback = outcome.describe(self._bound(record)[1]), None
            return  # its thread may still be in connect(): it is left alone
        if isinstance(exc, _ReturnedFalse):
            record.error, record.traceback = str(exc), None
        else:
            record.error = describe_error(exc)  # type: ignore[arg-type]
            record.traceback = "".join(traceback_module.format_exception(exc))  # type: ignore[arg-type]
        if progress[1] is not None:
            self._close_quietly(record, progress[1])

    def _close_quietly(self, record: ComponentRecord, instance: Any) -> None:
        """Release what a half-built component holds; its error is logged only."""
        close = getattr(instance, "close", None)
        if close is None:
            return
        outcome = self._run(close, record)
        if not outcome.ok:
            logger.warning(
                "component %r: close() after a failed start: %s", record.name, outcome.describe(self._bound(record)[1]),
            )

    def _check(self, record: ComponentRecord, timeout: float = 10.0) -> dict[str, Any] | None:
        """Run ``record``'s ``health()`` (bounded by ``timeout`` s)."""
        method = getattr(record.instance, "health", None)
        if record.state != "available" or method is None:
            return record.health
        result: dict[str, Any] = {"ok": True, "detail": None, "error": None, "checked_ns": 0}
        calls = self._calls if self._calls is not None else PluginCalls()
        self._calls = calls
        outcome = calls.call(method, timeout=timeout)
        if not outcome.ok:
            result.update(ok=False, error=outcome.describe())
        elif outcome.value is False:
            result.update(ok=False, error="health() returned False")
        elif outcome.value is not True and outcome.value is not None:
            result["detail"] = outcome.value
        result["checked_ns"] = time.time_ns()
        record.health = result
        return result

    def health(self, name: str | None = None, *, timeout: float = 10.0) -> dict[str, dict[str, Any] | None]:
        """Check the health of one component (``name``) or of every available one.

        Args:
            name: a component name; ``None`` for all of them.
            timeout: seconds each ``health()`` may take (one that takes longer is
                abandoned and reported unhealthy).

        Returns:
            component name -> its health (``record.health``): ``None`` for a component
            without ``health()`` or one that is not available.

        Raises:
            HostappError: called on a running event loop (use ``await components.ahealth()``).
            ComponentError: ``name`` is not configured.
        """
        if _loop_running():
            raise HostappError(
                "components.health() was called on a running loop; use 'await components.ahealth()'"
            )
        if name is not None and name not in self._records:
            self.instance(name)  # raises, naming the configured ones
        names = [name] if name is not None else list(self._records)
        return {n: self._check(self._records[n], timeout) for n in names}

    async def ahealth(self, name: str | None = None, *, timeout: float = 10.0) -> dict[str, dict[str, Any] | None]:
        """:meth:`health` from async code (waited for in a thread). Raises as :meth:`health`
        (but never for the running loop)."""
        import asyncio

        return await asyncio.to_thread(self.health, name, timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close every built component, in reverse build order; idempotent.

        Args:
            timeout: seconds all the closes may take together; each one also at most its
                component's bound (``[components.NAME] timeout``, else the build's).
                ``None``: no overall bound.

        Errors in ``close()`` (and a ``close()`` that is abandoned) are logged and recorded
        (``error``, ``stage = "close"``); every component is marked ``closed`` either way.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        built, self._built = self._built, []
        for record in reversed(built):
            instance, record.instance = record.instance, None
            close = getattr(instance, "close", None)
            if close is not None:
                outcome = self._run(close, record, deadline)
                if not outcome.ok:
                    record.error, record.stage = outcome.describe(self._bound(record)[1]), "close"
                    record.traceback = (
                        "".join(traceback_module.format_exception(outcome.error)) if outcome.error is not None else None
                    )
                    logger.warning(
                        "component %r (driver %r): close(): %s", record.name, record.driver, record.error,
                    )
            record.state = "closed"

    async def aclose(self, timeout: float | None = None) -> None:
        """:meth:`close` from async code (waited for in a thread)."""
        import asyncio

        await asyncio.to_thread(self.close, timeout)


def _loop_running() -> bool:
    """Whether this thread runs an asyncio loop (none can when asyncio was never imported)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def adry_run(config: Config, pm: PluginManager) -> ComponentSet:
    """Build, check and close every component of ``config`` once, as a host would at start
    (``hostapp components`` when no host reported); ``load = "yes"`` failures are only
    recorded. The records keep the states the components had before closing (a failed
    ``close()`` shows as ``stage = "close"`` with its error).

    Args:
        config: the configuration (its ``components``).
        pm: a loaded plugin manager (its ``hostapp_drivers()`` are collected).

    Raises:
        ConfigError: a component names an unknown driver.
    """
    import asyncio

    return await asyncio.to_thread(dry_run, config, pm)


def dry_run(config: Config, pm: PluginManager) -> ComponentSet:
    """:func:`adry_run` from synchronous code. Raises as ``adry_run``."""
    drivers = pm.collect("hostapp_drivers", on_conflict="report")
    components = ComponentSet.from_config(config)
    try:
        components.build(drivers, calls=pm.calls, timeout=pm.call_timeout, required=False)
    finally:
        states = {name: record.state for name, record in components.items()}
        components.close(timeout=30.0)
        for name, record in components.items():
            record.state = states[name]
    return components


def component_rows(
    config: Config, plugin_manager: Callable[[], PluginManager], store: Store | None
) -> tuple[list[dict[str, Any]], str]:
    """What ``hostapp components`` shows: the rows and a one-line title.

    The component reports of a running host (its run has not ended and its process is
    alive), else of the newest run that reported components; when the store has none (or
    ``store`` is ``None``), a dry build (:func:`dry_run`).

    Args:
        config: the configuration (for the dry build).
        plugin_manager: returns a loaded plugin manager (its drivers are checked against
            the configuration).
        store: the open store, or ``None`` for "dry build only".

    Returns:
        ``(rows, title)``: each row the fields of :meth:`ComponentRecord.to_dict` plus
        ``run_id`` (``None`` for a dry build), ``updated_ns``, ``source`` (``"report"`` or
        ``"dry-run"``) and ``live`` (the reporting host is running).

    Raises:
        ConfigError: a component names an unknown driver.
    """
    if store is not None:
        pm = plugin_manager()  # an unknown driver is a configuration error in every mode
        ComponentSet.from_config(config).resolve(pm.collect("hostapp_drivers", on_conflict="report"))
        run, reports, live = store.current_reports("component")
        if reports:
            rows = [{**r.to_dict(), "source": "report", "live": live} for r in reports]
            if live:
                status = "live"
            elif run is not None and run.ended_ns is None:
                status = "crashed: its process is gone"
            else:
                status = "ended"
            return rows, f"run {reports[0].run_id} ({status})"
    components = dry_run(config, plugin_manager())
    now = time.time_ns()
    rows = [
        {**record.to_dict(), "run_id": None, "updated_ns": now, "source": "dry-run", "live": False}
        for record in components.values()
    ]
    return rows, "dry run (built, checked and closed now)"


class _ReturnedFalse(Exception):
    """``connect()`` or ``validate()`` returned ``False``."""


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())
