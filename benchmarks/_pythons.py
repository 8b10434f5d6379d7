"""The Pythons a suite measures, their virtual environments, and clean child environments.

A suite that measures 3.11, 3.12 and 3.13 in one run (``tracing``, ``peers``, ``events``)
calls :func:`interpreters`: for each version of :data:`VERSIONS`, the current interpreter
for its own version; for the others the ``python`` of a venv built once under
``benchmarks/_work/venvs/X.Y`` from pyenv's newest ``X.Y.*`` (else ``pythonX.Y`` on
``PATH``) with ``pip install -e '.[test,bench,demo]'``, reused while ``pyproject.toml`` is
unchanged. ``BENCH_PYTHONS="3.12=/path/to/python,..."`` uses the given interpreters
instead (each must import this checkout's ``hostapp``). A version that cannot be found or
built is returned with ``skipped`` set to the reason; the suite reports it and goes on.

Also here: :func:`child_env` (this environment without the variables that would change
what a child measures) and :func:`callgrind_instructions` (instructions a command
executes, for the deterministic counts).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._common import BENCH_DIR, WORK_DIR, ChildError, run_child

__all__ = [
    "EXTRAS",
    "REPO",
    "VENVS",
    "VERSIONS",
    "WORKLOADS",
    "Interpreter",
    "callgrind_instructions",
    "child_env",
    "current_interpreter",
    "interpreters",
]

REPO = BENCH_DIR.parent
WORKLOADS = BENCH_DIR / "workloads"
VENVS = WORK_DIR / "venvs"
VERSIONS = ("3.11", "3.12", "3.13")
EXTRAS = ".[test,bench,demo]"

#: Environment variables that change what a child measures; removed from every child.
_DROP_ENV = ("PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONPROFILEIMPORTTIME", "PYTHONMALLOC",
             "PYTHONMALLOCSTATS", "PYTHONWARNINGS", "PYTHONBREAKPOINT", "COVERAGE_PROCESS_START",
             "KOLO", "KOLO_DISABLE")
#: Prefixes of variables that configure hostapp or a peer (each suite sets its own).
_DROP_PREFIXES = ("HOSTAPP_", "OTEL_", "DD_")


@dataclass(slots=True)
class Interpreter:
    """One Python to measure: its ``python`` and ``hostapp`` commands, or why it is skipped.

    Attributes:
        version: ``"3.12"``.
        python: the interpreter's path (not resolved: a venv's ``bin/python``).
        hostapp: the ``hostapp`` command (the console script next to ``python``).
        full_version: ``"3.12.1"``.
        source: where it came from (``current interpreter``, ``BENCH_PYTHONS``, the venv).
        skipped: why it is not measured, or ``None``.
    """

    version: str
    python: str | None = None
    hostapp: list[str] | None = field(default=None)
    full_version: str | None = None
    source: str = ""
    skipped: str | None = None

    def script(self, name: str) -> str | None:
        """The console script ``name`` installed next to ``python`` (``ddtrace-run``), or ``None``."""
        if self.python is None:
            return None
        path = Path(self.python).parent / name
        return str(path) if path.exists() else None

    @property
    def label(self) -> str:
        """``"Python 3.12.1 (benchmarks/_work/venvs/3.12)"``, or why it was skipped."""
        if self.skipped is not None:
            return f"Python {self.version}: skipped ({self.skipped})"
        return f"Python {self.full_version} ({self.source})"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``HOSTAPP_*``, ``OTEL_*``, ``DD_*`` and the
    variables of :data:`_DROP_ENV`, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES) and k not in _DROP_ENV}
    if extra:
        env.update(extra)
    return env


def _hostapp_command(python: str) -> list[str]:
    """The ``hostapp`` console script next to ``python`` (not resolving the venv symlink),
    else ``python -m hostapp``."""
    script = Path(python).parent / "hostapp"
    return [str(script)] if script.exists() else [python, "-m", "hostapp"]


def _probe(python: str) -> tuple[str, str]:
    """``(full version, hostapp location)`` of ``python``; raises ``RuntimeError`` if it
    cannot import this checkout's ``hostapp`` and ``requests``."""
    code = "import sys, hostapp, requests; print(sys.version.split()[0]); print(hostapp.__file__)"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120,
                              env=child_env(), cwd=tempfile.gettempdir())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{python}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{python} cannot import hostapp/requests: {last}")
    version, location = done.stdout.split()
    if not Path(location).resolve().is_relative_to(REPO / "src"):
        raise RuntimeError(f"{python} imports hostapp from {location}, not from this checkout ({REPO / 'src'})")
    return version, location


