"""Plugin states and the record kept for every plugin candidate (:class:`PluginInfo`).

Every candidate the discovery adapter finds gets one :class:`PluginInfo`, created before
anything is imported, and the record follows the plugin through its whole life::

    discovered -> filtered | shadowed                     (never imported)
    discovered -> not_applicable                          (``requires`` missing: never imported)
    discovered -> imported -> not_applicable              (``should_load`` said no: not registered)
    discovered -> imported -> registered -> started -> stopped
    any stage  -> failed                                  (stage + error kept)

Each transition is reported to the ``hostapp_plugin_state(info)`` hook (an isolated hook:
a listener that raises is reported and skipped). The states follow plux's lifecycle
(resolved -> init -> loaded, reported to a listener while the manager keeps going).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PluginInfo", "PluginState", "Source"]


class PluginState(str, enum.Enum):
    """Where a plugin is in its life. The value is the lower-case name used in JSON output."""

    #: Found by a source; nothing imported yet.
    DISCOVERED = "discovered"
    #: Removed by a filter before import; :attr:`PluginInfo.rule` says which.
    FILTERED = "filtered"
    #: Another source offered the same name first; :attr:`PluginInfo.shadowed_by` says which.
    SHADOWED = "shadowed"
    #: It does not apply here: a distribution it ``requires`` is missing (checked before
    #: import), or its ``should_load(config)`` said no (after import, before
    #: registration); :attr:`PluginInfo.rule` says why. Not an error.
    NOT_APPLICABLE = "not_applicable"
    #: Its module was imported and the plugin object resolved.
    IMPORTED = "imported"
    #: Registered with the plugin manager; its hook implementations are callable.
    REGISTERED = "registered"
    #: The host started it (``hostapp_startup`` ran).
    STARTED = "started"
    #: The host stopped it.
    STOPPED = "stopped"
    #: A stage failed; :attr:`PluginInfo.stage` and :attr:`PluginInfo.error` say which and why.
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class Source(str, enum.Enum):
    """Where a candidate came from, in precedence order (the first source to offer a name wins)."""

    #: Registered by the host program or a test (``PluginManager.load(explicit=...)``).
    EXPLICIT = "explicit"
    #: Listed in config ``plugins.modules`` (the way Kolo lists local processors).
    CONFIG = "config"
    #: A module or package in one of the ``plugins.paths`` folders.
    FOLDER = "folder"
    #: An entry point in group ``hostapp`` of an installed distribution.
    ENTRY_POINT = "entrypoint"

    def __str__(self) -> str:
        return self.value


#: Precedence of sources when two offer the same plugin name: lower wins.
SOURCE_PRECEDENCE: dict[Source, int] = {
    Source.EXPLICIT: 0,
    Source.CONFIG: 1,
    Source.FOLDER: 2,
    Source.ENTRY_POINT: 3,
}


@dataclass(eq=False, slots=True)
class PluginInfo:
    """The record of one plugin candidate, from discovery to stop.

    Provenance fields (``name`` to ``description``) are filled by the discovery adapter
    before anything is imported, so filters, error reports and ``hostapp plugins`` work
    without importing the plugin.

    Attributes:
        name: the plugin name (entry-point name, folder module name, module path, or the
            name given to an explicit registration). Unique among loaded plugins.
        source: where it came from (:class:`Source`).
        value: what to import, ``"module"`` or ``"module:attr"`` (the entry-point value).
        location: a file system path: the plugin file or package directory for folder
            plugins, the ``.dist-info`` directory for entry points, ``None`` when unknown
            (explicit objects, config modules not yet imported).
        distribution: the distribution name for entry points (``None`` otherwise).
        version: the distribution version for entry points (``None`` otherwise).
        tags: tags from ``NAME.meta.json`` / ``meta.json``, ``[plugins.meta.NAME]`` or the
            plugin's ``hostapp_plugin_meta`` attribute.
        requires: distributions the plugin needs (requirement strings: ``"redis>=4.5"``),
            from its metadata file, ``[plugins.meta.NAME]``, or the extras of its entry
            point (``acme = acme_hostapp [redis]`` requires what the distribution's extra
            ``redis`` requires); checked before import.
        priority: ordering key; a higher priority is called earlier (default ``0``).
        description: one line for listings.
        builtin: ``True`` for the plugins shipped in ``hostapp_plugins``.
        state: the current :class:`PluginState`.
        rule: for ``filtered``: the rule that removed it, e.g. ``"plugins.disable: 'x*'"``;
            for ``not_applicable``: why, e.g. ``"requires 'redis>=4.5': not installed"``.
        shadowed_by: for ``shadowed``: ``"<source> <location or value>"`` of the winner.
        stage: for ``failed``: ``"discover"`` (a malformed meta file), ``"import"``,
            ``"instantiate"``, ``"should_load"`` (its ``should_load`` raised),
            ``"register"``, ``"configure"``, ``"start"`` or
            ``"sink-open"`` (one of its event sinks could not open). A plugin that breaks a
            registration hook's contract stays registered; the error is in
            ``PluginManager.hook_errors`` and ``hostapp plugins``.
        error: for ``failed``: ``"ExceptionType: message"``.
        traceback: for ``failed``: the formatted traceback (a string).
        hooks: names of the hooks it implements, filled at registration.
        obj: the object registered with pluggy (``None`` until imported). Not serialised.
    """

    name: str
    source: Source
    value: str | None = None
    location: str | None = None
    distribution: str | None = None
    version: str | None = None
    tags: tuple[str, ...] = ()
    priority: int = 0
    description: str | None = None
    builtin: bool = False
    state: PluginState = PluginState.DISCOVERED
    rule: str | None = None
    shadowed_by: str | None = None
    stage: str | None = None
    error: str | None = None
    traceback: str | None = None
    hooks: list[str] = field(default_factory=list)
    obj: Any = field(default=None, repr=False)
    requires: tuple[str, ...] = ()

    def fail(self, stage: str, exc: BaseException) -> None:
        """Mark this plugin failed at ``stage`` with ``exc`` (message and traceback kept)."""
        import traceback  # only when something failed: it costs a discovery ~1 ms to import

        self.state = PluginState.FAILED
        self.stage = stage
        self.error = f"{type(exc).__name__}: {exc}"
        self.traceback = "".join(traceback.format_exception(exc))

    @property
    def provenance(self) -> str:
        """A short human description of where the plugin comes from, for error messages.

        ``"distribution 'acme-hostapp' 1.2 (entry point acme = acme.plugin)"``,
        ``"folder plugin /srv/plugins/acme.py"``, ``"config plugins.modules 'acme.plugin'"``
        or ``"explicit registration"``.
        """
        if self.source is Source.ENTRY_POINT:
            return (
                f"distribution {self.distribution!r} {self.version or '?'} "
                f"(entry point {self.name} = {self.value})"
            )
        if self.source is Source.FOLDER:
            return f"folder plugin {self.location}"
        if self.source is Source.CONFIG:
            return f"config plugins.modules {self.value!r}"
        return "explicit registration"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field except ``obj`` (the ``hostapp plugins --json`` row)."""
        return {
            "name": self.name,
            "state": self.state.value,
            "source": self.source.value,
            "value": self.value,
            "location": self.location,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "priority": self.priority,
            "tags": list(self.tags),
            "description": self.description,
            "hooks": list(self.hooks),
            "requires": list(self.requires),
            "rule": self.rule,
            "shadowed_by": self.shadowed_by,
            "stage": self.stage,
            "error": self.error,
            "traceback": self.traceback,
        }
