"""Run a workload under a peer, configured to record for real: ``python _peer.py MODE SCRIPT ARGS...``.

Modes:

``otel-simple`` / ``otel-batch``
    OpenTelemetry's SDK set up in code before the script runs: a ``TracerProvider`` with a
    ``SimpleSpanProcessor`` (spans exported on the calling thread as each ends) or a
    ``BatchSpanProcessor`` (default settings: a queue and an export thread) into an
    ``InMemorySpanExporter`` (it keeps every span), and ``RequestsInstrumentor().instrument()``.
    At the end the provider is flushed and the finished spans are counted.
``ddtrace``
    Meant to run under ``ddtrace-run`` (which has set tracing up from the environment): a
    ``TraceFilter`` that counts the spans of every finished trace is added with
    ``tracer.configure(trace_processors=[...])``; the export to the agent is ddtrace's own.
``otel-auto-check`` (no script)
    Meant to run under ``opentelemetry-instrument``: adds an in-memory exporter to the
    provider the distro configured, makes one ``requests`` call to a local server and
    reports the spans, the provider's class and whether ``requests`` is instrumented.

The script runs as ``__main__`` with ``sys.argv = [SCRIPT, *ARGS]`` and its directory
first on ``sys.path``, as ``python SCRIPT ARGS`` would. The peer's report (JSON: ``mode``,
``spans``, ``sample`` - the first span's name and URL) goes to the file named by
``BENCH_PEER_REPORT``, else to stderr.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Callable
from typing import Any


def _run_script(args: list[str]) -> None:
    script = args[0]
    sys.argv = list(args)
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")


def _otel_sample(spans: Any) -> dict[str, Any] | None:
    if not spans:
        return None
    first = spans[0]
    attributes = dict(first.attributes or {})
    return {"name": first.name, "url": attributes.get("http.url") or attributes.get("url.full")}


def otel(mode: str, args: list[str]) -> dict[str, Any]:
    from opentelemetry import trace
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    processor = SimpleSpanProcessor(exporter) if mode == "otel-simple" else BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    RequestsInstrumentor().instrument()
    _run_script(args)
    provider.force_flush()
    spans = exporter.get_finished_spans()
    return {"spans": len(spans), "sample": _otel_sample(spans), "processor": type(processor).__name__}


def ddtrace(args: list[str]) -> dict[str, Any]:
    from ddtrace.trace import TraceFilter, tracer

    seen: dict[str, Any] = {"spans": 0, "traces": 0, "sample": None}

    class Count(TraceFilter):  # type: ignore[misc]
        def process_trace(self, trace: list[Any]) -> list[Any]:
            seen["traces"] += 1
            seen["spans"] += len(trace)
            if seen["sample"] is None and trace:
                seen["sample"] = {"name": trace[0].name, "url": trace[0].get_tag("http.url")}
            return trace

    tracer.configure(trace_processors=[Count()])
    _run_script(args)
    return {**seen, "enabled": tracer.enabled}


def otel_auto_check(_args: list[str]) -> dict[str, Any]:
    import requests
    from opentelemetry import trace
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workloads"))
    from _localserver import start

    provider = trace.get_tracer_provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    server, base = start()
    requests.get(f"{base}/check", timeout=10).raise_for_status()
    server.server_close()
    spans = exporter.get_finished_spans()
    return {"spans": len(spans), "sample": _otel_sample(spans), "provider": type(provider).__module__ + "."
            + type(provider).__name__, "requests_instrumented": RequestsInstrumentor().is_instrumented_by_opentelemetry}


MODES: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "otel-simple": lambda args: otel("otel-simple", args),
    "otel-batch": lambda args: otel("otel-batch", args),
    "ddtrace": ddtrace,
    "otel-auto-check": otel_auto_check,
}


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    report = {"mode": mode, **MODES[mode](args)}
    text = json.dumps(report)
    target = os.environ.get("BENCH_PEER_REPORT")
    if target:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text, file=sys.stderr)


if __name__ == "__main__":
    main()
