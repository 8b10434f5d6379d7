"""Finding the function a probe target names, without importing anything.

A target is a dotted path (``pkg.mod.Class.method``), a ``(obj, "name")`` pair or an
object (a function, a bound method, a ``staticmethod``/``classmethod``/``property``,
``functools.partial``). The *function* probed is the Python function at the end of the
chain: static/class methods give their ``__func__``, a property its getter, a bound
method its ``__func__``, a partial its ``func``, and a function made by a decorator with
``functools.wraps`` its innermost ``__wrapped__`` - so a probe on ``pkg.mod.f`` where ``f``
is decorated sees the calls of the original ``f`` through the decorator *and* through
any other reference to it.

Dotted paths are resolved against ``sys.modules`` only: the longest prefix that is an
imported module, then attributes. A module that is not imported yet is never imported
here (importing the program's modules from the probe poller's thread would run their
top-level code out of order); :class:`NotImported` says which module names to wait for.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from dataclasses import dataclass
from typing import Any

__all__ = ["NotImported", "Resolved", "TargetError", "resolve", "target_name"]


class TargetError(LookupError):
    """The target does not name a Python function (a missing attribute, a builtin, ...)."""


class NotImported(TargetError):
    """No module of the dotted path is imported yet.

    Attributes:
        modules: the module names that could hold it (each prefix of the path).
    """

    def __init__(self, target: str, modules: tuple[str, ...]) -> None:
        self.modules = modules
        super().__init__(
            f"{target!r}: its module is not imported in this process yet "
            f"(waiting for an import of {' or '.join(repr(m) for m in modules)})"
        )


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a target resolved to.

    Attributes:
        target: the target as given, shown in messages.
        function: the Python function probed (its code object is instrumented).
        kind: ``"function"``, ``"method"``, ``"staticmethod"``, ``"classmethod"``,
            ``"property"``, ``"bound method"``, ``"partial"`` (how the target held it).
        wrapped: how many ``__wrapped__`` links were followed (decorators).
    """

    target: str
    function: types.FunctionType
    kind: str
    wrapped: int

    @property
    def code(self) -> types.CodeType:
        """The probed function's code object."""
        return self.function.__code__

    @property
    def qualname(self) -> str:
        """``module.qualname`` of the probed function."""
        return f"{self.function.__module__}.{self.function.__qualname__}"


def target_name(target: Any) -> str:
    """A printable name for ``target`` (the dotted path, or ``module.qualname``)."""
    if isinstance(target, str):
        return target
    if isinstance(target, tuple) and len(target) == 2:
        owner, name = target
        return f"{getattr(owner, '__qualname__', type(owner).__qualname__)}.{name}"
    inner = getattr(target, "__func__", None) or getattr(target, "fget", None) or getattr(target, "func", None)
    obj = inner if inner is not None and not isinstance(target, types.FunctionType) else target
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or repr(obj)
    return f"{module}.{qualname}" if module else qualname


def _attribute(owner: Any, name: str) -> Any:
    """``owner.name``, but the raw descriptor when ``owner`` is a class (so static and
    class methods and properties keep their kind)."""
    if isinstance(owner, type):
        for klass in owner.__mro__:
            if name in klass.__dict__:
                return klass.__dict__[name]
    return getattr(owner, name)


def _unwrap(obj: Any, target: str) -> tuple[types.FunctionType, str, int]:
    kind = "function"
    for _ in range(16):
        if isinstance(obj, staticmethod):
            obj, kind = obj.__func__, "staticmethod"
        elif isinstance(obj, classmethod):
            obj, kind = obj.__func__, "classmethod"
        elif isinstance(obj, property):
            if obj.fget is None:
                raise TargetError(f"{target!r}: a property without a getter cannot be probed")
            obj, kind = obj.fget, "property"
        elif isinstance(obj, functools.cached_property):
            obj, kind = obj.func, "property"
        elif isinstance(obj, types.MethodType):
            obj, kind = obj.__func__, "bound method"
        elif isinstance(obj, (functools.partial, functools.partialmethod)):
            obj, kind = obj.func, "partial"
        else:
            break
    wrapped = 0
    seen = {id(obj)}
    while True:
        inner = getattr(obj, "__wrapped__", None) if not isinstance(obj, type) else None
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        obj, wrapped = inner, wrapped + 1
        if isinstance(obj, (staticmethod, classmethod, types.MethodType)):
            obj = obj.__func__
    if isinstance(obj, types.FunctionType):
        return obj, kind, wrapped
    if isinstance(obj, (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType)):
        raise TargetError(
            f"{target!r} is a builtin ({type(obj).__name__}), implemented in C: it has no Python code to probe"
        )
    if isinstance(obj, type):
        raise TargetError(f"{target!r} is a class; probe one of its methods ({target}.__init__, ...)")
    if callable(obj) and isinstance(getattr(type(obj), "__call__", None), types.FunctionType):
        return type(obj).__call__, "callable object", wrapped
    raise TargetError(f"{target!r} is a {type(obj).__name__}, not a Python function")


def resolve(target: Any) -> Resolved:
    """Resolve ``target`` (see the module docstring).

    Raises:
        NotImported: a dotted path none of whose modules is imported yet.
        TargetError: anything else that does not lead to a Python function (the message
            names the target and the missing part).
    """
    name = target_name(target)
    if isinstance(target, str):
        parts = target.strip().split(".")
        if not all(p.isidentifier() for p in parts):
            raise TargetError(f"{target!r}: expected a dotted path of Python names (pkg.mod.Class.method)")
        module = None
        for i in range(len(parts), 0, -1):
            module = sys.modules.get(".".join(parts[:i]))
            if module is not None:
                break
        if module is None:
            raise NotImported(target, tuple(".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)) or (target,))
        obj: Any = module
        walked = parts[:i]
        for part in parts[i:]:
            try:
                obj = _attribute(obj, part)
            except AttributeError:
                where = ".".join(walked)
                if isinstance(obj, types.ModuleType):  # maybe a submodule not imported yet
                    later = tuple(".".join(parts[:j]) for j in range(len(parts) - 1, len(walked), -1))
                    if later:
                        raise NotImported(target, later) from None
                raise TargetError(f"{target!r}: {where!r} has no attribute {part!r}") from None
            walked.append(part)
            if isinstance(obj, (staticmethod, classmethod)) and part != parts[-1]:
                obj = obj.__func__
    elif isinstance(target, tuple) and len(target) == 2 and isinstance(target[1], str):
        try:
            obj = _attribute(target[0], target[1])
        except AttributeError:
            raise TargetError(f"{name!r}: no attribute {target[1]!r}") from None
    else:
        obj = target
    function, kind, wrapped = _unwrap(obj, name)
    if kind == "function" and isinstance(target, str) and inspect.isclass(_parent(target)):
        kind = "method"
    return Resolved(name, function, kind, wrapped)


def _parent(target: str) -> Any:
    head = target.rsplit(".", 1)[0]
    parts = head.split(".")
    for i in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None:
            obj: Any = module
            try:
                for part in parts[i:]:
                    obj = getattr(obj, part)
            except AttributeError:
                return None
            return obj
    return None
