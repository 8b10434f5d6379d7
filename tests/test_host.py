"""The host: start/stop order from sync and async code, emit, get_host, failures."""

from __future__ import annotations

import asyncio
import threading

import pytest

import hostapp
from hostapp.errors import HostappError, MissingHookError
from hostapp.host import Host, get_host
from hostapp.lifecycle import PluginState
from hostapp.store import Store

hookimpl = hostapp.hookimpl


def config_for(tmp_path, **plugins):
    return {
        "plugins": {"autoload": False, "builtins": False, "modules": ["hostapp_plugins.sinks.sqlite"], **plugins},
        "store": {"path": str(tmp_path / "store.sqlite3")},
        "events": {"flush_interval_ms": 20},
    }


class Recorder:
    """Records every lifecycle hook it sees, with the thread it ran on."""

    def __init__(self):
        self.calls = []
        self.received = []

    def _note(self, name):
        self.calls.append(name)

    @hookimpl
    def hostapp_plugin_state(self, info):
        if info.name == "recorder":
            self._note(f"state:{info.state.value}")

    @hookimpl
    def hostapp_configure(self, config):
        self._note("configure")

    @hookimpl
    def hostapp_event_sinks(self):
        self._note("event_sinks")
        return hostapp.EventSink(
            name="recorder", handle=self.received.extend, event_types=("test.*",),
            open=lambda config: self._note("sink.open"), close=lambda: self._note("sink.close"),
        )

    @hookimpl
    async def hostapp_startup(self, host):
        await asyncio.sleep(0)
        self._note("startup")
        self.loop_thread = threading.current_thread().name

    @hookimpl
    def hostapp_shutdown(self, host):
        self._note("shutdown")
        host.emit("test.last", None, note="emitted during shutdown")


EXPECTED = [
    "state:discovered", "state:imported", "state:registered",
    "configure", "event_sinks", "sink.open", "startup", "state:started",
    "shutdown", "sink.close", "state:stopped",
]


def with_sinks_enabled(tmp_path):
    config = config_for(tmp_path)
    config["events"]["sinks"] = {"sqlite": {}, "recorder": {}}
    return config


def test_lifecycle_order_from_sync_code(tmp_path):
    recorder = Recorder()
    host = Host(with_sinks_enabled(tmp_path), plugins=[("recorder", recorder)], command=["test"])
    with host:
        assert get_host() is host
        assert host.state == "running"
        host.emit("test.event", "one", n=1)
        assert threading.current_thread() is threading.main_thread()
    assert recorder.calls == EXPECTED
    assert recorder.loop_thread == "hostapp-loop"
    assert [e.type for e in recorder.received] == ["test.event", "test.last"]
    assert host.state == "stopped"
    assert host.stop() == host.stats  # stop twice is harmless
    with pytest.raises(HostappError, match="no hostapp Host is running"):
        get_host()
    stats = host.stats["recorder"]
    assert stats["accepted"] == stats["delivered"] == 2


def test_lifecycle_order_from_async_code(tmp_path):
    recorder = Recorder()

    async def main():
        async with Host(with_sinks_enabled(tmp_path), plugins=[("recorder", recorder)]) as host:
            assert recorder.loop_thread == threading.current_thread().name
            host.emit("test.event", None, n=2)
        await host.astop()
        return host

    host = asyncio.run(main())
    assert recorder.calls == EXPECTED
    assert host.state == "stopped"


