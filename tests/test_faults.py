"""The fault matrix: a plugin that raises or blocks at every stage, under ``hostapp run``.

Every cell is one real ``hostapp run`` of the same small program (``prog.py``) with one
plugin (``faulty``, a folder plugin) that misbehaves at one stage — raising ``Exception``,
``SystemExit`` or ``KeyboardInterrupt``, or blocking (``time.sleep``, inside ``async def``
too, which blocks the loop it runs on) — in its ``def`` and, where the stage has one, its
``async def`` form. Each cell asserts what ``docs/reliability.md`` promises:

* the host finished within its bounds (``host.start_timeout = 1``,
  ``host.shutdown_timeout = 3``; the check is "well within a minute", never a tight time);
* the program's stdout, its own stderr and its exit status are those of plain ``python``;
* the plugin is named (its name is in what the run printed);
* no accepted event is lost: the 20 events the program emits are in the store, and every
  sink's counters add up with nothing dropped (what a failing sink could not take is a
  dead letter).

The cells run concurrently (six at a time: most of their time is spent waiting on a
blocked plugin), each in a directory of its own, against real SQLite stores.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAULTS = ("exception", "systemexit", "keyboardinterrupt", "blocks")

PROGRAM = '''
import sys
import hostapp

try:
    host = hostapp.get_host()
except hostapp.HostappError:  # under plain python
    host = None

def work(i):
    return i * 2

total = 0
for i in range(20):
    total += work(i)
    if host is not None:
        host.emit("monitoring_event", "matrix", i=i)
print("total", total)
print("the program's own stderr", file=sys.stderr)
sys.exit(3)
'''

HEADER = '''
import sys
import threading
import time

import hostapp

FAULT = {fault!r}


def fault():
    if FAULT == "exception":
        raise RuntimeError("matrix fault")
    if FAULT == "systemexit":
        raise SystemExit(4)
    if FAULT == "keyboardinterrupt":
        raise KeyboardInterrupt
    if FAULT == "blocks":
        time.sleep(60)
'''

#: stage -> (flavours, plugin body, hostapp.toml additions). In the body, ``DEF`` is
#: ``def`` or ``async def`` and ``PAUSE`` an ``await asyncio.sleep(0)`` in the async form.
STAGES: dict[str, Any] = {
    "import": (("sync",), "fault()\n", ""),
    "configure": None,  # made by _hook_stage below
    "startup": None,
    "shutdown": None,
    "plugin_state": None,
    "event_sinks": (("sync", "async"), '''
        @hostapp.hookimpl
        DEF hostapp_event_sinks():
            PAUSE
            fault()
            return hostapp.EventSink(name="faulty", handle=lambda events: None)
    ''', "SINK"),
    "sink_open": (("sync", "async"), '''
        DEF sink_open(config):
            PAUSE
            fault()

        @hostapp.hookimpl
        def hostapp_event_sinks():
            return hostapp.EventSink(name="faulty", handle=lambda events: None, open=sink_open)
    ''', "SINK"),
    "sink_handle": (("sync", "async"), '''
        DEF sink_handle(events):
            PAUSE
            fault()

        @hostapp.hookimpl
        def hostapp_event_sinks():
            return hostapp.EventSink(name="faulty", handle=sink_handle)
    ''', "SINK"),
    "sink_close": (("sync", "async"), '''
        DEF sink_close():
            PAUSE
            fault()

        @hostapp.hookimpl
        def hostapp_event_sinks():
            return hostapp.EventSink(name="faulty", handle=lambda events: None, close=sink_close)
    ''', "SINK"),
    "driver_factory": (("sync", "async"), '''
        class Component:
            def connect(self):
                return True

        DEF factory(options):
            PAUSE
            fault()
            return Component()

        @hostapp.hookimpl
        def hostapp_drivers():
            return hostapp.DriverSpec(name="faulty", factory=factory)
    ''', "COMPONENT"),
    "driver_connect": None,  # made by _driver_stage below
    "driver_validate": None,
    "driver_close": None,
    "task_initialize": None,  # made by _task_stage below
    "task_run": (("sync", "async"), '''
        if FLAVOUR == "async":
            async def run(host):
                await asyncio.sleep(0)
                fault()
        else:
            def run(host, stop_event):
                fault()

        @hostapp.hookimpl
        def hostapp_background_tasks():
            return hostapp.BackgroundTask(name="faulty", run=run, restart="never", stop_timeout=0.5)
    ''', ""),
    "task_close": None,
    "processor_build_context": None,  # made by _processor_stage below
    "processor_call": None,
    "processor_process": None,
}



def _hook_stage(hook: str, argument: str) -> tuple[tuple[str, ...], str, str]:
    """An implementation of call hook ``hostapp_HOOK(ARGUMENT)`` that misbehaves."""
    return (("sync", "async"), f'''
        @hostapp.hookimpl
        DEF hostapp_{hook}({argument}):
            PAUSE
            fault()
    ''', "")


def _driver_stage(method: str) -> tuple[tuple[str, ...], str, str]:
    """A component whose ``connect``, ``validate`` or ``close`` misbehaves."""
    connects = "" if method == "connect" else "def connect(self):\n                return True\n\n            "
    return (("sync", "async"), f'''
        class Component:
            {connects}DEF {method}(self):
                PAUSE
                fault()

        @hostapp.hookimpl
        def hostapp_drivers():
            return hostapp.DriverSpec(name="faulty", factory=lambda options: Component())
    ''', "COMPONENT")


def _task_stage(field: str) -> tuple[tuple[str, ...], str, str]:
    """A background task whose ``initialize`` or ``close`` misbehaves (its ``run`` waits)."""
    return (("sync", "async"), f'''
        DEF {field}(host):
            PAUSE
            fault()

        def run_sync(host, stop_event):
            stop_event.wait()

        async def run_async(host):
            await asyncio.Event().wait()

        @hostapp.hookimpl
        def hostapp_background_tasks():
            run = run_async if FLAVOUR == "async" else run_sync
            return hostapp.BackgroundTask(name="faulty", run=run, {field}={field}, restart="never", stop_timeout=0.5)
    ''', "")


def _processor_stage(field: str, returns: str) -> tuple[tuple[str, ...], str, str]:
    """A trace processor of ``work`` in prog.py whose ``build_context``/``call``/``process`` misbehaves."""
    return (("sync",), f'''
        def {field}(*args):
            fault()
            return {returns}

        @hostapp.hookimpl
        def hostapp_trace_processors():
            return hostapp.TraceProcessor(
                name="faulty", co_names=("work",), path_fragment="prog.py", call_type="work_call",
                return_type="work_return", {field}={field},
            )
    ''', "")


STAGES.update({
    "configure": _hook_stage("configure", "config"),
    "startup": _hook_stage("startup", "host"),
    "shutdown": _hook_stage("shutdown", "host"),
    "plugin_state": _hook_stage("plugin_state", "info"),
    "driver_connect": _driver_stage("connect"),
    "driver_validate": _driver_stage("validate"),
    "driver_close": _driver_stage("close"),
    "task_initialize": _task_stage("initialize"),
    "task_close": _task_stage("close"),
    "processor_build_context": _processor_stage("build_context", "{}"),
    "processor_call": _processor_stage("call", "True"),
    "processor_process": _processor_stage("process", "{}"),
})

#: A processor's ``call``/``process`` runs in the program's own thread, inside the traced
#: call (Kolo's model): one that blocks blocks the program, as it would under Kolo. Those
#: two cells are left out (docs/reliability.md says so).
UNBOUNDABLE = {("processor_call", "blocks"), ("processor_process", "blocks")}

CONFIG = '''
[plugins]
paths = ["plugins"]

[host]
start_timeout = 1.0
shutdown_timeout = 3

[events]
flush_interval_ms = 20
'''

EXTRA = {
    "SINK": '''
[events.sinks.sqlite]

[events.sinks.faulty]
max_retries = 1
retry_backoff_ms = 1
''',
    "COMPONENT": '''
[components.faulty]
driver = "faulty"
''',
}


@dataclass(frozen=True)
class Cell:
    stage: str
    flavour: str
    fault: str

    @property
    def id(self) -> str:
        return f"{self.stage}-{self.flavour}-{self.fault}"


CELLS = [
    Cell(stage, flavour, fault)
    for stage, (flavours, _, _) in STAGES.items()
    for flavour in flavours
    for fault in FAULTS
    if (stage, fault) not in UNBOUNDABLE
]


def plugin_source(cell: Cell) -> str:
    _, body, _ = STAGES[cell.stage]
    body = textwrap.dedent(body)
    if cell.flavour == "async":
        body = body.replace("DEF ", "async def ").replace("PAUSE", "await asyncio.sleep(0)")
    else:
        body = body.replace("DEF ", "def ").replace("PAUSE", "pass")
    header = textwrap.dedent(HEADER).format(fault=cell.fault)
    if cell.flavour == "async" or "asyncio." in body:
        header = "import asyncio\n" + header
    return header + f"\nFLAVOUR = {cell.flavour!r}\n\n" + body


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON"))}
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    return env


@dataclass
class Result:
    cell: Cell
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    summary: dict[str, Any] | None
    stored: int


def run_cell(cell: Cell, root: Path) -> Result:
    where = root / cell.id
    (where / "plugins").mkdir(parents=True)
    (where / "plugins" / "faulty.py").write_text(plugin_source(cell))
    (where / "prog.py").write_text(PROGRAM)
    (where / "hostapp.toml").write_text(CONFIG + EXTRA.get(STAGES[cell.stage][2], ""))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "hostapp", "run", "--json-summary", "summary.json", "prog.py"],
        cwd=where, env=clean_env(where), capture_output=True, timeout=120,
    )
    seconds = time.monotonic() - started
    summary_file = where / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    stored = -1
    if summary is not None and summary.get("store"):
        con = sqlite3.connect(summary["store"])
        try:
            stored = con.execute(
                "SELECT count(*) FROM events WHERE run_id = ? AND type = 'monitoring_event' AND subtype = 'matrix'",
                (summary["run_id"],),
            ).fetchone()[0]
        finally:
            con.close()
    return Result(cell, done.returncode, done.stdout, done.stderr, seconds, summary, stored)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[bytes]:
    where = tmp_path_factory.mktemp("plain")
    (where / "prog.py").write_text(PROGRAM)
    return subprocess.run([sys.executable, "prog.py"], cwd=where, env=clean_env(where), capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Every selected cell, six at a time (most of a cell's time is a blocked plugin's)."""
    wanted = {
        item.callspec.params["cell"].id
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "cell" in item.callspec.params
    }
    cells = [cell for cell in CELLS if cell.id in wanted]
    root = tmp_path_factory.mktemp("matrix")
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        return {result.cell.id: result for result in pool.map(lambda c: run_cell(c, root), cells)}


def test_the_matrix_has_at_least_60_cells() -> None:
    assert len(CELLS) >= 60
    assert {c.fault for c in CELLS} == set(FAULTS)


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_cell(cell: Cell, matrix: dict[str, Result], baseline: subprocess.CompletedProcess[bytes]) -> None:
    result = matrix[cell.id]
    stderr = result.stderr.decode(errors="replace")
    assert result.seconds < 60, f"the host did not finish within its bounds: {result.seconds:.1f} s\n{stderr}"
    assert (result.returncode, result.stdout) == (baseline.returncode, baseline.stdout) == (3, b"total 380\n"), stderr
    assert result.stderr.startswith(baseline.stderr), stderr
    assert "faulty" in stderr[len(baseline.stderr.decode()):], f"the plugin is not named:\n{stderr}"
    summary = result.summary
    assert summary is not None, stderr
    assert result.stored == 20, f"the program's events are not all in the store:\n{stderr}"
    for name, stats in summary["sinks"].items():
        kept = stats["delivered"] + stats["dead_lettered"]
        assert (stats["accepted"], stats["dropped"]) == (kept, 0), f"sink {name!r} lost events: {stats}"
