"""The ``hookimpl`` and ``hookspec`` markers of project ``hostapp``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import pluggy

__all__ = ["SpecOptions", "hookimpl", "hookspec", "spec_options"]

#: Marks a hook implementation, exactly pluggy's ``HookimplMarker("hostapp")``: accepts
#: ``tryfirst``, ``trylast``, ``wrapper``, ``hookwrapper``, ``optionalhook``, ``specname``.
hookimpl = pluggy.HookimplMarker("hostapp")

_pluggy_hookspec = pluggy.HookspecMarker("hostapp")

F = TypeVar("F", bound=Callable[..., Any])


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


DEFAULT_OPTIONS = SpecOptions()


@overload
def hookspec(function: F) -> F: ...
@overload
def hookspec(
    function: None = None,
    *,
    firstresult: bool = False,
    historic: bool = False,
    required: bool = False,
    isolate: bool = False,
    collect: type | None = None,
    warn_on_impl: Warning | None = None,
) -> Callable[[F], F]: ...
def hookspec(
    function: F | None = None,
    *,
    firstresult: bool = False,
    historic: bool = False,
    required: bool = False,
    isolate: bool = False,
    collect: type | None = None,
    warn_on_impl: Warning | None = None,
) -> F | Callable[[F], F]:
    """Mark a function as a hookspec of project ``hostapp``.

    Takes pluggy's options (``firstresult``, ``historic``, ``warn_on_impl``) and hostapp's
    (``required``, ``isolate``, ``collect``; see :class:`SpecOptions`). A host application
    uses it for its own hooks and adds them with ``pm.add_hookspecs(module)``::

        @hostapp.hookspec(required=True)
        def myapp_storage_backend(config):
            "Return the storage backend (at least one plugin must provide it)."

    Raises:
        ValueError: ``firstresult`` together with ``historic`` or ``collect``.
    """
    if firstresult and (historic or collect is not None):
        raise ValueError("a hookspec cannot be firstresult together with historic or collect")
    options = SpecOptions(required=required, isolate=isolate, collect=collect)

    def mark(func: F) -> F:
        _pluggy_hookspec(firstresult=firstresult, historic=historic, warn_on_impl=warn_on_impl)(func)
        func.hostapp_spec_options = options  # type: ignore[attr-defined]
        return func

    return mark(function) if function is not None else mark


def spec_options(hook: pluggy.HookCaller) -> SpecOptions:
    """The :class:`SpecOptions` of ``hook`` (defaults when it has no spec or plain pluggy's)."""
    spec = hook.spec
    if spec is None:
        return DEFAULT_OPTIONS
    return getattr(spec.function, "hostapp_spec_options", DEFAULT_OPTIONS)