def test_events_reach_the_sqlite_store_with_the_run(tmp_path):
    with Host(config_for(tmp_path), command=["app.py", "--flag"]) as host:
        threads = [threading.Thread(target=lambda i=i: [host.emit("monitoring_event", "t", i=i, k=k) for k in range(500)])
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    store = Store(tmp_path / "store.sqlite3")
    try:
        events = store.events(run_id=host.run_id)
        assert len(events) == 2000
        assert {e.run_id for e in events} == {host.run_id}
        run = store.run(host.run_id)
        assert run.command == "app.py --flag" and run.ended_ns is not None
        assert run.summary["sinks"]["sqlite"]["delivered"] == 2000
    finally:
        store.close()


def test_a_plugin_failing_in_configure_is_marked_failed_and_the_host_goes_on(tmp_path):
    class Broken:
        @hookimpl
        def hostapp_configure(self, config):
            raise RuntimeError("cannot configure")

    recorder = Recorder()
    with Host(with_sinks_enabled(tmp_path), plugins=[("broken", Broken()), ("recorder", recorder)]) as host:
        info = host.pm.infos["broken"]
        assert info.state is PluginState.FAILED and info.stage == "configure"
        assert "cannot configure" in info.error
        assert host.pm.infos["recorder"].state is PluginState.STARTED
    assert "startup" in recorder.calls


def test_a_plugin_failing_in_configure_contributes_nothing(tmp_path):
    """Its sink, processor and task are not collected and its other hooks are not called;
    the other plugins run as usual."""
    calls = []

    class HalfBroken:
        @hookimpl
        def hostapp_configure(self, config):
            raise ValueError("plugins.config.half.level: expected an integer")

        @hookimpl
        def hostapp_event_sinks(self):
            return hostapp.EventSink(name="half", handle=calls.append)

        @hookimpl
        def hostapp_trace_processors(self):
            return hostapp.TraceProcessor(
                name="half", co_names=("x",), path_fragment="half", call_type="half_call", return_type="half_return",
            )

        @hookimpl
        def hostapp_background_tasks(self):
            return hostapp.BackgroundTask(name="half", run=lambda host, stop: calls.append("task"))

        @hookimpl
        def hostapp_startup(self, host):
            calls.append("startup")

        @hookimpl
        def hostapp_shutdown(self, host):
            calls.append("shutdown")

    recorder = Recorder()
    with Host(config_for(tmp_path), plugins=[("half", HalfBroken()), ("recorder", recorder)], tracing=True) as host:
        info = host.pm.infos["half"]
        assert (info.state, info.stage) == (PluginState.FAILED, "configure")
        assert info.error == "ValueError: plugins.config.half.level: expected an integer"
        assert sorted(c.name for c in host.sinks) == ["recorder", "sqlite"]  # on with its plugin, no table
        assert "half" not in [c.name for c in host.processors]
        assert "half" not in host.tasks
        host.emit("test.event", None)
    assert calls == []
    assert "startup" in recorder.calls and [e.type for e in recorder.received] == ["test.event", "test.last"]


def test_strict_mode_makes_a_startup_failure_fatal(tmp_path):
    class Broken:
        @hookimpl
        def hostapp_startup(self, host):
            raise RuntimeError("cannot start")

    host = Host(config_for(tmp_path), plugins=[("broken", Broken())], strict=True)
    with pytest.raises(hostapp.PluginLoadError, match="'broken'.*failed at start: RuntimeError: cannot start"):
        host.start()
    assert host.state == "failed"
    host.stop()


def test_required_hook_missing_refuses_to_start(tmp_path):
    class Specs:
        @hostapp.hookspec(required=True)
        def myapp_backend(self):
            """The storage backend."""

    host = Host(config_for(tmp_path))
    host.pm.add_hookspecs(Specs)
    with pytest.raises(MissingHookError, match="myapp_backend"):
        host.start()
    assert host.state == "failed"


def test_sync_start_inside_a_running_loop_is_refused(tmp_path):
    async def main():
        with pytest.raises(HostappError, match="await host.astart"):
            Host(config_for(tmp_path)).start()

    asyncio.run(main())


def test_emit_before_start_is_an_error(tmp_path):
    with pytest.raises(HostappError, match="not started"):
        Host(config_for(tmp_path)).emit("x")


def test_a_sink_that_cannot_open_marks_its_plugin_failed_and_keeps_its_events(tmp_path):
    class Unopenable:
        @hookimpl
        def hostapp_event_sinks(self):
            def refuse(config):
                raise ConnectionRefusedError("no route to the collector")

            return hostapp.EventSink(name="collector", handle=lambda events: None, open=refuse)

    config = config_for(tmp_path)
    config["events"]["sinks"] = {"sqlite": {}, "collector": {}}
    with Host(config, plugins=[("collector-plugin", Unopenable())]) as host:
        host.emit("monitoring_event", None, n=1)
        info = host.pm.infos["collector-plugin"]
        assert info.state is PluginState.FAILED and info.stage == "sink-open"
        assert "no route to the collector" in info.error
    assert host.stats["collector"]["dead_lettered"] == 1
    assert host.stats["sqlite"]["delivered"] == 1


SIGNAL_APP = """
import sys, time
from hostapp.host import Host, exit_on_signals
config = {"plugins": {"autoload": False, "builtins": False, "modules": ["hostapp_plugins.sinks.sqlite"]},
          "store": {"path": sys.argv[1]}, "events": {"flush_interval_ms": 20}}
with Host(config, command=["signal-app"]) as host, exit_on_signals():
    for i in range(100):
        host.emit("monitoring_event", None, i=i)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


@pytest.mark.parametrize(("signame", "status"), [("SIGTERM", 143), ("SIGINT", None)])
def test_a_signal_stops_the_host_in_order(tmp_path, signame, status):
    import signal
    import subprocess
    import sys

    script = tmp_path / "app.py"
    script.write_text(SIGNAL_APP)
    db = tmp_path / "store.sqlite3"
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(getattr(signal, signame))
    _, stderr = proc.communicate(timeout=30)
    if status is not None:
        assert proc.returncode == status, stderr
    else:
        assert "KeyboardInterrupt" in stderr
    store = Store(db)
    try:
        [run] = store.runs()
        assert run.ended_ns is not None  # the stop ran: run closed with the sinks' counters
        assert run.summary["sinks"]["sqlite"]["delivered"] == 100
        assert store.count_events(run_id=run.id) == 100
    finally:
        store.close()


def test_jsonl_and_logging_sinks_through_the_host(tmp_path, caplog):
    import json
    import logging

    config = config_for(tmp_path)
    config["plugins"]["modules"] += ["hostapp_plugins.sinks.jsonl", "hostapp_plugins.sinks.logging"]
    config["events"]["sinks"] = {
        "jsonl": {"directory": str(tmp_path / "jsonl"), "max_bytes": 2000},
        "logging": {"level": "WARNING"},
    }
    with caplog.at_level(logging.WARNING, logger="hostapp.events"):
        with Host(config) as host:
            for i in range(40):
                host.emit("monitoring_event", "tick", i=i)
    files = sorted((tmp_path / "jsonl").iterdir())
    names = {f.name for f in files}
    assert len(files) > 1 and {f"{host.run_id}.jsonl", f"{host.run_id}.1.jsonl"} <= names  # rotated by size
    assert all(f.stat().st_size <= 2000 for f in files)
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(line["data"]["i"] for line in lines) == list(range(40))
    assert {line["run_id"] for line in lines} == {host.run_id}
    records = [r for r in caplog.records if r.name == "hostapp.events"]
    assert len(records) == 40 and records[0].getMessage() == 'monitoring_event/tick {"i": 0}'
    assert records[0].hostapp_event.type == "monitoring_event"


def test_the_demo_example_stores_its_events(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "hello_host.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(tmp_path / ".cache")
    done = subprocess.run([sys.executable, str(example)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = subprocess.run([sys.executable, "-m", "hostapp", "events", "--last", "--jsonl"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [e["type"] for e in events] == ["monitoring_event"] * 5 + ["sending_event"]
    assert events[-1]["data"] == {"order_id": 42, "total_eur": 99.5}
