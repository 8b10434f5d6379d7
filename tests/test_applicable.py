"""Plugins that decide whether to load: ``requires`` (checked from installed metadata, before
import) and ``should_load(config)`` (plux's, after import, before registration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hostapp
from hostapp.config import Config
from hostapp.lifecycle import PluginState

MARKING = """
import os, pathlib
pathlib.Path(os.environ["MARKERS"], {name!r}).write_text("imported")
import hostapp

@hostapp.hookimpl
def hostapp_configure(config):
    pass
"""


@pytest.fixture
def markers(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv("MARKERS", str(folder))
    return folder


def load(tmp_path: Path, **plugins) -> hostapp.PluginManager:
    config = Config.from_dict(
        {"plugins": {"paths": [str(tmp_path / "plugins")], "cache": False, "builtins": False, **plugins}},
        environ={}, root=tmp_path,
    )
    pm = hostapp.PluginManager()
    pm.load(config, environ={})
    return pm


def state(pm: hostapp.PluginManager, name: str) -> tuple[str, str | None]:
    info = pm.infos[name]
    return info.state.value, info.rule


def test_requires_is_checked_before_import(tmp_path, markers):
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, meta in (
        ("needs_missing", {"requires": ["hostapp-no-such-dist>=1"]}),
        ("needs_newer", {"requires": ["pluggy>=99"]}),
        ("needs_present", {"requires": ["pluggy>=1", "click"]}),
        ("marker_says_no", {"requires": ["hostapp-no-such-dist; python_version < '3'"]}),
    ):
        (folder / f"{name}.py").write_text(MARKING.format(name=name))
        (folder / f"{name}.meta.json").write_text(json.dumps(meta))
    (folder / "opa_style.py").write_text(MARKING.format(name="opa_style"))
    (folder / "opa_style-meta.json").write_text(json.dumps({"requires": ["hostapp-no-such-dist"], "tags": ["opa"]}))
    (folder / "by_config.py").write_text(MARKING.format(name="by_config"))
    pm = load(tmp_path, meta={"by_config": {"requires": ["hostapp-other-missing"]}})
    import pluggy

    assert state(pm, "needs_missing") == (
        "not_applicable", "requires 'hostapp-no-such-dist>=1': hostapp-no-such-dist is not installed",
    )
    assert state(pm, "needs_newer") == ("not_applicable", f"requires 'pluggy>=99': pluggy {pluggy.__version__} is installed")
    assert state(pm, "needs_present") == ("registered", None)
    assert state(pm, "marker_says_no") == ("registered", None)  # the requirement does not apply here
    assert state(pm, "opa_style")[0] == "not_applicable"  # opa-stack's NAME-meta.json is read
    assert pm.infos["opa_style"].tags == ("opa",)
    assert state(pm, "by_config")[0] == "not_applicable"
    imported = sorted(p.name for p in markers.iterdir())
    assert imported == ["marker_says_no", "needs_present"]  # the others were never imported


def test_an_entry_points_extras_are_its_requirements(hostapp_dist, markers, tmp_path):
    (tmp_path / "plugins").mkdir()
    dist_info = hostapp_dist(
        "fast-hostapp", entry_points={"hostapp": {"fast": "fast_plugin [speedups]", "plain": "plain_plugin"}},
        files={"fast_plugin.py": MARKING.format(name="fast"), "plain_plugin.py": MARKING.format(name="plain")},
    )
    with open(dist_info / "METADATA", "a", encoding="utf-8") as f:
        f.write("Provides-Extra: speedups\nRequires-Dist: hostapp-no-such-speedup>=2; extra == \"speedups\"\n"
                "Requires-Dist: pluggy\n")
    pm = load(tmp_path)
    assert state(pm, "fast") == (
        "not_applicable", "requires 'hostapp-no-such-speedup>=2': hostapp-no-such-speedup is not installed",
    )
    assert state(pm, "plain") == ("registered", None)
    assert sorted(p.name for p in markers.iterdir()) == ["plain"]


SHOULD_LOAD = '''
import hostapp

@hostapp.hookimpl
def hostapp_configure(config):
    pass

def should_load(config):
    {body}
'''

CLASS_PLUGIN = '''
import hostapp

class Plugin:
    @classmethod
    def should_load(cls, config):
        return config.plugin_config("classy").get("on", False)

    @hostapp.hookimpl
    def hostapp_startup(self, host):
        pass
'''


def test_should_load_decides_after_import_before_registration(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    bodies = {
        "says_yes": "return True",
        "says_no": "return False",
        "says_why": "raise hostapp.NotApplicable('no [plugins.config.says_why] url')",
        "breaks": "raise RuntimeError('cannot tell')",
        "reads_config": "return config.plugin_config('reads_config').get('on', False)",
    }
    for name, body in bodies.items():
        (folder / f"{name}.py").write_text(SHOULD_LOAD.format(body=body))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "classy_plugin.py").write_text(CLASS_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    (folder / "noargs.py").write_text(SHOULD_LOAD.format(body="return False").replace("should_load(config)", "should_load()"))
    pm = load(tmp_path, modules=["classy_plugin:Plugin"],
              config={"reads_config": {"on": True}, "classy": {"on": False}})
    assert state(pm, "says_yes") == ("registered", None)
    assert state(pm, "says_no") == ("not_applicable", "should_load() returned False")
    assert state(pm, "says_why") == ("not_applicable", "should_load: no [plugins.config.says_why] url")
    assert state(pm, "reads_config") == ("registered", None)
    assert state(pm, "noargs") == ("not_applicable", "should_load() returned False")
    info = pm.infos["breaks"]
    assert (info.state, info.stage, info.error) == (PluginState.FAILED, "should_load", "RuntimeError: cannot tell")
    assert not pm.has_plugin("says_no") and not pm.has_plugin("breaks")
    assert pm.infos["classy_plugin:Plugin"].state is PluginState.NOT_APPLICABLE  # a class method


def test_plugins_lists_not_applicable_with_the_reason(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "needs_redis.py").write_text("import hostapp\n")
    (folder / "needs_redis-meta.json").write_text(json.dumps({"requires": ["hostapp-no-such-redis"]}))
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    result = subprocess.run([sys.executable, "-m", "hostapp", "--strict", "plugins"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr  # not applicable is not a failure, even with --strict
    assert "not_applicable" in result.stdout
    assert "not applicable: requires 'hostapp-no-such-redis': hostapp-no-such-redis is" in " ".join(result.stdout.split())
