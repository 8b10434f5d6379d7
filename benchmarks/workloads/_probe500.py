"""HTTP capture cost workload: ``python requests500.py [OUT.json] [N]``.

Starts a local HTTP server (``_localserver``, in this process) and makes N (default 500)
``GET`` requests to it through one ``requests.Session`` (``session.get``: one kept-alive
connection, so the figure is the per-request cost, not TCP set-up or a server thread per
request). Writes ``{"n", "workload_cpu_s", "workload_wall_s"}`` (``time.process_time()`` /
``time.perf_counter()`` across the N requests only) as JSON to ``OUT.json`` or stdout.
"""

from __future__ import annotations

import json
import sys
import time

import requests
from _localserver import start


def main() -> None:
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    _server, base = start()
    with requests.Session() as session:
        session.get(f"{base}/warm", timeout=10).raise_for_status()  # connect outside the timing
        wall0 = time.perf_counter()
        cpu0 = time.process_time(); t0 = time.thread_time()
        for k in range(n):
            response = session.get(f"{base}/item/{k}", timeout=10)
            if response.status_code != 200 or response.content != b"ok":
                raise SystemExit(f"request {k}: {response.status_code} {response.content!r}")
        cpu = time.process_time() - cpu0; tt = time.thread_time() - t0
        wall = time.perf_counter() - wall0
    text = json.dumps({"n": n, "workload_cpu_s": cpu, "workload_wall_s": wall, "main_thread_cpu_s": tt})
    if len(sys.argv) > 1 and sys.argv[1] != "-":
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
