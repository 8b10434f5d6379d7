"""Configuration: ``hostapp.toml``, ``[tool.hostapp]`` in ``pyproject.toml``, ``HOSTAPP_*``.

Where the configuration comes from, first match wins:

1. ``--config PATH`` (or ``HOSTAPP_CONFIG=PATH``);
2. ``hostapp.toml`` in the working directory;
3. the ``[tool.hostapp]`` table of ``pyproject.toml`` in the working directory;
4. the defaults.

Then environment variables override single keys: ``HOSTAPP_<SECTION>__<KEY>`` (two
underscores between levels), e.g. ``HOSTAPP_HOST__SHUTDOWN_TIMEOUT=5`` or
``HOSTAPP_PLUGINS__DISABLE=a,b`` (lists are comma-separated). ``HOSTAPP_STRICT=1`` sets
``plugins.strict``. The discovery variables (``HOSTAPP_PLUGINS``,
``HOSTAPP_DISABLE_PLUGINS``, ``HOSTAPP_DISABLE_PLUGIN_AUTOLOAD``, ``HOSTAPP_NO_CACHE``) are
applied by the discovery adapter, which names them in the rule of a filtered plugin.

Every key is typed and validated (:data:`SCHEMA`). An unknown key is a warning naming the
file and key. Invalid TOML, a wrong type or a bad pattern raises
:class:`~hostapp.errors.ConfigError`, one line naming the file (and line when TOML gives
it) and the key; the ``hostapp`` command turns it into exit status 2.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostapp.errors import ConfigError

if TYPE_CHECKING:
    from hostapp.discovery import DiscoveryOptions

__all__ = ["SCHEMA", "Config", "ConfigWarning", "Key", "load_config"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigWarning(UserWarning):
    """An unknown configuration key or environment variable (it is ignored)."""


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: its type, default and one-line documentation.

    Attributes:
        type: ``"str"``, ``"bool"``, ``"int"``, ``"float"`` (ints accepted), ``"list"``
            (of strings), ``"patterns"`` (a list of glob / ``re:`` patterns, checked),
            ``"paths"`` (a list of folders, relative to the config file) or ``"tables"``
            (a table of tables, free-form inside: ``[plugins.config.NAME]``) or ``"choice"``.
        default: the value when the key is absent (``None`` means "not set").
        doc: one line for ``docs/configuration.md``.
        minimum: the smallest allowed value for numbers.
        choices: the allowed values for ``"choice"`` (a string from a fixed set).
    """

    type: str
    default: Any
    doc: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()


