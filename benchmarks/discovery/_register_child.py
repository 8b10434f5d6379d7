"""In-process registration benchmark (run as a child script by the discovery suite).

Usage: ``python _register_child.py N REPEATS WARMUP`` with the generated site dir for N on
``PYTHONPATH``. Imports the N plugin modules once (untimed for the comparison, but reported),
then alternates, ``WARMUP`` discarded rounds + ``REPEATS`` measured rounds, between:

* ``pluggy_register_loop``: a fresh plain ``pluggy.PluginManager("hostapp")`` (with a spec
  for the one hook the plugins implement) and ``pm.register(module, name=name)`` per plugin;
* ``hostapp_register_plugins``: a fresh ``hostapp.manager.PluginManager()`` and one
  ``pm.register_plugins(infos)`` call, ``infos`` being one ``hostapp.lifecycle.PluginInfo``
  per plugin (state ``imported``, ``priority=0``, ``obj`` = the module), built untimed;
* ``hostapp_register_loop``: a fresh hostapp manager and ``pm.register(module, name=name)``
  per plugin (if ``hostapp.manager`` is importable).

Only the registration calls are timed (manager construction is not), with the cyclic GC
off (see :data:`GC_DURING_TIMING`). Prints one JSON object on stdout: per method the CPU
seconds (``time.process_time``) and wall seconds (``time.perf_counter``) of each measured
round, the number of plugins registered, and the reason a method was unavailable.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pluggy

MODULE_PREFIX = "bench_plugin_"
#: Like ``timeit``, the cyclic GC is off while a round is timed (it is collected before):
#: a full collection walks every live object, all N modules included, and whether one
#: lands inside a round is luck, which blurs the per-plugin cost we want to compare.
#: Set ``BENCH_REGISTRATION_GC=1`` to time with the GC on.
GC_DURING_TIMING = os.environ.get("BENCH_REGISTRATION_GC") == "1"


class _Spec:
    """A plain-pluggy spec for the hook every generated plugin implements."""

    @pluggy.HookspecMarker("hostapp")
    def hostapp_configure(self, config: Any) -> None:
        """Same signature as hostapp's ``hostapp_configure``."""


def _pluggy_loop(items: list[tuple[str, ModuleType]]) -> Callable[[], tuple[Callable[[], int], str]]:
    def setup() -> tuple[Callable[[], int], str]:
        pm = pluggy.PluginManager("hostapp")
        pm.add_hookspecs(_Spec)

        def go() -> int:
            for name, mod in items:
                pm.register(mod, name=name)
            return len(pm.get_plugins())

        return go, "pluggy.PluginManager.register in a loop"

    return setup


def _hostapp_batch(items: list[tuple[str, ModuleType]], manager_cls: type) -> Callable[[], tuple[Callable[[], int], str]]:
    """``register_plugins`` takes :class:`hostapp.lifecycle.PluginInfo` records in state
    ``imported`` (built untimed, fresh each round, since registration updates them)."""
    from hostapp.lifecycle import PluginInfo, PluginState, Source  # type: ignore[import-not-found]

    def setup() -> tuple[Callable[[], int], str]:
        pm = manager_cls()
        infos = [
            PluginInfo(
                name=name,
                source=Source.ENTRY_POINT,
                value=name,
                distribution=name.replace("_", "-"),
                version="1.0",
                priority=0,
                state=PluginState.IMPORTED,
                obj=mod,
            )
            for name, mod in items
        ]

        def go() -> int:
            return len(pm.register_plugins(infos))

        return go, "hostapp PluginManager.register_plugins([PluginInfo(priority=0, obj=module), ...])"

    return setup


def _hostapp_loop(items: list[tuple[str, ModuleType]], manager_cls: type) -> Callable[[], tuple[Callable[[], int], str]]:
    def setup() -> tuple[Callable[[], int], str]:
        pm = manager_cls()

        def go() -> int:
            for name, mod in items:
                pm.register(mod, name=name)
            return sum(1 for name, _m in items if pm.has_plugin(name))

        return go, "hostapp PluginManager.register in a loop"

    return setup


def main(argv: list[str]) -> int:
    """Run the rounds and print the JSON report (times in seconds)."""
    n, repeats, warmup = int(argv[0]), int(argv[1]), int(argv[2])
    names = [f"{MODULE_PREFIX}{i:05d}" for i in range(n)]
    t0, c0 = time.perf_counter(), time.process_time()
    items = [(name, importlib.import_module(name)) for name in names]
    report: dict[str, Any] = {
        "n": n,
        "import_cpu_s": time.process_time() - c0,
        "import_wall_s": time.perf_counter() - t0,
        "methods": {},
        "unavailable": {},
        "gc_during_timing": GC_DURING_TIMING,
    }

    setups: dict[str, Callable[[], tuple[Callable[[], int], str]]] = {
        "pluggy_register_loop": _pluggy_loop(items),
    }
    try:
        from hostapp.manager import PluginManager  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - not written yet, or broken: report, don't fail
        report["unavailable"]["hostapp_register_plugins"] = f"import hostapp.manager: {exc!r}"
        report["unavailable"]["hostapp_register_loop"] = f"import hostapp.manager: {exc!r}"
    else:
        if hasattr(PluginManager, "register_plugins"):
            setups["hostapp_register_plugins"] = _hostapp_batch(items, PluginManager)
        else:
            report["unavailable"]["hostapp_register_plugins"] = "PluginManager has no register_plugins()"
        setups["hostapp_register_loop"] = _hostapp_loop(items, PluginManager)

    samples: dict[str, dict[str, Any]] = {
        key: {"cpu_s": [], "wall_s": [], "registered": None, "what": ""} for key in setups
    }
    for round_no in range(warmup + repeats):
        for key, setup in list(setups.items()):
            try:
                go, what = setup()
                gc.collect()
                if not GC_DURING_TIMING:
                    gc.disable()
                try:
                    c0, t0 = time.process_time(), time.perf_counter()
                    registered = go()
                    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                finally:
                    gc.enable()
            except Exception:  # noqa: BLE001 - report the API mismatch instead of dying
                report["unavailable"][key] = traceback.format_exc(limit=4)
                del setups[key]
                samples.pop(key)
                continue
            entry = samples[key]
            entry["what"] = what
            entry["registered"] = registered
            if round_no >= warmup:
                entry["cpu_s"].append(cpu)
                entry["wall_s"].append(wall)
    report["methods"] = samples
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
