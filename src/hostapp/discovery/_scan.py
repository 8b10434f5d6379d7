"""Scanning ``sys.path`` entries for entry points: the cold path of :mod:`hostapp.discovery.index`.

Imported only when an entry must be (re)scanned, never by a warm read. A directory is
listed once with :func:`os.scandir`; each ``*.dist-info`` / ``*.egg-info`` child's
``entry_points.txt`` is read directly and, only when it has a ``[group]`` header of a
wanted group, parsed exactly as ``importlib.metadata`` parses it, with the distribution's
name and version taken from the first header lines of its ``METADATA`` (``PKG-INFO``).
Whatever this module does not mimic exactly falls back to ``importlib_metadata`` (imported
only then): metadata directories whose name does not give the distribution name (an
``EGG-INFO`` inside an ``.egg``), folded or unusual ``METADATA`` headers, and path entries
that are not directories (zip files).

Record tuples are ``(distribution, version, group, name, value, location, normalized
name)``; see the row layout in :mod:`hostapp.discovery.index`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from itertools import chain
from typing import Any

from hostapp.discovery._names import hash64, normalize_name

__all__ = [
    "fingerprint",
    "invalidate_metadata_caches",
    "metadata_children",
    "name_and_version",
    "parse_entry_points",
    "scan_directory",
    "scan_with_library",
]


def metadata_children(entry: str) -> list[tuple[str, int]] | None:
    """``(name, mtime_ns)`` of the metadata children of directory ``entry``, in directory order.

    The children are those importlib.metadata reads: ``*.dist-info`` and ``*.egg-info``
    (any case), and ``EGG-INFO`` inside an ``.egg`` directory. ``None`` when ``entry`` is
    not a listable directory (a zip file, say). A child that cannot be stat'ed has mtime -1.
    """
    base_is_egg = os.path.basename(entry).lower().endswith(".egg")
    children: list[tuple[str, int]] = []
    try:
        with os.scandir(entry) as listing:
            for child in listing:
                low = child.name.lower()
                if low.endswith((".dist-info", ".egg-info")) or (base_is_egg and low == "egg-info"):
                    try:
                        child_mtime = child.stat().st_mtime_ns
                    except OSError:
                        child_mtime = -1
                    children.append((child.name, child_mtime))
    except OSError:
        return None
    return children


def fingerprint(children: list[tuple[str, int]]) -> tuple[str, int]:
    """A fingerprint of the metadata children (names and mtimes), and their newest mtime."""
    items = sorted(f"{name}\0{mtime}" for name, mtime in children)
    newest = max((mtime for _, mtime in children), default=0)
    return f"{len(items)}:{hash64(chr(10).join(items)):016x}", max(newest, 0)


def invalidate_metadata_caches() -> None:
    """Drop importlib_metadata's in-process directory cache (it is keyed on the same mtimes)."""
    finder = getattr(sys.modules.get("importlib_metadata"), "MetadataPathFinder", None)
    if finder is not None:
        finder.invalidate_caches()


def _name_from_stem(stem: str) -> str | None:
    """``Foo_Bar-1.0.dist-info`` -> ``"Foo_Bar"``, as importlib.metadata derives it (else ``None``)."""
    filename, ext = os.path.splitext(stem)
    if ext not in (".dist-info", ".egg-info"):
        return None
    return filename.partition("-")[0] or None


def _lookup_order(children: list[tuple[str, int]]) -> list[str]:
    """The children in the order importlib.metadata yields them for ``distributions(path=[entry])``.

    Its ``Lookup`` groups ``*.dist-info`` / ``*.egg-info`` children by the normalized name
    before the first ``-`` (groups in order of first appearance, directory order inside a
    group), then appends the ``EGG-INFO`` children of an ``.egg`` directory.
    """
    groups: dict[str, list[str]] = {}
    eggs: list[str] = []
    for name, _ in children:
        low = name.lower()
        if low.endswith((".dist-info", ".egg-info")):
            key = normalize_name(low.rpartition(".")[0].partition("-")[0])
            groups.setdefault(key, []).append(name)
        else:
            eggs.append(name)
    if len(groups) == len(children):  # the usual case: one child per name, no eggs
        return [name for name, _ in children]
    return [*chain.from_iterable(groups.values()), *eggs]