#: Every known key, by dotted name. Later subsystems add their section here.
SCHEMA: dict[str, Key] = {
    "plugins.enable": Key("patterns", None, "Only plugins whose name matches one of these load."),
    "plugins.disable": Key("patterns", [], "Plugins whose name matches one of these never load."),
    "plugins.enable_locations": Key(
        "patterns", None, "Only plugins whose location (file or dist-info path) matches load."
    ),
    "plugins.disable_locations": Key(
        "patterns", [], "Plugins whose location matches one of these never load."
    ),
    "plugins.allow_tags": Key("list", None, "Only plugins having one of these tags load."),
    "plugins.deny_tags": Key("list", [], "Plugins having one of these tags never load."),
    "plugins.paths": Key("paths", [], "Plugin folders: a module or package per plugin."),
    "plugins.modules": Key("list", [], "Plugin modules to load: 'module' or 'module:attr'."),
    "plugins.autoload": Key("bool", True, "Read entry points of installed distributions."),
    "plugins.cache": Key("bool", True, "Cache the entry-point index on disk."),
    "plugins.strict": Key("bool", False, "Any plugin failure is fatal (plugin development)."),
    "plugins.config": Key("tables", {}, "Per-plugin settings, [plugins.config.NAME]."),
    "plugins.meta": Key("tables", {}, "Per-plugin tags, priority, description, [plugins.meta.NAME]."),
    "host.shutdown_timeout": Key("float", 10.0, "Seconds stop() may take in all.", minimum=0),
    "store.path": Key("str", ".hostapp/hostapp.sqlite3", "The SQLite store (relative to the config file)."),
    "events.sinks": Key(
        "tables", {"sqlite": {}}, "Enabled sinks and their settings, [events.sinks.NAME]."
    ),
    "events.queue_size": Key("int", 100_000, "Events each sink's queue holds.", minimum=1),
    "events.full_policy": Key(
        "choice", "block", "When a queue is full: block (bounded), spill (to the store) or drop.",
        choices=("block", "spill", "drop"),
    ),
    "events.max_block_ms": Key("float", 100.0, "Longest emit() may block, in ms.", minimum=0),
    "events.batch_size": Key("int", 1000, "Most events per sink batch.", minimum=1),
    "events.flush_interval_ms": Key("float", 200.0, "Longest wait before a partial batch, in ms.", minimum=1),
    "events.max_retries": Key("int", 5, "Retries of a failed batch before it is a dead letter.", minimum=0),
    "events.retry_backoff_ms": Key("float", 100.0, "First retry delay in ms (doubles, with jitter).", minimum=0),
    "events.retry_max_backoff_ms": Key("float", 10_000.0, "Longest retry delay in ms.", minimum=0),
    "components": Key(
        "tables", {}, "Components built by drivers, [components.NAME]: driver, load, options."
    ),
    "tracing.enabled": Key("bool", True, "Trace what the processors select while a host runs."),
    "tracing.backend": Key(
        "choice", "auto", "auto (sys.monitoring on 3.12+, trampoline on 3.11), monitoring, trampoline or profile.",
        choices=("auto", "monitoring", "trampoline", "profile"),
    ),
    "tracing.processors": Key("patterns", None, "Only trace processors whose name matches one of these run."),
    "tracing.disable": Key("patterns", [], "Trace processors whose name matches one of these never run."),
    "tracing.max_errors": Key(
        "int", 10, "Consecutive errors after which a processor is switched off for the run.", minimum=1
    ),
    "tracing.library_paths": Key("paths", [], "More directories of library code, skipped for the call site."),
    "tracing.app_paths": Key(
        "paths", [], "The program's own directories: their code is the call site even when installed among the libraries.",
    ),
    "tracing.kolo_compat": Key("bool", False, "Also load Kolo processors from entry-point group kolo.processors."),
    "tracing.kolo_processors": Key("list", [], "Kolo processor configs to load: 'module:attr' (a dict or a list)."),
    "tracing.max_body_bytes": Key("int", 65_536, "HTTP bodies are cut at this many bytes (flag body_truncated).", minimum=0),
    "tracing.supersede": Key(
        "bool", True, "A plugin's processor selecting the same calls as a built-in one is superseded by it.",
    ),
    "tracing.redact_headers": Key(
        "list", ["Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"],
        "Keys (HTTP headers first) whose values are replaced by [REDACTED] in HTTP events (case-insensitive).",
    ),
    "probes.enabled": Key("bool", True, "Apply the probe specs of the store in running hosts (the probes task)."),
    "probes.store": Key("str", "sqlite", "Where probe specs live: sqlite (the store) or component:NAME (a redis component)."),
    "probes.poll_interval": Key("float", 1.0, "Seconds between two reads of the probe specs' change marker.", minimum=0.05),
    "probes.max_errors": Key("int", 10, "Errors after which an instrument is switched off in a process.", minimum=1),
    "probes.allow_unsafe": Key("bool", False, "Do not check probe expressions (any Python runs; warned at every start)."),
    "probes.namespace": Key("list", [], "More names for probe expressions: 'module' or 'module:attr' (a dict is merged)."),
    "probes.event_buffer": Key("int", 10_000, "Probe events a process buffers for export; beyond, they are dropped and counted.", minimum=1),
    "tracing.redact_params": Key(
        "list", ["token", "access_token", "refresh_token", "id_token", "api_key", "apikey", "password", "passwd",
                 "secret", "client_secret"],
        "Query parameters and body keys whose values are replaced by [REDACTED] in HTTP events (case-insensitive).",
    ),
}

_META_KEYS: dict[str, Callable[[Any], bool]] = {
    "tags": lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
    "priority": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "description": lambda v: isinstance(v, str),
}


