"""``hostapp components`` and ``hostapp run`` with components, as subprocesses on a real
project: a plugin folder with a driver whose ``connect()`` raises, and the built-in sqlite
driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

FLAKY_DRIVER = textwrap.dedent('''
    import hostapp

    class Flaky:
        def __init__(self, options):
            self.where = options["where"]

        async def connect(self):
            raise ConnectionError(f"cannot reach {self.where}")

    @hostapp.hookimpl
    def hostapp_drivers():
        return hostapp.DriverSpec(name="flaky", factory=Flaky, description="never connects")
''')

APP = textwrap.dedent('''
    import hostapp
    host = hostapp.get_host()
    host.component("db").execute("CREATE TABLE IF NOT EXISTS seen (n)")
    print("db rows:", host.component("db").execute("SELECT count(*) FROM seen"))
''')

LONG_RUNNING = textwrap.dedent('''
    import pathlib, sys, time
    from hostapp.host import Host
    with Host(command=sys.argv) as host:
        pathlib.Path("started").write_text(host.run_id)
        deadline = time.monotonic() + 60
        while not pathlib.Path("stop").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
''')


def toml(load="auto", driver="flaky", extra=""):
    return textwrap.dedent(f'''
        [plugins]
        paths = ["plugins"]
        [components.x]
        driver = "{driver}"
        load = "{load}"
        options = {{ where = "db.example:5432" }}
        [components.db]
        driver = "sqlite"
        options = {{ path = "var/app.sqlite3" }}
    ''') + extra


def run(args, cwd, module=("-m", "hostapp")):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    return subprocess.run([sys.executable, *module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "flaky_db.py").write_text(FLAKY_DRIVER)
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "hostapp.toml").write_text(toml())
    return tmp_path


def test_auto_component_that_cannot_connect_the_host_runs_and_components_shows_it(project):
    result = run(["run", "app.py"], project)
    assert result.returncode == 0, result.stderr
    assert "db rows: [(0,)]" in result.stdout
    assert "component 'x' (driver 'flaky', plugin 'flaky_db') is unavailable" in result.stderr
    runs = [json.loads(line) for line in run(["runs", "--jsonl"], project).stdout.splitlines()]

    listed = run(["components", "--json"], project)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    x = rows["x"]
    assert (x["state"], x["driver"], x["plugin"], x["load"], x["stage"]) == ("unavailable", "flaky", "flaky_db", "auto", "connect")
    assert x["error"] == "ConnectionError: cannot reach db.example:5432"
    assert (x["source"], x["live"], x["run_id"]) == ("report", False, runs[0]["id"])
    assert rows["db"]["state"] == "closed" and rows["db"]["health"]["ok"] is True

    table = run(["components"], project)
    assert table.returncode == 0
    assert f"run {runs[0]['id']} (ended)" in table.stdout
    assert "ConnectionError: cannot reach db.example:5432" in table.stdout and "unavailable" in table.stdout


def test_required_component_that_cannot_connect_refuses_to_start(project):
    (project / "hostapp.toml").write_text(toml(load="yes"))
    result = run(["run", "app.py"], project)
    assert result.returncode == 1
    assert result.stdout == ""  # the program never ran
    assert result.stderr.splitlines() == [
        "hostapp: error: component 'x' (driver 'flaky', plugin 'flaky_db') is unavailable: "
        'ConnectionError: cannot reach db.example:5432 (load = "yes")'
    ]
    # the same from a program of one's own: Host.start() raises ComponentError
    (project / "own.py").write_text(
        "import hostapp\ntry:\n    hostapp.Host().start()\nexcept hostapp.ComponentError as e:\n"
        "    raise SystemExit(f'{e.component}: {e.state}')\n"
    )
    own = run(["own.py"], project, module=())
    assert (own.returncode, own.stderr.strip()) == (1, "x: unavailable")


def test_unknown_driver_and_bad_keys_exit_2_with_one_line(project):
    (project / "hostapp.toml").write_text(toml(driver="flakey"))
    expected = ["hostapp: error: hostapp.toml: components.x.driver: unknown driver 'flakey' for component 'x'; "
                "the drivers that exist: flaky, redis, sqlite"]
    for args in (["components"], ["components", "--json"], ["run", "app.py"]):
        result = run(args, project)
        assert (result.returncode, result.stderr.splitlines()) == (2, expected), args
    (project / "hostapp.toml").write_text(toml(extra='\n[components.y]\ndriver = "sqlite"\nreload = "no"\n'))
    result = run(["components"], project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "hostapp: error: hostapp.toml: components.y.reload: unknown key; expected driver, load, options or timeout; did you mean 'load'?"
    ]


def test_dry_run_when_no_host_reported_and_with_the_flag(project):
    listed = run(["components", "--json"], project)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["x"]["source"] == "dry-run" and rows["x"]["state"] == "unavailable"
    assert rows["db"]["state"] == "available" and rows["db"]["health"]["detail"]["journal_mode"] == "wal"
    assert (project / "var" / "app.sqlite3").exists()
    assert not (project / ".hostapp" / "hostapp.sqlite3").exists()  # a dry run writes no store

    assert run(["run", "app.py"], project).returncode == 0
    (project / "hostapp.toml").write_text(toml(extra='\n[components.extra]\ndriver = "sqlite"\nload = "no"\n'))
    dry = {row["name"]: row for row in json.loads(run(["components", "--json", "--dry-run"], project).stdout)}
    assert dry["extra"]["state"] == "disabled" and dry["x"]["source"] == "dry-run"
    table = run(["components", "--dry-run"], project).stdout
    assert "dry run (built, checked and closed now)" in table and "disabled" in table


def test_a_running_host_is_shown_live(project):
    (project / "long.py").write_text(LONG_RUNNING)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(project / ".cache")
    process = subprocess.Popen([sys.executable, "long.py"], cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (project / "started").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the host did not start within 60 s"
            time.sleep(0.02)
        run_id = (project / "started").read_text()
        rows = {row["name"]: row for row in json.loads(run(["components", "--json"], project).stdout)}
        assert rows["db"]["state"] == "available" and rows["db"]["live"] is True
        assert rows["db"]["run_id"] == run_id and rows["x"]["state"] == "unavailable"
        assert f"run {run_id} (live)" in run(["components"], project).stdout
    finally:
        (project / "stop").write_text("")
        process.communicate(timeout=60)
    assert process.returncode == 0
    rows = {row["name"]: row for row in json.loads(run(["components", "--json"], project).stdout)}
    assert rows["db"]["state"] == "closed" and rows["db"]["live"] is False
