"""Events suite: sustained events/s into the ``sqlite`` sink through the bus, against raw SQLite.

Each measurement is a separate child process (:mod:`benchmarks.events._child`), so every
run starts from a fresh interpreter and an empty database in ``benchmarks/_work/events/``:

* ``bus``: one thread creates and emits N events through :class:`hostapp.events.EventBus`
  with only the ``sqlite`` sink (default settings: batches of 1,000, queue of 100,000,
  ``block``). **events/s** = N / seconds from the first ``Event.create`` until ``stop()``
  returned with every event committed. This includes making the events.
* ``raw``: the same N events, turned (untimed) into exactly the rows the sink writes,
  inserted with plain ``sqlite3`` ``executemany`` in batches of 1,000, one transaction
  each, into the same schema with the same pragmas. **rows/s** = N / insert seconds.

They run as alternating pairs (bus, raw, bus, raw, ...; the first pair a discarded
warm-up). The **ratio** is bus events/s / raw rows/s within each pair; the figure is the
median of the per-pair ratios with [min–max], which cancels most drift of a shared machine.
**Peak RSS** is the bus child's ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (MiB), the
largest over the runs. A ``micro`` child measures the emitting thread's own costs (ns per
call, best of 5): ``Event.create`` and ``bus.emit`` with 1 and 3 accepting sinks.

Goals (from the issue): >= 200,000 events/s, ratio >= 0.5, peak RSS <= 100 MiB.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import SuiteContext, SuiteResult, format_table, run_child, spread

__all__ = ["FULL_PLAN", "QUICK_PLAN", "Plan", "run"]

GOAL_EVENTS_PER_S = 200_000
GOAL_RATIO = 0.5
GOAL_RSS_MIB = 100.0
CHILD = Path(__file__).with_name("_child.py")


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure.

    Attributes:
        n: events per bus/raw run.
        pairs: measured (bus, raw) pairs.
        warmup: discarded pairs before them.
        micro_n: calls per micro-benchmark round.
    """

    n: int
    pairs: int
    warmup: int
    micro_n: int


FULL_PLAN = Plan(n=1_000_000, pairs=5, warmup=1, micro_n=200_000)
QUICK_PLAN = Plan(n=200_000, pairs=1, warmup=0, micro_n=50_000)


def _child(ctx: SuiteContext, mode: str, n: int) -> tuple[dict[str, Any], int]:
    """Run one child; its JSON report and its peak RSS in kB (from ``os.wait4``)."""
    directory = ctx.work_dir / mode
    shutil.rmtree(directory, ignore_errors=True)
    try:
        result = run_child([sys.executable, str(CHILD), mode, str(n), str(directory)])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return json.loads(result.stdout), result.maxrss_kb


def _goal(goal: str, value: float, met: bool, detail: str) -> dict[str, Any]:
    return {"goal": goal, "value": value, "met": met, "detail": detail}


