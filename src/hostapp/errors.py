"""The exceptions hostapp raises. Every message names who is at fault and what to do.

The CLI maps them to exit statuses: :class:`ConfigError` -> 2, every other
:class:`HostappError` -> 1 (see ``docs/cli.md``).
"""

from __future__ import annotations

__all__ = [
    "ComponentError",
    "ConfigError",
    "DuplicateNameError",
    "HostappError",
    "MissingHookError",
    "NotApplicable",
    "PluginContractError",
    "PluginLoadError",
    "PluginTimeoutError",
]


class HostappError(Exception):
    """Base class of every error hostapp raises on purpose."""


class ConfigError(HostappError):
    """A configuration file, key or environment variable is invalid.

    Args:
        source: the file (``"hostapp.toml"``) or environment variable (``"HOSTAPP_PLUGINS"``)
            at fault.
        message: what is wrong and what is expected.
        key: the dotted key at fault (``"plugins.enable"``), when there is one.
        line: the 1-based line in ``source`` when the TOML parser gives it.

    ``str(error)`` is one line: ``"hostapp.toml:3: plugins.enable: expected a list of strings, got int"``.
    """

    def __init__(
        self, source: str, message: str, *, key: str | None = None, line: int | None = None
    ) -> None:
        self.source = source
        self.key = key
        self.line = line
        self.message = message
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class PluginLoadError(HostappError):
    """A plugin failed to import, instantiate or register while strict mode is on.

    Raised by ``PluginManager.load(strict=True)`` (``--strict`` / ``HOSTAPP_STRICT=1``);
    without strict mode the plugin is marked failed and the host goes on.

    Attributes:
        info: the failed plugin's :class:`~hostapp.lifecycle.PluginInfo`.
    """

    def __init__(self, info: object, message: str) -> None:
        self.info = info
        super().__init__(message)


class DuplicateNameError(HostappError):
    """Two plugins contribute a spec (sink, driver, processor, ...) under the same name.

    The message names both plugins and their distributions, e.g.
    ``event sink 'audit' is contributed by plugin 'a' (distribution 'a-dist' 1.0) and by
    plugin 'b' (distribution 'b-dist' 2.0); disable one of them (plugins.disable) or rename it``.
    """


class MissingHookError(HostappError):
    """A hookspec declared ``required=True`` has no implementation.

    Attributes:
        hooks: the names of the required hooks without any implementation.
    """

    def __init__(self, hooks: list[str]) -> None:
        self.hooks = hooks
        super().__init__(
            "required hook(s) without any implementation: "
            + ", ".join(hooks)
            + "; install or enable a plugin that implements them"
        )


class PluginContractError(HostappError):
    """A plugin broke a hook's contract (wrong return type, malformed spec object).

    The message names the plugin, its provenance, the hook and what was expected.
    """


class ComponentError(HostappError):
    """A component is not there: unavailable, disabled (``load = "no"``), closed, or not
    configured; or a ``load = "yes"`` component is unavailable at start.

    Raised by ``host.component(NAME)`` and by ``Host.start()`` for ``load = "yes"``. The message
    is one line naming the component, its driver and the cause.

    Attributes:
        component: the component name.
        state: ``"unavailable"``, ``"disabled"``, ``"closed"``, ``"pending"`` or
            ``"unknown"`` (not configured).
    """

    def __init__(self, component: str, state: str, message: str) -> None:
        self.component = component
        self.state = state
        super().__init__(message)


class NotApplicable(HostappError):
    """Raised by a plugin's ``should_load(config)`` to say it does not apply here, and why.

    The plugin is then ``not_applicable`` (not registered, not an error), and ``hostapp
    plugins`` shows ``should_load: MESSAGE``. Returning ``False`` does the same without a
    reason; any other exception is a load failure (stage ``should_load``).

    Example::

        def should_load(config):
            if not config.plugin_config("acme").get("url"):
                raise hostapp.NotApplicable("no [plugins.config.acme] url")
            return True
    """


class PluginTimeoutError(HostappError):
    """A call into plugin code did not return within its bound and was abandoned.

    Recorded as the plugin's error (``PluginInfo.error``, the run summary, a component's or
    a processor's ``last_error``); the host went on without it. The message says how long
    the call had and which setting gives that bound: ``"did not return within 10 s
    (host.start_timeout); abandoned"``.
    """
