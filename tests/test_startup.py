"""Start-up: ``hostapp run`` imports only what the run needs.

No asyncio without async plugin code, no rich for a run, no platformdirs (Linux), no
tomllib without a configuration file, and a plugin whose library is not installed is not
imported (``hostapp.libraries``). Checked on the modules a real ``hostapp run`` leaves in
``sys.modules`` (the program prints them), never on time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hostapp.manager import PluginManager

SHOW_MODULES = "import json, sys\nprint(json.dumps(sorted(sys.modules)))\n"


def env_for(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON"))}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    return env


def modules_of_a_run(cwd: Path) -> set[str]:
    (cwd / "prog.py").write_text(SHOW_MODULES)
    done = subprocess.run([sys.executable, "-m", "hostapp", "run", "prog.py"], cwd=cwd, env=env_for(cwd),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return set(json.loads(done.stdout))


def test_a_run_imports_neither_asyncio_nor_rich_nor_platformdirs(tmp_path):
    modules = modules_of_a_run(tmp_path)
    assert "hostapp.host" in modules and "hostapp.tracing" in modules
    unwanted = {"asyncio", "rich", "platformdirs", "tomllib", "concurrent.futures"} & modules
    if sys.platform == "darwin":  # pragma: no cover - platformdirs knows the macOS cache folder
        unwanted.discard("platformdirs")
    assert not unwanted


def test_an_async_plugin_brings_the_loop_and_a_config_file_tomllib(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "asyncone.py").write_text(textwrap.dedent('''
        import hostapp

        @hostapp.hookimpl
        async def hostapp_startup(host):
            pass
    '''))
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    modules = modules_of_a_run(tmp_path)
    assert {"asyncio", "tomllib"} <= modules


def test_a_plain_background_task_needs_no_asyncio(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "beat.py").write_text(textwrap.dedent('''
        import pathlib
        import hostapp

        def run(host, stop_event):
            pathlib.Path("beat-ran").touch()
            stop_event.wait()

        @hostapp.hookimpl
        def hostapp_background_tasks():
            return hostapp.BackgroundTask(name="beat", run=run)
    '''))
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    (tmp_path / "prog.py").write_text("import time\ntime.sleep(0.3)\n" + SHOW_MODULES)
    done = subprocess.run([sys.executable, "-m", "hostapp", "run", "prog.py"], cwd=tmp_path, env=env_for(tmp_path),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    modules = set(json.loads(done.stdout))
    assert "hostapp.tasks" in modules and "asyncio" not in modules
    assert (tmp_path / "beat-ran").exists()


def test_a_plugin_whose_library_is_missing_is_not_imported(hostapp_dist, tmp_path):
    hostapp_dist("acme-traces", entry_points={
        "hostapp": {"acme.present": "acme_present", "acme.absent": "acme_absent"},
        "hostapp.libraries": {"acme.present": "json", "acme.absent": "no_such_library_here"},
    }, files={
        "acme_present.py": "import hostapp\n",
        "acme_absent.py": "raise RuntimeError('imported although its library is missing')\n",
    })
    pm = PluginManager()
    pm.load()
    present, absent = pm.infos["acme.present"], pm.infos["acme.absent"]
    assert present.state.value == "registered"
    assert absent.state.value == "not_applicable" and absent.obj is None
    assert absent.rule == "library 'no_such_library_here' is not installed (hostapp.libraries)"
    assert "hostapp.libraries:acme.present" not in pm.infos  # the group holds no plugins


@pytest.mark.parametrize("plugin", ["http.requests", "http.httpx", "http.urllib3", "jobs.celery", "jobs.huey"])
def test_the_built_in_processor_plugins_say_what_they_require(plugin):
    """Installed here, so loaded; the entry points that would filter them exist."""
    from importlib.metadata import entry_points

    required = {ep.name: ep.value for ep in entry_points(group="hostapp.libraries")}
    assert required[plugin] == plugin.split(".", 1)[1]
