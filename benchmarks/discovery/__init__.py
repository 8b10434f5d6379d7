"""Discovery suite: how much a process pays to find (and, for pluggy, load) N plugins.

For N = 50, 500, 2000 installed distributions (one ``hostapp`` entry point each, see
:mod:`benchmarks.discovery._sitegen`), every method below is a separate child process
``python -c CODE`` with that site dir on ``PYTHONPATH``, measured as **whole-process CPU time**
(user+sys of the child, from ``os.wait4``) and wall time. Each method is run in paired
alternating runs against the floor ``python -c "import pluggy"`` (1 warm-up pair, then >= 5
pairs); the figure is the median of the per-pair CPU ratios method/floor, with [min–max].

Methods (``key``: what the child does):

* ``pass``: ``python -c pass`` (the bare interpreter, for scale);
* ``stdlib``: ``import pluggy`` + ``importlib.metadata.entry_points(group="hostapp")``;
* ``hostapp_cold``: ``hostapp.discovery.discover()`` with a fresh, empty cache dir per run;
* ``hostapp_warm``: ``discover()`` with a cache dir prepared before the runs;
* ``hostapp_warm_str``: the same as ``hostapp_warm`` with the cache dir passed as a ``str``
  (diagnostic: the child code of the other hostapp methods imports :mod:`pathlib` for
  ``Path(sys.argv[1])``, which hostapp itself does not need and which costs ~4 ms here);
* ``hostapp_import``: only ``import hostapp.discovery`` (diagnostic: the part of the warm
  path that is import cost, not work);
* ``stevedore_warm``: ``stevedore._cache.get_group_all("hostapp")`` with a warm cache
  (stevedore 5 puts its cache in ``$XDG_CACHE_HOME/python-entrypoints``; we point
  ``XDG_CACHE_HOME`` into ``benchmarks/_work/discovery/``);
* ``pluggy_load``: ``pluggy.PluginManager("hostapp").load_setuptools_entrypoints("hostapp")``,
  which imports and registers every plugin module (the thing hostapp avoids).

In-process, a child (:mod:`benchmarks.discovery._register_child`) imports the N modules once
and times registering them with hostapp's ``PluginManager`` against plain pluggy's
``register`` loop (CPU time, cyclic GC off while timing): reported in µs per plugin, to show
linear vs quadratic growth.

Every method is run once untimed first to check it found the N plugins (and, except for
pluggy, imported none of them); the counts are kept in the JSON under ``validation``.

Goals (from the issue) are evaluated at the largest N and printed with the table:
warm <= 1.3x the floor; cold CPU <= the stdlib method's CPU; registration linear in N.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ChildError,
    ChildResult,
    SuiteContext,
    SuiteResult,
    format_table,
    median,
    paired_runs,
    run_child,
    spread,
)
from benchmarks.discovery._sitegen import GROUP, MODULE_PREFIX, ensure_site

__all__ = ["METHODS", "Method", "Plan", "run"]

#: ``python -c FLOOR_CODE`` is the denominator of every ratio.
FLOOR_CODE = "import pluggy"
FLOOR_LABEL = 'floor `python -c "import pluggy"`'

#: Goal: hostapp warm discovery at the largest N costs at most this many floors (CPU).
WARM_GOAL_RATIO = 1.3
#: Goal: registration is "linear" if µs/plugin at the largest N is at most this many times
#: µs/plugin at the middle N. A quadratic term makes µs/plugin grow with N: plain pluggy's
#: grows about ×1.5 from N=500 to N=2000 here (its fixed ~70 µs/plugin, mostly signature
#: inspection, hides much of the O(N) part at these sizes), so the bar sits below that.
LINEAR_GOAL_GROWTH = 1.2


@dataclass(frozen=True, slots=True)
class Method:
    """One measured child process.

    Attributes:
        key: short id used in the JSON.
        label: what the table prints.
        code: the ``python -c`` program. ``sys.argv[1]`` is the cache dir for hostapp methods.
        count_expr: expression (evaluated after ``code``) giving the number of plugins found;
            ``None`` for methods that find nothing.
        cache: ``"cold"`` (empty the cache dir before every run), ``"warm"`` (prepared once
            before the runs) or ``None``.
        needs: a module that must be importable in the child, else the method is skipped.
        imports_plugins: whether the method is expected to import the plugin modules.
    """

    key: str
    label: str
    code: str
    count_expr: str | None = None
    cache: str | None = None
    needs: str | None = None
    imports_plugins: bool = False


_HOSTAPP_CODE = (
    "import sys\n"
    "from pathlib import Path\n"
    "from hostapp.discovery import DiscoveryOptions, discover\n"
    "infos = discover(DiscoveryOptions(cache_dir=Path(sys.argv[1]), use_cache=True))\n"
)

_HOSTAPP_CODE_STR = (
    "import sys\n"
    "from hostapp.discovery import DiscoveryOptions, discover\n"
    "infos = discover(DiscoveryOptions(cache_dir=sys.argv[1], use_cache=True))\n"
)

METHODS: tuple[Method, ...] = (
    Method("pass", "`python -c pass`", "pass"),
    Method(
        "stdlib",
        'stdlib: import pluggy + `entry_points(group="hostapp")`',
        "import pluggy\nfrom importlib.metadata import entry_points\n"
        f"eps = entry_points(group={GROUP!r})\n",
        count_expr="len(eps)",
    ),
    Method(
        "hostapp_cold",
        "hostapp `discover()` cold (empty cache dir)",
        _HOSTAPP_CODE,
        count_expr="len(infos)",
        cache="cold",
        needs="hostapp.discovery",
    ),
    Method(
        "hostapp_warm",
        "hostapp `discover()` warm cache",
        _HOSTAPP_CODE,
        count_expr="len(infos)",
        cache="warm",
        needs="hostapp.discovery",
    ),
    Method(
        "hostapp_warm_str",
        "(diagnostic) hostapp warm, cache dir as str (no pathlib)",
        _HOSTAPP_CODE_STR,
        count_expr="len(infos)",
        cache="warm",
        needs="hostapp.discovery",
    ),
    Method(
        "hostapp_import",
        "(diagnostic) `import hostapp.discovery` only",
        "import hostapp.discovery\n",
        needs="hostapp.discovery",
    ),
    Method(
        "stevedore_warm",
        'stevedore `_cache.get_group_all("hostapp")` warm',
        f"from stevedore import _cache\neps = _cache.get_group_all({GROUP!r})\n",
        count_expr="len(eps)",
        cache="warm",
        needs="stevedore",
    ),
    Method(
        "pluggy_load",
        'pluggy `load_setuptools_entrypoints("hostapp")` (imports all)',
        f"import pluggy\npm = pluggy.PluginManager({GROUP!r})\nloaded = pm.load_setuptools_entrypoints({GROUP!r})\n",
        count_expr="loaded",
        imports_plugins=True,
    ),
)


@dataclass(frozen=True, slots=True)
class Plan:
    """How many repeats to run.

    Attributes:
        sizes: the N values (installed distributions).
        pairs: measured pairs per method at each N (warm-up pair not included).
        warmup: discarded warm-up pairs.
        min_pairs: floor on ``pairs`` passed to :func:`paired_runs`.
        reg_repeats: measured registration rounds at each N (in-process).
        reg_warmup: discarded registration rounds.
    """

    sizes: tuple[int, ...]
    pairs: dict[int, int]
    warmup: int = 1
    min_pairs: int = 5
    reg_repeats: dict[int, int] = field(default_factory=dict)
    reg_warmup: int = 1


FULL_PLAN = Plan(
    sizes=(50, 500, 2000),
    pairs={50: 21, 500: 15, 2000: 15},
    reg_repeats={50: 41, 500: 21, 2000: 11},
)
#: ``--quick``: the minimum 5 pairs per method, fewer registration rounds.
QUICK_PLAN = Plan(
    sizes=(50, 500, 2000),
    pairs={50: 5, 500: 5, 2000: 5},
    reg_repeats={50: 7, 500: 5, 2000: 3},
)


# --------------------------------------------------------------------------------------
# Child process helpers
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Env:
    """Per-N paths and the child environment."""

    n: int
    site: Path
    cwd: Path
    env: dict[str, str]
    cold_cache: Path
    warm_cache: Path


def _child_env(site: Path, stevedore_home: Path) -> dict[str, str]:
    """A clean environment: only ``site`` on PYTHONPATH, no user site, no HOSTAPP_* knobs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "HOSTAPP_")) and k != "XDG_CACHE_HOME"
    }
    env["PYTHONPATH"] = str(site)
    env["PYTHONNOUSERSITE"] = "1"
    env["XDG_CACHE_HOME"] = str(stevedore_home)
    return env


