"""What ``hostapp run`` of an empty script imports, and whether memory stays bounded.

**Start-up imports.** ``python -X importtime -m hostapp run -q empty.py`` in a fresh
directory (compiled ``.pyc`` files present, as in any installed package; the store and the
entry-point cache warm), 7 runs (quick: 3); per module the median of its *cumulative*
import time over the runs, listed for the modules the command imports at the top level
(indent 1 of ``-X importtime``), largest first, with the share of the whole. The total is
the median of the runs' sums of *self* times: every import of the run, python's own
start-up imports (``site``, ``encodings``) included; ``-X importtime`` slows imports by its
bookkeeping, so read the shares rather than the milliseconds. Beside it, the CPU
time of the whole command against plain ``python empty.py``, paired and alternating (9
pairs, quick: 3): the part of the fixed cost that is not imports is the host's start and
stop (discovery, the plugins' imports and registration, the store, the sink threads, the
tracing install, the summary). Issue 12's goal for this fixed cost is ≤ 0.3× Kolo's and
≤ 0.15× OpenTelemetry's (``opentelemetry-instrument``), measured side by side in the
start-up suite; this table says where hostapp's share goes.

**Memory.** Peak RSS (``ru_maxrss`` of the child) of ``hostapp run`` of a program making N
``requests.Session().get`` calls to a local server running in another process, N = 2,000
and 72,000 (quick: 2,000 and 8,000), and the same program under plain ``python``. Goal
(issue 15): hostapp's difference between the two sizes under 5 MB, i.e. nothing the host
keeps grows with the number of calls.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import SuiteContext, SuiteResult, format_table, paired_runs, run_child

_IMPORTTIME = re.compile(r"import time:\s*(\d+) \|\s*(\d+) \|( *)(.*)")

CALLS = '''
import sys, requests
url, n = sys.argv[1], int(sys.argv[2])
with requests.Session() as session:
    for _ in range(n):
        session.get(url)
'''


def _env(work: Path) -> dict[str, str]:
    """This environment without HOSTAPP_* / PYTHON* (``.pyc`` files are written and used)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON"))}
    env["XDG_CACHE_HOME"] = str(work / ".cache")
    return env


def _importtime(work: Path, runs: int) -> tuple[list[tuple[str, float, float]], float]:
    """``[(module, median cumulative ms, share)]`` of the top-level imports, and the median
    total (ms) of every import's self time."""
    cumulative: dict[str, list[float]] = {}
    totals = []
    env = _env(work)
    for _ in range(runs):
        done = run_child([sys.executable, "-X", "importtime", "-m", "hostapp", "run", "-q", "empty.py"], env=env, cwd=work)
        total = 0
        for line in done.stderr.splitlines():
            match = _IMPORTTIME.match(line)
            if not match:
                continue
            own, cum, indent, name = int(match[1]), int(match[2]), len(match[3]), match[4].strip()
            total += own
            if indent == 1:
                cumulative.setdefault(name, []).append(cum / 1e3)
        totals.append(total / 1e3)
    whole = statistics.median(totals)
    rows = sorted(((m, statistics.median(v)) for m, v in cumulative.items()), key=lambda r: -r[1])
    return [(m, ms, ms / whole) for m, ms in rows], whole


def _peak_rss(work: Path, url: str, n: int, hostapp: bool) -> float:
    argv = [sys.executable, "-m", "hostapp", "run", "-q", "calls.py", url, str(n)] if hostapp else [
        sys.executable, "calls.py", url, str(n)]
    return run_child(argv, env=_env(work), cwd=work).maxrss_kb / 1024


def run(ctx: SuiteContext) -> SuiteResult:
    """Measure both parts (see the module docstring); returns the results and the table."""
    from benchmarks.workloads._localserver import start_process

    work = ctx.work_dir
    (work / "empty.py").write_text("")
    (work / "calls.py").write_text(CALLS)
    env = _env(work)
    run_child([sys.executable, "-m", "hostapp", "run", "-q", "empty.py"], env=env, cwd=work)  # warm: .pyc, cache, store
    ctx.log("importtime of hostapp run empty.py")
    modules, total_ms = _importtime(work, 3 if ctx.quick else 7)
    ctx.log("CPU of hostapp run empty.py against python empty.py")
    paired = paired_runs(
        lambda: run_child([sys.executable, "-m", "hostapp", "run", "-q", "empty.py"], env=env, cwd=work),
        lambda: run_child([sys.executable, "empty.py"], env=env, cwd=work),
        pairs=3 if ctx.quick else 9, min_pairs=1 if ctx.quick else 5,
    )
    hostapp_ms = statistics.median(paired.a_cpu_s) * 1e3
    python_ms = statistics.median(paired.b_cpu_s) * 1e3
    sizes = (2000, 8000) if ctx.quick else (2000, 72000)
    ctx.log(f"peak RSS at {sizes[0]:,} and {sizes[1]:,} requests calls")
    server, url = start_process()
    try:
        rss = {f"{who}_{n}": _peak_rss(work, url, n, who == "hostapp") for n in sizes for who in ("python", "hostapp")}
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(10)
    growth = rss[f"hostapp_{sizes[1]}"] - rss[f"hostapp_{sizes[0]}"]
    top = [m for m in modules if m[1] >= 0.5][:25]
    table = "\n\n".join([
        format_table(
            ["imported by `hostapp run empty.py` (top level)", "cumulative ms (median)", "share of all imports"],
            [[f"`{m}`", f"{ms:.1f}", f"{share:.0%}"] for m, ms, share in top]
            + [["**every import (sum of self times)**", f"**{total_ms:.1f}**", "100%"]],
        ),
        format_table(
            ["CPU, ms (median of paired runs)", "value"],
            [["`python empty.py`", f"{python_ms:.1f}"], ["`hostapp run -q empty.py`", f"{hostapp_ms:.1f}"],
             ["added by hostapp", f"{hostapp_ms - python_ms:.1f}"]],
        ),
        format_table(
            ["peak RSS, MB", *(f"{n:,} calls" for n in sizes), "difference"],
            [["plain `python`", *(f"{rss[f'python_{n}']:.1f}" for n in sizes),
              f"{rss[f'python_{sizes[1]}'] - rss[f'python_{sizes[0]}']:+.1f}"],
             ["`hostapp run`", *(f"{rss[f'hostapp_{n}']:.1f}" for n in sizes), f"{growth:+.1f}"]],
        ),
        f"Memory goal (difference under 5 MB): {'met' if growth < 5 else 'not met'} ({growth:+.1f} MB).",
    ])
    data: dict[str, Any] = {
        "importtime": {"modules": [{"module": m, "cumulative_ms": ms, "share": s} for m, ms, s in modules],
                       "total_self_ms": total_ms},
        "startup_cpu": paired.to_json("hostapp", "python"),
        "peak_rss_mb": rss,
        "rss_growth_mb": growth,
        "rss_goal_met": growth < 5,
    }
    return SuiteResult(data=data, table=table)
