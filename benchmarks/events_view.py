"""Events view suite: ``hostapp events --jsonl --limit 0`` over 200,000 stored events.

A store in ``benchmarks/_work/events_view/`` is filled (untimed) with 200,000 events of one
run: HTTP call records as the built-in processors write them (method, URL, status,
duration, call site, request and response headers, a small body), every tenth a
``monitoring_event``. Then the command runs in a child process (``python -m hostapp
events --db STORE --run ID --jsonl --limit 0``, and the same with ``--json``) whose stdout
the parent reads through a pipe:

* **first line** = seconds from spawning the child to the first line of output (the
  child's start-up, plugin loading and the first chunk of rows included);
* **total** = seconds until the child exited, having printed every event, and **CPU** =
  the child's user + system CPU seconds (the figure to compare on a shared machine);
* **peak RSS** = the child's ``ru_maxrss`` from :func:`os.wait4` (MiB).

Each figure is the median of the runs (3; 1 with ``--quick``), with [min–max].

Goals (from the issue): output starts at once (the first line within 2 s, whatever the
number of events, where the previous view read and held all 200,000 before printing) and
the peak RSS stays under 100 MiB. No test asserts on these numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

from benchmarks._common import SuiteContext, SuiteResult, format_table, median

__all__ = ["run"]

N_EVENTS = 200_000
GOAL_FIRST_LINE_S = 2.0
GOAL_RSS_MIB = 100.0


def _fill(path: str, n: int) -> str:
    """Write ``n`` events of one run into a new store at ``path``; return the run id."""
    from hostapp.events import Event
    from hostapp.store import Store

    with Store(path) as store:
        run_id = store.begin_run(["benchmark"])
        batch: list[Event] = []
        for i in range(n):
            if i % 10 == 9:
                event = Event.create("monitoring_event", "tick", data={"i": i, "load": 0.25}, run_id=run_id)
            else:
                event = Event.create("outbound_http_request", "requests", run_id=run_id, source="http.requests", data={
                    "method": "GET", "url": f"http://127.0.0.1:8000/items/{i}?page=2", "status_code": 200 if i % 7 else 503,
                    "duration_ns": 1_000_000 + i, "call_site": {"file": "/srv/app/client.py", "line": 42},
                    "thread_name": "MainThread", "via": ["urllib3", "http.client"], "span_id": f"{i:016x}",
                    "request": {"headers": {"User-Agent": "python-requests/2.32", "Accept": "*/*"}, "body": None,
                                "body_size": None, "body_truncated": False},
                    "response": {"headers": {"Content-Type": "application/json", "Content-Length": "27"},
                                 "body": '{"id": %d, "name": "item"}' % i, "body_size": 27, "body_truncated": False},
                })
            batch.append(event)
            if len(batch) == 5000:
                store.add_events(batch)
                batch = []
        store.add_events(batch)
        store.end_run(run_id, 0, {})
    return run_id


def _measure(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv``, reading its stdout through a pipe; first-line and total seconds, lines,
    bytes and the child's peak RSS."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert child.stdout is not None
    first = child.stdout.readline()
    first_s = time.perf_counter() - started
    lines, size = (1, len(first)) if first else (0, 0)
    while True:
        chunk = child.stdout.read(1 << 20)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        size += len(chunk)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    total_s = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{argv}: exit status {child.returncode}")
    return {"first_line_s": first_s, "total_s": total_s, "cpu_s": usage.ru_utime + usage.ru_stime, "lines": lines,
            "bytes": size, "maxrss_mib": usage.ru_maxrss / 1024}


def run(ctx: SuiteContext) -> SuiteResult:
    """Run the suite (see the module docstring)."""
    shutil.rmtree(ctx.work_dir, ignore_errors=True)
    ctx.work_dir.mkdir(parents=True)
    store = str(ctx.work_dir / "view.sqlite3")
    ctx.log(f"filling a store with {N_EVENTS:,} events")
    run_id = _fill(store, N_EVENTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_")}
    env["XDG_CACHE_HOME"] = str(ctx.work_dir / "cache")
    repeats = 1 if ctx.quick else 3
    samples: dict[str, list[dict[str, Any]]] = {}
    for fmt in ("--jsonl", "--json"):
        argv = [sys.executable, "-m", "hostapp", "events", "--db", store, "--run", run_id, fmt, "--limit", "0"]
        samples[fmt] = []
        for i in range(repeats):
            ctx.log(f"hostapp events {fmt} --limit 0, run {i + 1}/{repeats}")
            samples[fmt].append(_measure(argv, env))
    rows, goals, data = [], [], {"n_events": N_EVENTS, "samples": samples}
    for fmt, runs in samples.items():
        first = [r["first_line_s"] for r in runs]
        total = [r["total_s"] for r in runs]
        rss = [r["maxrss_mib"] for r in runs]
        cpu = [r["cpu_s"] for r in runs]
        lines = runs[0]["lines"]
        rows.append([f"events {fmt} --limit 0", f"{median(first):.2f} s [{min(first):.2f}–{max(first):.2f}]",
                     f"{median(total):.1f} s [{min(total):.1f}–{max(total):.1f}]", f"{median(cpu):.1f} s",
                     f"{max(rss):.0f} MiB", f"{lines:,}"])
        goals.append({"goal": f"{fmt}: first line <= {GOAL_FIRST_LINE_S} s", "value": median(first),
                      "met": median(first) <= GOAL_FIRST_LINE_S})
        goals.append({"goal": f"{fmt}: peak RSS <= {GOAL_RSS_MIB} MiB", "value": max(rss), "met": max(rss) <= GOAL_RSS_MIB})
    data["goals"] = goals
    shutil.rmtree(ctx.work_dir, ignore_errors=True)
    table = format_table(["command (200,000 events)", "first line", "total", "CPU", "peak RSS", "lines"], rows)
    table += "\n\n" + "\n".join(f"- {g['goal']}: {'met' if g['met'] else 'NOT met'} ({g['value']:.2f})" for g in goals)
    return SuiteResult(data=data, table=table)
