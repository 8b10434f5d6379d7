"""``hostapp runs``, ``events``, ``events --dead-letters``, ``events redeliver``, ``sinks``
— run as subprocesses on a real store written by a real host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

FLAKY_SINK = textwrap.dedent('''
    import os, pathlib
    import hostapp

    def handle(events):
        if not pathlib.Path(os.environ["FLAKY_OK"]).exists():
            raise ConnectionError("downstream is down")
        with open(os.environ["FLAKY_OUT"], "a") as out:
            for event in events:
                out.write(event.id + "\\n")

    @hostapp.hookimpl
    def hostapp_event_sinks():
        return hostapp.EventSink(name="flaky", handle=handle, event_types=("monitoring_event",))
''')

APP = textwrap.dedent('''
    import sys
    from hostapp.host import Host
    with Host(command=sys.argv) as host:
        for i in range(30):
            host.emit("monitoring_event", "tick", i=i)
        host.emit("other_event", None, note="only sqlite takes it")
''')


def run(args, cwd, env=None, module=("-m", "hostapp")):
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    full["XDG_CACHE_HOME"] = str(cwd / ".cache")
    full.update(env or {})
    return subprocess.run([sys.executable, *module, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "flaky.py").write_text(FLAKY_SINK)
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "hostapp.toml").write_text(textwrap.dedent('''
        [plugins]
        paths = ["plugins"]
        [events]
        max_retries = 1
        retry_backoff_ms = 1
        flush_interval_ms = 10
        [events.sinks.flaky]
    '''))
    env = {"FLAKY_OK": str(tmp_path / "ok"), "FLAKY_OUT": str(tmp_path / "delivered.txt")}
    result = run(["app.py", "x"], tmp_path, env, module=())
    assert result.returncode == 0, result.stderr
    return tmp_path, env


def test_runs_and_events(project):
    root, env = project
    runs = [json.loads(line) for line in run(["runs", "--jsonl"], root, env).stdout.splitlines()]
    assert len(runs) == 1 and runs[0]["command"] == "app.py x" and runs[0]["events"] == 31
    events = [json.loads(line) for line in run(["events", "--last", "--jsonl"], root, env).stdout.splitlines()]
    assert len(events) == 31 and events[0]["data"] == {"i": 0} and events[0]["run_id"] == runs[0]["id"]
    typed = run(["events", "--run", runs[0]["id"], "--type", "other_event", "--jsonl"], root, env)
    assert [json.loads(line)["data"]["note"] for line in typed.stdout.splitlines()] == ["only sqlite takes it"]
    limited = run(["events", "--limit", "5"], root, env)
    assert limited.returncode == 0 and "showing the newest 5 of 31 events" in limited.stderr
    assert "monitor   " in run(["events", "--since", "1h"], root, env).stdout  # the renderer's label
    bad = run(["events", "--since", "yesterday-ish"], root, env)
    assert bad.returncode == 2 and "--since 'yesterday-ish'" in bad.stderr
    assert "no store at" in run(["events", "--db", str(root / "none.sqlite3")], root, env).stderr


def test_dead_letters_sinks_and_redeliver(project):
    root, env = project
    letters = [json.loads(line) for line in run(["events", "--dead-letters", "--jsonl"], root, env).stdout.splitlines()]
    assert len(letters) == 30 and {d["sink"] for d in letters} == {"flaky"}
    assert letters[0]["error"] == "ConnectionError: downstream is down"

    sinks = {row["name"]: row for row in json.loads(run(["sinks", "--json"], root, env).stdout)}
    flaky = sinks["flaky"]
    assert flaky["enabled"] and flaky["dead_letters"] == 30 and flaky["plugin"] == "flaky"
    counters = flaky["counters"]
    assert counters["accepted"] == 30 and counters["dead_lettered"] == 30 and counters["delivered"] == 0
    assert sinks["sqlite"]["counters"]["delivered"] == 31
    assert sinks["jsonl"]["enabled"] is False

    still_down = run(["events", "redeliver"], root, env)
    assert still_down.returncode == 1 and "flaky: 0 redelivered" in still_down.stdout

    (root / "ok").write_text("up")
    result = run(["events", "redeliver", "--sink", "flaky"], root, env)
    assert result.returncode == 0, result.stderr
    assert "flaky: 30 redelivered" in result.stdout
    assert "no plugin contributes" not in still_down.stderr + result.stderr  # sqlite is configured, not missing
    delivered = (root / "delivered.txt").read_text().split()
    assert sorted(delivered) == sorted(d["event"]["id"] for d in letters)
    assert run(["events", "--dead-letters"], root, env).stdout.strip() == "No dead letters."
