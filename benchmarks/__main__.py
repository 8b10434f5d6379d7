"""Run the benchmark suites: ``python -m benchmarks [--quick] [--only NAME] [--list]``.

Each suite writes ``benchmarks/results/<suite>.json`` (environment block with python
version, platform and date, raw samples, medians and ratios) and the runner prints the
suite's short table. ``--quick`` is a smoke run with fewer repeats (numbers indicative only).

Adding a suite is one line in :data:`benchmarks._suites.SUITES`: the value is the module that provides
``run(ctx: SuiteContext) -> SuiteResult`` (see :mod:`benchmarks._common`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Sequence

from benchmarks._common import RESULTS_DIR, WORK_DIR, SuiteContext, SuiteResult, environment_info, write_json
from benchmarks._suites import SUITES



def _log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def run_suite(name: str, *, quick: bool) -> SuiteResult:
    """Import and run one suite, write its JSON, and return its result."""
    module = importlib.import_module(SUITES[name])
    work_dir = WORK_DIR / name
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = SuiteContext(name=name, quick=quick, work_dir=work_dir, log=_log)
    env = environment_info()
    t0 = time.perf_counter()
    result: SuiteResult = module.run(ctx)
    elapsed = time.perf_counter() - t0
    payload = {
        "suite": name,
        "quick": quick,
        "argv": sys.argv,
        "environment": env,
        "suite_wall_s": elapsed,
        "table": result.table,
        **result.data,
    }
    write_json(RESULTS_DIR / f"{name}.json", payload)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (1 if any suite failed)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer repeats (under a minute per suite)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        choices=sorted(SUITES),
        help="run only this suite (repeatable); default: all",
    )
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)

    if args.list:
        for name, module in SUITES.items():
            print(f"{name}\t{module}")
        return 0

    names = args.only or list(SUITES)
    failed: list[str] = []
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            result = run_suite(name, quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        print(f"\n## {name}{' (quick: indicative only)' if args.quick else ''}\n")
        print(result.table)
        print(f"\n({name}: {time.perf_counter() - t0:.0f} s; results in {RESULTS_DIR / (name + '.json')})\n", flush=True)
    from benchmarks.report import write_report

    print(f"docs updated: {write_report(SUITES)}", file=sys.stderr)
    if failed:
        print(f"failed suites: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
