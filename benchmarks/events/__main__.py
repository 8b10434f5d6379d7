"""``python -m benchmarks.events [--quick]``: run only this suite through the shared runner.

Equivalent to ``python -m benchmarks --only events`` once ``"events"`` is listed in
:data:`benchmarks.__main__.SUITES`; writes ``benchmarks/results/events.json``.
"""

from __future__ import annotations

import sys

from benchmarks.__main__ import SUITES, main

if __name__ == "__main__":
    SUITES.setdefault("events", "benchmarks.events")
    raise SystemExit(main(["--only", "events", *sys.argv[1:]]))
