"""Hand-written record classes that are dataclasses on demand.

``import dataclasses`` and two ``@dataclass`` classes cost a warm plugin discovery about
4 ms of CPU per process (the decorator compiles the methods it generates), which is as
much as the discovery itself. So the two record classes on that path,
:class:`~hostapp.lifecycle.PluginInfo` and :class:`~hostapp.discovery.DiscoveryOptions`,
are written out by hand: ``__slots__``, ``__init__``, ``__repr__`` and, where the
dataclass had them, ``__eq__``, ``__hash__`` and the frozen ``__setattr__`` /
``__delattr__``, exactly as ``@dataclass`` would generate them.

:func:`dataclass_twin` then makes such a class a dataclass for everything that inspects
one (:func:`dataclasses.fields`, :func:`~dataclasses.replace`, :func:`~dataclasses.asdict`,
:func:`~dataclasses.is_dataclass`, a dataclass subclass): its ``__dataclass_fields__`` and
``__dataclass_params__`` are built on first access, from a *twin* the real decorator makes
out of the class's annotations and its ``__init__`` defaults. ``tests/test_record_classes.py``
checks each hand-written class against its twin (signature, repr, equality, hashing,
frozenness, pickling).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["FACTORY", "dataclass_twin", "frozen_delattr", "frozen_setattr", "make_twin"]

C = TypeVar("C", bound=type)

_METADATA = ("__dataclass_fields__", "__dataclass_params__")


class _Factory:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


#: Default of an ``__init__`` parameter whose field has a ``default_factory``: it shows as
#: ``<factory>`` in signatures, as a dataclass's does.
FACTORY: Any = _Factory()


def make_twin(cls: type, *, frozen: bool, eq: bool, fields: Mapping[str, Mapping[str, Any]]) -> type:
    """The ``@dataclass(frozen=..., eq=..., slots=True)`` class with ``cls``'s fields.

    Fields are ``cls``'s own annotations, in order; defaults are its ``__init__``
    defaults; ``fields`` adds :func:`dataclasses.field` options by name (a field whose
    ``__init__`` default is :data:`FACTORY` must give ``default_factory`` there).
    """
    import dataclasses
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    namespace: dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__annotations__": dict(cls.__annotations__),
    }
    for name in cls.__annotations__:
        options = dict(fields.get(name, {}))
        default = parameters[name].default
        if default is FACTORY:
            if "default_factory" not in options:
                raise TypeError(f"{cls.__qualname__}.{name}: FACTORY default without a default_factory")
        elif default is not inspect.Parameter.empty:
            options["default"] = default
        if options:
            namespace[name] = dataclasses.field(**options)
    return dataclasses.dataclass(frozen=frozen, eq=eq, slots=True)(type(cls.__name__, (), namespace))


class _TwinMetadata:
    """Stands for ``__dataclass_fields__`` or ``__dataclass_params__`` until first read."""

    def __init__(self, owner: type, name: str, build: Callable[[], type]) -> None:
        self.owner, self.name, self.build = owner, name, build

    def __get__(self, instance: object, objtype: type | None = None) -> Any:
        owner = self.owner  # the class that declared it, also when read through a subclass
        if isinstance(owner.__dict__.get(self.name), _TwinMetadata):
            twin = self.build()
            for attr in _METADATA:
                setattr(owner, attr, getattr(twin, attr))
        return owner.__dict__[self.name]


def dataclass_twin(
    *, frozen: bool = False, eq: bool = True, fields: Mapping[str, Mapping[str, Any]] | None = None
) -> Callable[[C], C]:
    """Class decorator: give a hand-written class the dataclass metadata of its twin, lazily.

    The arguments are those of ``@dataclass`` the class mimics (always ``slots=True``)
    plus ``fields``, :func:`dataclasses.field` options by field name (``default_factory``,
    ``repr``, ...). See :func:`make_twin`.
    """

    def decorate(cls: C) -> C:
        def build() -> type:
            return make_twin(cls, frozen=frozen, eq=eq, fields=fields or {})

        for attr in _METADATA:
            setattr(cls, attr, _TwinMetadata(cls, attr, build))
        return cls

    return decorate


def frozen_setattr(cls: type, field_names: frozenset[str]) -> Callable[[Any, str, Any], None]:
    """The ``__setattr__`` of a frozen dataclass ``cls`` with these fields."""

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in field_names:
            from dataclasses import FrozenInstanceError

            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    __setattr__.__qualname__ = f"{cls.__qualname__}.__setattr__"
    return __setattr__


def frozen_delattr(cls: type, field_names: frozenset[str]) -> Callable[[Any, str], None]:
    """The ``__delattr__`` of a frozen dataclass ``cls`` with these fields."""

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in field_names:
            from dataclasses import FrozenInstanceError

            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    __delattr__.__qualname__ = f"{cls.__qualname__}.__delattr__"
    return __delattr__
