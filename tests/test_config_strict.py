"""Strict configuration: every bad value is a clean error naming the file or variable.

Explicit cases first (every documented float key refuses ``nan`` and ``inf``, from TOML and
from the environment; sink tables; the on/off switches), then property-based fuzzing with
hypothesis: random TOML documents of the documented keys holding wrong types, extreme and
non-finite numbers, unicode and empty strings, and random ``HOSTAPP_*`` environments. The
only outcomes allowed are a configuration or a one-line :class:`ConfigError` — in process
for thousands of cases (``HOSTAPP_FUZZ_EXAMPLES``, default 1000 of each kind), and through the real
``hostapp run`` for a sample, where the outcome must be the program's run or exit status 2
with one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::hostapp.config.ConfigWarning")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostapp.config import SCHEMA, Config, key_env, load_config
from hostapp.drivers import ComponentSet
from hostapp.errors import ConfigError
from hostapp.events import EventBus
from hostapp.store import resolve_store_path
from hostapp.types import Contribution, EventSink

EXAMPLES = int(os.environ.get("HOSTAPP_FUZZ_EXAMPLES", "1000"))
FLOAT_KEYS = sorted(k for k, spec in SCHEMA.items() if spec.type == "float")
SWITCHES = ("HOSTAPP_STRICT", "HOSTAPP_DISABLE_PLUGIN_AUTOLOAD", "HOSTAPP_NO_CACHE")
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "hostapp.toml").write_text(text, encoding="utf-8")
    return tmp_path


def toml_table(key: str, value: str) -> str:
    section, name = key.split(".", 1)
    return f"[{section}]\n{name} = {value}\n"


# -- explicit cases ------------------------------------------------------------------------


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("literal", ["nan", "inf", "-inf"])
def test_every_float_key_refuses_non_finite_numbers_from_toml(tmp_path, key, literal):
    write(tmp_path, toml_table(key, literal))
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={})
    assert str(info.value) == f"hostapp.toml: {key}: expected a finite number, got {float(literal)}"


@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_every_float_key_refuses_nan_from_the_environment(tmp_path, key):
    var = key_env(key)
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={var: "nan"})
    assert str(info.value) == f"{var}: {key}: expected a finite number, got nan"


def test_the_float_keys_are_the_documented_timeouts_and_delays():
    assert "host.shutdown_timeout" in FLOAT_KEYS and "host.start_timeout" in FLOAT_KEYS
    assert "events.flush_interval_ms" in FLOAT_KEYS


@pytest.mark.parametrize(("table", "message"), [
    ('enabled = "no"', "events.sinks.jsonl.enabled: expected true or false, got a string"),
    ("batch_size = 0", "events.sinks.jsonl.batch_size: must be >= 1, got 0"),
    ("flush_interval_ms = nan", "events.sinks.jsonl.flush_interval_ms: expected a finite number, got nan"),
    ("max_block_ms = 1e300", "events.sinks.jsonl.max_block_ms: must be <= 8.64e+07, got 1e+300"),
    ('full_policy = "later"', "events.sinks.jsonl.full_policy: expected one of block, spill, drop; got 'later'"),
])
def test_sink_tables_bus_keys_are_checked_when_the_file_is_read(tmp_path, table, message):
    write(tmp_path, f"[events.sinks.jsonl]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={})
    assert str(info.value) == f"hostapp.toml:2: {message}"  # the file and the key's line


@pytest.mark.parametrize("var", SWITCHES)
def test_a_switch_with_an_unknown_value_is_an_error_never_off(tmp_path, var):
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={var: "on please"})
    assert str(info.value).startswith(f"{var}: expected a boolean")
    for value, on in (("on", True), ("OFF", False), ("", False), ("Yes", True), ("0", False)):
        load_config(cwd=tmp_path, environ={var: value})  # every documented spelling is taken


@pytest.mark.parametrize(("text", "message"), [
    ('[store]\npath = ""', "hostapp.toml: store.path: expected a path, got an empty string"),
    ('[store]\npath = "a\\u0000b"', "hostapp.toml: store.path: a path cannot hold a NUL character, got 'a\\x00b'"),
    ('[plugins]\npaths = [""]', "hostapp.toml: plugins.paths: expected a path, got an empty string"),
    (
        '[plugins]\npaths = ["."]',
        "hostapp.toml: plugins.paths: '.' is the project directory itself: every module in it (the program "
        "too) would be imported as a plugin; put plugins in a folder of their own",
    ),
])
def test_paths_that_cannot_work_are_refused(tmp_path, text, message):
    write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={})
    assert str(info.value) == message


# -- fuzzing -------------------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2**31, 2**62, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
)
_scalars = st.one_of(st.booleans(), _numbers, _text, st.sampled_from(["", ".", "re:(", "*", "block", "auto", "sqlite"]))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=6,
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}" for k, v in value.items()) + "}"


_keys = st.sampled_from(sorted(SCHEMA))
_sink_keys = st.sampled_from(["enabled", "batch_size", "flush_interval_ms", "max_retries", "queue_size",
                              "full_policy", "max_block_ms", "retry_backoff_ms", "path", "url"])
_documents = st.tuples(
    st.dictionaries(_keys, _values, max_size=5),
    st.dictionaries(st.sampled_from(["sqlite", "jsonl", "webhook", "x"]), st.dictionaries(_sink_keys, _values, max_size=3), max_size=2),
    st.dictionaries(st.sampled_from(["db", "cache"]), st.dictionaries(
        st.sampled_from(["driver", "load", "options", "timeout", "retries"]), _values, max_size=3), max_size=2),
)


def _document(keys: dict[str, Any], sinks: dict[str, dict[str, Any]], components: dict[str, dict[str, Any]]) -> str:
    sections: dict[str, list[str]] = {}
    for key, value in keys.items():
        if SCHEMA[key].type == "tables" and key != "plugins.meta":
            continue  # whole tables come from the strategies below
        section, name = key.split(".", 1) if "." in key else (key, "")
        if name:
            sections.setdefault(section, []).append(f"{name} = {_toml_value(value)}")
    lines = []
    for section, items in sections.items():
        lines.append(f"[{section}]")
        lines.extend(items)
    for name, table in sinks.items():
        lines.append(f"[events.sinks.{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    for name, table in components.items():
        lines.append(f"[components.{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


_SINKS = [Contribution(EventSink(name=n, handle=lambda events: None), plugin=n) for n in ("sqlite", "jsonl", "webhook")]


def _use(config: Config) -> None:
    """What a run does with a configuration before any plugin code: none of it may raise
    anything but ConfigError."""
    config.discovery_options()
    ComponentSet.from_config(config)
    resolve_store_path(config)
    EventBus(_SINKS, config)


def _assert_clean(error: ConfigError, source: str) -> None:
    text = str(error)
    assert "\n" not in text, text
    assert text.startswith(source), text


@FUZZ
@given(_documents)
def test_fuzzed_toml_gives_a_config_or_one_clean_line(tmp_path, document):
    text = _document(*document)
    write(tmp_path, text)
    try:
        config = load_config(cwd=tmp_path, environ={})
        _use(config)
    except ConfigError as exc:
        _assert_clean(exc, "hostapp.toml")


_env_names = st.one_of(
    st.sampled_from([key_env(k) for k, spec in SCHEMA.items() if spec.type != "tables"]),
    st.sampled_from([*SWITCHES, "HOSTAPP_PLUGINS", "HOSTAPP_DISABLE_PLUGINS",
                     "HOSTAPP_COMPONENTS__DB__LOAD", "HOSTAPP_NOPE", "HOSTAPP_HOST__NOPE"]),
)
_env_values = st.one_of(
    _text, st.sampled_from(["nan", "inf", "-inf", "1e999", "", " ", "1", "0", "on", "maybe", "re:(", "-1",
                            "99999999999999999999", "0x10", "1_000", "a,b,,c"]),
)


@FUZZ
@given(st.dictionaries(_env_names, _env_values, max_size=4))
def test_fuzzed_environment_gives_a_config_or_one_line_naming_the_variable(tmp_path, environ):
    write(tmp_path, '[components.db]\ndriver = "sqlite"\n')
    try:
        config = load_config(cwd=tmp_path, environ=environ)
        _use(config)
    except ConfigError as exc:
        text = str(exc)
        assert "\n" not in text, text
        assert any(text.startswith(var) for var in environ), text


def _hostapp(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON"))}
    base["XDG_CACHE_HOME"] = str(cwd / ".cache")
    return subprocess.run([sys.executable, "-m", "hostapp", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, timeout=120)


@settings(max_examples=int(os.environ.get("HOSTAPP_FUZZ_RUNS", "25")), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(_documents, st.dictionaries(_env_names, _env_values, max_size=2))
def test_fuzzed_configurations_under_the_real_hostapp_run(tmp_path_factory, document, environ):
    """The whole command: the program runs (status 0, its output) or hostapp exits 2 with
    one line on stderr; never a traceback."""
    tmp_path = tmp_path_factory.mktemp("fuzzrun", numbered=True)
    write(tmp_path, _document(*document))
    (tmp_path / "prog.py").write_text("print('ran')\n")
    done = _hostapp(["run", "-q", "prog.py"], tmp_path, environ)
    stderr = done.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    if done.returncode == 0:
        assert done.stdout == b"ran\n"
    else:
        assert done.returncode == 2, stderr
        lines = [line for line in stderr.splitlines() if not line.startswith("hostapp: warning:")]
        assert len(lines) == 1 and lines[0].startswith("hostapp: error: "), stderr