def scan_directory(
    entry: str, children: list[tuple[str, int]], groups: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """Scan one directory entry: ``(norms, records)`` of its row (see the row layout in :mod:`hostapp.discovery.index`)."""
    headers = tuple(f"[{group}]" for group in groups)
    exact = any("[" in group or "]" in group for group in groups)  # "[group]" would not be a safe pre-filter
    norms: dict[str, None] = {}
    records: list[tuple[Any, ...]] = []
    for child in _lookup_order(children):
        path = os.path.join(entry, child)
        stem = _name_from_stem(child)
        if stem is None:  # EGG-INFO, or no name before the "-": the library reads its metadata
            found = _library_distribution(path, groups)
            if found is None:
                continue
            norm, eps = found
        else:
            norm = normalize_name(stem)
            eps = () if norm in norms else _distribution_records(path, stem, norm, groups, headers, exact)
        if norm in norms:  # a second copy in the same directory: the first one won
            continue
        if norm:
            norms[norm] = None
        records += eps
    return tuple(norms), tuple(records)


def _read_text(path: str) -> str | None:
    """The UTF-8 text of a metadata file; ``None`` where importlib.metadata's ``read_text`` gives ``None``.

    Raises:
        OSError: another read error.
        ValueError: the file is not UTF-8 (UnicodeDecodeError).
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    return data.decode("utf-8")


def _distribution_records(
    path: str, stem: str, norm: str, groups: tuple[str, ...], headers: tuple[str, ...], exact: bool
) -> tuple[tuple[str, ...], ...]:
    """The records of the distribution in metadata directory ``path`` (no records on errors).

    Versions and groups are shared string objects, so the cache file stores each once.
    """
    try:
        text = _read_text(os.path.join(path, "entry_points.txt"))
        if not text or not (exact or any(header in text for header in headers)):
            return ()
        eps = parse_entry_points(text, groups)
    except (OSError, ValueError):  # unreadable, not UTF-8, or a line without "=": importlib
        return ()  # raises for the whole distribution; we skip its entry points
    if not eps:
        return ()
    try:
        head = _read_text(os.path.join(path, "METADATA")) or _read_text(os.path.join(path, "PKG-INFO"))
    except (OSError, ValueError):
        head = None
    name_version = name_and_version(head) if head else None
    if name_version is None:
        name_version = _libraryname_and_version(path)
        if name_version is None:
            return ()
    name, version = name_version
    name = name or stem  # an empty Name: the name in the directory name, as before
    version = sys.intern(version)
    return tuple((name, version, group, ep_name, value, path, norm) for group, ep_name, value in eps)


def parse_entry_points(text: str, groups: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(group, name, value)`` of the entry points of ``groups`` in an ``entry_points.txt`` text.

    Parses exactly as importlib.metadata does (its ``Sectioned`` parser): lines are
    stripped; blank lines and lines starting with ``#`` are skipped; ``[section]`` starts a
    section named by the line with brackets stripped; lines before any section are
    ignored; ``name = value`` is split at the first ``=`` and both sides stripped.

    Raises:
        ValueError: a line in a section has no ``=`` (importlib.metadata raises then too,
            for the whole distribution).
    """
    wanted = groups if isinstance(groups, (tuple, frozenset, set)) else tuple(groups)
    out: list[tuple[str, str, str]] = []
    section: str | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] == "#":
            continue
        if line[0] == "[" and line[-1] == "]":
            section = line.strip("[]")
            continue
        if section is None:
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"invalid entry point line {line!r}: expected 'name = value'")
        if section in wanted:
            for group in wanted:  # the caller's string object, not a copy per distribution
                if group == section:
                    out.append((group, name.strip(), value.strip()))
                    break
    return out


