""":class:`SpecOptions`, imported from :mod:`hostapp._markers` on first use.

Kept apart so that ``import hostapp`` (which every plugin module does, for ``hookimpl``)
does not create a dataclass: that costs about a millisecond, and only hookspec
definitions and the plugin manager need it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_OPTIONS", "SpecOptions"]


@dataclass(frozen=True, slots=True)
class SpecOptions:
    """The options hostapp adds to a hookspec, on top of pluggy's.

    Attributes:
        required: the host refuses to start unless some plugin implements the hook
            (:class:`~hostapp.errors.MissingHookError` lists every missing one).
        isolate: an implementation that raises is reported with the plugin's name and
            skipped; the others still run and their results are returned.
        collect: for registration hooks, the spec type every returned object must be
            (``TraceProcessor``, ``EventSink``, ...); see ``PluginManager.collect``.
    """

    required: bool = False
    isolate: bool = False
    collect: type | None = None


SpecOptions.__module__ = "hostapp._markers"

DEFAULT_OPTIONS = SpecOptions()
