"""The filtering discovery adapter: find plugin candidates, filter them, import the chosen ones.

:func:`discover` collects candidates from four sources, in precedence order (the first to
offer a name wins, later ones are ``SHADOWED``):

1. explicit ``(name, obj)`` pairs from the host program or a test (never filtered);
2. ``plugins.modules`` from the config;
3. module and package plugins in the ``plugins.paths`` folders;
4. entry points of the ``hostapp`` group of installed distributions, read through a
   cached index (:mod:`hostapp.discovery.index`); an entry point of group
   ``hostapp.libraries`` (:data:`LIBRARIES_GROUP`) names the library a plugin is for, and
   a plugin whose library cannot be found is ``not_applicable``, never imported.

It then applies the filters (:mod:`hostapp.discovery.filters`) to the winners, recording the
first rule that removes each filtered one. Nothing is imported by :func:`discover`;
:func:`load_object` imports one chosen candidate. See ``docs/discovery.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hostapp._env import env_flag
from hostapp.discovery.filters import FilterChain, compile_pattern
from hostapp.discovery.index import EntryPointIndex, read_entry_points
from hostapp.discovery.sources import (
    _entrypoint_infos,
    config_candidates,
    explicit_candidates,
    folder_candidates,
    load_object,
)
from hostapp.lifecycle import PluginInfo, PluginState, Source

if TYPE_CHECKING:
    from pathlib import Path

    from hostapp.discovery._record import EntryPointRecord
    from hostapp.errors import ConfigError

__all__ = [
    "DiscoveryOptions",
    "EntryPointIndex",
    "EntryPointRecord",
    "LIBRARIES_GROUP",
    "compile_pattern",
    "discover",
    "load_object",
    "read_entry_points",
    "tag_filter_rule",
]


def __getattr__(name: str) -> Any:
    # EntryPointRecord is created on first use (discover() itself works on plain tuples).
    if name == "EntryPointRecord":
        from hostapp.discovery._record import EntryPointRecord

        globals()[name] = EntryPointRecord
        return EntryPointRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")




@dataclass(frozen=True, slots=True)
class DiscoveryOptions:
    """What to discover and how to filter it; built by the config module from ``[plugins]``.

    Attributes:
        enable: ``plugins.enable``: only plugins whose name matches one of these patterns
            (``None``: no restriction; ``()``: no discovered plugin at all).
        disable: ``plugins.disable``: plugins whose name matches are removed.
        enable_locations: ``plugins.enable_locations``: only plugins whose location (file,
            package directory, ``.dist-info`` directory, or the value for config modules)
            matches (``None``: no restriction).
        disable_locations: ``plugins.disable_locations``: plugins whose location matches are removed.
        allow_tags: ``plugins.allow_tags``: only plugins having a tag that matches (``None``: no restriction).
        deny_tags: ``plugins.deny_tags``: plugins having a matching tag are removed.
        paths: ``plugins.paths``: plugin folders, searched in order (absolute paths).
        modules: ``plugins.modules``: ``"module"`` or ``"module:attr"`` entries.
        meta: ``[plugins.meta.NAME]`` tables: ``tags`` (list of str), ``priority`` (int),
            ``description`` (str) set or override a candidate's metadata by name; other
            keys are ignored here.
        autoload: ``plugins.autoload``: read the entry points of installed distributions
            (``False``, or ``HOSTAPP_DISABLE_PLUGIN_AUTOLOAD=1``: only hostapp's built-ins
            and the ``force`` names; the others are listed ``filtered``, as pytest's
            ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` keeps pytest's own plugins).
        builtins: ``plugins.builtins``: load hostapp's built-in plugins (``hostapp
            --no-builtins`` turns them off).
        force: ``plugins.force``: plugin names that load whatever the filters and
            ``autoload`` say (``hostapp --enable NAME``, as pytest's ``-p NAME``).
        use_cache: read entry points through the on-disk index.
        cache_dir: the index directory, a path or ``str`` (``None``: ``platformdirs.user_cache_dir("hostapp") / "entrypoints"``).
        groups: the entry-point groups to read.
        root: the configuration file's directory: a ``plugins.modules`` entry that is not
            importable from ``sys.path`` is looked up there too (so ``hostapp plugins``
            finds a module next to ``hostapp.toml`` as ``hostapp run`` does).
        config_source: the config file named in :class:`~hostapp.errors.ConfigError`
            messages about these settings.
        allow_insecure: ``plugins.allow_insecure``: load folder plugins from folders and
            files other users can write to or own (refused otherwise: see
            :func:`~hostapp.discovery.sources.insecure_reason`).

    Patterns are globs (``fnmatch.fnmatchcase``) or ``"re:REGEX"`` (``re.search``).
    """

    enable: tuple[str, ...] | None = None
    disable: tuple[str, ...] = ()
    enable_locations: tuple[str, ...] | None = None
    disable_locations: tuple[str, ...] = ()
    allow_tags: tuple[str, ...] | None = None
    deny_tags: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()
    modules: tuple[str, ...] = ()
    meta: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    autoload: bool = True
    builtins: bool = True
    force: tuple[str, ...] = ()
    use_cache: bool = True
    cache_dir: str | os.PathLike[str] | None = None
    groups: tuple[str, ...] = ("hostapp",)
    config_source: str = "hostapp.toml"
    root: str | None = None
    allow_insecure: bool = False


def _config_meta(options: DiscoveryOptions) -> dict[str, dict[str, Any]]:
    """Validate ``[plugins.meta.NAME]`` tables; raises ConfigError naming the key at fault."""
    out: dict[str, dict[str, Any]] = {}
    if not options.meta:
        return out
    from hostapp.errors import ConfigError  # imported only when there is something to check

    for name, table in options.meta.items():
        key = f"plugins.meta.{name}"
        if not isinstance(table, Mapping):
            raise ConfigError(options.config_source, f"expected a table, got {type(table).__name__}", key=key)
        meta: dict[str, Any] = {}
        if "tags" in table:
            tags = table["tags"]
            if isinstance(tags, str) or not isinstance(tags, Sequence) or not all(isinstance(t, str) for t in tags):
                raise ConfigError(options.config_source, "expected a list of strings", key=f"{key}.tags")
            meta["tags"] = tuple(tags)
        if "priority" in table:
            if type(table["priority"]) is not int:
                raise ConfigError(options.config_source, "expected an integer", key=f"{key}.priority")
            meta["priority"] = table["priority"]
        if "description" in table:
            if not isinstance(table["description"], str):
                raise ConfigError(options.config_source, "expected a string", key=f"{key}.description")
            meta["description"] = table["description"]
        if "requires" in table:
            requires = table["requires"]
            if isinstance(requires, str) or not isinstance(requires, Sequence) or not all(
                isinstance(r, str) for r in requires
            ):
                raise ConfigError(options.config_source, "expected a list of strings", key=f"{key}.requires")
            meta["requires"] = tuple(requires)
        out[name] = meta
    return out


def tag_filter_rule(tags: Sequence[str], options: DiscoveryOptions) -> str | None:
    """Apply the tag filters of ``options`` to ``tags`` declared after import.

    For plugins that declare their tags in code (``hostapp_plugin_meta``), which discovery
    could not see. Checks ``plugins.deny_tags`` then ``plugins.allow_tags``.

    Args:
        tags: the plugin's tags.
        options: the discovery options whose ``deny_tags`` / ``allow_tags`` apply.

    Returns:
        the rule text (``"plugins.deny_tags: 'experimental'"``,
        ``"plugins.allow_tags: none of ['stable']"``) or ``None`` when the tags pass.

    Raises:
        ConfigError: a tag pattern is not a valid ``re:`` regular expression.
    """
    chain = FilterChain(
        allow_tags=options.allow_tags, deny_tags=options.deny_tags, config_source=options.config_source
    )
    return chain.check_tags(tags)


def _where(info: PluginInfo) -> str:
    """``"<source> <location or value>"``: how a shadowing winner is named."""
    detail = info.location or info.value
    return f"{info.source.value} {detail}" if detail else info.source.value


def discover(
    options: DiscoveryOptions,
    explicit: Sequence[tuple[str, object]] = (),
    environ: Mapping[str, str] | None = None,
) -> list[PluginInfo]:
    """Find every plugin candidate, resolve name clashes and apply the filters, importing nothing.

    Args:
        options: the ``[plugins]`` settings (:class:`DiscoveryOptions`).
        explicit: ``(name, obj)`` pairs registered by the host program or a test; they
            take precedence over every other source and are never filtered.
        environ: the environment (default ``os.environ``), read for ``HOSTAPP_PLUGINS``,
            ``HOSTAPP_DISABLE_PLUGINS``, ``HOSTAPP_DISABLE_PLUGIN_AUTOLOAD`` and ``HOSTAPP_NO_CACHE``.

    Returns:
        every candidate, in source order (explicit, config, folder, entry point), each a
        :class:`~hostapp.lifecycle.PluginInfo` in state ``DISCOVERED``, ``FILTERED``
        (``rule`` set), ``SHADOWED`` (``shadowed_by`` set) or ``FAILED`` at stage
        ``"discover"`` (malformed folder metadata or an invalid ``plugins.modules`` value).

    Raises:
        ConfigError: a pattern is not a valid ``re:`` regular expression (the message names
            the config key or environment variable), a ``[plugins.meta.NAME]`` value has
            the wrong type, or ``HOSTAPP_DISABLE_PLUGIN_AUTOLOAD`` / ``HOSTAPP_NO_CACHE``
            has a value that is not an on/off one.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    chain = FilterChain(
        enable=options.enable,
        disable=options.disable,
        enable_locations=options.enable_locations,
        disable_locations=options.disable_locations,
        allow_tags=options.allow_tags,
        deny_tags=options.deny_tags,
        environ=env,
        config_source=options.config_source,
    )
    meta = _config_meta(options)

    candidates = explicit_candidates(explicit)
    candidates += config_candidates(options.modules)
    candidates += folder_candidates(options.paths, allow_insecure=options.allow_insecure)
    autoload_rule = None
    if env_flag(env, "HOSTAPP_DISABLE_PLUGIN_AUTOLOAD"):
        autoload_rule = "HOSTAPP_DISABLE_PLUGIN_AUTOLOAD"
    elif not options.autoload:
        autoload_rule = "plugins.autoload = false"
    force = frozenset(options.force)
    libraries: dict[str, str] = {}
    if autoload_rule is None or options.builtins or force:
        use_cache = options.use_cache and not env_flag(env, "HOSTAPP_NO_CACHE")
        index = EntryPointIndex((*options.groups, LIBRARIES_GROUP), cache_dir=options.cache_dir, use_cache=use_cache)
        for info in _entrypoint_infos(index._read_segments()):
            if info.name.startswith(_LIBRARIES_PREFIX):
                libraries[info.name[len(_LIBRARIES_PREFIX):]] = info.value or ""
            else:
                candidates.append(info)
    else:
        autoload_rule = None  # nothing read: nothing to report
    builtins_rule = None if options.builtins else "plugins.builtins = false (hostapp --no-builtins)"

    check = chain.check if chain.rules else None
    explicit_source = Source.EXPLICIT
    winners: dict[str, PluginInfo] = {}
    setdefault = winners.setdefault
    for info in candidates:
        if meta:
            override = meta.get(info.name)
            if override:
                if "tags" in override:
                    info.tags = override["tags"]
                if "priority" in override:
                    info.priority = override["priority"]
                if "description" in override:
                    info.description = override["description"]
                if "requires" in override:
                    info.requires = override["requires"]
        winner = setdefault(info.name, info)
        if winner is not info:
            info.state = PluginState.SHADOWED
            info.shadowed_by = _where(winner)
            info.stage = info.error = info.traceback = None
            continue
        if info.source is explicit_source or info.name in force:
            continue
        rule = None
        if info.source is Source.ENTRY_POINT:
            if info.builtin:
                rule = builtins_rule
            elif autoload_rule is not None:
                rule = autoload_rule
        if rule is None and check is not None:
            rule = check(info)
        if rule is not None:
            info.state = PluginState.FILTERED
            info.rule = rule
            info.stage = info.error = info.traceback = None
            continue
        if info.source is Source.ENTRY_POINT and info.name in libraries:
            missing = _missing_library(libraries[info.name])
            if missing is not None:
                info.state, info.rule = PluginState.NOT_APPLICABLE, missing
    return candidates


#: The entry-point group that names the library a plugin is for (the code its trace
#: processors select): an entry point ``NAME = "module"`` there keeps plugin ``NAME`` (of
#: group ``hostapp``) from being imported when ``module`` cannot be found. The plugin is
#: ``not_applicable`` (``library 'celery' is not installed (hostapp.libraries)``). Unlike
#: ``requires`` (distribution requirements read from installed metadata, which costs a
#: start-up the import of :mod:`importlib.metadata` and ``packaging``), this is one
#: :func:`importlib.util.find_spec`, the check of a processor's own ``requires``.
LIBRARIES_GROUP = "hostapp.libraries"
_LIBRARIES_PREFIX = f"{LIBRARIES_GROUP}:"


def _missing_library(module: str) -> str | None:
    """Why plugin code for ``module`` does not apply (it cannot be found; no import:
    ``find_spec``), or ``None``."""
    import importlib.util

    name = module.partition(":")[0].strip()
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"library {name!r} is not installed ({LIBRARIES_GROUP})"
