"""HTTP capture cost workload: ``python requests500.py [OUT.json] [N] [SETTLE_S]``.

Starts a local HTTP server (``_localserver``, in a child process, so that this process's
CPU is the client's alone) and makes N (default 500) ``GET`` requests to it through one
``requests.Session`` (``session.get``: one kept-alive
connection, so the figure is the per-request cost, not TCP set-up or a server thread per
request). Writes ``{"n", "workload_cpu_s", "workload_wall_s"}`` (``time.process_time()`` /
``time.perf_counter()`` across the N requests only) as JSON to ``OUT.json`` or stdout.

With ``SETTLE_S`` > 0 the script then sleeps that long and also writes ``settled_cpu_s``:
the process's CPU from the first of the N requests to the end of the sleep, so work a
recorder does on its own threads a little after the calls (a batch flushed on a timer)
is counted with them, not with the interpreter's exit.
"""

from __future__ import annotations

import json
import sys
import time

import requests
from _localserver import start_process


def main() -> None:
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    settle = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    server, base = start_process()
    with requests.Session() as session:
        session.get(f"{base}/warm", timeout=10).raise_for_status()  # connect outside the timing
        wall0 = time.perf_counter()
        cpu0 = time.process_time()
        for k in range(n):
            response = session.get(f"{base}/item/{k}", timeout=10)
            if response.status_code != 200 or response.content != b"ok":
                raise SystemExit(f"request {k}: {response.status_code} {response.content!r}")
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        result = {"n": n, "workload_cpu_s": cpu, "workload_wall_s": wall}
        if settle > 0:
            time.sleep(settle)
            result["settled_cpu_s"] = time.process_time() - cpu0
    assert server.stdin is not None
    server.stdin.close()  # the server exits; not waited for, so its CPU is never this process's
    text = json.dumps(result)
    if len(sys.argv) > 1 and sys.argv[1] != "-":
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
