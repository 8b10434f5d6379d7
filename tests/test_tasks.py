"""Background tasks: the spec, the supervisor (restart, backoff, intervals, stop, stuck
tasks) from sync and async code, the reports in the store, and ``hostapp tasks``.

Plugins are real modules written to ``tmp_path``; the store is a real SQLite file written
by the host's sqlite sink; the CLI runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import http.server
import importlib.util
import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import hostapp
from hostapp.host import Host
from hostapp.store import Store

_names = itertools.count()

MODES = ["with Host()", "async with Host()"]
KINDS = ["async", "sync"]


def config_for(tmp_path, **host):
    return {
        "plugins": {"autoload": False, "builtins": False, "modules": ["hostapp_plugins.sinks.sqlite"]},
        "store": {"path": str(tmp_path / "store.sqlite3")},
        "events": {"flush_interval_ms": 20},
        "host": host,
    }


def load_plugin(tmp_path: Path, source: str, **constants):
    """A real module from a file in tmp_path (unique name), with ``constants`` prepended."""
    name = f"task_plugin_{next(_names)}"
    path = tmp_path / f"{name}.py"
    head = "".join(f"{key} = {value!r}\n" for key, value in constants.items())
    path.write_text(head + textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def hosted(mode, config, plugins, until, *, timeout=15.0, after_stop=lambda: None):
    """Start a host (``with`` or ``async with``), wait until ``until(host)``, stop it, then
    call ``after_stop()`` (still inside ``asyncio.run``, whose end cancels what is left).

    Returns ``(host, seconds the stop took)``."""
    if mode == "with Host()":
        with Host(config, plugins=plugins, tracing=False) as host:
            deadline = time.monotonic() + timeout
            while not until(host):
                assert time.monotonic() < deadline, f"timed out; tasks: {host.tasks}"
                time.sleep(0.01)
            started = time.monotonic()
        seconds = time.monotonic() - started
        after_stop()
        return host, seconds

    async def main():
        async with Host(config, plugins=plugins, tracing=False) as host:
            deadline = time.monotonic() + timeout
            while not until(host):
                assert time.monotonic() < deadline, f"timed out; tasks: {host.tasks}"
                await asyncio.sleep(0.01)
            started = time.monotonic()
        seconds = time.monotonic() - started
        after_stop()
        return host, seconds

    return asyncio.run(main())


@pytest.fixture
def warnings_seen():
    """The hostapp logger's warnings (a handler of our own: the CLI may turn propagation off)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("hostapp")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def stored(tmp_path, host, event_type="background_task_failed"):
    with Store(tmp_path / "store.sqlite3") as store:
        return (
            store.events(run_id=host.run_id, type=event_type),
            {r.name: r for r in store.reports("task", host.run_id)},
            store.run(host.run_id),
        )


# -- the spec ------------------------------------------------------------------------------


def sync_run(host, stop_event):
    stop_event.wait()


async def async_run(host):
    await asyncio.sleep(1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"restart": "sometimes"}, r"BackgroundTask.restart: expected 'on-failure', 'always' or 'never'"),
        ({"backoff_initial": 0}, r"BackgroundTask.backoff_initial: expected a positive number"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, r"BackgroundTask.backoff_max: expected >= backoff_initial"),
        ({"jitter": 1.5}, r"BackgroundTask.jitter: expected a number from 0 to 1"),
        ({"interval": 0}, r"BackgroundTask.interval: expected a positive number"),
        ({"stop_timeout": -1}, r"BackgroundTask.stop_timeout: expected a positive number"),
        ({"max_restarts": -1}, r"BackgroundTask.max_restarts: expected None or an integer >= 0"),
        ({"max_restarts": True}, r"BackgroundTask.max_restarts"),
        ({"initialize": "nope"}, r"BackgroundTask.initialize: expected a callable"),
        ({"run": lambda host: None}, r"BackgroundTask.run: sync tasks are called as run\(host, stop_event\)"),
        ({"run": lambda: None}, r"BackgroundTask.run: sync tasks"),
        ({"name": " "}, r"BackgroundTask.name: expected a non-empty string"),
    ],
)
def test_bad_fields_are_errors_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        hostapp.BackgroundTask(**{"name": "t", "run": sync_run, **fields})