def run(ctx: SuiteContext) -> SuiteResult:
    """Run the events suite (see the module docstring) and return its results."""
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    bus_rates: list[float] = []
    emit_rates: list[float] = []
    raw_rates: list[float] = []
    ratios: list[float] = []
    rss_kb: list[int] = []
    blocked: list[int] = []
    for index in range(plan.warmup + plan.pairs):
        warm = index < plan.warmup
        ctx.log(f"{'warm-up' if warm else 'pair'} {index - plan.warmup + 1 if not warm else index + 1}: "
                f"bus and raw, N={plan.n:,}")
        bus, bus_rss = _child(ctx, "bus", plan.n)
        raw, _ = _child(ctx, "raw", plan.n)
        if warm:
            continue
        bus_rate = plan.n / bus["total_s"]
        raw_rate = plan.n / raw["total_s"]
        bus_rates.append(bus_rate)
        emit_rates.append(plan.n / bus["emit_s"])
        raw_rates.append(raw_rate)
        ratios.append(bus_rate / raw_rate)
        rss_kb.append(max(bus["maxrss_kb"], bus_rss))
        blocked.append(bus["stats"]["blocked"])
    ctx.log(f"micro: create and emit, {plan.micro_n:,} calls x 5")
    micro, _ = _child(ctx, "micro", plan.micro_n)

    bus_s, raw_s, ratio_s = spread(bus_rates), spread(raw_rates), spread(ratios)
    peak_mib = max(rss_kb) / 1024
    goals = [
        _goal(
            f"sustained >= {GOAL_EVENTS_PER_S:,} events/s into the sqlite sink",
            bus_s["median"], bus_s["median"] >= GOAL_EVENTS_PER_S,
            f"{bus_s['median']:,.0f} events/s [{bus_s['min']:,.0f}–{bus_s['max']:,.0f}]",
        ),
        _goal(
            f"ratio to raw executemany >= {GOAL_RATIO}",
            ratio_s["median"], ratio_s["median"] >= GOAL_RATIO,
            f"×{ratio_s['median']:.2f} [{ratio_s['min']:.2f}–{ratio_s['max']:.2f}]",
        ),
        _goal(
            f"peak RSS <= {GOAL_RSS_MIB:.0f} MiB",
            peak_mib, peak_mib <= GOAL_RSS_MIB, f"{peak_mib:.1f} MiB",
        ),
    ]
    data: dict[str, Any] = {
        "units": {
            "*_per_s": "events (or rows) per second",
            "ratio": "bus events/s / raw rows/s within a pair: median [min, max] over pairs",
            "*_mib": "MiB (2**20 bytes), from ru_maxrss (kB on Linux)",
            "*_ns": "nanoseconds per call, best of 5 rounds",
        },
        "plan": {"n": plan.n, "pairs": plan.pairs, "warmup_pairs": plan.warmup, "micro_n": plan.micro_n},
        "bus_events_per_s": bus_s,
        "bus_emit_only_events_per_s": spread(emit_rates),
        "raw_executemany_rows_per_s": raw_s,
        "ratio": ratio_s,
        "peak_rss_mib": peak_mib,
        "emitter_blocked_calls": blocked,
        "micro": {key: value for key, value in micro.items() if key.endswith("_ns")},
        "goals": goals,
        "samples": {
            "bus_events_per_s": bus_rates,
            "raw_rows_per_s": raw_rates,
            "ratios": ratios,
            "bus_maxrss_kb": rss_kb,
        },
    }
    rows = [
        ["bus -> sqlite sink (create + emit + commit)", f"{bus_s['median']:,.0f} events/s",
         f"[{bus_s['min']:,.0f}–{bus_s['max']:,.0f}]"],
        ["raw sqlite3 executemany, same rows", f"{raw_s['median']:,.0f} rows/s",
         f"[{raw_s['min']:,.0f}–{raw_s['max']:,.0f}]"],
        ["ratio bus / raw (per pair)", f"×{ratio_s['median']:.2f}", f"[{ratio_s['min']:.2f}–{ratio_s['max']:.2f}]"],
        ["peak RSS of the bus process", f"{peak_mib:.1f} MiB", ""],
        ["Event.create", f"{micro['create_ns']:.0f} ns", ""],
        ["bus.emit, 1 accepting sink", f"{micro['emit_1_sink_ns']:.0f} ns", ""],
        ["bus.emit, 3 accepting sinks", f"{micro['emit_3_sink_ns']:.0f} ns", ""],
    ]
    lines = [
        f"N = {plan.n:,} events per run, {plan.pairs} pair(s)",
        format_table(["measure", "median", "[min–max]"], rows),
        "",
        "Goals:",
    ]
    for goal in goals:
        lines.append(f"  [{'MET' if goal['met'] else 'NOT MET'}] {goal['goal']}: {goal['detail']}")
    return SuiteResult(data=data, table="\n".join(lines))
