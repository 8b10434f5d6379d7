"""The selection index, the search for selected code, and the import hook.

All processors become one :class:`Selection`: a code object is selected when its
``co_name`` is one of a processor's ``co_names`` (or the processor's ``co_names`` is
empty) and the processor's ``path_fragment`` is a substring of its ``co_filename``
(written with ``/``). Only functions are selected (``def``, ``async def``, ``lambda``):
module and class bodies and comprehensions are not calls.

Backends that instrument code ahead of time find it here:

* :func:`loaded_modules` pre-filters ``sys.modules`` on ``module.__file__`` against the
  fragments, so only the few modules that can hold selected code are walked;
* :func:`module_functions` walks one module: functions, classes (recursively: methods,
  static and class methods, properties, nested classes), ``__wrapped__`` chains; a
  function bound under several names is one function object, found once;
* :func:`nested_codes` adds the code objects of nested functions and lambdas (for the
  backends that instrument code objects rather than function objects);
* :class:`ImportHook`, a ``sys.meta_path`` finder that finds nothing itself: for a module
  whose file matches a fragment it arranges for a callback to run right after the
  module's body, so modules imported after tracing started are instrumented too.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from hostapp.tracing._runtime import normalize_path

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from hostapp.tracing._runtime import ProcessorRuntime

__all__ = ["ImportHook", "Selection", "loaded_modules", "module_functions", "nested_codes"]

logger = logging.getLogger("hostapp.tracing")

_CO_OPTIMIZED: Final = inspect.CO_OPTIMIZED
_NOT_CALLS: Final = frozenset({"<module>", "<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


class Selection:
    """Which processors select a code object: one index over all processors.

    ``match(code)`` looks the name up first (the processors naming it plus those with
    empty ``co_names``, in engine order), then tests each candidate's fragment against the
    file name. Results are cached per code object.
    """

    __slots__ = ("_any", "_by_name", "_cache", "fragments", "runtimes")

    def __init__(self, runtimes: Sequence[ProcessorRuntime]) -> None:
        self.runtimes = tuple(runtimes)
        self._any = tuple(rt for rt in self.runtimes if not rt.co_names)
        names = {name for rt in self.runtimes for name in rt.co_names}
        self._by_name = {
            name: tuple(rt for rt in self.runtimes if not rt.co_names or name in rt.co_names)
            for name in names
        }
        self.fragments = tuple(dict.fromkeys(rt.fragment for rt in self.runtimes))
        self._cache: dict[types.CodeType, tuple[ProcessorRuntime, ...]] = {}

    def match(self, code: types.CodeType) -> tuple[ProcessorRuntime, ...]:
        """The processors (switched on or not) that select ``code``; ``()`` for none."""
        try:
            return self._cache[code]
        except KeyError:
            pass
        candidates = self._by_name.get(code.co_name, self._any)
        selected: tuple[ProcessorRuntime, ...] = ()
        if candidates and code.co_flags & _CO_OPTIMIZED and code.co_name not in _NOT_CALLS:
            filename = normalize_path(code.co_filename)
            selected = tuple(rt for rt in candidates if rt.fragment in filename)
        self._cache[code] = selected
        return selected

    def path_matches(self, path: str | None) -> bool:
        """Whether a module file can hold selected code (some fragment is in ``path``)."""
        if not path or not isinstance(path, str):
            return False
        path = normalize_path(path)
        return any(fragment in path for fragment in self.fragments)

    def clear(self) -> None:
        self._cache.clear()


def loaded_modules(selection: Selection) -> list[types.ModuleType]:
    """The modules in ``sys.modules`` whose ``__file__`` matches some fragment."""
    out: list[types.ModuleType] = []
    seen: set[int] = set()
    for module in list(sys.modules.values()):
        if not isinstance(module, types.ModuleType) or id(module) in seen:
            continue
        seen.add(id(module))
        try:
            path = module.__dict__.get("__file__")
        except Exception:  # pragma: no cover - a module object with a broken __dict__
            continue
        if selection.path_matches(path):
            out.append(module)
    return out


_CACHE_WRAPPERS: Final[tuple[type, ...]] = tuple(
    t for t in (getattr(functools, "_lru_cache_wrapper", None),) if isinstance(t, type)
)


def module_functions(module: types.ModuleType, seen: set[int] | None = None) -> Iterator[types.FunctionType]:
    """Every function object reachable from ``module``'s namespace (see the module docstring).

    ``seen`` (ids of objects already walked) lets one scan of many modules walk a class
    imported into several of them once.
    """
    if seen is None:
        seen = set()
    try:
        stack: list[Any] = list(module.__dict__.values())
    except Exception:  # pragma: no cover
        return
    while stack:
        obj = stack.pop()
        key = id(obj)
        if key in seen:
            continue
        kind = type(obj)  # never obj.__class__: a lazy proxy (celery's) would evaluate itself
        if kind is types.FunctionType:
            seen.add(key)
            yield obj
            wrapped = obj.__dict__.get("__wrapped__")
            if wrapped is not None:
                stack.append(wrapped)
        elif issubclass(kind, type):
            seen.add(key)
            try:
                stack.extend(obj.__dict__.values())
            except Exception:  # pragma: no cover - a metaclass with an odd __dict__
                pass
        elif issubclass(kind, (staticmethod, classmethod, types.MethodType)):
            seen.add(key)
            stack.append(obj.__func__)
        elif issubclass(kind, property):
            seen.add(key)
            stack.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif issubclass(kind, (functools.partial, functools.partialmethod)):
            seen.add(key)
            stack.append(obj.func)
        elif issubclass(kind, functools.cached_property):
            seen.add(key)
            stack.append(obj.func)
        elif _CACHE_WRAPPERS and issubclass(kind, _CACHE_WRAPPERS):
            seen.add(key)
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                stack.append(wrapped)


def nested_codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and the code objects of the functions defined inside it, recursively."""
    stack = [code]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(const for const in current.co_consts if isinstance(const, types.CodeType))