def _argv(method: Method, e: _Env, *, validate: bool = False) -> list[str]:
    code = method.code
    if validate:
        count = method.count_expr or "None"
        code += (
            "\nimport sys as _s, json as _j\n"
            f"print(_j.dumps({{'count': {count}, 'imported': "
            f"sum(1 for _m in list(_s.modules) if _m.startswith({MODULE_PREFIX!r}))}}))\n"
        )
    argv = [sys.executable, "-c", code]
    if method.cache == "cold":
        argv.append(str(e.cold_cache))
    elif method.cache == "warm":
        argv.append(str(e.warm_cache))
    return argv


def _runner(method: Method, e: _Env) -> Callable[[], ChildResult]:
    """A zero-argument callable running one measured child (cache prep is untimed)."""
    argv = _argv(method, e)

    def run_once() -> ChildResult:
        if method.cache == "cold":
            shutil.rmtree(e.cold_cache, ignore_errors=True)
        return run_child(argv, env=e.env, cwd=e.cwd)

    return run_once


def _available(module: str, e: _Env) -> str | None:
    """``None`` if ``module`` imports in a child with this env, else the error text."""
    res = run_child([sys.executable, "-c", f"import {module}"], env=e.env, cwd=e.cwd, check=False)
    if res.returncode == 0:
        return None
    return res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"