def test_an_async_run_must_take_host():
    async def no_args():
        pass

    with pytest.raises(ValueError, match=r"BackgroundTask.run: async tasks are called as async def run\(host\)"):
        hostapp.BackgroundTask(name="t", run=no_args)


def test_kind_and_defaults():
    class Callable:
        async def __call__(self, host):
            pass

    task = hostapp.BackgroundTask(name="t", run=sync_run)
    assert task.kind == "sync"
    assert (task.restart, task.backoff_initial, task.backoff_max, task.jitter) == ("on-failure", 1.0, 60.0, 0.0)
    assert (task.interval, task.stop_timeout, task.max_restarts) == (None, 5.0, None)
    assert hostapp.BackgroundTask(name="t", run=async_run).kind == "async"
    assert hostapp.BackgroundTask(name="t", run=Callable()).kind == "async"


# -- restart with backoff ------------------------------------------------------------------

FLAKY = """
import asyncio, threading, time
import hostapp

RUNS = []
THREADS = []

def note():
    RUNS.append(time.monotonic())
    THREADS.append(threading.current_thread().name)
    if len(RUNS) <= 2:
        raise RuntimeError(f"boom {len(RUNS)}")

async def run_async(host):
    note()
    await asyncio.sleep(60)  # cancelled at stop

def run_sync(host, stop_event):
    note()
    stop_event.wait()

@hostapp.hookimpl
def hostapp_background_tasks():
    run = run_async if KIND == "async" else run_sync
    return hostapp.BackgroundTask(name="flaky", run=run, backoff_initial=0.05, backoff_max=1.0)
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_task_that_raises_twice_is_restarted_with_backoff_and_then_runs(tmp_path, kind, mode, warnings_seen):
    plugin = load_plugin(tmp_path, FLAKY, KIND=kind)
    host, _ = hosted(mode, config_for(tmp_path), [plugin], lambda h: len(plugin.RUNS) >= 3)
    record = host.tasks["flaky"]
    assert (record.kind, record.state, record.runs, record.failures, record.restarts) == (kind, "stopped", 3, 2, 2)
    first, second, third = plugin.RUNS
    assert second - first >= 0.05  # backoff_initial
    assert third - second >= 0.1  # doubled
    if kind == "sync":
        assert set(plugin.THREADS) == {"hostapp-task-flaky"}
    else:
        assert "hostapp-task" not in plugin.THREADS[0]
    assert record.last_error == "RuntimeError: boom 2"
    assert 'raise RuntimeError(f"boom {len(RUNS)}")' in record.last_traceback
    assert "hostapp/tasks.py" not in record.last_traceback.replace(os.sep, "/")

    events, reports, run = stored(tmp_path, host)
    assert [e.data["error"] for e in events] == ["RuntimeError: boom 1", "RuntimeError: boom 2"]
    assert [e.subtype for e in events] == ["flaky", "flaky"]
    assert [e.data["next_retry_s"] for e in events] == [0.05, 0.1]
    assert [(e.data["attempt"], e.data["restarts"], e.data["phase"]) for e in events] == [(1, 0, "run"), (2, 1, "run")]
    assert all(e.data["plugin"] == plugin.__name__ and "Traceback" in e.data["traceback"] for e in events)
    assert reports["flaky"].state == "stopped"
    assert (reports["flaky"].data["restarts"], reports["flaky"].data["runs"]) == (2, 3)
    assert run.summary["tasks"]["flaky"] == {
        "state": "stopped", "runs": 3, "failures": 2, "restarts": 2, "skipped": 0,
        "last_error": "RuntimeError: boom 2",
    }
    messages = [r.getMessage() for r in warnings_seen]
    assert any("'flaky'" in m and "boom 1" in m and "restarting in 0.05 s" in m for m in messages)


ALWAYS_FAILING = """
import hostapp

RUNS = []

def run_sync(host, stop_event):
    RUNS.append(1)
    raise ValueError("never works")

async def run_async(host):
    run_sync(host, None)

