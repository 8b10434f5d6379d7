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

Every key is typed and validated (:data:`SCHEMA`). An unknown key, or an unknown
``HOSTAPP_*`` variable (not a key override and not in :data:`ENVIRONMENT`), is a warning
naming the file and line (or the variable) and, when one is close (:mod:`difflib`), the key
that was meant. Each value's origin is kept (:attr:`Config.origins`: ``file:line``, the
variable, or the default), for ``hostapp config``. Invalid TOML, a wrong type, a number
out of range (``nan`` and ``inf`` included), a bad pattern, or a ``HOSTAPP_*`` switch with
a value that is not an on/off one raises :class:`~hostapp.errors.ConfigError`, one line
naming the file (and line when TOML gives it) or the environment variable, and the key;
the ``hostapp`` command turns it into exit status 2. The bus keys of a sink's table
(``[events.sinks.NAME] batch_size``, ...) are validated like the ``events.*`` key of the
same name.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from hostapp._env import FLAGS, parse_flag
from hostapp.errors import ConfigError

if TYPE_CHECKING:
    from hostapp.discovery import DiscoveryOptions

__all__ = ["ENVIRONMENT", "SCHEMA", "Config", "ConfigWarning", "Key", "did_you_mean", "load_config"]


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
        maximum: the largest allowed value for numbers (numbers are always finite: ``nan``
            and ``inf`` are refused).
        choices: the allowed values for ``"choice"`` (a string from a fixed set).
    """

    type: str
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


_DAY_S: Final = 86_400
_DAY_MS: Final = 86_400_000

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
    "plugins.autoload": Key(
        "bool", True, "Read entry points of installed distributions (hostapp's built-ins are read either way)."
    ),
    "plugins.builtins": Key("bool", True, "Load hostapp's built-in plugins (hostapp --no-builtins)."),
    "plugins.force": Key(
        "list", [], "Plugins that load even where a filter or autoload = false leaves them out (hostapp --enable)."
    ),
    "plugins.cache": Key("bool", True, "Cache the entry-point index on disk."),
    "plugins.strict": Key("bool", False, "Any plugin failure is fatal (plugin development)."),
    "plugins.allow_insecure": Key(
        "bool", False, "Load plugins from folders and files other users can write to (refused by default)."
    ),
    "plugins.config": Key("tables", {}, "Per-plugin settings, [plugins.config.NAME]."),
    "plugins.meta": Key("tables", {}, "Per-plugin tags, priority, description, requires, [plugins.meta.NAME]."),
    "host.shutdown_timeout": Key("float", 10.0, "Seconds stop() may take in all.", minimum=0, maximum=_DAY_S),
    "host.start_timeout": Key(
        "float", 10.0, "Seconds each plugin call at start may take before the plugin is abandoned.",
        minimum=0.01, maximum=_DAY_S,
    ),
    "store.path": Key("str", ".hostapp/hostapp.sqlite3", "The SQLite store (relative to the config file)."),
    "events.sinks": Key(
        "tables", {"sqlite": {}}, "Sink settings, [events.sinks.NAME]; enabled = false turns one off."
    ),
    "events.queue_size": Key("int", 100_000, "Events each sink's queue holds.", minimum=1, maximum=100_000_000),
    "events.full_policy": Key(
        "choice", "block", "When a queue is full: block (bounded), spill (to the store) or drop.",
        choices=("block", "spill", "drop"),
    ),
    "events.max_block_ms": Key("float", 100.0, "Longest emit() may block, in ms.", minimum=0, maximum=_DAY_MS),
    "events.batch_size": Key("int", 1000, "Most events per sink batch.", minimum=1, maximum=1_000_000),
    "events.flush_interval_ms": Key(
        "float", 200.0, "Longest wait before a partial batch, in ms.", minimum=1, maximum=_DAY_MS
    ),
    "events.max_retries": Key(
        "int", 5, "Retries of a failed batch before it is a dead letter.", minimum=0, maximum=1000
    ),
    "events.retry_backoff_ms": Key(
        "float", 100.0, "First retry delay in ms (doubles, with jitter).", minimum=0, maximum=_DAY_MS
    ),
    "events.retry_max_backoff_ms": Key("float", 10_000.0, "Longest retry delay in ms.", minimum=0, maximum=_DAY_MS),
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
        "int", 10, "Consecutive errors after which a processor is switched off for the run.",
        minimum=1, maximum=2**31,
    ),
    "tracing.library_paths": Key("paths", [], "More directories of library code, skipped for the call site."),
    "tracing.app_paths": Key(
        "paths", [], "The program's own directories: their code is the call site even when installed among the libraries.",
    ),
    "tracing.kolo_compat": Key("bool", False, "Also load Kolo processors from entry-point group kolo.processors."),
    "tracing.kolo_processors": Key("list", [], "Kolo processor configs to load: 'module:attr' (a dict or a list)."),
    "tracing.max_body_bytes": Key(
        "int", 65_536, "HTTP bodies are cut at this many bytes (flag body_truncated).", minimum=0, maximum=2**31
    ),
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
    "serve.host": Key("str", "127.0.0.1", "Address hostapp serve listens on (not loopback: HOSTAPP_SERVE_TOKEN is required)."),
    "serve.port": Key("int", 8765, "Port hostapp serve listens on (0: a free one).", minimum=0),
}

#: The ``HOSTAPP_*`` environment variables that are not key overrides
#: (``HOSTAPP_<SECTION>__<KEY>``), with one line each: ``hostapp --help`` and
#: ``docs/configuration.md`` list them, and any other ``HOSTAPP_*`` variable is warned about
#: (with the name that was meant). A module that reads a variable of its own adds it here.
ENVIRONMENT: dict[str, str] = {
    "HOSTAPP_CONFIG": "The configuration file (as hostapp --config PATH).",
    "HOSTAPP_STRICT": "1: any plugin failure is fatal and unknown keys are errors (as hostapp --strict).",
    "HOSTAPP_PLUGINS": "Only these plugins load: comma-separated names or patterns.",
    "HOSTAPP_DISABLE_PLUGINS": "These plugins never load: comma-separated names or patterns (as hostapp --disable).",
    "HOSTAPP_DISABLE_PLUGIN_AUTOLOAD": (
        "1: no entry points of installed distributions; hostapp's built-ins stay (as pytest's "
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD)."
    ),
    "HOSTAPP_NO_CACHE": "1: bypass the entry-point index cache (as hostapp plugins --no-cache).",
    "HOSTAPP_SERVE_TOKEN": "The token of hostapp serve (a secret: no key in the file).",
}

_META_KEYS: dict[str, Callable[[Any], bool]] = {
    "tags": lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
    "priority": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "description": lambda v: isinstance(v, str),
    "requires": lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
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
        warnings: the warnings found while loading (unknown keys and variables), one line
            each.
        origins: where each value that is not a default came from, by dotted key (also
            the keys inside table-of-tables keys: ``"events.sinks.acme"``,
            ``"events.sinks.acme.path"``): ``"hostapp.toml:12"`` (the file and the line of
            the key), ``"HOSTAPP_EVENTS__BATCH_SIZE"`` (the variable), ``"<dict>"``; a key
            that is absent has its default (:meth:`origin`).
    """

    data: Mapping[str, Any]
    source: str = "<defaults>"
    root: Path = field(default_factory=Path.cwd)
    warnings: tuple[str, ...] = ()
    origins: Mapping[str, str] = field(default_factory=dict)

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
        return cls._build(raw, source=source, root=root, environ=environ)

    @classmethod
    def _build(
        cls,
        raw: Mapping[str, Any],
        *,
        source: str,
        root: Path | None,
        environ: Mapping[str, str] | None,
        lines: Mapping[str, int] | None = None,
        shown: str | None = None,
    ) -> Config:
        root = Path(root) if root is not None else Path.cwd()
        env = os.environ if environ is None else environ
        found: list[str] = []
        data = {key: _copy(k.default) for key, k in SCHEMA.items()}
        where = _Where(shown or source, lines or {})
        origins: dict[str, str] = {}
        flat = _flatten(raw, where, found)
        for key, value in flat.items():
            data[key] = _validate(key, value, source, root, where)
            origins.update(where.origins(key, value))
        for key, value in _env_overrides(env, found).items():
            var = "HOSTAPP_STRICT" if key == "plugins.strict" and "HOSTAPP_STRICT" in env else key_env(key)
            if key.startswith("components."):
                data["components"] = _component_override(data["components"], key, value)
                origins[key] = var
                continue
            data[key] = _validate(key, value, var, root)
            origins[key] = var
        for message in found:
            warnings.warn(message, ConfigWarning, stacklevel=4)
        return cls(data, source=source, root=root, warnings=tuple(found), origins=origins)

    def origin(self, key: str) -> str:
        """Where the value of dotted ``key`` comes from: ``"hostapp.toml:12"``, the
        environment variable, or ``"default"`` (a key inside a table of tables that is not
        set itself gives its table's origin)."""
        probe = key
        while probe:
            found = self.origins.get(probe)
            if found is not None:
                return found
            parent = probe.rpartition(".")[0]
            if parent in SCHEMA:  # an entry of a table of tables that the file does not set
                return "default"
            probe = parent
        return "default"

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
            builtins=bool(self.data["plugins.builtins"]),
            force=tuple(self.data["plugins.force"]),
            use_cache=bool(self.data["plugins.cache"]),
            config_source=self.source,
            root=str(self.root),
            allow_insecure=bool(self.data["plugins.allow_insecure"]),
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
        import tomllib  # only when there is a file to read

        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(shown, f"cannot read: {exc}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message, line = _toml_error(exc)
            raise ConfigError(shown, f"invalid TOML: {message}", line=line) from None
        lines = toml_key_lines(text)
        where = _shown(file, base)
        if is_pyproject:
            tool = raw.get("tool", {})
            if "hostapp" not in tool:
                if path is not None:
                    raise ConfigError(shown, "no [tool.hostapp] table")
                continue
            raw = tool["hostapp"]
            shown = f"{shown} [tool.hostapp]"
            lines = {k[len("tool.hostapp."):]: n for k, n in lines.items() if k.startswith("tool.hostapp.")}
        if not isinstance(raw, dict):
            raise ConfigError(shown, "expected a table")
        return Config._build(raw, source=shown, root=file.parent, environ=env, lines=lines, shown=where)
    return Config.from_dict({}, source="<defaults>", root=base, environ=env)


# -- internals ---------------------------------------------------------------------------


_TOML_KEY = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_TOML_PATH = rf"{_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*"


def toml_key_lines(text: str) -> dict[str, int]:
    """The line (1-based) of every table header and key of a TOML document, by dotted path.

    ``[events.sinks.acme]`` on line 7 and ``path = "x"`` below it give
    ``{"events.sinks.acme": 7, "events.sinks.acme.path": 8}``; keys of inline tables
    and arrays of tables are not listed (their parent's line is the nearest).
    ``tomllib`` keeps no positions, so this reads the lines itself: what it cannot place
    (inside a multi-line string) it leaves out.
    """
    import re

    header = re.compile(rf"^\s*\[\s*({_TOML_PATH})\s*\]\s*(?:#.*)?$")
    array = re.compile(rf"^\s*\[\[\s*({_TOML_PATH})\s*\]\]")
    assign = re.compile(rf"^\s*({_TOML_PATH})\s*=")
    part = re.compile(_TOML_KEY)
    out: dict[str, int] = {}
    table: str | None = ""
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        found = array.match(line)
        if found:
            table = None  # keys of arrays of tables are not placed
            continue
        found = header.match(line)
        if found:
            table = ".".join(p.strip("\"'") for p in part.findall(found.group(1)))
            out.setdefault(table, number)
            continue
        found = assign.match(line)
        if found and table is not None:
            key = ".".join(p.strip("\"'") for p in part.findall(found.group(1)))
            out.setdefault(f"{table}.{key}" if table else key, number)
        rest = line[found.end():] if found else line
        for quote in ('"""', "'''"):
            if rest.count(quote) % 2 == 1:
                in_string = quote
                break
    return out


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


def did_you_mean(word: str, choices: Iterable[str], *, common: str = "") -> str:
    """``"; did you mean 'x'?"`` for the choice closest to ``word``, or ``""`` when none is close.

    Args:
        word: what was written.
        choices: what exists.
        common: a prefix shared by ``word`` and the choices worth comparing
            (``"plugins."``, ``"HOSTAPP_"``): only choices with it are considered, and
            only the rest is compared, so that a long shared prefix does not make
            unrelated names look alike.

    Uses :func:`difflib.get_close_matches` with its default cutoff, 0.6.
    """
    import difflib

    if not word.startswith(common):
        return ""
    rest = {c[len(common):]: c for c in choices if c.startswith(common) and c != word}
    close = difflib.get_close_matches(word[len(common):], list(rest), n=1)
    return f"; did you mean {rest[close[0]]!r}?" if close else ""


#: Keys of a ``[events.sinks.NAME]`` table the event bus reads itself; the rest is the
#: sink's own (``hostapp.events.worker.BUS_KEYS`` is this tuple).
SINK_BUS_KEYS: tuple[str, ...] = (
    "enabled", "batch_size", "flush_interval_ms", "max_retries", "retry_backoff_ms",
    "retry_max_backoff_ms", "queue_size", "full_policy", "max_block_ms",
)


class _Where:
    """Names a key's place in the file (``hostapp.toml:12``) for warnings and origins."""

    def __init__(self, shown: str, lines: Mapping[str, int]) -> None:
        self.shown = shown
        self.lines = lines

    def __call__(self, key: str) -> str:
        probe = key
        while probe:
            line = self.lines.get(probe)
            if line is not None:
                return f"{self.shown}:{line}"
            probe = probe.rpartition(".")[0]
        return self.shown

    def origins(self, key: str, value: Any) -> dict[str, str]:
        """The origin of ``key`` and, for a table of tables, of every key inside it."""
        out = {key: self(key)}
        if SCHEMA[key].type == "tables" and isinstance(value, Mapping):
            for name, table in value.items():
                out[f"{key}.{name}"] = self(f"{key}.{name}")
                if isinstance(table, Mapping):
                    for item in table:
                        out[f"{key}.{name}.{item}"] = self(f"{key}.{name}.{item}")
        return out


def _flatten(raw: Mapping[str, Any], where: _Where, found: list[str]) -> dict[str, Any]:
    """Turn the nested tables into dotted keys; unknown keys become warnings."""
    out: dict[str, Any] = {}
    source = where.shown
    sections = {key.split(".", 1)[0] for key in SCHEMA}
    for section, table in raw.items():
        if section not in sections:
            hint = did_you_mean(section, sections)
            if not hint and isinstance(table, Mapping):  # [plugin] for [plugins]: the keys tell
                hint = did_you_mean(".".join([section, *table][:2]), SCHEMA)
            found.append(f"{where(section)}: unknown key {section!r} (ignored){hint}")
            continue
        if not isinstance(table, dict):
            raise ConfigError(source, f"expected a table, got {_tname(table)}", key=section)
        if section in SCHEMA:  # a section that is one key, a table of tables ([components.NAME])
            out[section] = table
            continue
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in SCHEMA:
                hint = did_you_mean(key, SCHEMA, common=section + ".")
                found.append(f"{where(key)}: unknown key {key!r} (ignored){hint}")
                continue
            out[key] = value
            if key == "events.sinks" and isinstance(value, Mapping):
                _check_sink_keys(value, where, found)
    return out


def _check_sink_keys(tables: Mapping[str, Any], where: _Where, found: list[str]) -> None:
    """Warn about a ``[events.sinks.NAME]`` key that is close to one the bus reads
    (``enabeld``, ``batchsize``): the rest of the table is the sink's own, so only such
    near misses can be told apart from the sink's settings."""
    import difflib

    for name, table in tables.items():
        if not isinstance(table, Mapping):
            continue
        for item in table:
            if item in SINK_BUS_KEYS:
                continue
            close = difflib.get_close_matches(item, SINK_BUS_KEYS, n=1, cutoff=0.8)
            if close:
                key = f"events.sinks.{name}.{item}"
                found.append(
                    f"{where(key)}: key {key!r} is not read by the event bus (it goes to the sink as is); "
                    f"did you mean {close[0]!r}?"
                )


_ENV_SECTIONS = frozenset(f"HOSTAPP_{key.split('.', 1)[0].upper()}__" for key in SCHEMA)


def known_environment() -> list[str]:
    """Every ``HOSTAPP_*`` variable hostapp reads: :data:`ENVIRONMENT` and the key
    overrides (``HOSTAPP_<SECTION>__<KEY>``), sorted."""
    overrides = [key_env(k) for k, spec in SCHEMA.items() if spec.type != "tables"]
    return sorted({*ENVIRONMENT, *overrides})


def _env_overrides(env: Mapping[str, str], found: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var in FLAGS:  # a misspelt value of a switch is an error, never "off"
        if var in env:
            parse_flag(env[var], var)
    known: list[str] | None = None
    for var, value in env.items():
        if not var.startswith("HOSTAPP_") or var in ENVIRONMENT:
            continue
        key = var[len("HOSTAPP_") :].lower().replace("__", ".")
        if key.startswith("components.") and key.count(".") == 2 and key.rsplit(".", 1)[1] in ("driver", "load"):
            out[key] = value.strip()  # HOSTAPP_COMPONENTS__NAME__LOAD=no
            continue
        spec = SCHEMA.get(key) if "__" in var else None
        if spec is None or spec.type == "tables":
            if known is None:
                known = known_environment()
            section = var.split("__", 1)[0] + "__" if "__" in var else ""
            hint = did_you_mean(var, known, common=section if section in _ENV_SECTIONS else "HOSTAPP_")
            if "__" in var:
                found.append(f"{var}: unknown configuration key {key!r} (ignored){hint}")
            else:
                found.append(f"{var}: unknown hostapp environment variable (ignored){hint}")
            continue
        out[key] = _from_env(spec, value, var)
    strict = env.get("HOSTAPP_STRICT")
    if strict is not None:
        out["plugins.strict"] = parse_flag(strict, "HOSTAPP_STRICT")
    return out


def _from_env(spec: Key, value: str, var: str) -> Any:
    text = value.strip()
    if spec.type == "bool":
        return parse_flag(value, var)
    if spec.type == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(var, f"expected an integer, got {value!r}") from None
    if spec.type == "float":
        try:
            return float(text)  # "nan" and "inf" parse, and are refused by _validate
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


def _validate(key: str, value: Any, source: str, root: Path, where: Callable[[str], str] | None = None) -> Any:
    spec = SCHEMA[key]
    kind = spec.type

    def fail(expected: str) -> ConfigError:
        return ConfigError(source, f"expected {expected}, got {_tname(value)}", key=key)

    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind in ("int", "float"):
        return _number(value, source, key, integer=kind == "int", minimum=spec.minimum, maximum=spec.maximum)
    if kind == "str":
        if not isinstance(value, str):
            raise fail("a string")
        if key == "store.path":
            _check_path_text(value, source, key)
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
                _check_path_text(item, source, key)
                folder = Path(item).expanduser()
                if not folder.is_absolute():
                    folder = root / folder
                if not folder.is_dir():
                    raise ConfigError(source, f"plugin folder {item!r} does not exist", key=key)
                if key == "plugins.paths" and _same_dir(folder, root):
                    raise ConfigError(
                        source,
                        f"{item!r} is the project directory itself: every module in it (the program "
                        "too) would be imported as a plugin; put plugins in a folder of their own",
                        key=key,
                    )
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
                            source, "unknown key; expected tags, priority, description or requires"
                            + did_you_mean(meta_key, _META_KEYS), key=where,
                        )
                    if not check(meta_value):
                        raise ConfigError(source, f"invalid value {meta_value!r}", key=where)
        if key == "components":
            return _check_components(value, source)
        tables = {name: dict(table) for name, table in value.items()}
        if key == "events.sinks":  # the defaults stay enabled unless `enabled = false`
            for name, table in tables.items():
                _check_sink_table(name, table, source, where)
            tables = {**{n: dict(t) for n, t in spec.default.items()}, **tables}
        return tables
    raise AssertionError(f"unknown schema type {kind!r} for {key}")


def _number(
    value: Any, source: str, key: str, *, integer: bool = False,
    minimum: float | None = None, maximum: float | None = None, above: float | None = None,
) -> Any:
    """``value`` checked as a finite number (an integer with ``integer``; a float key takes
    an integer too) within ``[minimum, maximum]`` and ``> above``.

    Raises:
        ConfigError: a boolean, not a number, ``nan``/``inf``, or out of range; names
            ``source`` and ``key``.
    """
    ok = isinstance(value, int) or (not integer and isinstance(value, float))
    if isinstance(value, bool) or not ok:
        raise ConfigError(
            source, f"expected {'an integer' if integer else 'a number'}, got {_tname(value)}", key=key
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(source, f"expected a finite number, got {value}", key=key)
    if minimum is not None and value < minimum:
        raise ConfigError(source, f"must be >= {minimum:g}, got {value}", key=key)
    if maximum is not None and value > maximum:
        raise ConfigError(source, f"must be <= {maximum:g}, got {value}", key=key)
    if above is not None and value <= above:
        raise ConfigError(source, f"must be > {above:g}, got {value}", key=key)
    return value


def _check_path_text(value: str, source: str, key: str) -> None:
    """A path must be a non-empty string without NUL characters.

    Raises:
        ConfigError: naming ``source`` and ``key``.
    """
    if not value.strip():
        raise ConfigError(source, "expected a path, got an empty string", key=key)
    if "\x00" in value:
        raise ConfigError(source, f"a path cannot hold a NUL character, got {value!r}", key=key)


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_sink_table(
    name: str, table: Mapping[str, Any], source: str, place: Callable[[str], str] | None = None,
) -> None:
    """The bus keys of ``[events.sinks.NAME]``: ``enabled`` a boolean, the others as the
    ``events.*`` key of the same name (the rest of the table is the sink's own).

    Args:
        place: gives the ``file:line`` of a dotted key, for the error (default: ``source``).

    Raises:
        ConfigError: naming ``events.sinks.NAME.KEY``.
    """
    for item, value in table.items():
        where = f"events.sinks.{name}.{item}"
        if place is not None:
            source = place(where)
        if item == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(source, f"expected true or false, got {_tname(value)}", key=where)
            continue
        spec = SCHEMA.get(f"events.{item}")
        if spec is None or spec.type == "tables":
            continue
        if spec.type == "choice":
            if not isinstance(value, str) or value not in spec.choices:
                raise ConfigError(source, f"expected one of {', '.join(spec.choices)}; got {value!r}", key=where)
            continue
        _number(value, source, where, integer=spec.type == "int", minimum=spec.minimum, maximum=spec.maximum)


_COMPONENT_KEYS = ("driver", "load", "options", "timeout")


def _check_components(value: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate ``[components.NAME]`` tables: ``driver`` (required string), ``load``
    (``auto`` | ``yes`` | ``no``, default ``auto``), ``options`` (a table, default ``{}``),
    ``timeout`` (seconds, a finite number > 0; default ``host.start_timeout``).

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
                    source, "unknown key; expected driver, load, options or timeout" + did_you_mean(item, _COMPONENT_KEYS),
                    key=f"components.{name}.{item}",
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
        if "timeout" in table:
            out[name]["timeout"] = _number(table["timeout"], source, f"components.{name}.timeout", above=0)
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
