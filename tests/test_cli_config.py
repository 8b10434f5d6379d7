"""Plugins checked before a run, ``hostapp config``, pytest's switches with hostapp's names, and
one output convention: the ``hostapp`` command run as a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFIGURE_FAILS = """
import hostapp

@hostapp.hookimpl
def hostapp_configure(config):
    raise ValueError("plugins.config.halfway.level: expected an integer")

@hostapp.hookimpl
def hostapp_event_sinks():
    return hostapp.EventSink(name="halfway", handle=print)
"""

AUDIT = """
import json, os
import hostapp

def handle(events):
    with open(os.environ["AUDIT_FILE"], "a") as f:
        for event in events:
            f.write(json.dumps({"type": event.type, "subtype": event.subtype}) + "\\n")

@hostapp.hookimpl
def hostapp_event_sinks():
    return hostapp.EventSink(name="audit", handle=handle, event_types=("monitoring_event",))

@hostapp.hookimpl
def hostapp_startup(host):
    host.emit("monitoring_event", "started", plugin="audit")
"""


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON")) or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    full["XDG_CACHE_HOME"] = str(cwd / ".cache")
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "hostapp", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "plugins" / "halfway.py", CONFIGURE_FAILS)
    write(tmp_path / "plugins" / "audit.py", AUDIT)
    write(tmp_path / "hostapp.toml", """
        [plugins]
        paths = ["plugins"]
    """)
    return tmp_path


def test_plugins_runs_configure_and_a_failing_plugin_contributes_nothing(project):
    result = run(["plugins", "--json"], project)
    assert result.returncode == 0, result.stderr
    rows = by_name(json.loads(result.stdout))
    halfway = rows["halfway"]
    assert (halfway["state"], halfway["stage"]) == ("failed", "configure")
    assert halfway["error"] == "ValueError: plugins.config.halfway.level: expected an integer"
    assert halfway["provides"] == {}  # its sink is not collected
    assert rows["audit"]["provides"] == {"event_sinks": ["audit"]}
    strict = run(["--strict", "plugins"], project)
    assert strict.returncode == 1
    assert "halfway" in strict.stdout  # the whole listing first, then the verdict
    assert strict.stderr.splitlines()[-1] == (
        "hostapp: error: 1 plugin(s) failed: 'halfway' at configure: ValueError: plugins.config.halfway.level: "
        "expected an integer (strict mode)"
    )


def test_a_plugins_sink_is_on_without_a_table_and_the_failed_one_stays_off(project):
    (project / "app.py").write_text("print('app ran')\n")
    audit = project / "audit.jsonl"
    result = run(["run", "app.py"], project, AUDIT_FILE=str(audit))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "app ran\n"
    assert [json.loads(line) for line in audit.read_text().splitlines()] == [
        {"type": "monitoring_event", "subtype": "started"}
    ]
    assert "plugin 'halfway' failed at configure: ValueError" in result.stderr
    sinks = by_name(json.loads(run(["sinks", "--json"], project).stdout))
    assert sinks["audit"]["enabled"] is True and sinks["sqlite"]["enabled"] is True
    assert sinks["jsonl"]["enabled"] is False  # opt_in: only with an [events.sinks.jsonl] table
    assert "halfway" not in sinks
    write(project / "hostapp.toml", """
        [plugins]
        paths = ["plugins"]
        [events.sinks.audit]
        enabled = false
    """)
    assert by_name(json.loads(run(["sinks", "--json"], project).stdout))["audit"]["enabled"] is False


def test_sink_settings_are_checked_before_a_run(project):
    write(project / "hostapp.toml", """
        [plugins]
        paths = ["plugins"]

        [events.sinks.audit]
        batch_size = 0
    """)
    for args in (["plugins"], ["config"]):
        result = run(args, project)
        assert result.returncode == 2, args
        assert result.stderr.splitlines()[-1] == (
            "hostapp: error: hostapp.toml:5: events.sinks.audit.batch_size: must be >= 1, got 0"
        )


def test_config_shows_every_value_with_its_origin(project):
    write(project / "hostapp.toml", """
        [plugins]
        paths = ["plugins"]
        disable = ["re:^legacy_"]

        [events]
        batch_size = 500

        [events.sinks.audit]
        max_retries = 2
    """)
    result = run(["--disable", "halfway", "config", "--json"], project, HOSTAPP_EVENTS__FLUSH_INTERVAL_MS="50")
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: (row["value"], row["origin"]) for row in json.loads(result.stdout)}
    assert rows["plugins.disable"] == (["re:^legacy_", "halfway"], "--disable / -p no:NAME")
    assert rows["events.batch_size"] == (500, "hostapp.toml:6")
    assert rows["events.flush_interval_ms"] == (50.0, "HOSTAPP_EVENTS__FLUSH_INTERVAL_MS")
    assert rows["store.path"] == (".hostapp/hostapp.sqlite3", "default")
    assert rows["events.sinks.audit.max_retries"] == (2, "hostapp.toml:9")
    # the sinks that would run, with the settings the bus would give them
    assert rows["events.sinks.audit.enabled"] == (True, "hostapp.toml:8")
    assert rows["events.sinks.sqlite.enabled"] == (True, "plugin 'sinks.sqlite' is loaded")
    assert rows["events.sinks.audit.batch_size"] == (500, "events.batch_size: hostapp.toml:6")
    assert "events.sinks.halfway.enabled" not in rows
    jsonl = run(["config", "--jsonl", "--no-plugins"], project).stdout.splitlines()
    assert {json.loads(line)["key"] for line in jsonl} >= {"plugins.disable", "events.batch_size"}
    table = run(["config"], project)
    assert "hostapp.toml:6" in table.stdout and "events.batch_size" in table.stdout


def test_unknown_keys_names_and_variables_get_a_did_you_mean_and_fail_under_strict(project):
    write(project / "hostapp.toml", """
        [plugins]
        paths = ["plugins"]
        enabel = ["x"]

        [plugins.config.audti]
        level = 3

        [events.sinks.audit]
        enabeld = false
    """)
    result = run(["config"], project, HOSTAPP_EVENTS_BATCH_SIZE="3")
    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines()
                if line.startswith("hostapp: warning: ") and "plugin 'halfway'" not in line]
    assert warnings == [
        "hostapp: warning: hostapp.toml:3: unknown key 'plugins.enabel' (ignored); did you mean 'plugins.enable'?",
        "hostapp: warning: hostapp.toml:9: key 'events.sinks.audit.enabeld' is not read by the event bus "
        "(it goes to the sink as is); did you mean 'enabled'?",
        "hostapp: warning: HOSTAPP_EVENTS_BATCH_SIZE: unknown hostapp environment variable (ignored); "
        "did you mean 'HOSTAPP_EVENTS__BATCH_SIZE'?",
        "hostapp: warning: hostapp.toml:5: [plugins.config.audti] names no plugin; did you mean 'audit'?",
    ]
    strict = run(["--strict", "plugins"], project)
    assert strict.returncode == 2
    assert strict.stderr.strip() == (
        "hostapp: error: hostapp.toml:3: unknown key 'plugins.enabel' (ignored); did you mean 'plugins.enable'? "
        "(strict mode)"
    )


def test_pytest_switches_with_hostapp_names(project):
    def states(*args: str, **env: str) -> dict[str, tuple[str, str | None]]:
        result = run([*args, "plugins", "--all", "--json"], project, **env)
        assert result.returncode == 0, result.stderr
        return {row["name"]: (row["state"], row["rule"]) for row in json.loads(result.stdout)}

    assert states("-p", "no:audit")["audit"] == ("filtered", "plugins.disable: 'audit'")
    assert states("--disable", "audit", "--disable", "half*")["halfway"] == ("filtered", "plugins.disable: 'half*'")
    write(project / "hostapp.toml", """
        [plugins]
        paths = ["plugins"]
        disable = ["audit"]
    """)
    assert states()["audit"][0] == "filtered"
    assert states("-p", "audit")["audit"][0] == "registered"  # -p NAME / --enable: loads whatever the filters say
    assert states("--enable", "audit")["audit"][0] == "registered"
    # HOSTAPP_DISABLE_PLUGIN_AUTOLOAD keeps the built-ins (as pytest keeps its own) ...
    autoload_off = states(HOSTAPP_DISABLE_PLUGIN_AUTOLOAD="1")
    assert autoload_off["sinks.sqlite"][0] == autoload_off["http.requests"][0] == "registered"
    # ... and --no-builtins takes them away, for the rare case
    assert states("--no-builtins")["sinks.sqlite"] == ("filtered", "plugins.builtins = false (hostapp --no-builtins)")
    enabled = run(["--enable", "audti", "plugins"], project)
    assert "hostapp: warning: --enable / -p NAME: plugins.force 'audti': no plugin of that name was found; " \
        "did you mean 'audit'?" in enabled.stderr


def test_autoload_off_runs_with_the_builtin_store_and_no_false_warning(project):
    (project / "app.py").write_text("import urllib.request\nprint('ok')\n")
    result = run(["run", "app.py"], project, HOSTAPP_DISABLE_PLUGIN_AUTOLOAD="1")
    assert result.returncode == 0, result.stderr
    assert "no plugin contributes" not in result.stderr
    assert "stored in " in result.stderr


def test_help_lists_every_environment_variable(tmp_path):
    from hostapp.config import ENVIRONMENT

    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    for name in [*ENVIRONMENT, "HOSTAPP_<SECTION>__<KEY>"]:
        assert f"  {name} " in result.stdout, name
    for switch in ("-p [no:]NAME", "--disable NAME", "--enable NAME", "--no-builtins"):
        assert switch in result.stdout


def test_one_output_convention(project):
    """--json is one JSON array everywhere, --jsonl one object per line, --limit 0 no limit."""
    (project / "app.py").write_text("print('x')\n")
    env = {"AUDIT_FILE": str(project / "audit.jsonl")}
    for _ in range(3):
        assert run(["run", "-q", "app.py"], project, **env).returncode == 0
    commands = [["plugins"], ["hooks"], ["sinks"], ["components"], ["tasks"], ["runs"], ["events", "--last"],
                ["config"], ["events", "--dead-letters"], ["events", "redeliver"]]
    for command in commands:
        as_json = run([*command, "--json"], project, **env)
        assert as_json.returncode == 0, (command, as_json.stderr)
        assert "no plugin contributes" not in as_json.stderr
        document = json.loads(as_json.stdout)
        assert isinstance(document, list), command
        lines = run([*command, "--jsonl"], project, **env).stdout.splitlines()
        assert [json.loads(line) for line in lines] == document, command
    assert len(json.loads(run(["runs", "--limit", "0", "--json"], project).stdout)) == 3
    assert len(json.loads(run(["runs", "--limit", "2", "--json"], project).stdout)) == 2


def test_the_store_directory_is_git_ignored_and_the_hint_reads_the_same_store(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "app.py").write_text("import hostapp\nhostapp.get_host().emit('monitoring_event', 'hint', n=1)\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "conf.toml").write_text('[store]\npath = "mine/other.sqlite3"\n')
    assert run(["run", "app.py"], tmp_path).returncode == 0
    assert (tmp_path / ".hostapp" / ".gitignore").read_text() == "*\n"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True, text=True)
    assert "?? app.py" in status.stdout.splitlines()
    assert ".hostapp" not in status.stdout  # no "?? .hostapp/"
    # a directory the user made is left alone; one hostapp makes gets the ignore file
    with_config = run(["run", "--config", "conf.toml", "app.py"], tmp_path)
    assert not (tmp_path / "mine" / ".gitignore").exists()
    with_db = run(["run", "--db", "made/x.sqlite3", "app.py"], tmp_path)
    assert (tmp_path / "made" / ".gitignore").read_text() == "*\n"
    # the summary's hint repeats --config and --db: following it reads the run's store
    for result, hint in (
        (with_config, "hostapp --config conf.toml events --last"),
        (with_db, "hostapp events --db made/x.sqlite3 --last"),
    ):
        lines = result.stderr.splitlines()
        assert lines[-1].endswith(f"; see them with: {hint}"), result.stderr
        run_id = lines[0].split()[3].rstrip(":")  # "── hostapp run ID: exit status 0, ..."
        [event] = json.loads(run([*hint.split()[1:], "--json"], tmp_path).stdout)
        assert (event["run_id"], event["subtype"]) == (run_id, "hint")


def test_a_plugins_modules_entry_next_to_the_config_file_loads_in_every_command(tmp_path):
    conf = tmp_path / "conf"
    write(conf / "hostapp.toml", """
        [plugins]
        modules = ["localplug"]
    """)
    write(conf / "localplug.py", """
        import hostapp

        @hostapp.hookimpl
        def hostapp_startup(host):
            host.emit("monitoring_event", "localplug")
    """)
    (tmp_path / "app.py").write_text("print('ran')\n")
    listed = by_name(json.loads(run(["--config", "conf/hostapp.toml", "plugins", "--json"], tmp_path).stdout))
    assert listed["localplug"]["state"] == "registered"
    ran = run(["run", "--config", "conf/hostapp.toml", "app.py"], tmp_path)
    assert ran.returncode == 0 and "failed" not in ran.stderr, ran.stderr
