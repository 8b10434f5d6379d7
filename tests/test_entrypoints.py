"""``hostapp entrypoints``: build-time discovery of a plugin package's entry points (plux's
``plux entrypoints``), as a plugin package's CI runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.18"]
build-backend = "hatchling.build"

[project]
name = "acme-hostapp"
version = "1.0.0"

# our plugins
[project.entry-points.hostapp]
acme = "acme_hostapp"
legacy = "acme_hostapp.kolo_config:PROCESSORS"  # a Kolo dict: no hookimpl, kept

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

SINK_MODULE = """\
import hostapp


@hostapp.hookimpl
def hostapp_event_sinks():
    return hostapp.EventSink(name="acme", handle=print)
"""


def hostapp(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    return subprocess.run([sys.executable, "-m", "hostapp", "entrypoints", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def package(tmp_path: Path) -> Path:
    project = tmp_path / "acme"
    write(project / "pyproject.toml", PYPROJECT)
    write(project / "src" / "acme_hostapp" / "__init__.py", SINK_MODULE)
    write(project / "src" / "acme_hostapp" / "kolo_config.py", "PROCESSORS = {}\n")
    write(project / "src" / "acme_hostapp" / "util.py", "def helper():\n    return 1\n")
    write(project / "tests" / "test_acme.py", "import hostapp\n\n@hostapp.hookimpl\ndef hostapp_startup(host):\n    pass\n")
    return project


def test_check_in_ci_passes_then_fails_with_a_diff_when_a_plugin_module_is_added(tmp_path):
    project = package(tmp_path)
    current = hostapp(["--check"], project)
    assert current.returncode == 0, current.stdout + current.stderr
    assert "is up to date (2 entry points)" in current.stdout

    write(project / "src" / "acme_hostapp" / "sinks" / "__init__.py", "")
    write(project / "src" / "acme_hostapp" / "sinks" / "audit.py", SINK_MODULE.replace('"acme"', '"audit"'))
    write(project / "src" / "acme_hostapp" / "tasks.py", """\
        import hostapp


        class Heartbeat:
            @hostapp.hookimpl
            def hostapp_background_tasks(self):
                return []


        class NeedsArguments:  # built by something else: not an entry point
            def __init__(self, config):
                self.config = config

            @hostapp.hookimpl
            def hostapp_startup(self, host):
                pass
    """)
    stale = hostapp(["--check"], project)
    assert stale.returncode == 1
    assert stale.stderr.strip() == (
        "hostapp: error: pyproject.toml: [project.entry-points.hostapp] is out of date; "
        "run 'hostapp entrypoints --write'"
    )
    added = [line for line in stale.stdout.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added == ['+"sinks.audit" = "acme_hostapp.sinks.audit"', '+"tasks.Heartbeat" = "acme_hostapp.tasks:Heartbeat"']
    assert stale.stdout.startswith("--- pyproject.toml\n+++ pyproject.toml (hostapp entrypoints)\n")

    printed = hostapp([], project)
    assert printed.returncode == 0 and printed.stdout.startswith("[project.entry-points.hostapp]\nacme = ")

    written = hostapp(["--write"], project)
    assert written.returncode == 0 and "4 entry points written" in written.stdout
    text = (project / "pyproject.toml").read_text()
    assert tomllib.loads(text)["project"]["entry-points"]["hostapp"] == {
        "acme": "acme_hostapp",
        "legacy": "acme_hostapp.kolo_config:PROCESSORS",
        "sinks.audit": "acme_hostapp.sinks.audit",
        "tasks.Heartbeat": "acme_hostapp.tasks:Heartbeat",
    }
    assert text.startswith(PYPROJECT.split("# our plugins")[0] + "# our plugins\n")  # the rest untouched
    assert text.endswith('\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    again = hostapp(["--write"], project)
    assert "up to date (4 entry points)" in again.stdout
    assert (project / "pyproject.toml").read_text() == text  # idempotent
    assert hostapp(["--check"], project).returncode == 0

    # a module that is gone loses its entry point; a renamed entry keeps its name
    (project / "src" / "acme_hostapp" / "sinks" / "audit.py").unlink()
    (project / "pyproject.toml").write_text(text.replace('"tasks.Heartbeat" =', "heartbeat ="))
    hostapp(["--write"], project)
    entries = tomllib.loads((project / "pyproject.toml").read_text())["project"]["entry-points"]["hostapp"]
    assert entries == {"acme": "acme_hostapp", "legacy": "acme_hostapp.kolo_config:PROCESSORS",
                       "heartbeat": "acme_hostapp.tasks:Heartbeat"}


def test_a_package_without_the_table_gets_one(tmp_path):
    project = tmp_path / "new"
    write(project / "pyproject.toml", '[project]\nname = "new-hostapp"\nversion = "0.1"\n')
    write(project / "new_hostapp.py", SINK_MODULE)  # a flat layout, one module
    assert hostapp(["--check"], project).returncode == 1
    assert hostapp(["--write"], project).returncode == 0
    assert (project / "pyproject.toml").read_text() == (
        '[project]\nname = "new-hostapp"\nversion = "0.1"\n\n[project.entry-points.hostapp]\nnew_hostapp = "new_hostapp"\n'
    )


def test_hostapps_own_table_is_current():
    """The built-in plugins are found the way any plugin package's are."""
    result = hostapp(["--check"], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_plugin_package_is_current():
    result = hostapp(["--check"], ROOT / "examples" / "acme_plugin")
    assert result.returncode == 0, result.stdout + result.stderr
