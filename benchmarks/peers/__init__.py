"""Peers suite: hostapp side by side with OpenTelemetry, ddtrace and Kolo in one run, on 3.11, 3.12 and 3.13.

Every figure is a difference against plain `python` measured in the same round, for each
Python of the `tracing` suite (`benchmarks/_pythons.py`: the current interpreter and
venvs built once under `benchmarks/_work/venvs/X.Y` with the `bench` extra). A peer that
is not installed on a Python is reported as such for that Python; the others go on.
hostapp is driven only through its CLI (`hostapp run`), as a user would.

**How each peer records** (for real, and checked in every measured run):

* **hostapp**: `hostapp run --quiet --json-summary S.json SCRIPT`, every built-in processor,
  events into the default sqlite store (`.hostapp/hostapp.sqlite3` in the run's working
  directory, kept across the runs as a user's would be). Check: the summary's `sqlite`
  sink delivered at least one event per request.
* **OpenTelemetry** (`opentelemetry-sdk`, `opentelemetry-instrumentation-requests`): set up
  in code by `benchmarks/peers/_peer.py` before the script runs: an SDK `TracerProvider`,
  `RequestsInstrumentor().instrument()`, and an `InMemorySpanExporter` (it keeps every
  span) behind a `SimpleSpanProcessor` (**OTel simple**: exported on the calling thread) or
  a `BatchSpanProcessor` with its defaults (**OTel batch**: a queue and an export thread).
  Traces only. Check: one span per request.
* **ddtrace**: `ddtrace-run python _peer.py ddtrace SCRIPT`, tracing on, the agent
  unreachable (`DD_TRACE_AGENT_URL` is a 127.0.0.1 port the suite holds bound but not
  listening, so connections are refused), every other setting its default; a
  `TraceFilter` counts the finished spans. Check: one span per request.
* **Kolo** (start-up only): its normal `kolo run SCRIPT`. Check: the run added a trace to
  `.kolo/`.
* **OpenTelemetry auto-instrumentation** (start-up only): `opentelemetry-instrument python
  SCRIPT` (`opentelemetry-distro`) with `OTEL_TRACES_EXPORTER=console` (no span is made by
  an empty program, so nothing is printed), metrics and logs exporters `none`. Checked once
  per Python: under the same command an in-memory exporter added to the configured
  provider receives the span of one `requests` call.

**CPU per captured HTTP request** (`benchmarks/workloads/requests500.py`): 500
`requests.Session().get` over one kept-alive connection to a local server in a child
process (plain `python -I`, so its CPU is never the measured process's). Each round runs
plain `python` and every peer once, in an order rotated from round to round; one warm-up
round, then up to 21 rounds (no new round after 15 minutes per Python, at least 7 rounds). Per
round and peer, **µs per request** = (peer − python) / 500, median [min–max] over the
rounds, of: *requests + settle* (**the figure judged**: the script's `time.process_time()`
from the first request until 0.5 s after the last, so a recorder's batch written on a
timer shortly after the calls counts with them; every thread of the process); *in the
loop only* (the same, ending at the last request); *whole process* (the child's
user+system CPU from `os.wait4`, start-up and exit included). **Start-up + exit** (ms) =
(whole process − requests + settle) of the peer minus the same of `python`: its imports,
set-up and what it does at exit (hostapp's final drain and run record, OTel's batch
export, ddtrace's attempts to reach the agent).

**Instructions per captured request** (deterministic; `valgrind --tool=callgrind`, every
thread and exec'd image of the process, the local server excluded, `PYTHONHASHSEED=0`):
`requests500.py` with 40 and with 120 requests under each peer; (total(120) −
total(40)) / 80 per peer, and that minus plain `python`'s. hostapp's figure judged is the
`tracing` suite's: every processor minus `--no-processor` for each HTTP processor.

**Fixed cost of start-up** (`benchmarks/workloads/noop.py`, an empty program):
`hostapp run --quiet`, `kolo run`, `opentelemetry-instrument python` and `ddtrace-run
python` against `python`, alternating in rotated rounds (one warm-up, up to 21 rounds,
no new round after 5 minutes, at least 7): CPU ms added over `python`, median [min–max]; the ratios are of the
medians. Then `PYTHONPROFILEIMPORTTIME=1 hostapp run --quiet noop.py` (the `-X
importtime` list, 3 runs, the median per module): the modules with the largest
cumulative import time, each with its self time and the module that imported it, and
whether some notable modules (asyncio, rich, the HTTP and job libraries, ...) are
imported at all.

Goals (issue 12 item 7): CPU added per captured request by hostapp ≤ 0.25× OpenTelemetry's
(judged against the cheaper of the two OTel set-ups) and below ddtrace's, on each Python;
≤ +0.2 M instructions per captured request; `hostapp run` of an empty program adds ≤ 0.3×
the CPU `kolo run` adds and ≤ 0.15× what `opentelemetry-instrument` adds. For reference
(../shared/REFERENCE.md, 3.12): OpenTelemetry ~+155 µs per request, ddtrace 4.16 ~+326 µs.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ChildError,
    ChildResult,
    SuiteContext,
    SuiteResult,
    format_spread,
    format_table,
    goal,
    goal_lines,
    loadavg,
    median,
    run_child,
    spread,
)
from benchmarks._pythons import WORKLOADS, Interpreter, callgrind_instructions, child_env, interpreters
from benchmarks.tracing import HTTP_PROCESSORS

__all__ = ["FULL_PLAN", "QUICK_PLAN", "Plan", "parse_importtime", "run"]

PEER = Path(__file__).with_name("_peer.py")
REQUESTS = WORKLOADS / "requests500.py"
EMPTY = WORKLOADS / "noop.py"

#: Goals from the issue (ratios are pure numbers).
GOAL_VS_OTEL = 0.25
GOAL_INSTRUCTIONS = 0.2e6
GOAL_STARTUP_VS_KOLO = 0.3
GOAL_STARTUP_VS_OTEL = 0.15
#: Measured by others, ../shared/REFERENCE.md (3.12; µs CPU added per request).
REFERENCE = {"opentelemetry_us_per_request": 155.0, "ddtrace_us_per_request": 326.0}

#: Tool key -> label in the tables.
LABELS = {
    "python": "python",
    "hostapp": "hostapp run",
    "hostapp_none": "hostapp run, no HTTP processor",
    "otel_simple": "OTel simple",
    "otel_batch": "OTel batch",
    "otel": "opentelemetry-instrument",
    "ddtrace": "ddtrace-run",
    "kolo": "kolo run",
}
HTTP_TOOLS = ("python", "hostapp", "otel_simple", "otel_batch", "ddtrace")
STARTUP_TOOLS = ("python", "hostapp", "kolo", "otel", "ddtrace")
INSTRUCTION_TOOLS = ("python", "hostapp_none", "hostapp", "otel_simple", "otel_batch", "ddtrace")
#: Distributions whose versions are recorded per Python; tool -> what it needs (dists, console script).
DISTS = ("hostapp", "requests", "opentelemetry-sdk", "opentelemetry-instrumentation-requests",
         "opentelemetry-distro", "ddtrace", "kolo")
NEEDS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "python": ((), None),
    "hostapp": (("hostapp",), None),
    "hostapp_none": (("hostapp",), None),
    "otel_simple": (("opentelemetry-sdk", "opentelemetry-instrumentation-requests"), None),
    "otel_batch": (("opentelemetry-sdk", "opentelemetry-instrumentation-requests"), None),
    "otel": (("opentelemetry-distro", "opentelemetry-instrumentation-requests"), "opentelemetry-instrument"),
    "ddtrace": (("ddtrace",), "ddtrace-run"),
    "kolo": (("kolo",), "kolo"),
}
#: Modules whose presence in `hostapp run`'s import list is worth a line of its own.
NOTABLE = ("asyncio", "rich", "click", "sqlite3", "pluggy", "importlib_metadata", "json", "requests",
           "httpx", "urllib3", "celery", "huey", "redis")


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure (counts, and wall-clock budgets per Python in seconds).

    Attributes:
        http_n: requests per ``requests500.py`` run.
        http_rounds, http_min_rounds, http_budget_s: measured HTTP rounds at most / at
            least / no new round after this long.
        settle_s: the pause after the requests that is still counted with them.
        startup_rounds, startup_min_rounds, startup_budget_s: the same for start-up.
        warmup: discarded rounds before each comparison.
        importtime_runs: ``-X importtime`` runs of ``hostapp run`` (median per module).
        instructions: the two request counts run under callgrind, or ``None`` (skipped).
        top: modules listed from the import-time list.
    """

    http_n: int
    http_rounds: int
    http_min_rounds: int
    http_budget_s: float
    settle_s: float
    startup_rounds: int
    startup_min_rounds: int
    startup_budget_s: float
    warmup: int
    importtime_runs: int
    instructions: tuple[int, int] | None
    top: int = 20


