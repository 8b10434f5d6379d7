"""The hand-written record classes behave as the dataclasses they replace, and stay cheap to import.

:class:`PluginInfo` and :class:`DiscoveryOptions` are written out by hand (see
``hostapp._dataclass_twin``); each is compared here with its *twin*, the class
``@dataclass`` makes from the same fields, on everything a caller can observe.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import hostapp
from hostapp._dataclass_twin import FACTORY, dataclass_twin, make_twin
from hostapp.discovery import DiscoveryOptions
from hostapp.lifecycle import PluginInfo, PluginState, Source

CASES = [
    (PluginInfo, dict(frozen=False, eq=False, fields={"hooks": {"default_factory": list}, "obj": {"repr": False}}), ("x", Source.EXPLICIT)),
    (DiscoveryOptions, dict(frozen=True, eq=True, fields={"meta": {"default_factory": dict}}), ()),
]

#: The fields as they were declared with ``@dataclass`` before the classes were written out.
DECLARED = {
    PluginInfo: [
        ("name", inspect.Parameter.empty), ("source", inspect.Parameter.empty), ("value", None),
        ("location", None), ("distribution", None), ("version", None), ("tags", ()), ("priority", 0),
        ("description", None), ("builtin", False), ("state", PluginState.DISCOVERED), ("rule", None),
        ("shadowed_by", None), ("stage", None), ("error", None), ("traceback", None), ("hooks", list),
        ("obj", None),
    ],
    DiscoveryOptions: [
        ("enable", None), ("disable", ()), ("enable_locations", None), ("disable_locations", ()),
        ("allow_tags", None), ("deny_tags", ()), ("paths", ()), ("modules", ()), ("meta", dict),
        ("autoload", True), ("use_cache", True), ("cache_dir", None), ("groups", ("hostapp",)),
        ("config_source", "hostapp.toml"),
    ],
}


def default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory
    return inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default


@pytest.mark.parametrize(("cls", "options", "args"), CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_hand_written_class_matches_its_dataclass_twin(cls: type, options: dict, args: tuple) -> None:
    twin = make_twin(cls, **options)
    assert dataclasses.is_dataclass(cls)
    assert [(f.name, default(f)) for f in dataclasses.fields(cls)] == DECLARED[cls]
    assert [(f.name, f.type, f.repr, f.init, f.compare) for f in dataclasses.fields(cls)] == [
        (f.name, f.type, f.repr, f.init, f.compare) for f in dataclasses.fields(twin)
    ]
    assert cls.__dataclass_params__.frozen == twin.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert cls.__dataclass_params__.eq == twin.__dataclass_params__.eq  # type: ignore[attr-defined]
    assert cls.__slots__ == twin.__slots__
    assert cls.__match_args__ == twin.__match_args__

    mine, theirs = inspect.signature(cls).parameters, inspect.signature(twin).parameters
    assert list(mine) == list(theirs)
    for name in mine:
        a, b = mine[name], theirs[name]
        assert (a.kind, a.annotation) == (b.kind, b.annotation), name
        assert repr(a.default) == repr(b.default), name  # "<factory>" for both factories

    a, b = cls(*args), twin(*args)
    assert repr(a) == repr(b)
    for field in dataclasses.fields(cls):
        assert getattr(a, field.name) == getattr(b, field.name), field.name
    if cls.__dataclass_params__.eq:  # type: ignore[attr-defined]
        assert a == cls(*args) and a != cls(*args, config_source="other")  # type: ignore[call-arg]
        assert (a == b) is False  # another class: NotImplemented both ways
    else:
        assert a != cls(*args) and a == a
    if cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        for target in (a, b):
            with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'enable'"):
                target.enable = ("x",)
            with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'enable'"):
                del target.enable
        assert hash(cls(disable=("a",), meta=())) == hash(twin(disable=("a",), meta=()))  # type: ignore[call-arg]
    else:
        assert type(a).__hash__ is object.__hash__
    with pytest.raises(AttributeError):
        a.no_such_field = 1  # slots


def test_dataclasses_functions_work_on_the_hand_written_classes() -> None:
    info = PluginInfo("p", Source.FOLDER, location="/x/p.py", tags=("a",), obj=object())
    copied = dataclasses.replace(info, hooks=["hostapp_configure"])
    assert (copied.name, copied.location, copied.hooks, copied.obj) == ("p", "/x/p.py", ["hostapp_configure"], info.obj)
    assert info.hooks == [] and info.hooks is not PluginInfo("q", Source.FOLDER).hooks
    assert dataclasses.asdict(PluginInfo("p", Source.FOLDER))["state"] is PluginState.DISCOVERED
    assert PluginInfo("p", Source.FOLDER, hooks=None).hooks is None  # an explicit value is kept, as a dataclass does

    options = DiscoveryOptions(disable=("x",), cache_dir=Path("/c"))
    changed = dataclasses.replace(options, use_cache=False)
    assert (changed.use_cache, changed.disable, changed.cache_dir) == (False, ("x",), Path("/c"))
    assert dataclasses.astuple(options)[:2] == (None, ("x",))
    assert options.meta == {} and options.meta is not DiscoveryOptions().meta
    for clone in (copy.copy(options), copy.deepcopy(options), pickle.loads(pickle.dumps(options))):
        assert clone == options
    info_clone = pickle.loads(pickle.dumps(PluginInfo("p", Source.CONFIG, value="m")))
    assert (info_clone.name, info_clone.source, info_clone.value) == ("p", Source.CONFIG, "m")

    match options:
        case DiscoveryOptions(None, ("x",)):
            pass
        case _:
            pytest.fail("positional match failed")


def test_dataclass_subclass_of_a_hand_written_class() -> None:
    @dataclasses.dataclass(eq=False)
    class Tagged(PluginInfo):
        extra: int = 0

    tagged = Tagged("t", Source.EXPLICIT, extra=3)
    assert [f.name for f in dataclasses.fields(Tagged)][-2:] == ["obj", "extra"]
    assert (tagged.name, tagged.extra, tagged.hooks) == ("t", 3, [])


def test_twin_metadata_is_built_once_and_only_on_demand() -> None:
    @dataclass_twin(frozen=True, fields={"items": {"default_factory": list}})
    class Point:
        __slots__ = ("x", "items")
        x: int
        items: list[int]

        def __init__(self, x: int, items: list[int] = FACTORY) -> None:
            object.__setattr__(self, "x", x)
            object.__setattr__(self, "items", [] if items is FACTORY else items)

    assert "__dataclass_fields__" not in {k for k, v in vars(Point).items() if isinstance(v, dict)}
    fields = Point.__dataclass_fields__  # type: ignore[attr-defined]
    assert list(fields) == ["x", "items"]
    assert vars(Point)["__dataclass_fields__"] is fields is Point.__dataclass_fields__  # type: ignore[attr-defined]
    assert Point.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_importing_hostapp_and_discovery_stays_cheap() -> None:
    script = textwrap.dedent(
        """
        import sys
        before = set(sys.modules)
        import hostapp
        after_hostapp = set(sys.modules) - before
        import hostapp.discovery
        after_discovery = set(sys.modules) - before
        print(sorted(after_hostapp), sorted(after_discovery), sep="\\n")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    hostapp_mods, discovery_mods = (line.split("'")[1::2] for line in done.stdout.splitlines())
    for heavy in ("dataclasses", "hostapp.types", "hostapp.lifecycle", "hostapp._spec_options", "traceback"):
        assert heavy not in hostapp_mods, heavy
    # (stdlib modules that other stdlib modules import differ between Python versions —
    # weakref comes with `re` on 3.13 — so only modules hostapp itself would pull in count)
    for heavy in ("dataclasses", "hostapp.types", "json", "traceback", "textwrap", "zlib", "hostapp.errors"):
        assert heavy not in discovery_mods, heavy