@hostapp.hookimpl
def hostapp_background_tasks():
    return hostapp.BackgroundTask(
        name="broken", run=run_async if KIND == "async" else run_sync, restart=RESTART,
        max_restarts=MAX_RESTARTS, backoff_initial=0.01,
    )
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("restart", "max_restarts", "runs"), [("never", None, 1), ("on-failure", 2, 3)])
def test_a_task_that_gives_up_is_failed_and_reported(tmp_path, restart, max_restarts, runs, kind, mode):
    plugin = load_plugin(tmp_path, ALWAYS_FAILING, RESTART=restart, MAX_RESTARTS=max_restarts, KIND=kind)
    host, _ = hosted(mode, config_for(tmp_path), [plugin], lambda h: h.tasks["broken"].state == "failed")
    record = host.tasks["broken"]
    assert (record.state, record.runs, record.failures, record.restarts) == ("failed", runs, runs, runs - 1)
    assert len(plugin.RUNS) == runs
    events, reports, run = stored(tmp_path, host)
    assert len(events) == runs
    assert events[-1].data["next_retry_s"] is None and events[-1].data["state"] == "failed"
    assert reports["broken"].state == "failed"
    assert run.summary["tasks"]["broken"]["state"] == "failed"


RETURNING = """
import hostapp

RUNS = []
CLOSED = []

def run(host, stop_event):
    RUNS.append(1)

@hostapp.hookimpl
def hostapp_background_tasks():
    return hostapp.BackgroundTask(
        name="once", run=run, restart=RESTART, backoff_initial=0.02, close=lambda host: CLOSED.append(1),
    )
"""


def test_always_restarts_a_task_that_returns(tmp_path):
    plugin = load_plugin(tmp_path, RETURNING, RESTART="always")
    host, _ = hosted("async with Host()", config_for(tmp_path), [plugin], lambda h: h.tasks["once"].runs >= 3)
    record = host.tasks["once"]
    assert record.failures == 0 and record.restarts >= 2 and record.state == "stopped"
    assert plugin.CLOSED == [1]


def test_on_failure_lets_a_task_that_returns_finish(tmp_path):
    plugin = load_plugin(tmp_path, RETURNING, RESTART="on-failure")
    host, _ = hosted("with Host()", config_for(tmp_path), [plugin], lambda h: h.tasks["once"].state == "finished")
    assert (host.tasks["once"].runs, host.tasks["once"].restarts) == (1, 0)
    assert host.tasks["once"].state == "finished"  # stop leaves a finished task finished
    assert plugin.CLOSED == [1]
    _, reports, _ = stored(tmp_path, host)
    assert reports["once"].state == "finished"


CLOSE_FAILS = """
import asyncio
import hostapp

def close(host):
    raise OSError("cannot flush")

async def aclose(host):
    close(host)

def returns_a_coroutine(host, stop_event):  # a plain function: run in the thread
    return asyncio.sleep(0)

async def waits(host):
    await asyncio.Event().wait()

@hostapp.hookimpl
def hostapp_background_tasks():
    return [
        hostapp.BackgroundTask(name="closer", run=waits, close=aclose if KIND == "async" else close),
        hostapp.BackgroundTask(name="confused", run=returns_a_coroutine, restart="never"),
    ]
"""


@pytest.mark.parametrize("kind", KINDS)
def test_close_raising_and_a_sync_run_returning_a_coroutine_are_reported(tmp_path, kind):
    plugin = load_plugin(tmp_path, CLOSE_FAILS, KIND=kind)
    host, _ = hosted("async with Host()", config_for(tmp_path), [plugin],
                     lambda h: h.tasks["confused"].state == "failed")
    assert (host.tasks["closer"].state, host.tasks["closer"].last_error) == ("stopped", "OSError: cannot flush")
    confused = host.tasks["confused"]
    assert confused.last_error.startswith("TypeError: ") and "declare it with 'async def'" in confused.last_error
    events, _, _ = stored(tmp_path, host)
    assert sorted((e.subtype, e.data["phase"]) for e in events) == [("closer", "close"), ("confused", "run")]