class _HookState(threading.local):
    busy: bool = False


class ImportHook:
    """A ``sys.meta_path`` finder that calls ``on_module(module)`` after a matching import.

    It asks the finders after it for the spec (it never finds a module itself). When the
    spec's file matches ``selection`` and its loader has ``exec_module``, that loader's
    ``exec_module`` is wrapped (an instance attribute, removed once the module has run)
    so that ``on_module`` sees the module as soon as its body has run. A failure in
    ``on_module`` is logged and never reaches the import.
    """

    def __init__(
        self,
        selection: Selection | None,
        on_module: Callable[[types.ModuleType], None],
        *,
        match: Callable[[str, str | None], bool] | None = None,
    ) -> None:
        """Args:
            selection: the modules whose file matches it are hooked.
            on_module: called with each hooked module right after its body ran.
            match: instead of ``selection``, ``match(fullname, origin) -> bool`` says
                which modules are hooked (the probes wait for modules by name).
        """
        self._selection = selection
        self._match = match
        self._on_module = on_module
        self._state = _HookState()
        self.active = True

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        self.active = False
        while self in sys.meta_path:
            sys.meta_path.remove(self)

    def invalidate_caches(self) -> None:
        """Nothing cached here (``importlib.invalidate_caches`` calls every finder)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None,
    ) -> ModuleSpec | None:
        state = self._state
        if not self.active or state.busy:
            return None
        state.busy = True
        try:
            spec = self._find_after_self(fullname, path, target)
        finally:
            state.busy = False
        if spec is None:
            return None
        if self._match is not None:
            if self._match(fullname, spec.origin):
                self._wrap(spec)
        elif spec.has_location and self._selection is not None and self._selection.path_matches(spec.origin):
            self._wrap(spec)
        return spec

    def _find_after_self(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None,
    ) -> ModuleSpec | None:
        finders = list(sys.meta_path)
        try:
            finders = finders[finders.index(self) + 1:]
        except ValueError:
            return None
        for finder in finders:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec  # type: ignore[no-any-return]
        return None

    def _wrap(self, spec: ModuleSpec) -> None:
        loader = spec.loader
        if loader is None or isinstance(loader, type):
            return
        existing = getattr(loader, "__dict__", {}).get("exec_module")
        if existing is not None and not getattr(existing, "_hostapp_hook", False):
            return  # someone else's instance attribute: leave the loader alone
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return
        on_module = self._on_module
        hook = self

        def exec_and_instrument(module: types.ModuleType) -> None:
            try:
                exec_module(module)
            finally:
                if loader.__dict__.get("exec_module") is exec_and_instrument:
                    del loader.exec_module
            if hook.active:
                try:
                    on_module(module)
                except Exception:
                    logger.exception("tracing: could not instrument module %r after import", module.__name__)

        exec_and_instrument._hostapp_hook = True  # type: ignore[attr-defined]  # another hook may chain on it
        try:
            setattr(loader, "exec_module", exec_and_instrument)  # noqa: B010 - an instance attribute
        except (AttributeError, TypeError):  # a loader with __slots__: not instrumented
            logger.debug("tracing: cannot hook the loader of %r", spec.name)
