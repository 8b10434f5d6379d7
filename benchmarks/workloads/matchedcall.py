"""Cost of one matched call, in-process: ``python matchedcall.py BACKEND N REPEATS DIR [VARIANTS]``.

A generated module ``DIR/hostapp_bench_target/target.py`` holds ``def target(x): return x``.
A :class:`hostapp.TraceProcessor` selects it (``co_names=("target",)``, ``path_fragment``
its file) and makes a call and a return event per call. Three variants, each in its own
:class:`~hostapp.tracing.TracingEngine` on ``BACKEND`` (``monitoring``, ``trampoline`` or
``profile``):

``bus``
    the processor has no ``call`` filter and no ``process`` (the engine's inline fast
    path); events go to a real, started :class:`hostapp.events.EventBus` whose one sink
    discards its batches (queue large enough that the emitting thread never blocks; the
    bus worker drains it concurrently, as in a real run). **The headline figure.**
``bus_process``
    the same with a ``process(frame, event, arg, context)`` returning
    ``{"x": frame.f_locals["x"]}`` on the call and ``{"result": arg}`` on the return (the
    shape of a real processor), into the same bus;
``engine_only``
    the ``bus`` processor on a bus with no sink (its raw items go nowhere): the engine's
    own share (selection, frame ids, call site, the raw items).

As in a host, the engine gets the bus (``TracingEngine(..., bus=bus)``): a processor
without ``call`` and ``process`` hands the bus a small tuple per event and the
:class:`~hostapp.events.Event` is built on the sink's worker thread.

``VARIANTS`` (comma-separated) measures only those; default all three.

Each repeat times ``for i in range(N): target(i)`` with tracing off (no engine running),
then the same loop once per variant under a freshly started engine, stopped right after.
One untimed warm-up round of N/10 calls per variant comes first. Time is the calling
thread's CPU (``time.thread_time()``: the bus worker's thread is the sink side, not the
traced call; garbage collection triggered by the events *is* in it, as in a real program)
and wall (``time.perf_counter()``). **µs per matched call** = (loop with tracing − loop
without) / N, one value per repeat; the caller takes the median.

Prints one JSON object: per variant the per-repeat µs (thread CPU and wall) and the
engine's counters (checked: N calls, 2N events, no errors), and the plain call's ns.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

TARGET = "def target(x):\n    return x\n"


def _loop(function: Any, n: int) -> tuple[float, float]:
    """Seconds (thread CPU, wall) of ``n`` calls of ``function``."""
    cpu, wall = time.thread_time, time.perf_counter
    w0, c0 = wall(), cpu()
    for i in range(n):
        function(i)
    c1, w1 = cpu(), wall()
    return c1 - c0, w1 - w0


def _process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    """The ``bus_process`` variant's ``process``: reads the argument, keeps the result."""
    if event == "call":
        return {"x": frame.f_locals["x"]}
    return {"result": arg}


def main() -> None:
    backend, n, repeats, directory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    package = directory / "hostapp_bench_target"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "target.py").write_text(TARGET)
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    target = importlib.import_module("hostapp_bench_target.target").target

    from hostapp import TraceProcessor
    from hostapp.config import Config
    from hostapp.events import EventBus
    from hostapp.tracing import TracingEngine
    from hostapp.types import Contribution, EventSink

    config = Config.from_dict(
        {"events": {"sinks": {"sqlite": {"enabled": False}, "discard": {}}, "queue_size": 4 * n + 1000}},
        root=directory, environ={},
    )
    sink = EventSink(name="discard", handle=lambda events: None)
    bus = EventBus([Contribution(sink, "bench")], config, run_id="bench")
    bus.start()

    fragment = "hostapp_bench_target/target.py"
    bare = TraceProcessor(
        name="bench", co_names=("target",), path_fragment=fragment,
        call_type="bench_call", return_type="bench_return",
    )
    with_process = TraceProcessor(
        name="bench", co_names=("target",), path_fragment=fragment,
        call_type="bench_call", return_type="bench_return", process=_process,
    )

    def discard(event: Any) -> None:
        pass

    # the engine-only variant: a bus with no sink for the events (raw items go nowhere)
    nowhere = EventBus([], config, run_id="bench")

    # (spec, emit, bus): the host hands the engine its bus, so a processor without
    # call/process defers building its events to the sink's thread
    variants = {
        "bus": (bare, bus.emit, bus),
        "bus_process": (with_process, bus.emit, bus),
        "engine_only": (bare, discard, nowhere),
    }
    if len(sys.argv) > 5:
        chosen = sys.argv[5].split(",")
        unknown = set(chosen) - set(variants)
        if unknown:
            raise SystemExit(f"unknown variant(s) {sorted(unknown)}; choose from {sorted(variants)}")
        variants = {name: variants[name] for name in chosen}

    def traced(spec: TraceProcessor, emit: Any, raw: Any, count: int) -> tuple[float, float, dict[str, Any]]:
        engine = TracingEngine(
            [Contribution(spec, "bench")], emit, config=config, run_id="bench", backend=backend, bus=raw,
        )
        engine.start()
        try:
            if engine.backend != backend:
                raise SystemExit(f"asked for backend {backend!r}, got {engine.backend!r}")
            cpu, wall = _loop(target, count)
        finally:
            engine.stop()
        stats = engine.stats()["bench"]
        if stats["calls"] != count or stats["events"] != 2 * count or stats["errors"]:
            raise SystemExit(f"expected {count} calls and {2 * count} events, got {stats}")
        return cpu, wall, {k: stats[k] for k in ("calls", "events", "errors")}

    out: dict[str, Any] = {"backend": backend, "n": n, "repeats": repeats, "python": sys.version.split()[0]}
    per: dict[str, dict[str, Any]] = {name: {"us_cpu": [], "us_wall": []} for name in variants}
    plain_cpu: list[float] = []
    plain_wall: list[float] = []
    _loop(target, n // 10)
    for spec, emit, raw in variants.values():  # warm-up: first-use costs out of the timings
        traced(spec, emit, raw, n // 10)
    for _ in range(repeats):
        off_cpu, off_wall = _loop(target, n)
        plain_cpu.append(off_cpu)
        plain_wall.append(off_wall)
        for name, (spec, emit, raw) in variants.items():
            on_cpu, on_wall, stats = traced(spec, emit, raw, n)
            per[name]["us_cpu"].append((on_cpu - off_cpu) / n * 1e6)
            per[name]["us_wall"].append((on_wall - off_wall) / n * 1e6)
            per[name]["stats"] = stats
    bus_stats = bus.stop(120)
    out["plain_call_ns_cpu"] = [s / n * 1e9 for s in plain_cpu]
    out["plain_call_ns_wall"] = [s / n * 1e9 for s in plain_wall]
    out["variants"] = per
    out["bus"] = {name: {k: v for k, v in s.items() if isinstance(v, (int, float))} for name, s in bus_stats.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