LIFECYCLE = """
import asyncio, threading
import hostapp

CALLS = []

def initialize(host):
    CALLS.append(("initialize", threading.current_thread().name))
    if len(CALLS) == 1:
        raise ConnectionError("not yet")

async def ainitialize(host):
    initialize(host)

def close(host):
    CALLS.append(("close", threading.current_thread().name))

def run_sync(host, stop_event):
    CALLS.append(("run", threading.current_thread().name))
    stop_event.wait()

async def run_async(host):
    CALLS.append(("run", threading.current_thread().name))
    await asyncio.Event().wait()

@hostapp.hookimpl
def hostapp_background_tasks():
    return hostapp.BackgroundTask(
        name="svc", run=run_async if KIND == "async" else run_sync, backoff_initial=0.02,
        initialize=ainitialize if KIND == "async" else initialize, close=close,
    )
"""


@pytest.mark.parametrize("kind", KINDS)
def test_initialize_is_retried_like_run_and_close_is_called_once(tmp_path, kind):
    plugin = load_plugin(tmp_path, LIFECYCLE, KIND=kind)
    host, _ = hosted("with Host()", config_for(tmp_path), [plugin],
                     lambda h: any(c[0] == "run" for c in plugin.CALLS))
    assert [c[0] for c in plugin.CALLS] == ["initialize", "initialize", "run", "close"]
    record = host.tasks["svc"]
    assert (record.runs, record.failures, record.restarts, record.state) == (1, 1, 1, "stopped")
    assert record.last_error == "ConnectionError: not yet"
    if kind == "sync":  # plain initialize/close run in the task's own thread
        assert {c[1] for c in plugin.CALLS} == {"hostapp-task-svc"}
    events, _, _ = stored(tmp_path, host)
    assert [e.data["phase"] for e in events] == ["initialize"]


# -- periodic tasks ------------------------------------------------------------------------

PERIODIC = """
import asyncio, time
import hostapp

SPANS = []

def tick_sync(host, stop_event):
    started = time.monotonic()
    time.sleep(BODY)
    SPANS.append((started, time.monotonic()))

async def tick_async(host):
    started = time.monotonic()
    await asyncio.sleep(BODY)
    SPANS.append((started, time.monotonic()))

@hostapp.hookimpl
def hostapp_background_tasks():
    run = tick_async if KIND == "async" else tick_sync
    return hostapp.BackgroundTask(name="tick", run=run, interval=0.1, stop_timeout=2.0)
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_periodic_task_slower_than_its_interval_never_overlaps_itself(tmp_path, kind, mode):
    plugin = load_plugin(tmp_path, PERIODIC, KIND=kind, BODY=0.3)
    host, _ = hosted(mode, config_for(tmp_path), [plugin], lambda h: len(plugin.SPANS) >= 4)
    spans = sorted(plugin.SPANS)
    assert len(spans) >= 4
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"iterations overlap: {spans}"
    record = host.tasks["tick"]
    assert record.runs >= 4 and record.failures == 0 and record.state == "stopped"
    assert record.skipped >= 3  # at least one tick swallowed by each overrunning iteration


@pytest.mark.parametrize("kind", KINDS)
def test_a_periodic_task_runs_every_interval(tmp_path, kind):
    plugin = load_plugin(tmp_path, PERIODIC, KIND=kind, BODY=0.0)
    host, _ = hosted("with Host()", config_for(tmp_path), [plugin], lambda h: len(plugin.SPANS) >= 4)
    starts = [s for s, _ in plugin.SPANS]
    assert all(b - a >= 0.09 for a, b in zip(starts, starts[1:])), starts
    assert host.tasks["tick"].skipped == 0


# -- stopping, stuck tasks -----------------------------------------------------------------

STUBBORN = """
import asyncio, threading, time
import hostapp

STARTED = threading.Event()
RELEASE = threading.Event()
CANCELS = []

def run_sync(host, stop_event):
    STARTED.set()
    while not RELEASE.is_set():  # ignores stop_event
        time.sleep(0.02)

async def run_async(host):
    STARTED.set()
    while not RELEASE.is_set():
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:  # ignores cancellation
            CANCELS.append(1)

def quick(host, stop_event):
    stop_event.wait()

