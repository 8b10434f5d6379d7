"""Serve: ``GET /api/runs/{id}/events`` on a run of 200,000 events.

One store with one run of 200,000 events (``--quick``: 50,000): nine HTTP call records in
ten (method, URL, status 200/404/500, a duration), the rest ``monitoring_event``s. A real
``hostapp serve --db STORE --port 0`` child answers; the client is ``requests`` on
127.0.0.1. Figures, each the median and max of its requests (wall-clock **ms** per
request, client side):

* the first page, ``limit=100``;
* a page in the middle of the run, reached with a ``next`` cursor (keyset pagination);
* the last page, ``order=desc``;
* filtered pages: ``status=5xx``, ``type`` + ``library``, ``url`` substring,
  ``min_duration_ms``;

and the server's memory: its peak resident set (``VmHWM`` of ``/proc/PID/status``, MiB)
after start and after every request above, against the peak of a child that reads the
whole run with ``Store.events(run_id=...)`` — what "the whole table in memory" would cost.
The goal (issue 13): ``limit=100`` answers well under a second with bounded memory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import SuiteContext, SuiteResult, format_table, median

GOAL_MS = 1000.0
EVENTS = 200_000
QUICK_EVENTS = 50_000


def _peak_mib(pid: int) -> float:
    """``VmHWM`` (peak resident set) of process ``pid``, in MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def _build_store(path: Path, count: int, log: Any) -> str:
    """A store at ``path`` with one run of ``count`` events; returns the run id."""
    from hostapp.events.record import Event
    from hostapp.store import Store

    if path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    libraries = ("requests", "httpx", "urllib3")
    with Store(path) as store:
        run_id = store.begin_run(["benchmarks", "serve"])
        start = time.time_ns() - count * 1_000_000
        batch: list[Event] = []
        for i in range(count):
            if i % 10 == 9:
                event = Event.create("monitoring_event", "heartbeat", data={"n": i}, run_id=run_id)
            else:
                status = 500 if i % 97 == 0 else 404 if i % 13 == 0 else 200
                event = Event.create(
                    "outbound_http_request", libraries[i % 3], run_id=run_id,
                    data={"method": "GET", "url": f"http://127.0.0.1:9/users/{i}", "status_code": status,
                          "duration_ns": 200_000 + (i % 50) * 100_000, "thread_name": "MainThread",
                          "request": {"headers": {"Accept": "*/*"}, "body": None, "body_size": None,
                                      "body_truncated": False}},
                )
            batch.append(Event(event.id, event.type, event.subtype, event.data, start + i * 1_000_000,
                               event.run_id, event.pid, event.thread_id, event.source))
            if len(batch) == 10_000:
                store.add_events(batch)
                batch.clear()
        store.add_events(batch)
        store.end_run(run_id, 0, {})
        log(f"store: {count} events, {path.stat().st_size / 2**20:.0f} MiB")
    return run_id


_WHOLE_RUN = """
import resource, sys
from hostapp.store import Store
with Store(sys.argv[1]) as store:
    events = store.events(run_id=sys.argv[2])
print(len(events), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def run(ctx: SuiteContext) -> SuiteResult:
    import requests

    count = QUICK_EVENTS if ctx.quick else EVENTS
    repeats = 5 if ctx.quick else 30
    db = ctx.work_dir / "serve.sqlite3"
    run_id = _build_store(db, count, ctx.log)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_")}
    env["HOSTAPP_PLUGINS__AUTOLOAD"] = "0"
    env["HOSTAPP_PLUGINS__MODULES"] = "hostapp_plugins.sinks.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostapp", "serve", "--db", str(db), "--port", "0"],
        cwd=ctx.work_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        match = re.match(r"hostapp serve: (http://\S+) ", line)
        if match is None:
            raise RuntimeError(f"hostapp serve did not start: {line}{proc.stderr.read()}")  # type: ignore[union-attr]
        base = f"{match.group(1)}api/runs/{run_id}/events"
        session = requests.Session()
        session.get(base, params={"limit": 1}, timeout=60).raise_for_status()
        peak_start = _peak_mib(proc.pid)

        cursor = None
        for _ in range(count // 2 // 1000):  # walk to the middle, 1000 a page
            cursor = session.get(base, params={"limit": 1000, **({"after": cursor} if cursor else {})},
                                 timeout=60).json()["next"]
        queries = {
            "first page (limit=100)": {"limit": 100},
            "middle page (after=cursor)": {"limit": 100, "after": cursor},
            "last page (order=desc)": {"limit": 100, "order": "desc"},
            "status=5xx": {"limit": 100, "status": "5xx"},
            "type + library=httpx": {"limit": 100, "type": "outbound_http_request", "library": "httpx"},
            "url contains /users/1999": {"limit": 100, "url": "/users/1999"},
            "min_duration_ms=5": {"limit": 100, "min_duration_ms": 5},
        }
        results: dict[str, Any] = {}
        rows = []
        for name, params in queries.items():
            samples = []
            returned = 0
            for _ in range(repeats):
                t0 = time.perf_counter()
                reply = session.get(base, params=params, timeout=60)
                samples.append((time.perf_counter() - t0) * 1000)
                reply.raise_for_status()
                returned = len(reply.json()["events"])
            results[name] = {"ms": samples, "median_ms": median(samples), "max_ms": max(samples),
                             "events_returned": returned}
            rows.append([name, str(returned), f"{median(samples):.1f}", f"{max(samples):.1f}"])
        peak_end = _peak_mib(proc.pid)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    whole = subprocess.run([sys.executable, "-c", _WHOLE_RUN, str(db), run_id], capture_output=True, text=True,
                           timeout=600, check=True).stdout.split()
    worst = max(r["median_ms"] for r in results.values())
    rows.append(["server peak RSS after start / after all", "", f"{peak_start:.0f} MiB", f"{peak_end:.0f} MiB"])
    rows.append(["a child reading the whole run", whole[0], "", f"{float(whole[1]):.0f} MiB"])
    table = format_table(["GET /api/runs/{id}/events", "events", "median ms", "max ms"], rows)
    table += (f"\n\n{count} events in the run; goal: limit=100 well under {GOAL_MS:.0f} ms "
              f"({'met' if worst < GOAL_MS else 'NOT met'}: worst median {worst:.1f} ms); "
              f"server peak RSS grew {peak_end - peak_start:.1f} MiB over {repeats * len(queries)} requests")
    data = {
        "events": count,
        "repeats": repeats,
        "queries": results,
        "server_peak_rss_mib": {"after_start": peak_start, "after_requests": peak_end},
        "whole_run_child": {"events": int(whole[0]), "peak_rss_mib": float(whole[1])},
        "goal_ms": GOAL_MS,
        "goal_met": worst < GOAL_MS,
    }
    return SuiteResult(data=data, table=table)
