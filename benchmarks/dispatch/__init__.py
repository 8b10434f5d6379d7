"""Dispatch: the cost of calling a hook through hostapp's PluginManager.

Measured in-process as **CPU time** (``time.process_time``) of a loop of calls, in
paired alternating runs (A B A B ..., one warm-up pair, then >= 5 pairs); a figure is the
median of the per-pair ratios (or of per-run ns per call) with its [min–max].

* ``pm.hook.NAME()`` with 1, 5 and 20 implementations: hostapp's ``PluginManager`` against
  a plain ``pluggy.PluginManager`` with the same plugins (goal: ratio 1.0 within noise —
  hostapp honours its options inside pluggy's own call path);
* what ``isolate=True`` adds: the same 5 implementations under an isolated hookspec, in
  ns per call and per implementation;
* ``await pm.ahook.NAME()`` with 5 implementations (sync and ``async def``), µs per call
  (goal <= 2 µs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pluggy

from benchmarks._common import SuiteContext, SuiteResult, format_table, median, spread

GOAL_RATIO = 1.0
GOAL_AHOOK_US = 2.0


class Specs:
    @pluggy.HookspecMarker("hostapp")
    def bench_plain(self, x):
        """A plain hook."""

    @pluggy.HookspecMarker("hostapp")
    def bench_plain_async(self, x):
        """A plain hook with async implementations."""


def _isolated_specs() -> type:
    import hostapp

    class IsolatedSpecs:
        @hostapp.hookspec(isolate=True)
        def bench_isolated(self, x):
            """An isolated hook."""

    return IsolatedSpecs


def _plugins(n: int, hook: str, *, is_async: bool = False) -> list[object]:
    impl = pluggy.HookimplMarker("hostapp")
    plugins = []
    for i in range(n):
        if is_async:
            async def f(x, _i=i):
                return x + _i
        else:
            def f(x, _i=i):
                return x + _i
        f.__name__ = hook
        cls = type(f"P{i}", (), {hook: staticmethod(impl(f))})
        plugins.append(cls())
    return plugins


def _manager(kind: str, n: int, hook: str, *, is_async: bool = False) -> Any:
    from hostapp.manager import PluginManager

    if kind == "pluggy":
        pm: Any = pluggy.PluginManager("hostapp")
        pm.add_hookspecs(Specs)
    else:
        pm = PluginManager(hookspecs=False)
        pm.add_hookspecs(Specs)
        pm.add_hookspecs(_isolated_specs())
    for i, plugin in enumerate(_plugins(n, hook, is_async=is_async)):
        pm.register(plugin, name=f"p{i}")
    return pm


def _cpu_ns_per_call(fn: Callable[[], Any], loops: int) -> float:
    start = time.process_time_ns()
    for _ in range(loops):
        fn()
    return (time.process_time_ns() - start) / loops


def _ahook_ns_per_call(pm: Any, hook: str, loops: int) -> float:
    caller = getattr(pm.ahook, hook)

    async def body() -> float:
        start = time.process_time_ns()
        for _ in range(loops):
            await caller(x=1)
        return (time.process_time_ns() - start) / loops

    return asyncio.run(body())


def _paired(a: Callable[[], float], b: Callable[[], float], pairs: int) -> dict[str, Any]:
    a(), b()  # warm-up pair, discarded
    a_ns, b_ns = [], []
    for _ in range(pairs):
        a_ns.append(a())
        b_ns.append(b())
    ratios = [x / y for x, y in zip(a_ns, b_ns)]
    return {
        "a_ns_per_call": a_ns,
        "b_ns_per_call": b_ns,
        "a_median_ns": median(a_ns),
        "b_median_ns": median(b_ns),
        "ratio": spread(ratios),
    }


def run(ctx: SuiteContext) -> SuiteResult:
    """Measure hook-call overhead; see the module docstring. Units: ns per call, ratios."""
    loops = 20_000 if ctx.quick else 100_000
    pairs = 5 if ctx.quick else 9
    data: dict[str, Any] = {"loops": loops, "pairs": pairs, "goals": {"ratio": GOAL_RATIO, "ahook_us": GOAL_AHOOK_US}}
    rows = []

    for n in (1, 5, 20):
        ctx.log(f"pm.hook with {n} implementation(s)")
        ours = _manager("hostapp", n, "bench_plain").hook.bench_plain
        plain = _manager("pluggy", n, "bench_plain").hook.bench_plain
        result = _paired(lambda: _cpu_ns_per_call(lambda: ours(x=1), loops),
                         lambda: _cpu_ns_per_call(lambda: plain(x=1), loops), pairs)
        data[f"hook_{n}"] = result
        r = result["ratio"]
        rows.append([f"pm.hook, {n} impl(s)", f"{result['a_median_ns']:.0f} ns", f"{result['b_median_ns']:.0f} ns",
                     f"{r['median']:.2f} [{r['min']:.2f}–{r['max']:.2f}]", "≈1.0"])

    ctx.log("isolate=True, 5 implementations")
    pm = _manager("hostapp", 0, "bench_plain")
    for i, plugin in enumerate(_plugins(5, "bench_isolated")):
        pm.register(plugin, name=f"iso{i}")
    for i, plugin in enumerate(_plugins(5, "bench_plain")):
        pm.register(plugin, name=f"plain{i}")
    iso, plain_hook = pm.hook.bench_isolated, pm.hook.bench_plain
    result = _paired(lambda: _cpu_ns_per_call(lambda: iso(x=1), loops),
                     lambda: _cpu_ns_per_call(lambda: plain_hook(x=1), loops), pairs)
    added = (result["a_median_ns"] - result["b_median_ns"]) / 5
    result["added_ns_per_impl"] = added
    data["isolate_5"] = result
    r = result["ratio"]
    rows.append(["isolate=True vs plain, 5 impls", f"{result['a_median_ns']:.0f} ns", f"{result['b_median_ns']:.0f} ns",
                 f"{r['median']:.2f} [{r['min']:.2f}–{r['max']:.2f}]", f"+{added:.0f} ns/impl"])

    for label, is_async in (("sync", False), ("async", True)):
        ctx.log(f"await pm.ahook, 5 {label} implementations")
        pm_a = _manager("hostapp", 5, "bench_plain_async" if is_async else "bench_plain", is_async=is_async)
        hook = "bench_plain_async" if is_async else "bench_plain"
        samples = []
        _ahook_ns_per_call(pm_a, hook, loops // 10)
        for _ in range(pairs):
            samples.append(_ahook_ns_per_call(pm_a, hook, loops))
        med = median(samples)
        data[f"ahook_5_{label}"] = {"ns_per_call": samples, "median_ns": med, "spread_ns": spread(samples)}
        status = "met" if med / 1000 <= GOAL_AHOOK_US else "NOT met"
        rows.append([f"await pm.ahook, 5 {label} impls", f"{med / 1000:.2f} µs", "–", "–",
                     f"≤ {GOAL_AHOOK_US} µs: {status}"])

    table = format_table(["measure", "hostapp", "plain pluggy", "ratio [min–max]", "goal"], rows)
    return SuiteResult(data=data, table=table)
