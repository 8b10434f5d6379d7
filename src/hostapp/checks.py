"""What ``hostapp plugins`` and ``hostapp config`` check before a run, without starting a host.

:func:`check` takes a loaded plugin manager (discovery, filters, import, registration
done) and its configuration, runs ``hostapp_configure`` (a plugin that fails there is
failed and withdrawn, as in a run), then validates what a run would only find out when it
opens each piece:

* every sink that would run: its bus settings (``[events.sinks.NAME]`` ``batch_size``,
  ``full_policy``, ...; the event bus's own rules, :func:`hostapp.events.worker._settings`);
* every ``[events.sinks.NAME]`` table that no plugin contributes a sink for, every
  ``[plugins.config.NAME]`` / ``[plugins.meta.NAME]`` table and ``plugins.force`` name that
  names no plugin: a warning with the name that was meant (:func:`hostapp.config.did_you_mean`);
* every ``[components.NAME]``: its driver exists (:meth:`hostapp.drivers.ComponentSet.resolve`).

Nothing is opened, connected or started. The ``hostapp`` command prints the problems
(errors exit 2, as a run would; warnings are errors under ``--strict``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hostapp.config import did_you_mean
from hostapp.errors import ConfigError

if TYPE_CHECKING:
    from hostapp.config import Config
    from hostapp.manager import PluginManager
    from hostapp.types import Contribution, EventSink

__all__ = ["Problem", "check", "sink_settings"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing :func:`check` found.

    Attributes:
        level: ``"error"`` (a run would refuse to start: exit status 2) or ``"warning"``
            (a run goes on; an error under ``--strict``).
        message: one line naming the file and key (or the plugin) and what to do.
    """

    level: str
    message: str


def check(pm: PluginManager, config: Config, *, configure: bool = False) -> list[Problem]:
    """Run ``hostapp_configure`` and validate the settings a run would use.

    Args:
        pm: a plugin manager after :meth:`~hostapp.PluginManager.load`.
        config: its configuration.
        configure: call ``hostapp_configure`` first (:meth:`PluginManager.configure`; the
            ``hostapp`` command has done so when it loaded the plugins); a plugin that
            raises is failed at stage ``configure`` and withdrawn.

    Returns:
        the problems, errors first.
    """
    if configure:
        pm.configure(config)
    problems = [*_sink_problems(pm, config), *_name_problems(pm, config), *_component_problems(pm, config)]
    return sorted(problems, key=lambda p: p.level != "error")


def sink_settings(contribution: Contribution[EventSink], config: Config) -> Iterator[tuple[str, Any, str]]:
    """The settings the event bus would give a sink that runs, each with its origin.

    Yields:
        ``(key, value, origin)``: first ``events.sinks.NAME.enabled`` (``True``: the sink
        runs, because its plugin is loaded or its table says so), then each setting:
        ``key`` is ``events.sinks.NAME.SETTING``; ``origin`` is
        the key's own (``hostapp.toml:12``), ``"EventSink.batch_size of plugin 'acme'"``
        or that of the ``events.*`` key it falls back to.

    Raises:
        ConfigError: a setting is invalid (the bus's own check, naming the key).
    """
    from hostapp.events.worker import _settings, sink_table

    spec = contribution.spec
    table = sink_table(spec, config.get("events.sinks") or {})
    if table is None:
        return
    _settings(spec, table, config)  # raises as a run would
    key = f"events.sinks.{spec.name}"
    yield f"{key}.enabled", True, config.origin(key) if key in config.origins else (
        f"plugin {contribution.plugin!r} is loaded"
    )
    for setting in ("batch_size", "flush_interval_ms", "max_retries", "retry_backoff_ms",
                    "retry_max_backoff_ms", "queue_size", "full_policy", "max_block_ms"):
        key = f"events.sinks.{spec.name}.{setting}"
        if setting in table:
            yield key, table[setting], config.origin(key)
        elif getattr(spec, setting, None) is not None:
            yield key, getattr(spec, setting), f"EventSink.{setting} of plugin {contribution.plugin!r}"
        else:
            yield key, config.get(f"events.{setting}"), f"events.{setting}: {config.origin(f'events.{setting}')}"


def _sink_problems(pm: PluginManager, config: Config) -> Iterator[Problem]:
    sinks = pm.collect("hostapp_event_sinks", on_conflict="report")
    for contribution in sinks:
        try:
            for _ in sink_settings(contribution, config):
                pass
        except ConfigError as exc:
            yield Problem("error", _with_line(exc, config))
    contributed = [c.spec.name for c in sinks]
    for name, table in (config.get("events.sinks") or {}).items():
        configured = config.origin(f"events.sinks.{name}") != "default"
        if name not in contributed and configured and isinstance(table, Mapping) and table.get("enabled", True) is not False:
            yield Problem(
                "warning",
                f"{config.origin(f'events.sinks.{name}')}: [events.sinks.{name}] is configured but no plugin "
                f"contributes a sink named {name!r}{did_you_mean(name, contributed)}",
            )


def _name_problems(pm: PluginManager, config: Config) -> Iterator[Problem]:
    names = [info.name for info in pm.candidates]
    for key in ("plugins.config", "plugins.meta"):
        for name in config.get(key) or {}:
            if name not in pm.infos:
                yield Problem(
                    "warning",
                    f"{config.origin(f'{key}.{name}')}: [{key}.{name}] names no plugin{did_you_mean(name, names)}",
                )
    for name in config.get("plugins.force") or ():
        if name not in pm.infos:
            yield Problem(
                "warning",
                f"{config.origin('plugins.force')}: plugins.force {name!r}: no plugin of that name was "
                f"found{did_you_mean(name, names)}",
            )


def _component_problems(pm: PluginManager, config: Config) -> Iterable[Problem]:
    if not config.get("components"):
        return []
    from hostapp.drivers import ComponentSet

    try:
        ComponentSet.from_config(config).resolve(pm.collect("hostapp_drivers", on_conflict="report"))
    except ConfigError as exc:
        return [Problem("error", _with_line(exc, config))]
    return []


def _with_line(exc: ConfigError, config: Config) -> str:
    """The error's line, its source given as ``file:line`` when the key's line is known."""
    if exc.key is not None and exc.source == config.source:
        return str(ConfigError(config.origin(exc.key), exc.message, key=exc.key))
    return str(exc)
