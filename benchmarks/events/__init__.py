"""Events suite: sustained events/s into the ``sqlite`` store through a started host, 4 emitting threads, against raw SQLite; on 3.11, 3.12 and 3.13.

Each measurement is a separate child process (:mod:`benchmarks.events._child`) of each
Python (the interpreters of the `tracing` suite: `benchmarks/_pythons.py`), so every run
starts from a fresh interpreter and an empty database in a temporary directory:

* ``host``: a started `hostapp.Host` with its default sinks (the `sqlite` store; tracing
  off) and **4 threads** emitting N events between them through the public
  `host.emit("outbound_http_request", "urllib", i=..., url=..., status=200)`, released
  together. **events/s** = N / seconds from the release until `host.stop()` returned with
  every event committed (making the events included). Then the run's events are counted
  in the store: **lost** = N − stored. The same with 1 thread is shown for comparison.
* ``raw``: the floor. The rows that host run stored, read back (untimed) and inserted
  with plain `sqlite3` `executemany`, in batches of `events.batch_size` rows, one
  transaction each, into a fresh file created by `hostapp.store.Store` — so the schema
  (tables, indexes, triggers) is whatever the store module defines at run time — on a
  connection that runs the same `PRAGMA` statements the store's own connection ran
  (recorded while it opened). Every non-empty table but the store's bookkeeping (`meta`,
  `runs`, `reports`) is copied, so a record split over several tables is copied whole.
  **rows/s** = N events / insert seconds.

They run as alternating pairs (host ×4, host ×1, raw; the first pair a discarded
warm-up; at most the plan's pairs and time budget). The **ratio** is host events/s / raw
rows/s within each pair; the figure is the median of the per-pair ratios with
[min–max], which cancels most drift of a shared machine. **Peak RSS** is the largest
`ru_maxrss` of the 4-thread host child (MiB). A ``micro`` child measures the emitting
thread's own costs (ns per call, best of 5): `Event.create` and `EventBus.emit` with 1
and 3 accepting sinks (not started) — a diagnostic, reported as not measured if the
bus's construction changes.

Goals (issue 12): >= 300,000 events/s with 4 emitting threads, ratio to raw
`executemany` >= 0.8, peak RSS <= 100 MiB, 0 lost — on every Python.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ChildError,
    SuiteContext,
    SuiteResult,
    format_spread,
    format_table,
    goal,
    goal_lines,
    loadavg,
    run_child,
    spread,
)
from benchmarks._pythons import Interpreter, child_env, interpreters

__all__ = ["FULL_PLAN", "QUICK_PLAN", "Plan", "run"]

GOAL_EVENTS_PER_S = 300_000
GOAL_RATIO = 0.8
GOAL_RSS_MIB = 100.0
THREADS = 4
CHILD = Path(__file__).with_name("_child.py")


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure.

    Attributes:
        n: events per host/raw run.
        pairs: measured pairs at most.
        min_pairs: pairs measured even past the budget.
        warmup: discarded pairs before them.
        budget_s: wall seconds per Python after which no new pair starts.
        single_thread: also measure the host with 1 emitting thread.
        micro_n: calls per micro-benchmark round.
    """

    n: int
    pairs: int
    min_pairs: int
    warmup: int
    budget_s: float
    single_thread: bool
    micro_n: int


FULL_PLAN = Plan(n=1_000_000, pairs=5, min_pairs=3, warmup=1, budget_s=900.0, single_thread=True, micro_n=200_000)
QUICK_PLAN = Plan(n=100_000, pairs=1, min_pairs=1, warmup=0, budget_s=120.0, single_thread=False, micro_n=50_000)


def _spawn(python: str, *args: str) -> tuple[dict[str, Any], int]:
    """Run one child; its JSON report and its peak RSS in kB (from ``os.wait4``)."""
    result = run_child([python, str(CHILD), *args], env=child_env(), cwd=tempfile.gettempdir(), timeout=900)
    return json.loads(result.stdout), result.maxrss_kb


