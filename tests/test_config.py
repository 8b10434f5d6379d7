"""Configuration: files, precedence, environment overrides, validation, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hostapp.config import Config, ConfigWarning, load_config
from hostapp.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_defaults_without_any_file(tmp_path):
    config = load_config(cwd=tmp_path, environ={})
    assert config.source == "<defaults>"
    assert config["plugins.enable"] is None
    assert config["plugins.disable"] == []
    assert config["plugins.autoload"] is True
    assert config["host.shutdown_timeout"] == 10.0
    assert config.plugin_config("anything") == {}


def test_hostapp_toml_wins_over_pyproject(tmp_path):
    (tmp_path / "plugins").mkdir()
    write(tmp_path / "hostapp.toml", """
        [plugins]
        disable = ["from-hostapp-toml"]
        paths = ["plugins"]
        [plugins.config.acme]
        endpoint = "http://127.0.0.1:9"
        [plugins.meta.acme]
        priority = 5
        tags = ["stable"]
    """)
    write(tmp_path / "pyproject.toml", """
        [tool.hostapp.plugins]
        disable = ["from-pyproject"]
    """)
    config = load_config(cwd=tmp_path, environ={})
    assert config.source == "hostapp.toml"
    assert config["plugins.disable"] == ["from-hostapp-toml"]
    assert config["plugins.paths"] == [str(tmp_path / "plugins")]
    assert config.plugin_config("acme") == {"endpoint": "http://127.0.0.1:9"}
    options = config.discovery_options()
    assert options.meta["acme"] == {"priority": 5, "tags": ["stable"]}
    assert options.paths == (tmp_path / "plugins",)


def test_tool_hostapp_in_pyproject(tmp_path):
    write(tmp_path / "pyproject.toml", """
        [project]
        name = "x"
        [tool.hostapp.host]
        shutdown_timeout = 3
    """)
    config = load_config(cwd=tmp_path, environ={})
    assert config.source == "pyproject.toml [tool.hostapp]"
    assert config["host.shutdown_timeout"] == 3


def test_pyproject_without_tool_hostapp_is_ignored(tmp_path):
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    assert load_config(cwd=tmp_path, environ={}).source == "<defaults>"


def test_explicit_path_and_hostapp_config_env(tmp_path):
    other = write(tmp_path / "other.toml", "[plugins]\nstrict = true\n")
    assert load_config(other, cwd=tmp_path, environ={}).strict is True
    assert load_config(cwd=tmp_path, environ={"HOSTAPP_CONFIG": str(other)}).strict is True
    with pytest.raises(ConfigError, match="missing.toml: config file not found"):
        load_config("missing.toml", cwd=tmp_path, environ={})


def test_environment_overrides(tmp_path):
    write(tmp_path / "hostapp.toml", "[plugins]\ndisable = ['a']\n")
    env = {
        "HOSTAPP_PLUGINS__DISABLE": "b, c",
        "HOSTAPP_HOST__SHUTDOWN_TIMEOUT": "2.5",
        "HOSTAPP_PLUGINS__AUTOLOAD": "0",
        "HOSTAPP_STRICT": "1",
    }
    config = load_config(cwd=tmp_path, environ=env)
    assert config["plugins.disable"] == ["b", "c"]
    assert config["host.shutdown_timeout"] == 2.5
    assert config["plugins.autoload"] is False
    assert config.strict is True


def test_bad_environment_values_name_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"^HOSTAPP_HOST__SHUTDOWN_TIMEOUT: expected a number, got 'soon'$"):
        load_config(cwd=tmp_path, environ={"HOSTAPP_HOST__SHUTDOWN_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="HOSTAPP_STRICT: expected a boolean"):
        load_config(cwd=tmp_path, environ={"HOSTAPP_STRICT": "maybe"})


def test_unknown_keys_warn_naming_file_and_key(tmp_path):
    write(tmp_path / "hostapp.toml", """
        [plugins]
        enabel = ["typo"]
        [nonsense]
        x = 1
    """)
    with pytest.warns(ConfigWarning) as record:
        config = load_config(cwd=tmp_path, environ={"HOSTAPP_PLUGINS__NOPE": "1"})
    messages = [str(w.message) for w in record]
    assert "hostapp.toml:3: unknown key 'plugins.enabel' (ignored); did you mean 'plugins.enable'?" in messages
    assert "hostapp.toml:4: unknown key 'nonsense' (ignored)" in messages
    assert "HOSTAPP_PLUGINS__NOPE: unknown configuration key 'plugins.nope' (ignored)" in messages
    assert config.warnings == tuple(messages)


def test_typos_get_a_did_you_mean(tmp_path):
    write(tmp_path / "hostapp.toml", """
        [plugin]
        enable = ["x"]
        [events]
        batchsize = 5
        [events.sinks.acme]
        enabeld = false
        path = "audit.jsonl"
    """)
    env = {"HOSTAPP_EVENTS_BATCH_SIZE": "7", "HOSTAPP_DISABLE_PLUGIN_AUTOLOD": "1", "HOSTAPP_NOTHING": "x",
           "HOSTAPP_STORE__PTH": "x.db", "HOSTAPP_CONFIG": "", "HOSTAPP_NO_CACHE": "1"}
    with pytest.warns(ConfigWarning):
        config = load_config(cwd=tmp_path, environ=env)
    assert sorted(config.warnings) == sorted([
        "hostapp.toml:2: unknown key 'plugin' (ignored); did you mean 'plugins'?",
        "hostapp.toml:5: unknown key 'events.batchsize' (ignored); did you mean 'events.batch_size'?",
        "hostapp.toml:7: key 'events.sinks.acme.enabeld' is not read by the event bus (it goes to the sink "
        "as is); did you mean 'enabled'?",
        "HOSTAPP_EVENTS_BATCH_SIZE: unknown hostapp environment variable (ignored); "
        "did you mean 'HOSTAPP_EVENTS__BATCH_SIZE'?",
        "HOSTAPP_DISABLE_PLUGIN_AUTOLOD: unknown hostapp environment variable (ignored); "
        "did you mean 'HOSTAPP_DISABLE_PLUGIN_AUTOLOAD'?",
        "HOSTAPP_NOTHING: unknown hostapp environment variable (ignored)",
        "HOSTAPP_STORE__PTH: unknown configuration key 'store.pth' (ignored); did you mean 'HOSTAPP_STORE__PATH'?",
    ])


def test_every_value_knows_where_it_came_from(tmp_path):
    write(tmp_path / "pyproject.toml", """
        [project]
        name = "x"

        [tool.hostapp.plugins]
        disable = [
            "a",
        ]

        [tool.hostapp.events.sinks.acme]
        path = "audit.jsonl"
    """)
    config = load_config(cwd=tmp_path, environ={"HOSTAPP_EVENTS__BATCH_SIZE": "7", "HOSTAPP_STRICT": "1"})
    assert config.origin("plugins.disable") == "pyproject.toml:6"
    assert config.origin("events.sinks.acme") == "pyproject.toml:10"
    assert config.origin("events.sinks.acme.path") == "pyproject.toml:11"
    assert config.origin("events.batch_size") == "HOSTAPP_EVENTS__BATCH_SIZE"
    assert config.origin("plugins.strict") == "HOSTAPP_STRICT"
    assert config.origin("store.path") == "default"
    assert config.origin("events.sinks.sqlite") == "default"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[plugins\nenable = 1\n", r"^hostapp.toml:1: invalid TOML: "),
        ("[plugins]\nenable = 'a'\n", r"^hostapp.toml: plugins.enable: expected a list of strings, got a string$"),
        ("[plugins]\nstrict = 'yes'\n", r"^hostapp.toml: plugins.strict: expected true or false, got a string$"),
        ("[plugins]\ndisable = ['re:(unclosed']\n", r"^hostapp.toml: plugins.disable: .*unclosed"),
        ("[plugins]\npaths = ['nowhere']\n", r"^hostapp.toml: plugins.paths: plugin folder 'nowhere' does not exist$"),
        ("[host]\nshutdown_timeout = -1\n", r"^hostapp.toml: host.shutdown_timeout: must be >= 0, got -1$"),
        ("plugins = 3\n", r"^hostapp.toml: plugins: expected a table, got an integer$"),
        ("[plugins.meta.x]\npriority = 'high'\n", r"^hostapp.toml: plugins.meta.x.priority: invalid value 'high'$"),
        ("[plugins.meta.x]\ncolour = 'red'\n", r"^hostapp.toml: plugins.meta.x.colour: unknown key"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, expected):
    write(tmp_path / "hostapp.toml", text)
    with pytest.raises(ConfigError, match=expected) as excinfo:
        load_config(cwd=tmp_path, environ={})
    assert "\n" not in str(excinfo.value)


def test_from_dict_validates_like_a_file(tmp_path):
    config = Config.from_dict({"plugins": {"modules": ["a.b:c"]}}, root=tmp_path, environ={})
    assert config["plugins.modules"] == ["a.b:c"]
    with pytest.raises(ConfigError, match="<dict>: plugins.modules"):
        Config.from_dict({"plugins": {"modules": "a"}}, environ={})
