"""The call-heavy workload: ``python callheavy.py [OUT.json]``.

In order, after starting a local HTTP server (``_localserver``, in this process):

1. ``fib(24)``, naive recursion: 75,025 calls of one user function;
2. 400,002 small calls through three user functions: ``a(i)`` calls ``b(i)`` calls
   ``c(i)``, for 133,334 values of ``i`` (400,000 calls in all, rounded up to whole chains);
3. 20 ``urllib.request.urlopen`` calls to the local server (body read);
4. 20 ``requests.get`` calls to the local server (a new session each, as ``requests.get``
   does).

It writes one JSON object to ``OUT.json`` (or stdout without an argument): ``workload_cpu_s``
and ``workload_wall_s``, this process's ``time.process_time()`` / ``time.perf_counter()``
across steps 1-4 only (server start, imports and interpreter start-up excluded), and each
step's CPU seconds. The process CPU includes the server thread's work.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request

import requests
from _localserver import start

FIB_N = 24
CHAIN_ROUNDS = 133_334  # x 3 functions = 400,002 calls
HTTP_CALLS = 20


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def c(x: int) -> int:
    return x + 1


def b(x: int) -> int:
    return c(x) + 1


def a(x: int) -> int:
    return b(x) + 1


def main() -> None:
    _server, base = start()
    steps: dict[str, float] = {}
    wall0 = time.perf_counter()
    cpu0 = time.process_time()

    fib_value = fib(FIB_N)
    cpu1 = time.process_time()
    steps["fib_cpu_s"] = cpu1 - cpu0

    total = 0
    for i in range(CHAIN_ROUNDS):
        total += a(i)
    cpu2 = time.process_time()
    steps["calls_cpu_s"] = cpu2 - cpu1

    for k in range(HTTP_CALLS):
        with urllib.request.urlopen(f"{base}/urllib/{k}") as response:
            response.read()
    cpu3 = time.process_time()
    steps["urllib_cpu_s"] = cpu3 - cpu2

    for k in range(HTTP_CALLS):
        requests.get(f"{base}/requests/{k}", timeout=10).raise_for_status()
    cpu4 = time.process_time()
    steps["requests_cpu_s"] = cpu4 - cpu3

    wall = time.perf_counter() - wall0
    if fib_value != 46368 or total != sum(range(CHAIN_ROUNDS)) + 3 * CHAIN_ROUNDS:
        raise SystemExit(f"wrong results: fib={fib_value}, total={total}")
    report = {"workload_cpu_s": cpu4 - cpu0, "workload_wall_s": wall, **steps}
    text = json.dumps(report)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