def _cache_dir(method: Method, e: _Env) -> Path | None:
    """The directory ``method`` keeps its cache in, or ``None`` if it has none."""
    if method.cache is None:
        return None
    if method.needs == "stevedore":
        return Path(e.env["XDG_CACHE_HOME"]) / "python-entrypoints"
    return e.cold_cache if method.cache == "cold" else e.warm_cache


def _validate(method: Method, e: _Env) -> dict[str, Any]:
    """Run ``method`` once untimed and check what it found; raises ``ChildError`` on failure."""
    if method.cache == "cold":
        shutil.rmtree(e.cold_cache, ignore_errors=True)
    res = run_child(_argv(method, e, validate=True), env=e.env, cwd=e.cwd)
    info: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    problems: list[str] = []
    if method.count_expr is not None and (info["count"] is None or info["count"] < e.n):
        problems.append(f"found {info['count']} plugins, expected >= {e.n}")
    expected_imported = e.n if method.imports_plugins else 0
    if info["imported"] != expected_imported:
        problems.append(f"imported {info['imported']} plugin modules, expected {expected_imported}")
    cache_dir = _cache_dir(method, e)
    if cache_dir is not None:
        # After this run a warm method's cache must exist (it is what the timed runs read).
        info["cache_files"] = len(list(cache_dir.iterdir())) if cache_dir.is_dir() else 0
        if method.cache == "warm" and info["cache_files"] == 0:
            problems.append(f"no cache file written in {cache_dir}")
    if problems:
        raise ChildError(f"{method.key} at N={e.n}: " + "; ".join(problems))
    if method.count_expr is not None:
        info["extra_entry_points"] = info["count"] - e.n  # e.g. hostapp's own, from the venv
    return info