def _measure(interp: Interpreter, plan: Plan, ctx: SuiteContext) -> dict[str, Any]:
    assert interp.python is not None
    python = interp.python
    samples: dict[str, list[Any]] = {k: [] for k in (
        "host_events_per_s", "host_emit_events_per_s", "host_1_thread_events_per_s", "raw_rows_per_s",
        "ratios", "host_maxrss_kb", "lost", "blocked", "spilled", "loadavg")}
    raw_info: dict[str, Any] = {}
    deadline = time.monotonic() + plan.budget_s
    measured = 0
    with tempfile.TemporaryDirectory(prefix=f"hostapp-bench-events-{interp.version}-") as tmp:
        work = Path(tmp)
        for index in range(plan.warmup + plan.pairs):
            warm = index < plan.warmup
            if not warm and measured >= plan.min_pairs and time.monotonic() > deadline:
                ctx.log(f"Python {interp.version}: time budget spent after {measured} pair(s)")
                break
            load = loadavg()
            ctx.log(f"Python {interp.version} {'warm-up' if warm else f'pair {measured + 1}'}: "
                    f"host x{THREADS}{', host x1' if plan.single_thread else ''}, raw; N={plan.n:,}")
            host, host_rss = _spawn(python, "host", str(plan.n), str(THREADS), str(work / "host"))
            single = None
            if plan.single_thread:
                single, _ = _spawn(python, "host", str(plan.n), "1", str(work / "single"))
                shutil.rmtree(work / "single", ignore_errors=True)
            raw, _ = _spawn(python, "raw", host["db"], str(work / "raw"))
            shutil.rmtree(work / "host", ignore_errors=True)
            shutil.rmtree(work / "raw", ignore_errors=True)
            if warm:
                continue
            measured += 1
            host_rate, raw_rate = plan.n / host["total_s"], plan.n / raw["total_s"]
            samples["host_events_per_s"].append(host_rate)
            samples["host_emit_events_per_s"].append(plan.n / host["emit_s"])
            if single is not None:
                samples["host_1_thread_events_per_s"].append(plan.n / single["total_s"])
            samples["raw_rows_per_s"].append(raw_rate)
            samples["ratios"].append(host_rate / raw_rate)
            samples["host_maxrss_kb"].append(max(host["maxrss_kb"], host_rss))
            samples["lost"].append(host["lost"] + (single["lost"] if single else 0))
            sink = host["stats"].get("sqlite", {})
            samples["blocked"].append(sink.get("blocked"))
            samples["spilled"].append(sink.get("spilled"))
            samples["loadavg"].append(load)
            raw_info = {k: raw[k] for k in ("rows", "pragmas", "batch_size", "columns")}
        micro: dict[str, Any]
        try:
            ctx.log(f"Python {interp.version} micro: create and emit, {plan.micro_n:,} calls x 5")
            micro, _ = _spawn(python, "micro", str(plan.micro_n), str(work / "micro"))
        except ChildError as exc:
            micro = {"error": exc.summary}
    single_s = spread(samples["host_1_thread_events_per_s"]) if samples["host_1_thread_events_per_s"] else None
    return {
        "python": interp.full_version,
        "executable": python,
        "source": interp.source,
        "pairs": measured,
        "host_events_per_s": spread(samples["host_events_per_s"]),
        "host_emit_only_events_per_s": spread(samples["host_emit_events_per_s"]),
        "host_1_thread_events_per_s": single_s,
        "raw_executemany_rows_per_s": spread(samples["raw_rows_per_s"]),
        "ratio": spread(samples["ratios"]),
        "peak_rss_mib": max(samples["host_maxrss_kb"]) / 1024,
        "lost": sum(samples["lost"]),
        "raw": raw_info,
        "micro": micro,
        "samples": samples,
    }


def _goals(version: str, r: dict[str, Any]) -> list[dict[str, Any]]:
    if "error" in r:
        return [goal(f"sustained >= {GOAL_EVENTS_PER_S:,} events/s", None, None, r["error"], python=version)]
    rate, ratio, rss, lost = r["host_events_per_s"], r["ratio"], r["peak_rss_mib"], r["lost"]
    return [
        goal(f"sustained >= {GOAL_EVENTS_PER_S:,} events/s into the sqlite store, {THREADS} emitting threads",
             rate["median"], rate["median"] >= GOAL_EVENTS_PER_S, format_spread(rate, "{:,.0f}", " events/s"),
             python=version),
        goal(f"ratio to raw executemany of the same rows >= {GOAL_RATIO}", ratio["median"],
             ratio["median"] >= GOAL_RATIO, format_spread(ratio, "{:.2f}", "×"), python=version),
        goal(f"peak RSS <= {GOAL_RSS_MIB:.0f} MiB", rss, rss <= GOAL_RSS_MIB, f"{rss:.1f} MiB", python=version),
        goal("0 events lost", lost, lost == 0, f"{lost} lost over {r['pairs']} pair(s) (stored rows counted)",
             python=version),
    ]