@hostapp.hookimpl
def hostapp_background_tasks():
    return [
        hostapp.BackgroundTask(name="stubborn", run=run_async if KIND == "async" else run_sync,
                               stop_timeout=STOP_TIMEOUT),
        hostapp.BackgroundTask(name="polite", run=quick),
    ]
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_task_that_ignores_its_stop_is_reported_stuck_and_does_not_hang_the_stop(
    tmp_path, kind, mode, warnings_seen
):
    plugin = load_plugin(tmp_path, STUBBORN, KIND=kind, STOP_TIMEOUT=0.2)
    try:
        host, stop_seconds = hosted(mode, config_for(tmp_path), [plugin], lambda h: plugin.STARTED.is_set(),
                                    after_stop=plugin.RELEASE.set)
    finally:
        plugin.RELEASE.set()
    assert stop_seconds < 5.0
    record = host.tasks["stubborn"]
    assert record.state == "stuck"
    assert record.last_error == "did not stop within 0.20 s (stop_timeout 0.2 s)"
    assert "run_" + kind in record.last_traceback  # where it was stuck
    assert host.tasks["polite"].state == "stopped"
    assert host.supervisor.stuck == ["stubborn"]
    if kind == "async":
        assert plugin.CANCELS  # it was cancelled, and ignored it
    events, reports, run = stored(tmp_path, host)
    assert [(e.subtype, e.data["phase"], e.data["state"]) for e in events] == [("stubborn", "stop", "stuck")]
    assert reports["stubborn"].state == "stuck" and reports["polite"].state == "stopped"
    assert run.summary["tasks"]["stubborn"]["state"] == "stuck"
    assert run.ended_ns is not None
    assert any("'stubborn'" in r.getMessage() and "did not stop" in r.getMessage() for r in warnings_seen)


def test_the_whole_stop_stays_within_shutdown_timeout(tmp_path):
    plugin = load_plugin(tmp_path, STUBBORN, KIND="sync", STOP_TIMEOUT=60.0)
    try:
        host, stop_seconds = hosted("with Host()", config_for(tmp_path, shutdown_timeout=1.0), [plugin],
                                    lambda h: plugin.STARTED.is_set())
    finally:
        plugin.RELEASE.set()
    assert stop_seconds < 5.0
    assert host.tasks["stubborn"].state == "stuck"
    assert host.state == "stopped"


# -- plugins and the host ------------------------------------------------------------------

BROKEN_SPEC = """
import hostapp

@hostapp.hookimpl
def hostapp_background_tasks():
    return hostapp.BackgroundTask(name="bad", run=lambda host: None)  # a sync run lacks stop_event
"""


def test_a_plugin_with_a_malformed_task_is_reported_and_the_others_run(tmp_path):
    bad = load_plugin(tmp_path, BROKEN_SPEC)
    good = load_plugin(tmp_path, FLAKY, KIND="sync")
    host, _ = hosted("with Host()", config_for(tmp_path), [bad, good], lambda h: len(good.RUNS) >= 3)
    assert list(host.tasks) == ["flaky"]
    errors = [e for e in host.pm.hook_errors if e.hook == "hostapp_background_tasks"]
    assert [e.plugin for e in errors] == [bad.__name__]
    assert "run(host, stop_event)" in errors[0].error


def test_tasks_start_after_startup_and_stop_before_shutdown(tmp_path):
    order = []

    class Plugin:
        @hostapp.hookimpl
        def hostapp_startup(self, host):
            order.append("startup")

        @hostapp.hookimpl
        def hostapp_shutdown(self, host):
            order.append(f"shutdown, task {host.tasks['probe'].state}")

        @hostapp.hookimpl
        def hostapp_background_tasks(self):
            async def run(host):
                order.append("task runs")
                await asyncio.sleep(60)

            return hostapp.BackgroundTask(name="probe", run=run)

    host, _ = hosted("with Host()", config_for(tmp_path), [("probe", Plugin())], lambda h: "task runs" in order)
    assert order == ["startup", "task runs", "shutdown, task stopped"]
    assert host.tasks["probe"].state == "stopped"