# --------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------


def _settle(*paths: Path, age_s: float = 1.5) -> None:
    """Sleep until every path's mtime is at least ``age_s`` seconds old (untimed)."""
    newest = max(p.stat().st_mtime for p in paths)
    wait = newest + age_s - time.time()
    if wait > 0:
        time.sleep(wait)


def _measure_size(n: int, plan: Plan, ctx: SuiteContext) -> dict[str, Any]:
    """All process-level methods and the registration child at one N."""
    site = ensure_site(ctx.work_dir, n, ctx.log)
    cwd = ctx.work_dir / "cwd"
    cwd.mkdir(exist_ok=True)
    caches = ctx.work_dir / "caches" / f"n{n}"
    e = _Env(
        n=n,
        site=site,
        cwd=cwd,
        env=_child_env(site, caches / "xdg"),
        cold_cache=caches / "hostapp-cold",
        warm_cache=caches / "hostapp-warm",
    )
    # A cache keyed on sys.path directory mtimes may treat a directory modified within the
    # last second as "racy" and rescan it; make sure the fixtures are older than that.
    _settle(site, cwd)
    # Warm caches are rebuilt at the start of every run, then prepared by one untimed run.
    shutil.rmtree(caches, ignore_errors=True)
    caches.mkdir(parents=True)

    floor = Method("floor", FLOOR_LABEL, FLOOR_CODE)
    run_floor = _runner(floor, e)
    out: dict[str, Any] = {"n": n, "site_dir": str(site), "methods": {}, "unavailable": {}, "validation": {}}
    floor_cpu: list[float] = []
    floor_wall: list[float] = []
    pairs = plan.pairs[n]

    for method in METHODS:
        if method.needs:
            why = _available(method.needs, e)
            if why is not None:
                out["unavailable"][method.key] = why
                ctx.log(f"N={n}: {method.key} skipped ({why})")
                continue
        try:
            out["validation"][method.key] = _validate(method, e)  # also prepares a warm cache
        except (ChildError, ValueError, KeyError) as exc:
            if method.needs == "hostapp.discovery":  # work in progress elsewhere: report, go on
                summary = exc.summary if isinstance(exc, ChildError) else repr(exc)
                out["unavailable"][method.key] = f"validation failed: {summary}"
                out["validation"][method.key] = {"error": str(exc)}
                ctx.log(f"N={n}: {method.key} skipped (validation failed)\n{exc}")
                continue
            raise
        ctx.log(f"N={n}: {method.key} ({pairs} pairs)")
        res = paired_runs(_runner(method, e), run_floor, pairs=pairs, warmup=plan.warmup, min_pairs=plan.min_pairs)
        floor_cpu += res.b_cpu_s
        floor_wall += res.b_wall_s
        entry = res.to_json("method", "floor")
        entry.update(label=method.label, code=method.code, cache=method.cache)
        out["methods"][method.key] = entry

    out["floor"] = {
        "label": FLOOR_LABEL,
        "code": FLOOR_CODE,
        "cpu_ms_median": median(floor_cpu) * 1e3,
        "wall_ms_median": median(floor_wall) * 1e3,
        "note": "pooled over the floor runs of every method's pairs",
    }
    if "pass" in out["methods"]:
        pass_ms = out["methods"]["pass"]["method_cpu_ms_median"]
        for entry in out["methods"].values():
            # Ratio of medians to `python -c pass`, comparable with REFERENCE.md's ×base column
            # (there: a paired ratio; here: derived, so only indicative).
            entry["cpu_ms_over_pass_ms"] = entry["method_cpu_ms_median"] / pass_ms

    ctx.log(f"N={n}: in-process registration ({plan.reg_repeats[n]} rounds)")
    out["registration"] = _registration(e, plan.reg_repeats[n], plan.reg_warmup)
    return out


