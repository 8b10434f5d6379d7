"""Shared helpers for the benchmark suites: child processes, paired runs, medians, JSON.

Units, everywhere in this module: times are in **seconds** (``*_s``) as floats; helpers that
format for humans convert to ms or µs and say so in their name. A *ratio* is a pure number
(A divided by B of the same pair).

Measurement model used by the process-level benchmarks:

* :func:`run_child` starts one child process and reaps it with :func:`os.wait4`, which
  returns that child's own resource usage. ``cpu_s`` = user + system CPU seconds of the
  child (and of any grandchildren it waited for); ``wall_s`` = wall-clock seconds from
  just before spawning to just after reaping (includes the fork/exec cost).
* :func:`paired_runs` runs A and B alternately (A B A B ...): one warm-up pair that is
  discarded, then ``pairs`` measured pairs. The reported figure is the **median of the
  per-pair ratios** A/B with its [min–max], which cancels most of the slow drift of a
  shared machine (other processes, CPU frequency) that would skew two separate medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "RESULTS_DIR",
    "WORK_DIR",
    "ChildError",
    "ChildResult",
    "PairedResult",
    "SuiteContext",
    "SuiteResult",
    "environment_info",
    "format_spread",
    "format_table",
    "goal",
    "goal_lines",
    "loadavg",
    "median",
    "paired_runs",
    "run_child",
    "spread",
    "write_json",
]

#: The ``benchmarks/`` directory.
BENCH_DIR: Path = Path(__file__).resolve().parent
#: Where suites write ``<suite>.json``.
RESULTS_DIR: Path = BENCH_DIR / "results"
#: Generated fixtures (site dirs, caches); gitignored.
WORK_DIR: Path = BENCH_DIR / "_work"


# --------------------------------------------------------------------------------------
# Suite plumbing
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class SuiteContext:
    """What the runner hands to a suite's ``run(ctx)``.

    Attributes:
        name: the suite's name (``"discovery"``).
        quick: smoke run: fewer repeats/sizes; numbers are indicative only.
        work_dir: a private scratch directory, ``benchmarks/_work/<name>`` (created).
        log: progress printer (writes to stderr); never part of the results.
    """

    name: str
    quick: bool
    work_dir: Path
    log: Callable[[str], None]


@dataclass(slots=True)
class SuiteResult:
    """What a suite's ``run(ctx)`` returns.

    Attributes:
        data: JSON-serialisable results (raw samples, medians, ratios, goals). The runner
            adds an ``environment`` block (python version, platform, date) and writes it to
            ``benchmarks/results/<suite>.json``.
        table: a short human-readable summary, printed by the runner.
    """

    data: dict[str, Any]
    table: str


def environment_info() -> dict[str, Any]:
    """Python version, platform, CPU count, package versions and the UTC date of this run."""
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "python_full": sys.version,
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        pass
    versions: dict[str, str | None] = {}
    from importlib import metadata

    for dist in ("hostapp", "pluggy", "stevedore", "importlib_metadata"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    info["packages"] = versions
    return info


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (same unit as the values). Raises ``ValueError`` if empty."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "min", "max"}`` of ``values`` (same unit as the values)."""
    return {"median": median(values), "min": float(min(values)), "max": float(max(values))}


# --------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------


class ChildError(RuntimeError):
    """A measured child process exited with a non-zero status (or produced wrong output).

    Attributes:
        summary: one line saying what went wrong (the last line of the child's stderr).
    """

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary or message.strip().splitlines()[-1]