@dataclass(frozen=True)
class Config:
    """The validated configuration.

    Attributes:
        data: every key of :data:`SCHEMA` by dotted name, defaults filled in, plus the
            ``plugins.config`` and ``plugins.meta`` tables.
        source: where it came from: a file path, ``"<defaults>"`` or ``"<dict>"``.
        root: the directory relative paths are resolved against (the config file's
            directory, else the working directory).
        warnings: the warnings found while loading (unknown keys), one line each.
    """

    data: Mapping[str, Any]
    source: str = "<defaults>"
    root: Path = field(default_factory=Path.cwd)
    warnings: tuple[str, ...] = ()

    @classmethod
    def default(cls) -> Config:
        """The default configuration (what you get with no file and no environment)."""
        return cls({key: _copy(k.default) for key, k in SCHEMA.items()})

    @classmethod
    def from_dict(
        cls,
        raw: Mapping[str, Any],
        *,
        source: str = "<dict>",
        root: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Validate a nested dict (as parsed from TOML) and apply environment overrides.

        Args:
            raw: ``{"plugins": {"enable": [...]}, ...}``.
            source: named in errors and warnings.
            root: base for relative paths (default: the working directory).
            environ: environment for ``HOSTAPP_*`` overrides; ``{}`` for none
                (default ``os.environ``).

        Raises:
            ConfigError: a wrong type or a bad pattern, naming ``source`` and the key.
        """
        root = Path(root) if root is not None else Path.cwd()
        env = os.environ if environ is None else environ
        found: list[str] = []
        data = {key: _copy(k.default) for key, k in SCHEMA.items()}
        flat = _flatten(raw, source, found)
        for key, value in flat.items():
            data[key] = _validate(key, value, source, root)
        for key, value in _env_overrides(env, found).items():
            if key.startswith("components."):
                data["components"] = _component_override(data["components"], key, value)
                continue
            data[key] = _validate(key, value, key_env(key), root)
        for message in found:
            warnings.warn(message, ConfigWarning, stacklevel=3)
        return cls(data, source=source, root=root, warnings=tuple(found))

    def get(self, key: str, default: Any = None) -> Any:
        """The value of dotted ``key`` (``"plugins.enable"``), or ``default``."""
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def strict(self) -> bool:
        """``plugins.strict``: any plugin failure is fatal."""
        return bool(self.data["plugins.strict"])

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The ``[plugins.config.NAME]`` table of plugin ``name`` (a copy; ``{}`` when absent)."""
        return dict(self.data["plugins.config"].get(name, {}))

    def discovery_options(self, environ: Mapping[str, str] | None = None) -> DiscoveryOptions:
        """The :class:`~hostapp.discovery.DiscoveryOptions` this configuration describes."""
        from hostapp.discovery import DiscoveryOptions

        def opt(key: str) -> tuple[str, ...] | None:
            value = self.data[key]
            return None if value is None else tuple(value)

        kolo = bool(self.data["tracing.kolo_compat"])
        return DiscoveryOptions(
            groups=("hostapp", "kolo.processors") if kolo else ("hostapp",),
            enable=opt("plugins.enable"),
            disable=tuple(self.data["plugins.disable"]),
            enable_locations=opt("plugins.enable_locations"),
            disable_locations=tuple(self.data["plugins.disable_locations"]),
            allow_tags=opt("plugins.allow_tags"),
            deny_tags=tuple(self.data["plugins.deny_tags"]),
            paths=tuple(Path(p) for p in self.data["plugins.paths"]),
            modules=(*self.data["plugins.modules"], *self.data["tracing.kolo_processors"]),
            meta=dict(self.data["plugins.meta"]),
            autoload=bool(self.data["plugins.autoload"]),
            use_cache=bool(self.data["plugins.cache"]),
            config_source=self.source,
        )


def key_env(key: str) -> str:
    """The environment variable that overrides dotted ``key``: ``HOSTAPP_HOST__SHUTDOWN_TIMEOUT``."""
    return "HOSTAPP_" + key.upper().replace(".", "__")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Find, read and validate the configuration (see the module docstring for the order).

    Args:
        path: an explicit file (``--config``); ``HOSTAPP_CONFIG`` when ``None``.
        cwd: where to look for ``hostapp.toml`` / ``pyproject.toml`` (default: the
            working directory).
        environ: the environment (default ``os.environ``).

    Returns:
        the :class:`Config`; unknown keys are in ``config.warnings`` and were warned
        (:class:`ConfigWarning`).

    Raises:
        ConfigError: the file is missing (when given explicitly), unreadable, not valid
            TOML, or a key has a wrong type or a bad pattern.
    """
    import tomllib

    env = os.environ if environ is None else environ
    base = Path(cwd) if cwd is not None else Path.cwd()
    if path is None and env.get("HOSTAPP_CONFIG"):
        path = env["HOSTAPP_CONFIG"]
    candidates: list[tuple[Path, bool]]
    if path is not None:
        file = Path(path)
        if not file.is_absolute():
            file = base / file
        if not file.is_file():
            raise ConfigError(str(path), "config file not found")
        candidates = [(file, file.name == "pyproject.toml")]
    else:
        candidates = [(base / "hostapp.toml", False), (base / "pyproject.toml", True)]
    for file, is_pyproject in candidates:
        if not file.is_file():
            continue
        shown = _shown(file, base)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(shown, f"cannot read: {exc}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message, line = _toml_error(exc)
            raise ConfigError(shown, f"invalid TOML: {message}", line=line) from None
        if is_pyproject:
            tool = raw.get("tool", {})
            if "hostapp" not in tool:
                if path is not None:
                    raise ConfigError(shown, "no [tool.hostapp] table")
                continue
            raw = tool["hostapp"]
            shown = f"{shown} [tool.hostapp]"
        if not isinstance(raw, dict):
            raise ConfigError(shown, "expected a table")
        return Config.from_dict(raw, source=shown, root=file.parent, environ=env)
    return Config.from_dict({}, source="<defaults>", root=base, environ=env)


# -- internals ---------------------------------------------------------------------------


def _shown(file: Path, base: Path) -> str:
    try:
        return str(file.relative_to(base))
    except ValueError:
        return str(file)


def _toml_error(exc: Exception) -> tuple[str, int | None]:
    text = str(exc)
    match = re.search(r"\s*\(at line (\d+), column \d+\)$", text)
    if match:
        return text[: match.start()], int(match.group(1))
    return text, getattr(exc, "lineno", None)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _flatten(raw: Mapping[str, Any], source: str, found: list[str]) -> dict[str, Any]:
    """Turn the nested tables into dotted keys; unknown keys become warnings."""
    out: dict[str, Any] = {}
    sections = {key.split(".", 1)[0] for key in SCHEMA}
    for section, table in raw.items():
        if section not in sections:
            found.append(f"{source}: unknown key {section!r} (ignored)")
            continue
        if not isinstance(table, dict):
            raise ConfigError(source, f"expected a table, got {_tname(table)}", key=section)
        if section in SCHEMA:  # a section that is one key, a table of tables ([components.NAME])
            out[section] = table
            continue
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in SCHEMA:
                found.append(f"{source}: unknown key {key!r} (ignored)")
                continue
            out[key] = value
    return out


def _env_overrides(env: Mapping[str, str], found: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, value in env.items():
        if not var.startswith("HOSTAPP_") or "__" not in var:
            continue
        key = var[len("HOSTAPP_") :].lower().replace("__", ".")
        if key.startswith("components.") and key.count(".") == 2 and key.rsplit(".", 1)[1] in ("driver", "load"):
            out[key] = value.strip()  # HOSTAPP_COMPONENTS__NAME__LOAD=no
            continue
        spec = SCHEMA.get(key)
        if spec is None or spec.type == "tables":
            found.append(f"{var}: unknown configuration key {key!r} (ignored)")
            continue
        out[key] = _from_env(spec, value, var)
    strict = env.get("HOSTAPP_STRICT")
    if strict is not None:
        out["plugins.strict"] = _from_env(SCHEMA["plugins.strict"], strict, "HOSTAPP_STRICT")
    return out


def _from_env(spec: Key, value: str, var: str) -> Any:
    text = value.strip()
    if spec.type == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(var, f"expected a boolean (1/0, true/false), got {value!r}")
    if spec.type == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(var, f"expected an integer, got {value!r}") from None
    if spec.type == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(var, f"expected a number, got {value!r}") from None
    if spec.type in ("list", "patterns", "paths"):
        sep = os.pathsep if spec.type == "paths" else ","
        return [item.strip() for item in text.split(sep) if item.strip()]
    return value


def _tname(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)


def _validate(key: str, value: Any, source: str, root: Path) -> Any:
    spec = SCHEMA[key]
    kind = spec.type

    def fail(expected: str) -> ConfigError:
        return ConfigError(source, f"expected {expected}, got {_tname(value)}", key=key)

    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind in ("int", "float"):
        ok = isinstance(value, int) or (kind == "float" and isinstance(value, float))
        if isinstance(value, bool) or not ok:
            raise fail("an integer" if kind == "int" else "a number")
        if spec.minimum is not None and value < spec.minimum:
            raise ConfigError(source, f"must be >= {spec.minimum}, got {value}", key=key)
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise ConfigError(
                source, f"expected one of {', '.join(spec.choices)}; got {value!r}", key=key
            )
        return value
    if kind in ("list", "patterns", "paths"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail("a list of strings")
        if kind == "patterns":
            from hostapp.discovery import compile_pattern

            for pattern in value:
                compile_pattern(pattern, source=source, key=key)
        if kind == "paths":
            folders = []
            for item in value:
                folder = Path(item).expanduser()
                if not folder.is_absolute():
                    folder = root / folder
                if not folder.is_dir():
                    raise ConfigError(source, f"plugin folder {item!r} does not exist", key=key)
                folders.append(str(folder))
            return folders
        return list(value)
    if kind == "tables":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise fail("a table of tables ([%s.NAME])" % key)
        if key == "plugins.meta":
            for name, table in value.items():
                for meta_key, meta_value in table.items():
                    check = _META_KEYS.get(meta_key)
                    where = f"{key}.{name}.{meta_key}"
                    if check is None:
                        raise ConfigError(
                            source, "unknown key; expected tags, priority or description", key=where
                        )
                    if not check(meta_value):
                        raise ConfigError(source, f"invalid value {meta_value!r}", key=where)
        if key == "components":
            return _check_components(value, source)
        tables = {name: dict(table) for name, table in value.items()}
        if key == "events.sinks":  # the defaults stay enabled unless `enabled = false`
            tables = {**{n: dict(t) for n, t in spec.default.items()}, **tables}
        return tables
    raise AssertionError(f"unknown schema type {kind!r} for {key}")


_COMPONENT_KEYS = ("driver", "load", "options")


def _check_components(value: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate ``[components.NAME]`` tables: ``driver`` (required string), ``load``
    (``auto`` | ``yes`` | ``no``, default ``auto``), ``options`` (a table, default ``{}``).

    Raises:
        ConfigError: an unknown key, a missing driver or a bad value, naming
            ``components.NAME.KEY``.
    """
    from hostapp.types import LOAD_VALUES

    out: dict[str, Any] = {}
    for name, table in value.items():
        for item in table:
            if item not in _COMPONENT_KEYS:
                raise ConfigError(
                    source, "unknown key; expected driver, load or options", key=f"components.{name}.{item}"
                )
        driver = table.get("driver")
        if not isinstance(driver, str) or not driver.strip():
            got = "nothing" if driver is None else _tname(driver)
            raise ConfigError(
                source, f"required: the name of a driver (a string), got {got}", key=f"components.{name}.driver"
            )
        load = table.get("load", "auto")
        if load not in LOAD_VALUES:
            raise ConfigError(
                source, f"expected one of {', '.join(LOAD_VALUES)}; got {load!r}", key=f"components.{name}.load"
            )
        options = table.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(source, f"expected a table, got {_tname(options)}", key=f"components.{name}.options")
        out[name] = {"driver": driver, "load": load, "options": dict(options)}
    return out


def _component_override(tables: Mapping[str, Any], key: str, value: str) -> dict[str, Any]:
    """Apply ``HOSTAPP_COMPONENTS__NAME__LOAD`` / ``__DRIVER`` to the configured components.

    Raises:
        ConfigError: no component ``NAME`` is configured, or the value is invalid.
    """
    var = key_env(key)
    _, name, item = key.split(".")
    if name not in tables:
        raise ConfigError(var, f"no component {name!r} is configured ([components.{name}])")
    merged = {n: dict(t) for n, t in tables.items()}
    merged[name][item] = value
    return _check_components(merged, var)