def _table(plan: Plan, results: dict[str, dict[str, Any]], goals: list[dict[str, Any]]) -> str:
    rows = []
    micro_rows = []
    for r in results.values():
        if "skipped" in r or "error" in r:
            rows.append([r.get("python", "?"), r.get("skipped") or r.get("error", ""), "", "", "", "", "", ""])
            continue
        load = [x for x in r["samples"]["loadavg"] if x is not None]
        rows.append([
            r["python"],
            format_spread(r["host_events_per_s"], "{:,.0f}"),
            format_spread(r["host_1_thread_events_per_s"], "{:,.0f}"),
            format_spread(r["raw_executemany_rows_per_s"], "{:,.0f}"),
            format_spread(r["ratio"], "{:.2f}", "×"),
            f"{r['peak_rss_mib']:.1f} MiB",
            str(r["lost"]),
            f"{min(load):.2f}–{max(load):.2f}" if load else "–",
        ])
        m = r["micro"]
        micro_rows.append([r["python"], *((f"{m['create_ns']:.0f} ns", f"{m['emit_1_sink_ns']:.0f} ns",
                                           f"{m['emit_3_sink_ns']:.0f} ns") if "error" not in m
                                          else (m["error"], "", ""))])
    first = next((r for r in results.values() if r.get("raw")), None)
    lines = [
        f"N = {plan.n:,} events per run, up to {plan.pairs} measured pair(s) after {plan.warmup} warm-up. "
        "Median [min–max] over the pairs.",
        "",
        format_table(["Python", f"host, {THREADS} threads (events/s)", "host, 1 thread (events/s)",
                      "raw executemany (rows/s)", "ratio host ×4 / raw", "peak RSS", "lost", "load avg"], rows),
        "",
    ]
    if first is not None:
        raw = first["raw"]
        tables = ", ".join(f"`{t}` ({len(c)} columns)" for t, c in raw["columns"].items())
        lines += [f"Raw floor: {tables}; batches of {raw['batch_size']}; pragmas as the store's: "
                  + ", ".join(f"`{p}`" for p in raw["pragmas"]) + ".", ""]
    lines += [
        "Emitting thread's own cost (micro, best of 5):",
        "",
        format_table(["Python", "Event.create", "EventBus.emit, 1 sink", "EventBus.emit, 3 sinks"], micro_rows),
        "",
        *goal_lines(goals),
    ]
    return "\n".join(lines)


def run(ctx: SuiteContext) -> SuiteResult:
    """Run the events suite (see the module docstring) and return its results."""
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    results: dict[str, dict[str, Any]] = {}
    goals: list[dict[str, Any]] = []
    found = interpreters(ctx.log)
    for interp in found:
        if interp.skipped is not None:
            results[interp.version] = {"skipped": interp.skipped}
            continue
        ctx.log(f"== Python {interp.full_version} ({interp.source}: {interp.python})")
        try:
            results[interp.version] = _measure(interp, plan, ctx)
        except ChildError as exc:
            ctx.log(f"Python {interp.version}: FAILED: {exc.summary}")
            results[interp.version] = {"python": interp.full_version, "error": exc.summary,
                                       "detail": str(exc)[-2000:]}
        goals += _goals(interp.version, results[interp.version])
    data: dict[str, Any] = {
        "units": {
            "*_per_s": "events (or rows) per second: median, min, max over pairs",
            "ratio": "host events/s / raw rows/s within a pair: median, min, max over pairs",
            "*_mib": "MiB (2**20 bytes), from ru_maxrss (kB on Linux)",
            "*_ns": "nanoseconds per call, best of 5 rounds",
            "loadavg": "1-minute load average before each pair",
        },
        "plan": {"n": plan.n, "pairs": plan.pairs, "min_pairs": plan.min_pairs, "warmup_pairs": plan.warmup,
                 "budget_s": plan.budget_s, "threads": THREADS, "micro_n": plan.micro_n},
        "runs_on": [interp.label for interp in found],
        "goals_from_issue": {"events_per_s": GOAL_EVENTS_PER_S, "ratio": GOAL_RATIO, "peak_rss_mib": GOAL_RSS_MIB,
                             "lost": 0},
        "pythons": results,
        "goals": goals,
    }
    return SuiteResult(data=data, table=_table(plan, results, goals))