@dataclass(slots=True)
class ChildResult:
    """One finished child process.

    Attributes:
        cpu_s: user + system CPU time of the child, seconds (from ``os.wait4`` rusage).
        wall_s: wall-clock time from spawn to reap, seconds.
        returncode: exit status (negative = killed by that signal).
        stdout, stderr: what the child wrote (decoded, replacement on bad bytes).
        user_s, sys_s: the two parts of ``cpu_s``, seconds.
        maxrss_kb: peak resident set size of the child, kB (Linux units).
    """

    cpu_s: float
    wall_s: float
    returncode: int
    stdout: str
    stderr: str
    user_s: float
    sys_s: float
    maxrss_kb: int


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> ChildResult:
    """Run ``argv`` to completion and return its CPU and wall time (seconds).

    stdout/stderr go to anonymous temporary files (no pipes, so the child can never block
    on a full pipe and the parent does no reading while it runs). The child is reaped with
    :func:`os.wait4` so its rusage is exactly this child's, not the sum over all children.
    A child still running after ``timeout`` seconds is killed (by a timer thread, so the
    parent does not poll).

    Raises:
        ChildError: ``check`` is true and the child exited non-zero (stderr included), or
            it ran longer than ``timeout`` (whatever ``check`` says).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        timer = threading.Timer(timeout, proc.kill) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            while True:
                try:
                    _pid, status, usage = os.wait4(proc.pid, 0)
                    break
                except InterruptedError:  # pragma: no cover - PEP 475 retries already
                    continue
        finally:
            if timer is not None:
                timer.cancel()
        wall = time.perf_counter() - t0
        if timeout is not None and wall >= timeout:
            raise ChildError(f"child ran longer than {timeout:.0f} s and was killed: {' '.join(map(str, argv))[:300]}",
                             summary=f"timed out after {timeout:.0f} s")
        returncode = os.waitstatus_to_exitcode(status)
        proc.returncode = returncode  # reaped here: stop Popen from waiting again
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    result = ChildResult(
        cpu_s=usage.ru_utime + usage.ru_stime,
        wall_s=wall,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
    )
    if check and returncode != 0:
        lines = stderr.strip().splitlines()
        raise ChildError(
            f"child exited with {returncode}: {' '.join(map(str, argv))[:300]}\n{stderr[-3000:]}",
            summary=lines[-1] if lines else f"exit status {returncode}",
        )
    return result


# --------------------------------------------------------------------------------------
# Paired alternating runs
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class PairedResult:
    """Samples and ratios of A/B paired alternating runs (warm-up pair excluded).

    All ``*_s`` lists are seconds, index ``i`` of A and of B belong to the same pair.
    ``cpu_ratios[i] = a_cpu_s[i] / b_cpu_s[i]`` (likewise for wall).
    """

    a_cpu_s: list[float] = field(default_factory=list)
    a_wall_s: list[float] = field(default_factory=list)
    b_cpu_s: list[float] = field(default_factory=list)
    b_wall_s: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    wall_ratios: list[float] = field(default_factory=list)
    warmup_pairs: int = 0

    @property
    def cpu_ratio(self) -> dict[str, float]:
        """Median of the per-pair CPU ratios A/B with min and max (pure numbers)."""
        return spread(self.cpu_ratios)

    @property
    def wall_ratio(self) -> dict[str, float]:
        """Median of the per-pair wall ratios A/B with min and max (pure numbers)."""
        return spread(self.wall_ratios)

    def to_json(self, a: str = "a", b: str = "b") -> dict[str, Any]:
        """JSON form: raw samples (s), medians (ms) and ratio summaries.

        ``a``/``b`` name the two sides in the keys (e.g. ``"method"``/``"floor"`` gives
        ``method_cpu_ms_median``, ``samples.floor_cpu_s``, ...).
        """
        return {
            "pairs": len(self.cpu_ratios),
            "warmup_pairs": self.warmup_pairs,
            f"{a}_cpu_ms_median": median(self.a_cpu_s) * 1e3,
            f"{a}_wall_ms_median": median(self.a_wall_s) * 1e3,
            f"{b}_cpu_ms_median": median(self.b_cpu_s) * 1e3,
            f"{b}_wall_ms_median": median(self.b_wall_s) * 1e3,
            "cpu_ratio": self.cpu_ratio,
            "wall_ratio": self.wall_ratio,
            "samples": {
                f"{a}_cpu_s": self.a_cpu_s,
                f"{a}_wall_s": self.a_wall_s,
                f"{b}_cpu_s": self.b_cpu_s,
                f"{b}_wall_s": self.b_wall_s,
                "cpu_ratios": self.cpu_ratios,
                "wall_ratios": self.wall_ratios,
            },
        }


def paired_runs(
    run_a: Callable[[], ChildResult],
    run_b: Callable[[], ChildResult],
    *,
    pairs: int = 5,
    warmup: int = 1,
    min_pairs: int = 5,
) -> PairedResult:
    """Run A B A B ...: ``warmup`` discarded pairs, then ``pairs`` measured pairs.

    ``run_a``/``run_b`` each start one child and return its :class:`ChildResult`; any
    untimed preparation (e.g. emptying a cache dir) belongs inside them *before* they call
    :func:`run_child`. ``pairs`` below ``min_pairs`` is raised to ``min_pairs`` (pass
    ``min_pairs=1`` for a deliberately tiny smoke run).
    """
    pairs = max(pairs, min_pairs)
    res = PairedResult(warmup_pairs=warmup)
    for _ in range(warmup):
        run_a()
        run_b()
    for _ in range(pairs):
        a = run_a()
        b = run_b()
        res.a_cpu_s.append(a.cpu_s)
        res.a_wall_s.append(a.wall_s)
        res.b_cpu_s.append(b.cpu_s)
        res.b_wall_s.append(b.wall_s)
        res.cpu_ratios.append(a.cpu_s / b.cpu_s if b.cpu_s > 0 else float("nan"))
        res.wall_ratios.append(a.wall_s / b.wall_s if b.wall_s > 0 else float("nan"))
    return res


# --------------------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-markdown table (also readable as plain text) of pre-formatted cells."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def format_spread(s: Mapping[str, float] | None, fmt: str = "{:.2f}", unit: str = "") -> str:
    """``"12.3 µs [10.1–20.4]"`` from a :func:`spread` dict (``"–"`` for none)."""
    if not s:
        return "–"
    return f"{fmt.format(s['median'])}{unit} [{fmt.format(s['min'])}–{fmt.format(s['max'])}]"


# --------------------------------------------------------------------------------------
# Goals
# --------------------------------------------------------------------------------------


def goal(text: str, value: float | None, met: bool | None, detail: str, **where: Any) -> dict[str, Any]:
    """One goal's verdict for the results JSON: ``met`` is ``None`` when it was not measured
    (``detail`` then says why). ``where`` names the case (``python="3.12"``)."""
    return {**where, "goal": text, "value": value, "met": met, "detail": detail}


def goal_lines(goals: Sequence[Mapping[str, Any]]) -> list[str]:
    """``Goals:`` and one line per goal: ``[MET]``, ``[NOT MET]`` or ``[NOT MEASURED]``."""
    lines = ["Goals:"]
    for g in goals:
        state = "MET" if g["met"] else ("NOT MEASURED" if g["met"] is None else "NOT MET")
        where = f"Python {g['python']}: " if g.get("python") else ""
        lines.append(f"  [{state}] {where}{g['goal']}: {g['detail']}")
    return lines


def loadavg() -> float | None:
    """The 1-minute load average now (``None`` where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return None