FULL_PLAN = Plan(http_n=500, http_rounds=21, http_min_rounds=7, http_budget_s=900.0, settle_s=0.5,
                 startup_rounds=21, startup_min_rounds=7, startup_budget_s=300.0, warmup=1, importtime_runs=3,
                 instructions=(40, 120))
QUICK_PLAN = Plan(http_n=200, http_rounds=2, http_min_rounds=1, http_budget_s=120.0, settle_s=0.5,
                  startup_rounds=2, startup_min_rounds=1, startup_budget_s=60.0, warmup=0, importtime_runs=1,
                  instructions=None)


# --------------------------------------------------------------------------------------
# Running one peer
# --------------------------------------------------------------------------------------


class _Peers:
    """Builds and checks the command of every tool for one interpreter, in one working directory."""

    def __init__(self, interp: Interpreter, directory: Path, agent_url: str) -> None:
        assert interp.python is not None and interp.hostapp is not None
        self.interp = interp
        self.python = interp.python
        self.dir = directory
        self.agent_url = agent_url
        self.summary = directory / "summary.json"
        self.report = directory / "peer.json"
        self.out = directory / "out.json"
        self.versions = self._versions()
        self.missing = {tool: self._missing(tool) for tool in NEEDS}

    def _versions(self) -> dict[str, str | None]:
        code = ("import json, importlib.metadata as m\nout = {}\nfor d in %r:\n    try:\n        out[d] = m.version(d)\n"
                "    except m.PackageNotFoundError:\n        out[d] = None\nprint(json.dumps(out))" % (DISTS,))
        done = subprocess.run([self.python, "-c", code], capture_output=True, text=True, timeout=120,
                              env=child_env(), cwd=self.dir)
        return json.loads(done.stdout) if done.returncode == 0 else {}

    def _missing(self, tool: str) -> str | None:
        dists, script = NEEDS[tool]
        absent = [d for d in dists if not self.versions.get(d)]
        if absent:
            return f"{', '.join(absent)} not installed on Python {self.interp.full_version}"
        if script is not None and self.interp.script(script) is None:
            return f"no {script} next to {self.python}"
        return None

    def command(self, tool: str, script: Path, args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run ``script args`` under ``tool``."""
        py, target = self.python, [str(script), *args]
        hostapp = self.interp.hostapp or []
        env: dict[str, str] = {}
        if tool == "python":
            argv = [py, *target]
        elif tool in ("hostapp", "hostapp_none"):
            no_http = [a for name in HTTP_PROCESSORS for a in ("--no-processor", name)] if tool == "hostapp_none" else []
            argv = [*hostapp, "run", "--quiet", "--json-summary", str(self.summary), *no_http, *target]
        elif tool in ("otel_simple", "otel_batch"):
            argv = [py, str(PEER), tool.replace("_", "-"), *target]
            env = {"BENCH_PEER_REPORT": str(self.report)}
        elif tool == "ddtrace":
            argv = [self.interp.script("ddtrace-run") or "ddtrace-run", py, str(PEER), "ddtrace", *target]
            env = {"BENCH_PEER_REPORT": str(self.report), "DD_TRACE_ENABLED": "true",
                   "DD_TRACE_AGENT_URL": self.agent_url}
        elif tool == "otel":
            argv = [self.interp.script("opentelemetry-instrument") or "opentelemetry-instrument", py, *target]
            env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
                   "OTEL_SERVICE_NAME": "hostapp-bench"}
        elif tool == "kolo":
            argv = [self.interp.script("kolo") or "kolo", "run", *target]
        else:
            raise ValueError(tool)
        return argv, child_env(env)

    def run(self, tool: str, script: Path, args: Sequence[str], *, calls: int, timeout: float = 300.0,
            extra_env: dict[str, str] | None = None) -> tuple[ChildResult, dict[str, Any]]:
        """Run once; the child and the script's JSON output. ``calls`` HTTP calls must have
        been recorded (0: the run must only have recorded, as an empty program does).

        Raises:
            ChildError: the child failed, or the peer's check did not pass.
        """
        for path in (self.summary, self.report, self.out):
            path.unlink(missing_ok=True)
        before = self._kolo_traces() if tool == "kolo" else 0
        argv, env = self.command(tool, script, args)
        child = run_child(argv, env={**env, **(extra_env or {})}, cwd=self.dir, timeout=timeout)
        problem = self._check(tool, calls, before)
        if problem:
            raise ChildError(f"{LABELS[tool]}: {problem}\n{child.stderr[-2000:]}", summary=f"{LABELS[tool]}: {problem}")
        try:
            out = json.loads(self.out.read_text())
        except (OSError, ValueError):
            out = {}
        return child, out

    def _check(self, tool: str, calls: int, kolo_before: int) -> str | None:
        if tool in ("hostapp", "hostapp_none"):
            try:
                summary = json.loads(self.summary.read_text())
                delivered = summary["sinks"]["sqlite"]["delivered"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                return f"no run summary with the sqlite sink's counters ({exc!r})"
            want = calls if tool == "hostapp" else 0
            return None if delivered >= want else f"{delivered} events stored for {calls} HTTP calls"
        if tool in ("otel_simple", "otel_batch", "ddtrace"):
            try:
                spans = json.loads(self.report.read_text())["spans"]
            except (OSError, ValueError, KeyError) as exc:
                return f"no span report ({exc!r})"
            return None if spans >= calls else f"{spans} spans for {calls} HTTP calls"
        if tool == "kolo":
            after = self._kolo_traces()
            return None if after > kolo_before else f"no new trace in {self.dir / '.kolo'} ({kolo_before} -> {after})"
        return None

    def _kolo_traces(self) -> int:
        """Traces Kolo has stored under ``.kolo/`` (rows of its ``traces`` tables, else trace files)."""
        root = self.dir / ".kolo"
        count = 0
        for db in root.rglob("*.sqlite3"):
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                try:
                    count += con.execute("SELECT count(*) FROM traces").fetchone()[0]
                finally:
                    con.close()
            except sqlite3.Error:
                continue
        return count or len(list(root.rglob("trc_*.kolo")))

    def otel_auto_check(self) -> dict[str, Any]:
        """Under ``opentelemetry-instrument`` (the start-up set-up), one ``requests`` call makes a span."""
        self.report.unlink(missing_ok=True)
        argv, env = self.command("otel", PEER, ["otel-auto-check"])
        run_child(argv, env={**env, "BENCH_PEER_REPORT": str(self.report)}, cwd=self.dir, timeout=120)
        report = json.loads(self.report.read_text())
        if report.get("spans", 0) < 1 or not report.get("requests_instrumented"):
            raise ChildError(f"opentelemetry-instrument: no span recorded: {report}")
        return report


# --------------------------------------------------------------------------------------
# Rounds
# --------------------------------------------------------------------------------------


def _rounds(
    tools: Sequence[str], run_one: Callable[[str], dict[str, float]], *, rounds: int, min_rounds: int, warmup: int,
    budget_s: float, log: Callable[[str], None], what: str,
) -> tuple[list[dict[str, dict[str, float]]], list[float | None], dict[str, str]]:
    """Run every tool once per round, in an order rotated each round; discard ``warmup``
    rounds. A tool that fails twice is dropped (its error kept). Returns the measured rounds
    (tool -> record), the load average before each, and the errors by tool."""
    measured: list[dict[str, dict[str, float]]] = []
    loads: list[float | None] = []
    errors: dict[str, str] = {}
    failures: dict[str, int] = {}
    active = list(tools)
    deadline = time.monotonic() + budget_s
    for index in range(warmup + rounds):
        warm = index < warmup
        if not warm and len(measured) >= min_rounds and time.monotonic() > deadline:
            log(f"{what}: time budget spent after {len(measured)} round(s)")
            break
        log(f"{what}: {'warm-up' if warm else f'round {len(measured) + 1}'} ({len(active)} tools)")
        load = loadavg()
        shift = index % len(active)
        record: dict[str, dict[str, float]] = {}
        for tool in active[shift:] + active[:shift]:
            try:
                record[tool] = run_one(tool)
            except ChildError as exc:
                failures[tool] = failures.get(tool, 0) + 1
                errors[tool] = exc.summary
                log(f"{what}: {LABELS[tool]} failed: {exc.summary}")
        active = [t for t in active if failures.get(t, 0) < 2]
        if not warm:
            measured.append(record)
            loads.append(load)
        if "python" not in active:
            break
    return measured, loads, errors


def _diffs(rounds: list[dict[str, dict[str, float]]], tool: str, key: str, scale: float) -> list[float]:
    """Per round where both ran: (tool's ``key`` − python's) × ``scale``."""
    return [(r[tool][key] - r["python"][key]) * scale for r in rounds if tool in r and "python" in r]


def _ratio(a: dict[str, float] | None, b: dict[str, float] | None) -> float | None:
    if not a or not b or b["median"] <= 0:
        return None
    return a["median"] / b["median"]


def _per_tool(
    tools: Sequence[str], peers: _Peers, rounds: list[dict[str, dict[str, float]]], errors: dict[str, str],
    describe: Callable[[str, list[dict[str, float]]], dict[str, Any]],
) -> dict[str, Any]:
    """Each tool's figures over the rounds (its CPU and peak RSS, and what ``describe`` adds
    from its records), or why it has none (``missing``, ``error``)."""
    out: dict[str, Any] = {}
    for tool in tools:
        if peers.missing[tool] is not None:
            out[tool] = {"missing": peers.missing[tool]}
            continue
        own = [r[tool] for r in rounds if tool in r]
        if not own:
            out[tool] = {"error": errors.get(tool, "no run")}
            continue
        entry = {"runs": len(own), "cpu_ms": spread([x["cpu_s"] * 1e3 for x in own]),
                 "maxrss_mib": max(x["maxrss_kb"] for x in own) / 1024, **describe(tool, own)}
        if tool in errors:
            entry["error"] = errors[tool]
        out[tool] = entry
    return out


def _http(peers: _Peers, plan: Plan, log: Callable[[str], None], version: str) -> dict[str, Any]:
    n = plan.http_n
    tools = [t for t in HTTP_TOOLS if peers.missing[t] is None]

    def one(tool: str) -> dict[str, float]:
        child, out = peers.run(tool, REQUESTS, [str(peers.out), str(n), str(plan.settle_s)], calls=n + 1)
        return {"cpu_s": child.cpu_s, "wall_s": child.wall_s, "loop_s": out["workload_cpu_s"],
                "settled_s": out["settled_cpu_s"], "maxrss_kb": child.maxrss_kb}

    rounds, loads, errors = _rounds(tools, one, rounds=plan.http_rounds, min_rounds=plan.http_min_rounds,
                                    warmup=plan.warmup, budget_s=plan.http_budget_s, log=log,
                                    what=f"Python {version} requests500")
    def describe(tool: str, own: list[dict[str, float]]) -> dict[str, Any]:
        entry = {"settled_ms": spread([x["settled_s"] * 1e3 for x in own]),
                 "loop_ms": spread([x["loop_s"] * 1e3 for x in own])}
        if tool != "python":
            outside = [((r[tool]["cpu_s"] - r[tool]["settled_s"]) - (r["python"]["cpu_s"] - r["python"]["settled_s"]))
                       * 1e3 for r in rounds if tool in r and "python" in r]
            entry.update({
                "us_per_request": spread(_diffs(rounds, tool, "settled_s", 1e6 / n)),
                "loop_us_per_request": spread(_diffs(rounds, tool, "loop_s", 1e6 / n)),
                "whole_us_per_request": spread(_diffs(rounds, tool, "cpu_s", 1e6 / n)),
                "startup_exit_ms": spread(outside),
            })
        return entry

    per_tool = _per_tool(HTTP_TOOLS, peers, rounds, errors, describe)
    hostapp = per_tool.get("hostapp", {}).get("us_per_request")
    ratios = {f"hostapp_vs_{t}": _ratio(hostapp, per_tool.get(t, {}).get("us_per_request"))
              for t in ("otel_simple", "otel_batch", "ddtrace")}
    return {"requests": n, "settle_s": plan.settle_s, "rounds": len(rounds), "warmup_rounds": plan.warmup,
            "tools": per_tool, "ratios": ratios, "loadavg": loads, "samples": rounds}


def _startup(peers: _Peers, plan: Plan, log: Callable[[str], None], version: str) -> dict[str, Any]:
    tools = [t for t in STARTUP_TOOLS if peers.missing[t] is None]
    check: dict[str, Any] = {}
    if "otel" in tools:
        try:
            check["otel"] = peers.otel_auto_check()
        except (ChildError, OSError, ValueError) as exc:
            check["otel"] = {"error": str(exc)[-500:]}
            tools.remove("otel")

    def one(tool: str) -> dict[str, float]:
        child, _ = peers.run(tool, EMPTY, [], calls=0)
        return {"cpu_s": child.cpu_s, "wall_s": child.wall_s, "maxrss_kb": child.maxrss_kb}

    rounds, loads, errors = _rounds(tools, one, rounds=plan.startup_rounds, min_rounds=plan.startup_min_rounds,
                                    warmup=plan.warmup, budget_s=plan.startup_budget_s, log=log,
                                    what=f"Python {version} start-up")
    def describe(tool: str, own: list[dict[str, float]]) -> dict[str, Any]:
        entry = {"wall_ms": spread([x["wall_s"] * 1e3 for x in own])}
        if tool != "python":
            entry["added_cpu_ms"] = spread(_diffs(rounds, tool, "cpu_s", 1e3))
            entry["added_wall_ms"] = spread(_diffs(rounds, tool, "wall_s", 1e3))
        return entry

    failed_checks = {tool: c["error"] for tool, c in check.items() if "error" in c}
    per_tool = _per_tool(STARTUP_TOOLS, peers, rounds, {**failed_checks, **errors}, describe)
    hostapp = per_tool.get("hostapp", {}).get("added_cpu_ms")
    ratios = {f"hostapp_vs_{t}": _ratio(hostapp, per_tool.get(t, {}).get("added_cpu_ms")) for t in ("kolo", "otel",
                                                                                                   "ddtrace")}
    return {"rounds": len(rounds), "warmup_rounds": plan.warmup, "tools": per_tool, "ratios": ratios,
            "checks": check, "loadavg": loads, "samples": rounds}


# --------------------------------------------------------------------------------------
# Import time
# --------------------------------------------------------------------------------------


def parse_importtime(stderr: str) -> list[dict[str, Any]]:
    """The ``-X importtime`` lines of ``stderr``, in their order: ``module``, ``self_us``,
    ``cumulative_us``, ``depth`` (0 = imported by the program or the interpreter itself)
    and ``parent`` (the module that imported it, ``None`` at depth 0)."""
    rows: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header
        name = parts[2].rstrip()
        stripped = name.lstrip(" ")
        depth = max(0, (len(name) - len(stripped) - 1) // 2)
        rows.append({"module": stripped, "self_us": int(parts[0]), "cumulative_us": int(parts[1]), "depth": depth,
                     "parent": None})
    ancestors: list[str] = []  # importtime lists a module after what it imported: walk backwards
    for row in reversed(rows):
        depth = row["depth"]
        del ancestors[depth:]
        row["parent"] = ancestors[depth - 1] if 0 < depth <= len(ancestors) else None
        ancestors.append(row["module"])
    return rows


def _importtime(peers: _Peers, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    log(f"hostapp run noop.py with -X importtime, {plan.importtime_runs} run(s)")
    runs = []
    for _ in range(plan.importtime_runs):
        child, _out = peers.run("hostapp", EMPTY, [], calls=0, extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
        runs.append(parse_importtime(child.stderr))
    by_module: dict[str, list[dict[str, Any]]] = {}
    for rows in runs:
        for row in rows:
            by_module.setdefault(row["module"], []).append(row)
    merged = []
    for module, seen in by_module.items():
        merged.append({"module": module, "cumulative_us": statistics.median(r["cumulative_us"] for r in seen),
                       "self_us": statistics.median(r["self_us"] for r in seen), "depth": seen[0]["depth"],
                       "parent": seen[0]["parent"], "runs": len(seen)})
    merged.sort(key=lambda r: -r["cumulative_us"])
    totals = [sum(r["cumulative_us"] for r in rows if r["depth"] == 0) for rows in runs]
    notable = {name: next((r["cumulative_us"] for r in merged if r["module"] == name), None) for name in NOTABLE}
    return {"runs": len(runs), "modules": len(merged), "total_us": median(totals) if totals else None,
            "top": merged[:plan.top], "notable_cumulative_us": notable, "all": merged}


# --------------------------------------------------------------------------------------
# Instructions
# --------------------------------------------------------------------------------------


def _instructions(peers: _Peers, plan: Plan, log: Callable[[str], None], version: str) -> dict[str, Any]:
    if plan.instructions is None:
        return {"error": "not counted in a quick run"}
    small, large = plan.instructions
    per: dict[str, float] = {}
    errors: dict[str, str] = {}
    for tool in INSTRUCTION_TOOLS:
        if peers.missing[tool] is not None:
            errors[tool] = peers.missing[tool]  # type: ignore[assignment]
            continue
        log(f"Python {version} callgrind: {LABELS[tool]}, {small} and {large} requests")
        try:
            totals = []
            for n in (small, large):
                argv, env = peers.command(tool, REQUESTS, ["-", str(n)])
                totals.append(callgrind_instructions(argv, peers.dir / "callgrind", env=env, cwd=peers.dir))
            per[tool] = (totals[1] - totals[0]) / (large - small)
        except ChildError as exc:
            errors[tool] = exc.summary
            log(f"Python {version} callgrind: {LABELS[tool]} failed: {exc.summary}")
            if tool == "python":
                break
    result: dict[str, Any] = {"requests": [small, large], "per_request": per, "errors": errors}
    if "python" in per:
        result["added_per_request"] = {t: v - per["python"] for t, v in per.items() if t != "python"}
    if "hostapp" in per and "hostapp_none" in per:
        result["hostapp_captured_request"] = per["hostapp"] - per["hostapp_none"]
    added = result.get("added_per_request", {})
    if added.get("hostapp") and added.get("otel_simple"):
        result["hostapp_vs_otel_simple"] = added["hostapp"] / added["otel_simple"]
    return result


# --------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------


def _measure(interp: Interpreter, plan: Plan, ctx: SuiteContext, agent_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"hostapp-bench-peers-{interp.version}-") as tmp:
        peers = _Peers(interp, Path(tmp), agent_url)
        result: dict[str, Any] = {"python": interp.full_version, "executable": interp.python,
                                  "source": interp.source, "versions": peers.versions,
                                  "missing": {t: why for t, why in peers.missing.items() if why}}
        for key, step in (
            ("http", lambda: _http(peers, plan, ctx.log, interp.version)),
            ("startup", lambda: _startup(peers, plan, ctx.log, interp.version)),
            ("importtime", lambda: _importtime(peers, plan, ctx.log)),
            ("instructions", lambda: _instructions(peers, plan, ctx.log, interp.version)),
        ):
            try:
                result[key] = step()
            except (ChildError, OSError, ValueError, KeyError) as exc:
                summary = getattr(exc, "summary", None) or repr(exc)
                ctx.log(f"Python {interp.version} {key}: FAILED: {summary}")
                result[key] = {"error": summary, "detail": str(exc)[-2000:]}
    return result


def _goals(version: str, r: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []
    tools = r.get("http", {}).get("tools", {})
    hostapp = tools.get("hostapp", {}).get("us_per_request")
    otel = [(t, tools[t]["us_per_request"]) for t in ("otel_simple", "otel_batch") if tools.get(t, {}).get(
        "us_per_request")]
    text = f"hostapp <= {GOAL_VS_OTEL}x OpenTelemetry's CPU per captured request"
    if hostapp and otel:
        cheaper, ref = min(otel, key=lambda item: item[1]["median"])
        ratio = _ratio(hostapp, ref)
        goals.append(goal(text, ratio, ratio is not None and ratio <= GOAL_VS_OTEL,
                          f"hostapp {hostapp['median']:+.0f} µs, {LABELS[cheaper]} {ref['median']:+.0f} µs: "
                          + (f"×{ratio:.2f}" if ratio is not None else "OTel added nothing measurable"),
                          python=version))
    else:
        goals.append(goal(text, None, None, _why(r, "http", tools, "hostapp", "otel_simple"), python=version))
    dd = tools.get("ddtrace", {}).get("us_per_request")
    text = "hostapp below ddtrace's CPU per captured request"
    if hostapp and dd:
        goals.append(goal(text, hostapp["median"] - dd["median"], hostapp["median"] < dd["median"],
                          f"hostapp {hostapp['median']:+.0f} µs, ddtrace {dd['median']:+.0f} µs", python=version))
    else:
        goals.append(goal(text, None, None, _why(r, "http", tools, "hostapp", "ddtrace"), python=version))
    ins = r.get("instructions", {})
    text = f"<= +{GOAL_INSTRUCTIONS / 1e6:.1f} M instructions per captured request (hostapp, all - no HTTP processor)"
    if "hostapp_captured_request" in ins:
        v = ins["hostapp_captured_request"]
        goals.append(goal(text, v, v <= GOAL_INSTRUCTIONS, f"+{v / 1e6:.2f} M", python=version))
    else:
        goals.append(goal(text, None, None, ins.get("error") or "; ".join(ins.get("errors", {}).values())
                          or "not measured", python=version))
    st = r.get("startup", {})
    stools = st.get("tools", {})
    for peer, limit in (("kolo", GOAL_STARTUP_VS_KOLO), ("otel", GOAL_STARTUP_VS_OTEL)):
        text = f"hostapp run of an empty program adds <= {limit}x the CPU {LABELS[peer]} adds"
        ratio = st.get("ratios", {}).get(f"hostapp_vs_{peer}")
        if ratio is not None:
            a, b = stools["hostapp"]["added_cpu_ms"]["median"], stools[peer]["added_cpu_ms"]["median"]
            goals.append(goal(text, ratio, ratio <= limit, f"hostapp {a:+.0f} ms, {LABELS[peer]} {b:+.0f} ms: "
                              f"×{ratio:.2f}", python=version))
        else:
            goals.append(goal(text, None, None, _why(r, "startup", stools, "hostapp", peer), python=version))
    return goals


def _why(r: dict[str, Any], part: str, tools: dict[str, Any], *names: str) -> str:
    """Why a comparison has no figure: the part's error, else each tool's."""
    if r.get(part, {}).get("error"):
        return r[part]["error"]
    reasons = [f"{LABELS[n]}: {tools.get(n, {}).get('missing') or tools.get(n, {}).get('error') or 'not measured'}"
               for n in names if not tools.get(n, {}).get("us_per_request" if part == "http" else "added_cpu_ms")]
    return "; ".join(reasons) or "not measured"


def _unavailable(entry: dict[str, Any]) -> str:
    return entry.get("missing") or entry.get("error") or "–"


def _tables(plan: Plan, results: dict[str, dict[str, Any]], goals: list[dict[str, Any]]) -> str:
    measured = {v: r for v, r in results.items() if "skipped" not in r}
    http_rows, startup_rows, instr_rows, config_rows = [], [], [], []
    imports: list[str] = []
    for r in measured.values():
        py = r["python"]
        http = r.get("http", {})
        for tool in HTTP_TOOLS:
            e = http.get("tools", {}).get(tool)
            if e is None:
                http_rows.append([py, LABELS[tool], http.get("error", "–"), "", "", "", ""])
            elif "cpu_ms" not in e:
                http_rows.append([py, LABELS[tool], _unavailable(e), "", "", "", ""])
            elif tool == "python":
                http_rows.append([py, "python (baseline: CPU ms)", f"{e['settled_ms']['median']:.0f} ms",
                                  f"{e['loop_ms']['median']:.0f} ms", f"{e['cpu_ms']['median']:.0f} ms", "", ""])
            else:
                ratio = http["ratios"].get(f"hostapp_vs_{tool}")
                http_rows.append([py, LABELS[tool], format_spread(e["us_per_request"], "{:+.0f}", " µs"),
                                  format_spread(e["loop_us_per_request"], "{:+.0f}", " µs"),
                                  format_spread(e["whole_us_per_request"], "{:+.0f}", " µs"),
                                  format_spread(e["startup_exit_ms"], "{:+.0f}", " ms"),
                                  f"×{ratio:.2f}" if ratio is not None else ""])
        st = r.get("startup", {})
        stools = st.get("tools", {})
        if "tools" not in st:
            startup_rows.append([py, st.get("error", "–"), "", "", "", "", "", ""])
        else:
            cells = []
            for tool in STARTUP_TOOLS:
                e = stools.get(tool, {})
                if tool == "python":
                    cells.append(f"{e['cpu_ms']['median']:.0f} ms" if "cpu_ms" in e else _unavailable(e))
                else:
                    cells.append(format_spread(e["added_cpu_ms"], "{:+.0f}", " ms") if "added_cpu_ms" in e
                                 else _unavailable(e))
            ratios = st["ratios"]
            startup_rows.append([py, *cells, *(f"×{ratios[k]:.2f}" if ratios.get(k) is not None else "–"
                                               for k in ("hostapp_vs_kolo", "hostapp_vs_otel"))])
        ins = r.get("instructions", {})
        if "per_request" not in ins:
            instr_rows.append([py, ins.get("error", "–"), *[""] * (len(INSTRUCTION_TOOLS) + 1)])
        else:
            per, added = ins["per_request"], ins.get("added_per_request", {})
            cells = []
            for tool in INSTRUCTION_TOOLS:
                if tool not in per:
                    cells.append(ins["errors"].get(tool, "–"))
                elif tool == "python":
                    cells.append(f"{per[tool] / 1e6:.2f} M")
                else:
                    cells.append(f"{per[tool] / 1e6:.2f} M (+{added[tool] / 1e6:.2f})" if tool in added
                                 else f"{per[tool] / 1e6:.2f} M")
            cap = ins.get("hostapp_captured_request")
            ratio = ins.get("hostapp_vs_otel_simple")
            instr_rows.append([py, *cells, f"+{cap / 1e6:.2f} M" if cap is not None else "–",
                               f"×{ratio:.2f}" if ratio is not None else "–"])
        versions = r.get("versions", {})
        config_rows.append([py, *(versions.get(d) or "not installed" for d in DISTS[2:])])
        imports += _import_lines(py, r.get("importtime", {}), plan)
    load = [x for r in measured.values() for part in ("http", "startup") for x in r.get(part, {}).get("loadavg", [])
            if x is not None]
    first = next(iter(measured.values()), {})
    lines = [
        f"CPU added per captured HTTP request over plain `python` in the same round "
        f"({first.get('http', {}).get('requests', plan.http_n)} `requests.Session().get` per run, "
        f"up to {plan.http_rounds} rounds after {plan.warmup} warm-up; µs per request, median [min–max] over the "
        f"rounds; the last column is hostapp's median over that peer's):",
        "",
        format_table(["Python", "tool", "requests + settle (judged)", "in the loop only", "whole process",
                      "start-up + exit added", "hostapp ÷ this"], http_rows),
        "",
        "Rounds measured: " + ", ".join(f"{r['python']}: {r.get('http', {}).get('rounds', 0)} (HTTP), "
                                        f"{r.get('startup', {}).get('rounds', 0)} (start-up)"
                                        for r in measured.values())
        + (f"; 1-minute load average before the rounds {min(load):.2f}–{max(load):.2f}." if load else "."),
        "",
        "Instructions per captured request (callgrind; per request, with the difference to plain `python` in "
        "brackets, millions):",
        "",
        format_table(["Python", *(LABELS[t] for t in INSTRUCTION_TOOLS), "hostapp captured (all − none)",
                      "hostapp ÷ OTel simple (added)"], instr_rows),
        "",
        "Fixed cost of start-up, empty program: CPU ms of `python`, and ms added by each tool (median [min–max]); "
        "ratios of the medians:",
        "",
        format_table(["Python", *(LABELS[t] for t in STARTUP_TOOLS), "hostapp ÷ Kolo", "hostapp ÷ OTel"],
                     startup_rows),
        "",
        *imports,
        "Peers' versions:",
        "",
        format_table(["Python", *DISTS[2:]], config_rows),
    ]
    skipped = {v: r["skipped"] for v, r in results.items() if "skipped" in r}
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"Python {v}: {why}" for v, why in skipped.items())]
    lines += ["", f"Reference (../shared/REFERENCE.md, 3.12): OpenTelemetry +{REFERENCE['opentelemetry_us_per_request']:.0f}"
              f" µs per request, ddtrace 4.16 +{REFERENCE['ddtrace_us_per_request']:.0f} µs.", "", *goal_lines(goals)]
    return "\n".join(lines)


def _import_lines(py: str, it: dict[str, Any], plan: Plan) -> list[str]:
    if "top" not in it:
        return [f"`hostapp run` import time on {py}: {it.get('error', 'not measured')}", ""]
    rows = [[str(i), f"`{row['module']}`", f"{row['cumulative_us'] / 1e3:.1f}", f"{row['self_us'] / 1e3:.1f}",
             f"`{row['parent']}`" if row["parent"] else "(top level)"] for i, row in enumerate(it["top"], 1)]
    notable = it["notable_cumulative_us"]
    present = ", ".join(f"{m} {us / 1e3:.1f} ms" for m, us in notable.items() if us is not None)
    absent = ", ".join(m for m, us in notable.items() if us is None)
    total = it.get("total_us")
    return [
        f"`hostapp run --quiet noop.py` imports on {py} (`-X importtime`, median of {it['runs']} run(s)): "
        f"{it['modules']} modules, {total / 1e3:.0f} ms in all (top-level cumulative). The {len(rows)} largest "
        "by cumulative time:" if total is not None else f"`hostapp run` imports on {py}:",
        "",
        format_table(["#", "module", "cumulative ms", "self ms", "imported by"], rows),
        "",
        f"Imported: {present or 'none of the notable modules'}. Not imported: {absent or '–'}.",
        "",
    ]


def _closed_port() -> socket.socket:
    """A 127.0.0.1 TCP socket bound but never listening: connections to it are refused,
    and no other process can take the port while it is held."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def run(ctx: SuiteContext) -> SuiteResult:
    """Run the peers suite (see the module docstring) and return its results."""
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    results: dict[str, dict[str, Any]] = {}
    goals: list[dict[str, Any]] = []
    found = interpreters(ctx.log)
    agent = _closed_port()
    agent_url = f"http://127.0.0.1:{agent.getsockname()[1]}"
    try:
        for interp in found:
            if interp.skipped is not None:
                results[interp.version] = {"skipped": interp.skipped}
                continue
            ctx.log(f"== Python {interp.full_version} ({interp.source}: {interp.python})")
            results[interp.version] = _measure(interp, plan, ctx, agent_url)
            goals += _goals(interp.version, results[interp.version])
    finally:
        agent.close()
    data: dict[str, Any] = {
        "units": {
            "us_per_request": "µs of CPU added per captured request over python in the same round, "
                              "(requests + settle); median, min, max over rounds",
            "*_ms": "milliseconds of CPU (user+sys) unless named wall",
            "per_request (instructions)": "instructions per request, (total(large) - total(small)) / (large - small)",
            "*_us (importtime)": "microseconds, -X importtime, median over runs",
            "ratios": "hostapp's median divided by the peer's median (pure numbers)",
            "samples": "raw per-round records, seconds",
        },
        "plan": {k: getattr(plan, k) for k in plan.__dataclass_fields__},
        "peer_configuration": {
            "hostapp": "hostapp run --quiet --json-summary FILE SCRIPT; every built-in processor; default sqlite store",
            "otel_simple": "SDK TracerProvider + SimpleSpanProcessor(InMemorySpanExporter()) + "
                           "RequestsInstrumentor().instrument(), set up in benchmarks/peers/_peer.py",
            "otel_batch": "the same with BatchSpanProcessor (defaults)",
            "ddtrace": "ddtrace-run python _peer.py ddtrace SCRIPT; DD_TRACE_ENABLED=true, DD_TRACE_AGENT_URL = a "
                       "refused 127.0.0.1 port; spans counted by a TraceFilter",
            "otel": "opentelemetry-instrument python SCRIPT; OTEL_TRACES_EXPORTER=console, OTEL_METRICS_EXPORTER=none, "
                    "OTEL_LOGS_EXPORTER=none",
            "kolo": "kolo run SCRIPT (defaults); a new trace in .kolo checked after each run",
        },
        "runs_on": [interp.label for interp in found],
        "goals_from_issue": {"hostapp_vs_otel_cpu_per_request": GOAL_VS_OTEL, "below_ddtrace": True,
                             "instructions_per_captured_request": GOAL_INSTRUCTIONS,
                             "startup_vs_kolo": GOAL_STARTUP_VS_KOLO, "startup_vs_otel": GOAL_STARTUP_VS_OTEL},
        "reference": REFERENCE,
        "pythons": results,
        "goals": goals,
    }
    return SuiteResult(data=data, table=_tables(plan, results, goals))