def _registration(e: _Env, repeats: int, warmup: int) -> dict[str, Any]:
    """Run the registration child; times converted to µs per plugin (CPU)."""
    script = Path(__file__).with_name("_register_child.py")
    res = run_child([sys.executable, str(script), str(e.n), str(repeats), str(warmup)], env=e.env, cwd=e.cwd)
    report: dict[str, Any] = json.loads(res.stdout)
    for key, m in report["methods"].items():
        if not m["cpu_s"]:
            continue
        per = [s / e.n * 1e6 for s in m["cpu_s"]]
        m["cpu_us_per_plugin"] = spread(per)
        m["wall_us_per_plugin_median"] = median([s / e.n * 1e6 for s in m["wall_s"]])
        m["cpu_ms_total_median"] = median(m["cpu_s"]) * 1e3
        if m["registered"] != e.n:
            m["warning"] = f"registered {m['registered']} of {e.n}"
    report["import_us_per_plugin"] = report["import_cpu_s"] / e.n * 1e6
    return report


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "–"
    r = entry["cpu_ratio"]
    return f"{entry['method_cpu_ms_median']:.0f} ms ×{r['median']:.2f} [{r['min']:.2f}–{r['max']:.2f}]"


def _goals(sizes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate the issue's goals at the largest N. ``met`` is None when not measurable."""
    big = max(sizes)
    s = sizes[big]["methods"]
    goals: list[dict[str, Any]] = []

    warm = s.get("hostapp_warm")
    goals.append(
        {
            "goal": f"N={big}: hostapp warm <= {WARM_GOAL_RATIO}x floor (CPU)",
            "value": None if warm is None else warm["cpu_ratio"]["median"],
            "met": None if warm is None else warm["cpu_ratio"]["median"] <= WARM_GOAL_RATIO,
            "detail": None
            if warm is None
            else f"×{warm['cpu_ratio']['median']:.2f} [{warm['cpu_ratio']['min']:.2f}–{warm['cpu_ratio']['max']:.2f}]",
        }
    )

    cold, std = s.get("hostapp_cold"), s.get("stdlib")
    met = None
    detail = None
    if cold is not None and std is not None:
        met = cold["cpu_ratio"]["median"] <= std["cpu_ratio"]["median"]
        detail = (
            f"cold {cold['method_cpu_ms_median']:.0f} ms ×{cold['cpu_ratio']['median']:.2f} vs "
            f"stdlib {std['method_cpu_ms_median']:.0f} ms ×{std['cpu_ratio']['median']:.2f}"
        )
    goals.append(
        {
            "goal": f"N={big}: hostapp cold CPU <= import pluggy + stdlib entry_points(group=)",
            "value": None if cold is None or std is None else cold["cpu_ratio"]["median"] / std["cpu_ratio"]["median"],
            "met": met,
            "detail": detail,
        }
    )

    ns = sorted(sizes)
    mid = ns[-2] if len(ns) > 1 else ns[0]

    def growth(key: str) -> tuple[float | None, str | None]:
        try:
            lo = sizes[mid]["registration"]["methods"][key]["cpu_us_per_plugin"]["median"]
            hi = sizes[big]["registration"]["methods"][key]["cpu_us_per_plugin"]["median"]
        except KeyError:
            return None, None
        g = hi / lo
        k = 1 + math.log(g) / math.log(big / mid)  # T(N) ~ N**k between the two sizes
        return g, f"{lo:.1f} µs/plugin at N={mid} -> {hi:.1f} at N={big}, T ~ N^{k:.2f}"

    hostapp_key = next(
        (k for k in ("hostapp_register_plugins", "hostapp_register_loop") if growth(k)[0] is not None), None
    )
    g, d = growth(hostapp_key) if hostapp_key else (None, None)
    pg, pd = growth("pluggy_register_loop")
    goals.append(
        {
            "goal": f"registration linear in N (µs/plugin growth N={mid}->{big} <= {LINEAR_GOAL_GROWTH}x)",
            "value": g,
            "met": None if g is None else g <= LINEAR_GOAL_GROWTH,
            "detail": None
            if g is None
            else f"{hostapp_key}: {d} (×{g:.2f}); plain pluggy: {pd} (×{pg:.2f})"
            if pg is not None
            else f"{hostapp_key}: {d} (×{g:.2f})",
            "method": hostapp_key,
        }
    )
    return goals


def _table(sizes: dict[int, dict[str, Any]], goals: list[dict[str, Any]]) -> str:
    ns = sorted(sizes)
    headers = ["method (CPU median, ×floor [min–max])"] + [f"N={n}" for n in ns]
    rows = [[FLOOR_LABEL] + [f"{sizes[n]['floor']['cpu_ms_median']:.0f} ms ×1" for n in ns]]
    for m in METHODS:
        cells = [_cell(sizes[n]["methods"].get(m.key)) for n in ns]
        if all(c == "–" for c in cells):
            cells = ["not measured: " + sizes[ns[0]]["unavailable"].get(m.key, "?")[:60]] + ["–"] * (len(ns) - 1)
        rows.append([m.label] + cells)
    parts = [format_table(headers, rows)]

    reg_keys = ["pluggy_register_loop", "hostapp_register_plugins", "hostapp_register_loop"]
    reg_rows = []
    for key in reg_keys:
        cells = []
        for n in ns:
            m = sizes[n]["registration"]["methods"].get(key)
            if m and "cpu_us_per_plugin" in m:
                c = m["cpu_us_per_plugin"]
                cells.append(f"{c['median']:.1f} µs [{c['min']:.1f}–{c['max']:.1f}]")
            else:
                cells.append("–")
        if all(c == "–" for c in cells):
            why = sizes[ns[0]]["registration"]["unavailable"].get(key, "?").strip().splitlines()[-1][:70]
            cells = [f"not measured: {why}"] + [""] * (len(ns) - 1)
        reg_rows.append([key] + cells)
    reg_rows.append(
        ["(import of the N modules, for scale)"]
        + [f"{sizes[n]['registration']['import_us_per_plugin']:.1f} µs" for n in ns]
    )
    parts.append("")
    parts.append(format_table(["registration, in-process (CPU µs per plugin, median [min–max])"] + [f"N={n}" for n in ns], reg_rows))

    parts.append("")
    parts.append("Goals:")
    for g in goals:
        verdict = {True: "MET", False: "NOT MET", None: "not measured"}[g["met"]]
        parts.append(f"  [{verdict}] {g['goal']}" + (f": {g['detail']}" if g["detail"] else ""))
    return "\n".join(parts)


def run(ctx: SuiteContext) -> SuiteResult:
    """Run the discovery suite (see the module docstring) and return its results."""
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    sizes: dict[int, dict[str, Any]] = {}
    for n in plan.sizes:
        sizes[n] = _measure_size(n, plan, ctx)
    goals = _goals(sizes)
    data = {
        "units": {
            "*_ms_*": "milliseconds",
            "samples.*_s": "seconds",
            "cpu": "user+sys CPU time of the child process (os.wait4 rusage)",
            "cpu_ratio": "median [min, max] over pairs of method CPU / floor CPU in the same pair",
            "cpu_us_per_plugin": "in-process CPU microseconds of the registration call(s) / N",
        },
        "floor": {"label": FLOOR_LABEL, "code": FLOOR_CODE},
        "plan": {
            "sizes": list(plan.sizes),
            "pairs": {str(k): v for k, v in plan.pairs.items()},
            "warmup_pairs": plan.warmup,
            "registration_repeats": {str(k): v for k, v in plan.reg_repeats.items()},
            "registration_warmup": plan.reg_warmup,
        },
        "methods": {m.key: {"label": m.label, "code": m.code, "cache": m.cache} for m in METHODS},
        "sizes": {str(n): v for n, v in sizes.items()},
        "goals": goals,
    }
    return SuiteResult(data=data, table=_table(sizes, goals))