def name_and_version(text: str) -> tuple[str, str] | None:
    """``Name`` and ``Version`` from the header block of a ``METADATA`` text, when plain.

    Returns what ``email`` (the parser importlib.metadata uses) returns for the first
    ``Name`` and ``Version`` headers, or ``None`` when the block has anything this reader
    does not mimic (a folded or missing field, a malformed or unix-from line, a carriage
    return): the caller then asks the library.
    """
    head = text.partition("\n\n")[0]
    if "\r" in head:
        return None
    name = version = last = None
    for line in head.split("\n"):
        if not line:
            break
        if line[0] in " \t":  # a continuation line
            if last in ("name", "version"):
                return None
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or not key.isascii() or not key.isprintable() or " " in key:
            return None  # email would end the headers here (or keep a unix-from line)
        last = key.lower()
        if last == "name" and name is None:
            name = value.lstrip(" \t")
        elif last == "version" and version is None:
            version = value.lstrip(" \t")
    if name is None or version is None:
        return None
    return name, version


def _libraryname_and_version(path: str) -> tuple[str, str] | None:
    """``Name`` and ``Version`` read by importlib_metadata, ``None`` when that fails."""
    import pathlib

    import importlib_metadata

    try:
        metadata = importlib_metadata.PathDistribution(pathlib.Path(path)).metadata
        return metadata["Name"], metadata["Version"] or ""
    except Exception:  # noqa: BLE001 - a broken distribution is skipped, as importlib does
        return None


def _library_distribution(path: str, groups: tuple[str, ...]) -> tuple[str, tuple[Any, ...]] | None:
    """``(normalized name, records)`` of one distribution read with importlib_metadata.

    ``None`` when neither its directory name nor its metadata give a name.
    """
    import pathlib

    import importlib_metadata

    return _library_records(importlib_metadata.PathDistribution(pathlib.Path(path)), groups)


def _library_records(dist: Any, groups: tuple[str, ...]) -> tuple[str, tuple[Any, ...]] | None:
    raw_path = getattr(dist, "_path", None)
    dist_path = str(raw_path) if raw_path is not None else None
    stem_name = _name_from_stem(os.path.basename(dist_path)) if dist_path is not None else None
    headers = tuple(f"[{group}]" for group in groups)
    eps: list[tuple[Any, ...]] = []
    try:
        text = dist.read_text("entry_points.txt")
        wanted = bool(text) and any(header in text for header in headers)
        if wanted or stem_name is None:
            metadata = dist.metadata  # parsed once: name and version
            name = metadata["Name"] or stem_name
        else:
            name = stem_name
        key = stem_name or name  # importlib.metadata de-duplicates on the same key
        norm = normalize_name(key) if key else ""
        if wanted:
            name = name or ""
            version = metadata["Version"] or ""
            for ep in dist.entry_points:
                if ep.group in groups:
                    eps.append((name, version, ep.group, ep.name, ep.value, dist_path or "", norm))
    except Exception:  # noqa: BLE001 - a broken distribution is skipped, as importlib does
        if stem_name is None:
            return None
        norm, eps = normalize_name(stem_name), []
    return norm, tuple(eps)


def scan_with_library(entry: str, groups: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """Scan a path entry that is not a directory (a zip file) with importlib_metadata."""
    import importlib_metadata

    norms: dict[str, None] = {}
    records: list[tuple[Any, ...]] = []
    for dist in importlib_metadata.distributions(path=[entry]):
        found = _library_records(dist, groups)
        if found is None:
            continue
        norm, eps = found
        if norm in norms:
            continue
        if norm:
            norms[norm] = None
        records += eps
    return tuple(norms), tuple(records)