def test_lazy_public_names_of_the_hostapp_package() -> None:
    from hostapp import EventSink, PluginInfo as Info, TraceProcessor  # noqa: N813
    from hostapp.types import EventSink as RealSink

    assert EventSink is RealSink is hostapp.EventSink
    assert Info is PluginInfo is hostapp.PluginInfo
    assert TraceProcessor is hostapp.TraceProcessor
    assert hostapp.PluginState is PluginState and hostapp.Source is Source
    assert {"EventSink", "PluginInfo", "hookimpl", "hookspec"} <= set(dir(hostapp))
    for name in hostapp.__all__:
        assert getattr(hostapp, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hostapp.Nope  # noqa: B018


def test_spec_options_are_created_on_first_use() -> None:
    script = textwrap.dedent(
        """
        import sys
        import hostapp, pluggy
        assert "hostapp._spec_options" not in sys.modules
        from hostapp._markers import DEFAULT_OPTIONS, SpecOptions, spec_options

        @hostapp.hookspec(required=True, isolate=True)
        def myapp_thing():
            pass

        assert myapp_thing.hostapp_spec_options == SpecOptions(required=True, isolate=True)
        assert DEFAULT_OPTIONS == SpecOptions() and SpecOptions.__module__ == "hostapp._markers"

        class Specs:
            myapp_thing = staticmethod(myapp_thing)

        pm = pluggy.PluginManager("hostapp")
        pm.add_hookspecs(Specs)
        assert spec_options(pm.hook.myapp_thing).required is True
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