def test_a_host_without_tasks_has_none_in_its_summary(tmp_path):
    with Host(config_for(tmp_path), tracing=False) as host:
        assert host.tasks == {}
    _, reports, run = stored(tmp_path, host)
    assert reports == {} and "tasks" not in run.summary


# -- task threads are traced ---------------------------------------------------------------

FETCH = """
import threading, urllib.request
import hostapp

GO = threading.Event()
DONE = threading.Event()

def fetch(host, stop_event):
    GO.wait()
    with urllib.request.urlopen(URL) as response:
        response.read()
    DONE.set()
    stop_event.wait()

@hostapp.hookimpl
def hostapp_background_tasks():
    return hostapp.BackgroundTask(name="fetch", run=fetch)
"""


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def test_a_sync_task_thread_is_traced(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/from-task"
        plugin = load_plugin(tmp_path, FETCH, URL=url)
        config = config_for(tmp_path)
        config["plugins"]["modules"].append("hostapp_plugins.http.urllib")
        with Host(config, plugins=[plugin], tracing=True) as host:
            plugin.GO.set()
            assert plugin.DONE.wait(10)
    finally:
        server.shutdown()
        server.server_close()
    events, _, _ = stored(tmp_path, host, "outbound_http_request")
    assert [e.data["url"] for e in events] == [url]
    assert events[0].data["thread_name"] == "hostapp-task-fetch"


# -- hostapp tasks -------------------------------------------------------------------------

PROJECT_PLUGIN = FLAKY.replace("KIND ==", '"sync" ==')

APP = """
import pathlib, sys, time
import hostapp

host = hostapp.get_host()
deadline = time.monotonic() + 20
while host.tasks["flaky"].runs < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
release = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else None
while release is not None and not release.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
print("restarts", host.tasks["flaky"].restarts)
"""


def hostapp_cli(args, cwd, **kwargs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    return subprocess.run([sys.executable, "-m", "hostapp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "flaky_task.py").write_text(textwrap.dedent(PROJECT_PLUGIN))
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    # the built-in probes task is left out: these tests read the one task of the project
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\ndisable = ["tasks.probes"]\n')
    return tmp_path


def test_hostapp_tasks_shows_the_last_run_from_the_store(project):
    result = hostapp_cli(["run", "app.py"], project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "restarts 2\n"
    assert "background task 'flaky' (plugin 'flaky_task') failed in run: RuntimeError: boom 1" in result.stderr
    assert "task 'flaky' stopped: 3 run(s), 2 failure(s), 2 restart(s); last: RuntimeError: boom 2" in result.stderr

    listed = hostapp_cli(["tasks", "--json"], project)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["plugin"], row["kind"], row["state"]) == ("flaky", "flaky_task", "sync", "stopped")
    assert (row["runs"], row["failures"], row["restarts"], row["live"]) == (3, 2, 2, False)
    assert row["last_error"] == "RuntimeError: boom 2" and "boom" in row["last_traceback"]
    with Store(project / ".hostapp" / "hostapp.sqlite3") as store:
        assert row["run_id"] == store.last_run().id

    table = hostapp_cli(["tasks"], project)
    assert table.returncode == 0, table.stderr
    assert f"run {row['run_id']} (ended" in table.stdout
    assert "flaky" in table.stdout and "RuntimeError: boom 2" in table.stdout


def test_hostapp_tasks_shows_a_live_run(project):
    release = project / "release"
    proc = subprocess.Popen([sys.executable, "-m", "hostapp", "run", "-q", "app.py", str(release)], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        row = None
        while time.monotonic() < deadline:
            listed = hostapp_cli(["tasks", "--json"], project)
            rows = json.loads(listed.stdout) if listed.returncode == 0 and listed.stdout.strip() else []
            if rows and rows[0]["live"] and rows[0]["runs"] >= 3 and rows[0]["state"] == "running":
                row = rows[0]
                break
            time.sleep(0.1)
        assert row is not None, f"no live report: {listed.stdout} {listed.stderr}"
        assert row["restarts"] == 2 and row["failures"] == 2
        table = hostapp_cli(["tasks"], project)
        assert f"(live, pid {proc.pid})" in table.stdout
    finally:
        release.touch()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "restarts 2\n"


def test_hostapp_tasks_dry_listing(project):
    for args in (["tasks", "--json"], ["tasks", "--dry-run", "--json"]):  # no store yet; --dry-run
        listed = hostapp_cli(args, project)
        assert listed.returncode == 0, listed.stderr
        (row,) = json.loads(listed.stdout)
        assert (row["name"], row["state"], row["kind"], row["restart"]) == ("flaky", "not started", "sync", "on-failure")
        assert (row["stop_timeout"], row["interval"], row["run_id"], row["live"]) == (5.0, None, None, False)
    table = hostapp_cli(["tasks", "--dry-run"], project)
    assert "not started" in table.stdout and "flaky_task" in table.stdout


def test_hostapp_tasks_with_a_bad_config_exits_2(project):
    (project / "hostapp.toml").write_text("[plugins]\npaths = 3\n")
    result = hostapp_cli(["tasks"], project)
    assert result.returncode == 2
    assert result.stderr.startswith("hostapp: error:") and "plugins.paths" in result.stderr


# -- docs/background-tasks.md ----------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "background-tasks.md"


def doc_python_blocks():
    import re

    text = DOC.read_text(encoding="utf-8")
    return [
        (text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1], m[1])
        for m in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S)
    ]


def test_the_doc_python_blocks_compile():
    found = doc_python_blocks()
    assert len(found) >= 4
    for _, text in found:
        compile(text, str(DOC), "exec")


def test_the_complete_example_plugin_of_the_doc_runs(tmp_path, monkeypatch):
    (source,) = [text for label, text in doc_python_blocks() if label == "**`plugins/housekeeping.py`**"]
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "housekeeping.py").write_text(source)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "old.tmp").write_text("x")
    os.utime(spool / "old.tmp", (time.time() - 7200, time.time() - 7200))
    (spool / "fresh.tmp").write_text("x")
    monkeypatch.setenv("HOUSEKEEPING_SPOOL", str(spool))
    config = config_for(tmp_path)
    config["plugins"]["paths"] = [str(tmp_path / "plugins")]
    host, _ = hosted("with Host()", config, [],
                     lambda h: h.tasks["purge-spool"].state == "waiting" and h.tasks["heartbeat"].runs == 1)
    assert sorted(p.name for p in spool.iterdir()) == ["fresh.tmp"]
    assert {name: (r.kind, r.state) for name, r in host.tasks.items()} == {
        "heartbeat": ("async", "stopped"), "purge-spool": ("sync", "stopped"),
    }
    events, _, _ = stored(tmp_path, host, "monitoring_event")
    assert {e.subtype for e in events} == {"heartbeat", "spool_purged"}
    assert [e.data["file"] for e in events if e.subtype == "spool_purged"] == ["old.tmp"]


class RatesClient:
    """The stand-in the migration example's ``RatesClient`` name resolves to."""

    made: list[RatesClient] = []

    def __init__(self, url):
        self.url, self.refreshed, self.closed = url, 0, False
        RatesClient.made.append(self)

    def refresh(self):
        self.refreshed += 1

    def close(self):
        self.closed = True


def test_the_migrated_luna_plugin_of_the_doc_runs(tmp_path):
    (source,) = [text for _, text in doc_python_blocks()
                 if "class RatesRefresher:" in text and "hostapp_background_tasks" in text]
    namespace = {"RatesClient": RatesClient, "__name__": "rates_doc"}
    exec(compile(source, str(DOC), "exec"), namespace)
    config = config_for(tmp_path)
    config["plugins"]["config"] = {"rates": {"rates_url": "http://127.0.0.1:9/rates"}}
    RatesClient.made.clear()
    host, _ = hosted("with Host()", config, [("rates", namespace["RatesRefresher"]())],
                     lambda h: h.tasks["rates"].state == "waiting")
    (client,) = RatesClient.made
    assert (client.url, client.refreshed, client.closed) == ("http://127.0.0.1:9/rates", 1, True)
    record = host.tasks["rates"]
    assert (record.kind, record.interval, record.state) == ("sync", 300.0, "stopped")
