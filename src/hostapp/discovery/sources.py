"""The four candidate sources and the import of a chosen candidate.

Each ``*_candidates`` function returns unimported :class:`~hostapp.lifecycle.PluginInfo`
records in state ``DISCOVERED`` (or ``FAILED`` at stage ``"discover"`` when the candidate's
own metadata is malformed). Nothing here imports a plugin except :func:`load_object`.
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hostapp.discovery._names import normalize_name
from hostapp.lifecycle import PluginInfo, PluginState, Source

if TYPE_CHECKING:
    from hostapp.discovery.index import EntryPointRecord

__all__ = [
    "FOLDER_PACKAGE",
    "config_candidates",
    "insecure_reason",
    "entrypoint_candidates",
    "explicit_candidates",
    "folder_candidates",
    "load_object",
    "parse_value",
    "read_meta_file",
]

#: Folder plugins are imported as ``hostapp_folder_plugins.<NAME>``.
FOLDER_PACKAGE = "hostapp_folder_plugins"

# An entry-point value: "module", "module:attr.sub", optionally with " [extras]".
_VALUE_PATTERN = r"^\s*(?P<module>[\w.]+)\s*(?::\s*(?P<attr>[\w.]+)\s*)?(?:\[[^\]]*\]\s*)?$"
#: ``re.compile(_VALUE_PATTERN).match``, compiled on first use (compiling costs ~0.3 ms,
#: which a discovery that meets no ``plugins.modules`` entry need not pay).
_value_match: Any = None


def parse_value(value: str) -> tuple[str, list[str]]:
    """Split ``"pkg.mod:attr.sub"`` into ``("pkg.mod", ["attr", "sub"])``.

    Raises:
        ValueError: ``value`` is not ``"module"`` or ``"module:attr"`` (dotted names only).
    """
    global _value_match
    if _value_match is None:
        _value_match = re.compile(_VALUE_PATTERN).match
    match = _value_match(value)
    if match is None or not all(part.isidentifier() for part in match["module"].split(".")):
        raise ValueError(f"invalid plugin value {value!r}: expected 'module' or 'module:attr'")
    attr = match["attr"]
    return match["module"], attr.split(".") if attr else []


# -- sources ------------------------------------------------------------------------------


def _describe(obj: object) -> str | None:
    """``"pkg.mod"`` for a module, ``"pkg.mod:Qual.name"`` for a class or function, else ``None``."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}:{qualname}"
    return None


def explicit_candidates(explicit: Iterable[tuple[str, object]]) -> list[PluginInfo]:
    """One ``Source.EXPLICIT`` record per ``(name, obj)`` pair; ``obj`` is kept in ``info.obj``."""
    return [
        PluginInfo(name=name, source=Source.EXPLICIT, value=_describe(obj), obj=obj)
        for name, obj in explicit
    ]


def config_candidates(modules: Iterable[str]) -> list[PluginInfo]:
    """One ``Source.CONFIG`` record per ``plugins.modules`` entry; name and value are the entry as written.

    An entry that is not ``"module"`` / ``"module:attr"`` is returned ``FAILED`` at stage
    ``"discover"`` (it can never be imported).
    """
    out = []
    for value in modules:
        info = PluginInfo(name=value, source=Source.CONFIG, value=value)
        try:
            parse_value(value)
        except ValueError as exc:
            info.fail("discover", ValueError(f"plugins.modules: {exc}"))
        out.append(info)
    return out


