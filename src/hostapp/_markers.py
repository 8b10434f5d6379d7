"""The ``hookimpl`` and ``hookspec`` markers of project ``hostapp``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import pluggy

if TYPE_CHECKING:
    from hostapp._spec_options import DEFAULT_OPTIONS, SpecOptions

__all__ = ["SpecOptions", "hookimpl", "hookspec", "spec_options"]

#: Marks a hook implementation, exactly pluggy's ``HookimplMarker("hostapp")``: accepts
#: ``tryfirst``, ``trylast``, ``wrapper``, ``hookwrapper``, ``optionalhook``, ``specname``.
hookimpl = pluggy.HookimplMarker("hostapp")

_pluggy_hookspec = pluggy.HookspecMarker("hostapp")

F = TypeVar("F", bound=Callable[..., Any])


def __getattr__(name: str) -> Any:
    # SpecOptions and DEFAULT_OPTIONS are created on first use (see hostapp._spec_options).
    if name in ("SpecOptions", "DEFAULT_OPTIONS"):
        from hostapp import _spec_options

        value = getattr(_spec_options, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from hostapp._spec_options import SpecOptions

    options = SpecOptions(required=required, isolate=isolate, collect=collect)

    def mark(func: F) -> F:
        _pluggy_hookspec(firstresult=firstresult, historic=historic, warn_on_impl=warn_on_impl)(func)
        func.hostapp_spec_options = options  # type: ignore[attr-defined]
        return func

    return mark(function) if function is not None else mark


def spec_options(hook: pluggy.HookCaller) -> SpecOptions:
    """The :class:`SpecOptions` of ``hook`` (defaults when it has no spec or plain pluggy's)."""
    spec = hook.spec
    options = getattr(spec.function, "hostapp_spec_options", None) if spec is not None else None
    if options is None:
        from hostapp._spec_options import DEFAULT_OPTIONS

        return DEFAULT_OPTIONS
    return options
