"""Memory stays bounded: peak RSS of ``hostapp run`` at 2,000 and at 72,000 HTTP calls.

Peak RSS (``ru_maxrss`` of the child, MB) of ``hostapp run -q calls.py URL N`` — a program
making N ``requests.Session().get`` calls to the suite's local server, which runs in a child
process of its own (``benchmarks/workloads/_localserver.py``) — for N = 2,000 and 72,000
(quick: 2,000 and 8,000), and of the same program under plain ``python``. Every built-in
processor on, events into the default sqlite store, a fresh working directory.

Goal (issue 15 item 7): hostapp's peak RSS at the larger N minus at the smaller one under
5 MB — nothing the host keeps grows with the number of calls (before: 55.8 MB at 2,000
calls, 117 MB at 72,000). Start-up (what ``hostapp run`` of an empty program imports and
costs) is measured side by side with the peers in the ``peers`` suite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import SuiteContext, SuiteResult, format_table, run_child

CALLS = '''
import sys, requests
url, n = sys.argv[1], int(sys.argv[2])
with requests.Session() as session:
    for _ in range(n):
        session.get(url)
'''


def _env(work: Path) -> dict[str, str]:
    """This environment without HOSTAPP_* / PYTHON* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON"))}
    env["XDG_CACHE_HOME"] = str(work / ".cache")
    return env


def _peak_rss_mb(work: Path, url: str, n: int, hostapp: bool) -> float:
    argv = [sys.executable, "calls.py", url, str(n)]
    if hostapp:
        argv = [sys.executable, "-m", "hostapp", "run", "-q", *argv[1:]]
    return run_child(argv, env=_env(work), cwd=work).maxrss_kb / 1024


def run(ctx: SuiteContext) -> SuiteResult:
    """Measure the peak RSS of both sides at both sizes; returns the results and the table."""
    from benchmarks.workloads._localserver import start_process

    work = ctx.work_dir
    (work / "calls.py").write_text(CALLS)
    sizes = (2000, 8000) if ctx.quick else (2000, 72000)
    server, url = start_process()
    try:
        rss: dict[str, float] = {}
        for n in sizes:
            for who in ("python", "hostapp"):
                ctx.log(f"{who}: {n:,} requests calls")
                rss[f"{who}_{n}"] = _peak_rss_mb(work, url, n, who == "hostapp")
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(10)
    small, large = sizes
    growth = rss[f"hostapp_{large}"] - rss[f"hostapp_{small}"]
    table = "\n\n".join([
        format_table(
            ["peak RSS, MB", f"{small:,} calls", f"{large:,} calls", "difference"],
            [
                ["plain `python`", f"{rss[f'python_{small}']:.1f}", f"{rss[f'python_{large}']:.1f}",
                 f"{rss[f'python_{large}'] - rss[f'python_{small}']:+.1f}"],
                ["`hostapp run`", f"{rss[f'hostapp_{small}']:.1f}", f"{rss[f'hostapp_{large}']:.1f}", f"{growth:+.1f}"],
            ],
        ),
        f"Goal (the difference under 5 MB): {'met' if growth < 5 else 'not met'} ({growth:+.1f} MB).",
    ])
    data: dict[str, Any] = {"sizes": list(sizes), "peak_rss_mb": rss, "growth_mb": growth, "goal_met": growth < 5}
    return SuiteResult(data=data, table=table)