def read_meta_file(path: str) -> dict[str, Any]:
    """Read a plugin metadata file (``NAME.meta.json``, opa-stack's ``NAME-meta.json``, or a
    package's ``meta.json``).

    Returns:
        a dict with any of ``tags`` (tuple of str), ``priority`` (int), ``description``
        (str) and ``requires`` (tuple of requirement strings); other keys in the file are
        ignored.

    Raises:
        ValueError: the file is unreadable, not JSON, not an object, or a known key has the
            wrong type; the message names the file.
    """
    import json  # only when a folder plugin has a metadata file

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"malformed plugin metadata file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"malformed plugin metadata file {path}: expected a JSON object")
    meta: dict[str, Any] = {}
    if "tags" in data:
        tags = data["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"malformed plugin metadata file {path}: 'tags' must be a list of strings")
        meta["tags"] = tuple(tags)
    if "priority" in data:
        priority = data["priority"]
        if type(priority) is not int:
            raise ValueError(f"malformed plugin metadata file {path}: 'priority' must be an integer")
        meta["priority"] = priority
    if "description" in data:
        if not isinstance(data["description"], str):
            raise ValueError(f"malformed plugin metadata file {path}: 'description' must be a string")
        meta["description"] = data["description"]
    if "requires" in data:
        requires = data["requires"]
        if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
            raise ValueError(f"malformed plugin metadata file {path}: 'requires' must be a list of strings")
        meta["requires"] = tuple(requires)
    return meta


def insecure_reason(path: str, what: str) -> str | None:
    """Why loading code from ``path`` is unsafe, or ``None`` when it is not.

    As ssh refuses a key file others can change: a file or folder that every user can
    write to (mode ``o+w``), or that is owned by a user other than this process's user
    and root, could have been given code by someone else. Group-writable is allowed (the
    default of a ``umask 002``). Not checked where the system has no such ownership
    (Windows).

    Args:
        path: the file or folder.
        what: how the message names it (``"plugin folder"``, ``"plugin file"``).
    """
    if os.name != "posix":  # pragma: no cover - POSIX only
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    anyway = "plugins.allow_insecure = true loads it anyway"
    if st.st_mode & 0o002:
        return (
            f"{what} {path} is writable by every user (mode {st.st_mode & 0o7777:04o}): refused; "
            f"'chmod o-w {path}' fixes it, {anyway}"
        )
    uid = os.getuid()
    if st.st_uid not in (uid, 0):
        return (
            f"{what} {path} is owned by another user (uid {st.st_uid}; this process runs as uid {uid}): "
            f"refused; {anyway}"
        )
    return None


def folder_candidates(
    paths: Sequence[str | os.PathLike[str]], *, allow_insecure: bool = False,
) -> list[PluginInfo]:
    """Module (``NAME.py``) and package (``NAME/__init__.py``) plugins of each folder, in order.

    Within a folder, names are sorted, and a package comes before a module of the same
    name. Names starting with ``_`` or ``.``, and names that are not Python identifiers,
    are skipped; a missing folder is skipped. Metadata comes from ``NAME.meta.json`` beside
    a module or ``meta.json`` inside a package, else from opa-stack's ``NAME-meta.json``
    beside either; a malformed file leaves that candidate ``FAILED`` at stage ``"discover"``.
    So does a candidate in a folder, or a file, that others can write to or own
    (:func:`insecure_reason`), unless ``allow_insecure``.
    """
    out: list[PluginInfo] = []
    for folder in paths:
        folder = os.path.abspath(os.fspath(folder))
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        unsafe_folder = None if allow_insecure else insecure_reason(folder, "plugin folder")
        found: list[tuple[str, int, str, str]] = []  # (name, 0=package/1=module, location, meta file)
        for entry in names:
            full = os.path.join(folder, entry)
            if entry.endswith(".py"):
                name, kind, meta = entry[:-3], 1, os.path.join(folder, entry[:-3] + ".meta.json")
                if not os.path.isfile(full):
                    continue
                if not os.path.exists(meta):  # opa-stack's spelling
                    meta = os.path.join(folder, entry[:-3] + "-meta.json")
            else:
                name, kind, meta = entry, 0, os.path.join(full, "meta.json")
                if not os.path.isfile(os.path.join(full, "__init__.py")):
                    continue
                if not os.path.exists(meta):
                    meta = os.path.join(folder, entry + "-meta.json")
            if name.startswith(("_", ".")) or not name.isidentifier():
                continue
            found.append((name, kind, full, meta))
        for name, _, location, meta_file in sorted(found):
            info = PluginInfo(
                name=name, source=Source.FOLDER, value=f"{FOLDER_PACKAGE}.{name}", location=location
            )
            if os.path.exists(meta_file):
                try:
                    _apply_meta(info, read_meta_file(meta_file))
                except ValueError as exc:
                    info.fail("discover", exc)
            unsafe = unsafe_folder
            if unsafe is None and not allow_insecure:
                unsafe = insecure_reason(location, "plugin package" if os.path.isdir(location) else "plugin file")
            if unsafe is not None:
                info.fail("discover", PermissionError(unsafe))
            out.append(info)
    return out


def plugin_name(group: str, name: str) -> str:
    """The plugin name of entry point ``name`` in ``group``.

    Entry points of the ``hostapp`` group keep their name; those of Kolo's
    ``kolo.processors`` group (read with ``tracing.kolo_compat``) become ``kolo.NAME``, so
    they never shadow a hostapp plugin of the same name; any other group gives
    ``GROUP:NAME``.
    """
    if group == "hostapp":
        return name
    if group == "kolo.processors":
        return f"kolo.{name}"
    return f"{group}:{name}"


def entrypoint_candidates(records: Iterable[EntryPointRecord]) -> list[PluginInfo]:
    """One ``Source.ENTRY_POINT`` record per entry point, in ``sys.path`` order.

    ``location`` is the ``.dist-info`` directory; ``builtin`` is true for distribution
    ``hostapp``; the name is :func:`plugin_name` of the group and entry-point name.
    """
    return [
        PluginInfo(
            name=plugin_name(rec.group, rec.name),
            source=Source.ENTRY_POINT,
            value=rec.value,
            location=rec.dist_path,
            distribution=rec.distribution,
            version=rec.version,
            builtin=normalize_name(rec.distribution) == "hostapp",
        )
        for rec in records
    ]


def _entrypoint_infos(segments: Iterable[tuple[tuple[str, ...], ...]]) -> list[PluginInfo]:
    """:func:`entrypoint_candidates` for the column segments the index reads (``_read_segments``).

    Builds each :class:`PluginInfo` with positional arguments (faster than keywords, which
    counts over thousands of distributions); ``tests/test_discovery.py`` checks that the
    result equals :func:`entrypoint_candidates` of the same records.
    """
    source, state = Source.ENTRY_POINT, PluginState.DISCOVERED
    infos: list[PluginInfo] = []
    for dists, versions, groups, names, values, dist_paths, _norms in segments:
        if groups.count("hostapp") != len(groups):  # C-level check: the common case costs nothing
            names = [plugin_name(group, name) for group, name in zip(groups, names)]
        # PluginInfo(name, source, value, location, distribution, version, tags, priority,
        #            description, builtin, state)
        infos += [
            PluginInfo(
                name,
                source,
                value,
                dist_path or None,
                dist,
                version,
                (),
                0,
                None,
                len(dist) == 7 and dist.lower() == "hostapp",  # normalize_name(dist) == "hostapp"
                state,
            )
            for dist, version, name, value, dist_path in zip(dists, versions, names, values, dist_paths)
        ]
    return infos


def _apply_meta(info: PluginInfo, meta: Mapping[str, Any]) -> None:
    if "tags" in meta:
        info.tags = tuple(meta["tags"])
    if "priority" in meta:
        info.priority = meta["priority"]
    if "description" in meta:
        info.description = meta["description"]
    if "requires" in meta:
        info.requires = tuple(meta["requires"])


# -- loading ------------------------------------------------------------------------------


def _renamed(exc: BaseException, message: str) -> BaseException:
    """An exception of the same type as ``exc`` (an ImportError/AttributeError) with ``message``."""
    try:
        new = type(exc)(message)
    except Exception:  # noqa: BLE001 - exotic constructor: fall back to the base type
        new = ImportError(message) if isinstance(exc, ImportError) else AttributeError(message)
    if isinstance(exc, ImportError) and isinstance(new, ImportError):
        new.name, new.path = exc.name, exc.path
    return new


def _folder_parent() -> types.ModuleType:
    parent = sys.modules.get(FOLDER_PACKAGE)
    if parent is None:
        parent = types.ModuleType(FOLDER_PACKAGE, "Synthetic parent package of hostapp folder plugins.")
        parent.__path__ = []
        sys.modules[FOLDER_PACKAGE] = parent
    return parent


def _same_file(module: types.ModuleType, path: str) -> bool:
    found = getattr(module, "__file__", None)
    try:
        return found is not None and os.path.samefile(found, path)
    except OSError:
        return False


def _load_folder_module(info: PluginInfo) -> types.ModuleType:
    """Import a folder plugin from its file as ``hostapp_folder_plugins.<NAME>`` (reused if already imported)."""
    import importlib.util

    location = info.location or ""
    is_package = os.path.isdir(location)
    init = os.path.join(location, "__init__.py") if is_package else location
    parent = _folder_parent()
    modname = f"{FOLDER_PACKAGE}.{info.name}"
    existing = sys.modules.get(modname)
    if existing is not None and not _same_file(existing, init):
        # Another folder's plugin of the same name was imported earlier in this process.
        import zlib

        modname = f"{modname}_{zlib.crc32(os.fsencode(location)):08x}"
        existing = sys.modules.get(modname)
    if existing is not None:
        return existing
    spec = importlib.util.spec_from_file_location(
        modname, init, submodule_search_locations=[location] if is_package else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {init}", name=modname, path=init)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for key in [k for k in sys.modules if k == modname or k.startswith(modname + ".")]:
            del sys.modules[key]
        raise
    setattr(parent, modname.rpartition(".")[2], module)
    return module


def _next_to_config(top: str, root: str) -> None:
    """Put ``root`` first on ``sys.path`` when module ``top`` is not importable but is there."""
    import importlib.util

    if top in sys.modules or root in sys.path:
        return
    if not (os.path.isfile(os.path.join(root, top + ".py")) or os.path.isfile(os.path.join(root, top, "__init__.py"))):
        return
    if importlib.util.find_spec(top) is None:
        sys.path.insert(0, root)


def load_object(info: PluginInfo, *, root: str | None = None) -> object:
    """Import a candidate and return its plugin object.

    Args:
        info: a candidate from :func:`hostapp.discovery.discover`.
        root: for a ``plugins.modules`` entry whose top-level module is not on
            ``sys.path``: the configuration's directory, put first on ``sys.path`` when the
            module is there (as python puts a script's directory first).

    Returns:
        ``info.obj`` for ``Source.EXPLICIT``; the module for a folder plugin; otherwise the
        object named by ``info.value``: the module for ``"module"``, the attribute chain for
        ``"module:attr.sub"``.

    Raises:
        ImportError: (same subclass as raised, e.g. ModuleNotFoundError) the module or one
            of its imports cannot be imported; the message names the plugin and its provenance.
        AttributeError: the attribute chain does not resolve, or the module's code raised it;
            the message names the plugin and its provenance.
        ValueError: ``info.value`` is not ``"module"`` / ``"module:attr"``.
        Exception: anything else the plugin's module raises while importing, unchanged,
            with a note naming the plugin.
    """
    if info.source is Source.EXPLICIT:
        return info.obj
    who = f"plugin {info.name!r} ({info.provenance})"
    if info.source is Source.FOLDER:
        target, attrs = f"{FOLDER_PACKAGE}.{info.name}", []
    else:
        target, attrs = parse_value(info.value or "")
    try:
        if info.source is Source.FOLDER:
            obj: object = _load_folder_module(info)
        else:
            import importlib

            if root is not None and info.source is Source.CONFIG:
                _next_to_config(target.partition(".")[0], root)
            obj = importlib.import_module(target)
    except (ImportError, AttributeError) as exc:
        raise _renamed(exc, f"{who}: cannot import {target!r}: {exc}") from exc
    except Exception as exc:
        exc.add_note(f"while importing {who}")
        raise
    for depth, attr in enumerate(attrs):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            have = f"{target}:{'.'.join(attrs[:depth])}" if depth else target
            raise AttributeError(f"{who}: {have!r} has no attribute {attr!r}") from exc
    return obj
