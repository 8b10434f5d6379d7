"""hostapp: a plugin host for Python applications built on pluggy.

PYTEST_DONT_REWRITE (it is imported before pytest when ``hostapp run -m pytest``
runs it; see :mod:`hostapp_pytest`).

The public API. ``import hostapp`` stays cheap: it imports pluggy (for the markers) and
nothing else; the spec types (``hostapp.EventSink``, ...), the plugin records
(``hostapp.PluginInfo``, ...), the plugin manager, discovery, configuration, the CLI, rich,
click and sqlite3 are imported only when first used (``from hostapp import EventSink``
works as usual).

    import hostapp

    @hostapp.hookimpl
    def hostapp_event_sinks():
        return hostapp.EventSink(name="printer", handle=print)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hostapp._markers import hookimpl, hookspec
from hostapp._version import __version__

if TYPE_CHECKING:
    from hostapp.config import Config, load_config
    from hostapp.errors import (
        ComponentError,
        ConfigError,
        DuplicateNameError,
        HostappError,
        MissingHookError,
        NotApplicable,
        PluginContractError,
        PluginLoadError,
    )
    from hostapp.events import Event, PermanentError, RetryAfter
    from hostapp.host import Host, get_host
    from hostapp.run import trace
    from hostapp.lifecycle import PluginInfo, PluginState, Source
    from hostapp.manager import PluginManager
    from hostapp.types import (
        BackgroundTask,
        CliCommand,
        Contribution,
        DriverSpec,
        EventRenderer,
        EventSink,
        InstrumentType,
        Route,
        TraceProcessor,
    )

__all__ = [
    "BackgroundTask",
    "CliCommand",
    "ComponentError",
    "Config",
    "ConfigError",
    "Contribution",
    "DriverSpec",
    "DuplicateNameError",
    "Event",
    "EventRenderer",
    "EventSink",
    "Host",
    "HostappError",
    "InstrumentType",
    "MissingHookError",
    "NotApplicable",
    "PluginContractError",
    "PluginInfo",
    "PluginLoadError",
    "PermanentError",
    "PluginManager",
    "PluginState",
    "RetryAfter",
    "Route",
    "Source",
    "TraceProcessor",
    "__version__",
    "get_host",
    "trace",
    "hookimpl",
    "hookspec",
    "load_config",
]

#: Public name -> the module that defines it, imported on first access.
_LAZY = {
    "BackgroundTask": "hostapp.types",
    "CliCommand": "hostapp.types",
    "Contribution": "hostapp.types",
    "DriverSpec": "hostapp.types",
    "EventRenderer": "hostapp.types",
    "EventSink": "hostapp.types",
    "InstrumentType": "hostapp.types",
    "Route": "hostapp.types",
    "TraceProcessor": "hostapp.types",
    "PluginInfo": "hostapp.lifecycle",
    "PluginState": "hostapp.lifecycle",
    "Source": "hostapp.lifecycle",
    "PluginManager": "hostapp.manager",
    "Host": "hostapp.host",
    "get_host": "hostapp.host",
    "trace": "hostapp.run",
    "Event": "hostapp.events",
    "RetryAfter": "hostapp.events",
    "PermanentError": "hostapp.events",
    "Config": "hostapp.config",
    "load_config": "hostapp.config",
    "ComponentError": "hostapp.errors",
    "ConfigError": "hostapp.errors",
    "DuplicateNameError": "hostapp.errors",
    "HostappError": "hostapp.errors",
    "MissingHookError": "hostapp.errors",
    "NotApplicable": "hostapp.errors",
    "PluginContractError": "hostapp.errors",
    "PluginLoadError": "hostapp.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hostapp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
