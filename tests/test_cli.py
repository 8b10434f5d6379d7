"""The ``hostapp`` command, run as a subprocess the way a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hostapp

MARKER_PLUGIN = """
import os, pathlib
pathlib.Path(os.environ["MARKERS"], {name!r}).write_text("imported")
import hostapp

@hostapp.hookimpl
def hostapp_configure(config):
    pass
"""

BROKEN_PLUGIN = """
import os, pathlib
pathlib.Path(os.environ["MARKERS"], {name!r}).write_text("imported")
raise RuntimeError("broken plugin {name} refuses to import")
"""


def run(args, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    full_env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hostapp", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def project(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    return tmp_path, {"MARKERS": str(markers)}


def by_name(rows):
    """The rows by name, less the plugins of the environment the suite keeps out (conftest.py)."""
    isolated = tuple(os.environ.get("HOSTAPP_PLUGINS__DISABLE_LOCATIONS", "").split(",") or ())
    return {row["name"]: row for row in rows if not (isolated != ("",) and row["location"] in isolated)}


def test_plugin_folder_with_four_plugins(project):
    root, env = project
    folder = root / "plugins"
    folder.mkdir()
    (folder / "good.py").write_text(MARKER_PLUGIN.format(name="good"))
    (folder / "tagged.py").write_text(MARKER_PLUGIN.format(name="tagged"))
    (folder / "tagged.meta.json").write_text(json.dumps({"tags": ["experimental"], "description": "x"}))
    (folder / "legacy_stuff.py").write_text(MARKER_PLUGIN.format(name="legacy_stuff"))
    (folder / "broken.py").write_text(BROKEN_PLUGIN.format(name="broken"))
    (root / "hostapp.toml").write_text(textwrap.dedent("""
        [plugins]
        paths = ["plugins"]
        disable = ["re:^legacy_"]
        deny_tags = ["experimental"]
    """))

    result = run(["plugins", "--json"], root, env)
    assert result.returncode == 0, result.stderr
    rows = by_name(json.loads(result.stdout))
    assert {n: r["state"] for n, r in rows.items()} == {
        "good": "registered", "tagged": "filtered", "legacy_stuff": "filtered", "broken": "failed",
    }
    assert rows["good"]["hooks"] == ["hostapp_configure"]
    assert rows["good"]["source"] == "folder"
    assert rows["tagged"]["rule"] == "plugins.deny_tags: 'experimental'"
    assert rows["legacy_stuff"]["rule"] == "plugins.disable: 're:^legacy_'"
    assert rows["broken"]["stage"] == "import"
    assert "RuntimeError: broken plugin broken refuses to import" in rows["broken"]["error"]
    markers = sorted(p.name for p in Path(env["MARKERS"]).iterdir())
    assert markers == ["broken", "good"]  # the filtered modules were never imported

    strict = run(["--strict", "plugins", "--json"], root, env)
    assert strict.returncode == 1
    assert "'broken'" in strict.stderr and "refuses to import" in strict.stderr
    assert strict.stderr.startswith("hostapp: error: ")


def test_the_same_through_installed_distributions(project, hostapp_dist):
    root, env = project
    for name, source in [
        ("good", MARKER_PLUGIN), ("tagged", MARKER_PLUGIN), ("legacy_stuff", MARKER_PLUGIN), ("broken", BROKEN_PLUGIN),
    ]:
        hostapp_dist(
            f"{name.replace('_', '-')}-hostapp",
            "2.1",
            entry_points={"hostapp": {name: f"{name}_plugin"}},
            files={f"{name}_plugin.py": source.format(name=name)},
        )
    (root / "hostapp.toml").write_text(textwrap.dedent("""
        [plugins]
        disable = ["re:^legacy_"]
        deny_tags = ["experimental"]
        [plugins.meta.tagged]
        tags = ["experimental"]
    """))
    result = run(["plugins", "--json"], root, env)
    assert result.returncode == 0, result.stderr
    rows = by_name(json.loads(result.stdout))
    assert {n: r["state"] for n, r in rows.items()} == {
        "good": "registered", "tagged": "filtered", "legacy_stuff": "filtered", "broken": "failed",
    }
    assert rows["good"]["distribution"] == "good-hostapp" and rows["good"]["version"] == "2.1"
    assert rows["good"]["source"] == "entrypoint"
    assert rows["tagged"]["rule"] == "plugins.deny_tags: 'experimental'"
    assert rows["legacy_stuff"]["rule"] == "plugins.disable: 're:^legacy_'"
    assert "refuses to import" in rows["broken"]["error"]
    assert sorted(p.name for p in Path(env["MARKERS"]).iterdir()) == ["broken", "good"]

    strict = run(["plugins", "--json"], root, {**env, "HOSTAPP_STRICT": "1"})
    assert strict.returncode == 1 and "'broken'" in strict.stderr

    only = run(["plugins", "--json"], root, {**env, "HOSTAPP_PLUGINS": "good"})
    rows = by_name(json.loads(only.stdout))
    assert rows["broken"]["rule"] == "HOSTAPP_PLUGINS: not listed"


def test_builtins_are_listed_with_all(tmp_path):
    default = json.loads(run(["plugins", "--json"], tmp_path).stdout)
    assert not [row for row in default if row["builtin"]]
    rows = by_name(json.loads(run(["plugins", "--all", "--json"], tmp_path).stdout))
    assert rows["sinks.logging"]["builtin"] is True
    assert rows["sinks.logging"]["distribution"] == "hostapp"
    assert rows["sinks.logging"]["provides"] == {"event_sinks": ["logging"]}
    table = run(["plugins", "--all"], tmp_path)
    assert table.returncode == 0 and "sinks.logging" in table.stdout


def test_plugins_filtered_by_hook(project):
    root, env = project
    folder = root / "plugins"
    folder.mkdir()
    (folder / "good.py").write_text(MARKER_PLUGIN.format(name="good"))
    (root / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    rows = json.loads(run(["plugins", "--all", "--json", "--hook", "hostapp_configure"], root, env).stdout)
    assert [row["name"] for row in rows] == ["good"]
    bad = run(["plugins", "--hook", "hostapp_nothing"], root, env)
    assert bad.returncode == 2 and "no hook named 'hostapp_nothing'" in bad.stderr


def test_hooks_lists_every_hookspec_with_call_order(project):
    root, env = project
    folder = root / "plugins"
    folder.mkdir()
    (folder / "first.py").write_text(MARKER_PLUGIN.format(name="first"))
    (folder / "second.py").write_text(MARKER_PLUGIN.format(name="second"))
    (folder / "second.meta.json").write_text('{"priority": 10}')
    (root / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    result = run(["hooks", "--json"], root, env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["hostapp_event_sinks"]["kind"] == "registration"
    assert rows["hostapp_event_sinks"]["spec_type"] == "EventSink"
    assert rows["hostapp_startup"]["isolate"] is True
    assert [i["plugin"] for i in rows["hostapp_configure"]["implementations"]] == ["second", "first"]
    assert "hostapp_configure" in run(["hooks"], root, env).stdout


def test_version():
    result = subprocess.run([sys.executable, "-m", "hostapp", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and hostapp.__version__ in result.stdout


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[plugins\n", "hostapp.toml:1: invalid TOML"),
        ("[plugins]\nenable = 5\n", "hostapp.toml: plugins.enable: expected a list of strings, got an integer"),
        ("[plugins]\ndisable = ['re:[a-']\n", "hostapp.toml: plugins.disable:"),
        ("[plugins]\npaths = ['missing-folder']\n", "plugin folder 'missing-folder' does not exist"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path, toml, expected):
    (tmp_path / "hostapp.toml").write_text(toml)
    result = run(["plugins"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hostapp: error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_config_file_and_bad_env_exit_2(tmp_path):
    result = run(["--config", "nope.toml", "plugins"], tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == "hostapp: error: nope.toml: config file not found"
    result = run(["plugins"], tmp_path, {"HOSTAPP_PLUGINS__AUTOLOAD": "perhaps"})
    assert result.returncode == 2 and "HOSTAPP_PLUGINS__AUTOLOAD: expected a boolean" in result.stderr


def test_unknown_key_warns_on_stderr_and_goes_on(tmp_path):
    (tmp_path / "hostapp.toml").write_text("[plugins]\nenabel = ['x']\n")
    result = run(["plugins", "--json"], tmp_path)
    assert result.returncode == 0
    assert "hostapp: warning: hostapp.toml:2: unknown key 'plugins.enabel' (ignored); did you mean 'plugins.enable'?" in result.stderr


def test_plugin_contributes_a_cli_command(tmp_path, hostapp_dist):
    hostapp_dist(
        "hello-hostapp",
        entry_points={"hostapp": {"hello": "hello_plugin"}},
        files={"hello_plugin.py": textwrap.dedent('''
            import click, hostapp

            @click.command()
            @click.argument("name")
            def hello(name):
                click.echo(f"hello {name}")

            @click.command()
            def clash():
                pass

            @hostapp.hookimpl
            def hostapp_cli_commands():
                yield hostapp.CliCommand(name="hello", command=hello, summary="Say hello.")
                yield hostapp.CliCommand(name="plugins", command=clash)
        ''')},
    )
    result = run(["hello", "world"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello world"
    help_text = run(["--help"], tmp_path)
    assert "hello" in help_text.stdout and "Say hello." in help_text.stdout
    assert "adds command 'plugins', which is a built-in command; skipped" in help_text.stderr