def _base_interpreter(version: str) -> str | None:
    """An interpreter of ``version`` (``"3.12"``) to build a venv from: pyenv's newest
    ``version.*``, else ``pythonX.Y`` on ``PATH``."""
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30).stdout.strip()
            bare = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            root, bare = "", ""
        found = []
        for name in bare.split():
            match = re.fullmatch(rf"{re.escape(version)}\.(\d+)", name)
            if match and root:
                candidate = Path(root) / "versions" / name / "bin" / "python"
                if candidate.exists():
                    found.append((int(match.group(1)), str(candidate)))
        if found:
            return max(found)[1]
    return shutil.which(f"python{version}")


def _stamp() -> str:
    """What a built venv must match to be reused: the project's dependencies."""
    return hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()


def _venv(version: str, log: Callable[[str], None]) -> str:
    """The ``python`` of ``benchmarks/_work/venvs/<version>``, built if missing or stale.

    Raises:
        RuntimeError: no interpreter for ``version``, or the venv cannot be built.
    """
    directory = VENVS / version
    python = directory / "bin" / "python"
    stamp = directory / ".bench-stamp"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == _stamp():
        return str(python)
    base = _base_interpreter(version)
    if base is None:
        raise RuntimeError(f"no Python {version} found (pyenv versions, python{version} on PATH)")
    log(f"building the Python {version} venv in {directory} from {base} (once; pip install -e '{EXTRAS}')")
    shutil.rmtree(directory, ignore_errors=True)
    steps = [
        [base, "-m", "venv", str(directory)],
        [str(python), "-m", "pip", "install", "--quiet", "-e", EXTRAS],
    ]
    for argv in steps:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=REPO)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{' '.join(argv[:4])}: {exc}") from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise RuntimeError(f"{' '.join(argv[:4])} failed: {last}")
    stamp.write_text(_stamp() + "\n")
    return str(python)


def current_interpreter() -> Interpreter:
    """The running Python as an :class:`Interpreter` (for one-off runs and the harness's tests).

    Raises:
        RuntimeError: it cannot import this checkout's ``hostapp`` and ``requests``.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    full_version, _ = _probe(sys.executable)
    return Interpreter(version, python=sys.executable, hostapp=_hostapp_command(sys.executable),
                       full_version=full_version, source="current interpreter")


def interpreters(log: Callable[[str], None]) -> list[Interpreter]:
    """The Pythons to measure (see the module docstring), one per version of :data:`VERSIONS`."""
    given: dict[str, str] = {}
    for item in filter(None, os.environ.get("BENCH_PYTHONS", "").split(",")):
        version, _, python = item.partition("=")
        given[version.strip()] = python.strip()
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    found: list[Interpreter] = []
    for version in VERSIONS:
        interp = Interpreter(version)
        try:
            if version in given:
                interp.python, interp.source = given[version], "BENCH_PYTHONS"
            elif version == current:
                interp.python, interp.source = sys.executable, "current interpreter"
            else:
                interp.python = _venv(version, log)
                interp.source = f"benchmarks/_work/venvs/{version}"
            interp.full_version, _ = _probe(interp.python)
            if not interp.full_version.startswith(version + "."):
                raise RuntimeError(f"{interp.python} is Python {interp.full_version}, not {version}")
            interp.hostapp = _hostapp_command(interp.python)
        except RuntimeError as exc:
            interp.skipped = str(exc)
            log(f"Python {version}: skipped: {exc}")
        found.append(interp)
    return found


def callgrind_instructions(
    argv: Sequence[str], out_dir: Path, *, env: Mapping[str, str], cwd: Path, timeout: float = 1800.0,
) -> int:
    """Instructions executed by ``argv`` (every thread) under ``valgrind --tool=callgrind``.

    Children the command starts or ``exec``s into (``ddtrace-run`` re-executes Python) are
    followed and counted, except the workloads' local HTTP server (``_localserver.py``).
    ``PYTHONHASHSEED=0`` makes the count repeatable. ``out_dir`` is emptied first.

    Raises:
        ChildError: valgrind is not installed, the command failed, or wrote no totals.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ChildError("valgrind is not installed")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    run_child(
        [valgrind, "--tool=callgrind", "--trace-children=yes", "--trace-children-skip-by-arg=*_localserver*",
         f"--callgrind-out-file={out_dir}/callgrind.%p", *argv],
        env={**env, "PYTHONHASHSEED": "0"}, cwd=cwd, timeout=timeout,
    )
    total, files = 0, 0
    for path in out_dir.glob("callgrind.*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                total += int(line.split()[1])
                files += 1
                break
    if not files:
        raise ChildError(f"callgrind wrote no totals line in {out_dir}")
    return total
