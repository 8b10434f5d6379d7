"""The benchmark suites, by name: what ``python -m benchmarks`` runs and ``report.py`` pages.

Its own module, so that the runner and the report both read it without importing each
other.
"""

from __future__ import annotations

#: Suite name -> module providing ``run(ctx) -> SuiteResult``. One line per suite.
SUITES: dict[str, str] = {
    "discovery": "benchmarks.discovery",
    "dispatch": "benchmarks.dispatch",
    "events": "benchmarks.events",
    "events_view": "benchmarks.events_view",
    "memory": "benchmarks.memory",
    "serve": "benchmarks.serve",
    "tracing": "benchmarks.tracing",
    "peers": "benchmarks.peers",
    "probes": "benchmarks.probes",
}
