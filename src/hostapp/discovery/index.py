"""The entry-point index: entry points of installed distributions, cached on disk.

Reading entry points the usual way (``importlib.metadata.entry_points(group=...)``) costs an
``import importlib.metadata`` (tens of milliseconds) plus a read of every installed
distribution's ``entry_points.txt`` on every start. This index keeps, per ``sys.path``
entry, the entry-point records found in that entry together with the entry's ``st_mtime_ns``.
Installing or removing a distribution adds or removes a ``*.dist-info`` directory, which
changes the mtime of the ``sys.path`` directory holding it; so a warm read is::

    read one JSON file -> os.stat() each sys.path entry -> merge

and only the entries whose mtime changed are looked at again. For such an entry the
index first compares a fingerprint of its metadata children (the names and mtimes of its
``*.dist-info`` / ``*.egg-info`` directories): if they are the same (the directory changed
for another reason, say a new ``__pycache__`` or an editor's swap file), the records are
reused; otherwise the entry alone is rescanned with ``importlib_metadata``, imported lazily,
only then. The merge de-duplicates distributions by normalized name, the first on
``sys.path`` winning, exactly like ``importlib.metadata.entry_points()``.

Cache files live in ``cache_dir`` (default ``platformdirs.user_cache_dir("hostapp") /
"entrypoints"``), one per key; the key hashes ``sys.executable``, ``sys.version``, the
groups and the ``sys.path`` entries. Files are written atomically (a temporary file in the
same directory, then :func:`os.replace`), at most :data:`MAX_CACHE_FILES` are kept (the
oldest are pruned), and a corrupt or unexpected file is ignored and rebuilt.

Limitation: editing an installed ``entry_points.txt`` in place (without reinstalling)
changes neither a ``sys.path`` directory nor a ``.dist-info`` directory and is not seen. Use ``--no-cache`` /
``HOSTAPP_NO_CACHE=1`` or :meth:`EntryPointIndex.clear`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["EntryPointIndex", "EntryPointRecord", "MAX_CACHE_FILES", "read_entry_points"]

#: Version of the cache file layout; a file with another number is ignored and rebuilt.
CACHE_FORMAT = 2
#: At most this many cache files are kept in a cache directory (the oldest are removed).
MAX_CACHE_FILES = 16
#: A ``sys.path`` entry (or ``.dist-info`` directory) modified less than this long before
#: it was scanned is "racy": a later change could get the same coarse-grained mtime, so the
#: next read does not trust that mtime (it fingerprints the directory, or rescans it).
RACY_WINDOW_NS = 1_000_000_000
#: Temporary files older than this (left by a crashed writer) are removed when pruning.
STALE_TMP_NS = 3600 * 1_000_000_000

_PREFIX = "ep-"
_SUFFIX = ".json"
_TMP_SUFFIX = ".tmp"


@dataclass(frozen=True, slots=True)
class EntryPointRecord:
    """One entry point of one installed distribution, as read from its ``entry_points.txt``.

    Attributes:
        distribution: the distribution name as written in its ``METADATA`` (``"acme-plugins"``).
        version: the distribution version (``"1.2"``).
        group: the entry-point group (``"hostapp"``).
        name: the entry-point name (the plugin name).
        value: the entry-point value, ``"module"`` or ``"module:attr"``.
        dist_path: the ``*.dist-info`` / ``*.egg-info`` directory, or ``None`` when unknown.
    """

    distribution: str
    version: str
    group: str
    name: str
    value: str
    dist_path: str | None


def normalize_name(name: str) -> str:
    """Return the PEP 503 normalized form of a distribution name (``"Foo.Bar_baz"`` -> ``"foo-bar-baz"``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def default_cache_dir() -> Path:
    """Return ``platformdirs.user_cache_dir("hostapp") / "entrypoints"`` (not created here)."""
    from pathlib import Path

    import platformdirs

    return Path(platformdirs.user_cache_dir("hostapp")) / "entrypoints"


class EntryPointIndex:
    """The entry points of ``groups`` found on ``path``, read through an on-disk cache.

    Args:
        groups: the entry-point groups to read, e.g. ``("hostapp",)``.
        cache_dir: the directory holding cache files (``str`` or path); ``None`` means
            :func:`default_cache_dir`. It is created on the first write.
        path: the import path to scan, a sequence of directory or zip-file names;
            ``None`` means ``sys.path`` at construction time. Relative entries (``""`` is
            the current directory) are made absolute.
        use_cache: ``False`` scans every entry and neither reads nor writes a cache file.

    After :meth:`read`, :attr:`status` says what happened: ``"disabled"`` (no cache),
    ``"cold"`` (no usable cache file: full scan, file written), ``"warm"`` (no entry
    rescanned and ``importlib_metadata`` not imported; the file is rewritten only when an
    entry's mtime changed without any change to its distributions) or ``"updated"`` (some
    entries rescanned, file rewritten); :attr:`rescanned` lists the rescanned entries.
    """

    def __init__(
        self,
        groups: Iterable[str] = ("hostapp",),
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        path: Sequence[str] | None = None,
        use_cache: bool = True,
    ) -> None:
        self.groups: tuple[str, ...] = tuple(groups)
        self.use_cache = use_cache
        self.entries: tuple[str, ...] = _absolute_entries(sys.path if path is None else path)
        self._dir: str | None = os.fspath(cache_dir) if cache_dir is not None else None
        self.status: str = "unread"
        self.rescanned: tuple[str, ...] = ()
        self._material: list[Any] = [sys.executable, sys.version, list(self.groups), list(self.entries)]
        data = json.dumps(self._material).encode("ascii")
        self._key = f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"

    @property
    def cache_dir(self) -> Path:
        """The cache directory (the default one is computed on first use)."""
        from pathlib import Path

        return Path(self._dir_str())

    def _dir_str(self) -> str:
        if self._dir is None:
            self._dir = os.fspath(default_cache_dir())
        return self._dir

    @property
    def key(self) -> str:
        """A 16-hex-digit hash of ``sys.executable``, ``sys.version``, the groups and the path entries.

        The file also stores these values in full and is only used when they match, so a
        hash collision costs a rebuild, never wrong records.
        """
        return self._key

    @property
    def cache_file(self) -> Path:
        """The cache file for this key: ``cache_dir / "ep-<key>.json"``."""
        from pathlib import Path

        return Path(self._file_str())

    def _file_str(self) -> str:
        return os.path.join(self._dir_str(), f"{_PREFIX}{self.key}{_SUFFIX}")

    # -- reading ------------------------------------------------------------------------

    def read(self) -> list[EntryPointRecord]:
        """Return the entry-point records of :attr:`groups`, in ``sys.path`` order.

        Distributions are de-duplicated by normalized name (the first on the path wins);
        within a distribution, records keep the order of its ``entry_points.txt``. Two
        different distributions may both offer the same entry-point name: both records
        are returned, the first on the path first.

        Never raises for cache problems: an unreadable, corrupt or foreign cache file is
        ignored and rebuilt, and a cache file that cannot be written is skipped. Errors
        reading one distribution's metadata skip that distribution.
        """
        if not self.use_cache:
            self.status, self.rescanned = "disabled", self.entries
            return self.scan()

        cached = self._load()
        rows: list[dict[str, Any]] = []
        scanned: list[str] = []
        changed = cached is None
        for entry in self.entries:
            mtime = _mtime_ns(entry)
            old = cached.get(entry) if cached is not None else None
            if old is not None and old["mtime_ns"] == mtime and not old["racy"]:
                rows.append(old)
                continue
            row = self._refresh_row(entry, mtime, old)
            if row is None:
                if not scanned:
                    _invalidate_metadata_caches()
                row = self._scan_row(entry, mtime)
                scanned.append(entry)
            rows.append(row)
            changed = changed or row != old

        try:
            records = _merge(rows)
        except (TypeError, ValueError):  # a well-formed JSON file holding malformed rows
            cached, changed, scanned = None, True, list(self.entries)
            rows = [self._scan_row(entry, _mtime_ns(entry)) for entry in self.entries]
            records = _merge(rows)

        if changed:
            self._write(rows)
        self.status = "cold" if cached is None else "updated" if scanned else "warm"
        self.rescanned = tuple(scanned)
        return records

    def scan(self) -> list[EntryPointRecord]:
        """Return the records by scanning every entry now, without reading or writing the cache."""
        _invalidate_metadata_caches()
        return _merge([self._scan_row(entry, _mtime_ns(entry)) for entry in self.entries])

    def _scan_row(self, entry: str, mtime: int | None) -> dict[str, Any]:
        """Scan ``entry`` (stat'ed as ``mtime``; ``None`` = missing, nothing to scan)."""
        if mtime is None:
            return _row(entry, None, None, 0, [])
        listing, newest = _listing(entry)
        return _row(entry, mtime, listing, newest, _scan_entry(entry, self.groups))

    def _refresh_row(self, entry: str, mtime: int | None, old: dict[str, Any] | None) -> dict[str, Any] | None:
        """``old`` with a new mtime if ``entry``'s metadata children are unchanged, else ``None``.

        The fingerprint covers the names and mtimes of the ``*.dist-info`` / ``*.egg-info``
        children of a directory, so an install, uninstall or reinstall changes it; it is
        trusted only if those children were not modified just before it was taken.
        """
        if old is None or old["listing"] is None or old["listing_racy"] or mtime is None:
            return None
        listing, newest = _listing(entry)
        if listing != old["listing"]:
            return None
        return _row(entry, mtime, listing, newest, old["dists"])

    def _load(self) -> dict[str, dict[str, Any]] | None:
        """The cached rows by entry, or ``None`` when there is no usable cache file."""
        try:
            with open(self._file_str(), encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            return None
        if data.get("key") != self._material:
            return None
        rows = data.get("entries")
        if not isinstance(rows, list):
            return None
        by_entry: dict[str, dict[str, Any]] = {}
        for row in rows:
            if not (
                isinstance(row, dict)
                and isinstance(row.get("path"), str)
                and (row.get("mtime_ns") is None or type(row.get("mtime_ns")) is int)
                and isinstance(row.get("racy"), bool)
                and isinstance(row.get("listing_racy"), bool)
                and (row.get("listing") is None or isinstance(row.get("listing"), str))
                and isinstance(row.get("dists"), list)
            ):
                return None
            by_entry[row["path"]] = row
        return by_entry

    # -- writing ------------------------------------------------------------------------

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Write the cache file atomically, then prune; any OSError just skips caching."""
        payload = json.dumps(
            {"format": CACHE_FORMAT, "key": self._material, "entries": rows},
            separators=(",", ":"),
        )
        target = self._file_str()
        folder, name = os.path.split(target)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}{_TMP_SUFFIX}")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(payload)
            os.replace(tmp, target)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return
        self._prune()

    def _prune(self) -> None:
        """Keep the newest :data:`MAX_CACHE_FILES` cache files; drop stale temporary files."""
        try:
            scanned = list(os.scandir(self._dir_str()))
        except OSError:
            return
        now = time.time_ns()
        files: list[tuple[int, str]] = []
        for item in scanned:
            try:
                mtime = item.stat().st_mtime_ns
                if item.name.startswith(_PREFIX) and item.name.endswith(_SUFFIX):
                    files.append((mtime, item.path))
                elif item.name.startswith(f".{_PREFIX}") and item.name.endswith(_TMP_SUFFIX):
                    if now - mtime > STALE_TMP_NS:
                        os.unlink(item.path)
            except OSError:
                continue
        files.sort()
        for _, old in files[: max(0, len(files) - MAX_CACHE_FILES)]:
            try:
                os.unlink(old)
            except OSError:
                pass

    def clear(self) -> int:
        """Remove every cache file (all keys) from :attr:`cache_dir`.

        Returns the number of files removed; a missing directory removes nothing. The next
        :meth:`read` is cold. Raises nothing for files that vanish concurrently.
        """
        removed = 0
        try:
            names = os.listdir(self._dir_str())
        except OSError:
            return 0
        for name in names:
            if name.startswith((_PREFIX, f".{_PREFIX}")) and name.endswith((_SUFFIX, _TMP_SUFFIX)):
                try:
                    os.unlink(os.path.join(self._dir_str(), name))
                    removed += 1
                except OSError:
                    pass
        return removed


def read_entry_points(
    groups: Iterable[str],
    *,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    path: Sequence[str] | None = None,
) -> list[EntryPointRecord]:
    """Return the entry points of ``groups`` from the distributions on ``path``.

    Args:
        groups: entry-point group names, e.g. ``("hostapp",)``.
        use_cache: read and update the on-disk index (``False``: full scan, no file I/O).
        cache_dir: where cache files live; ``None`` = ``platformdirs.user_cache_dir("hostapp") / "entrypoints"``.
        path: the import path to scan; ``None`` = ``sys.path``.

    Returns:
        a list of :class:`EntryPointRecord` in path order (see :meth:`EntryPointIndex.read`).

    Raises:
        nothing for cache problems (see :meth:`EntryPointIndex.read`).
    """
    return EntryPointIndex(groups, cache_dir=cache_dir, path=path, use_cache=use_cache).read()


# -- helpers ------------------------------------------------------------------------------


def _absolute_entries(path: Iterable[Any]) -> tuple[str, ...]:
    """Absolute, de-duplicated ``str`` entries of ``path`` (non-path objects are skipped)."""
    seen: dict[str, None] = {}
    for item in path:
        try:
            entry = os.fsdecode(os.fspath(item))
        except TypeError:
            continue
        seen.setdefault(os.path.abspath(entry or os.curdir), None)
    return tuple(seen)


def _mtime_ns(entry: str) -> int | None:
    try:
        return os.stat(entry).st_mtime_ns
    except (OSError, ValueError):
        return None


def _row(entry: str, mtime: int | None, listing: str | None, newest: int, dists: list[Any]) -> dict[str, Any]:
    """One cache row. ``racy``: the entry's mtime alone cannot be trusted next time (it was
    modified within :data:`RACY_WINDOW_NS` of now); ``listing_racy``: nor can the listing
    fingerprint (a metadata child was)."""
    now = time.time_ns()
    return {
        "path": entry,
        "mtime_ns": mtime,
        "racy": mtime is not None and now - mtime < RACY_WINDOW_NS,
        "listing": listing,
        "listing_racy": listing is not None and now - newest < RACY_WINDOW_NS,
        "dists": dists,
    }


def _listing(entry: str) -> tuple[str | None, int]:
    """Fingerprint of the metadata children of directory ``entry``, and their newest mtime.

    The children are those importlib_metadata reads: ``*.dist-info`` and ``*.egg-info``,
    and ``EGG-INFO`` inside an ``.egg`` directory. Returns ``(None, 0)`` when ``entry`` is
    not a listable directory (a zip file, say).
    """
    base_is_egg = entry.lower().endswith(".egg")
    items: list[str] = []
    newest = 0
    try:
        with os.scandir(entry) as children:
            for child in children:
                low = child.name.lower()
                if low.endswith((".dist-info", ".egg-info")) or (base_is_egg and low == "egg-info"):
                    try:
                        child_mtime = child.stat().st_mtime_ns
                    except OSError:
                        child_mtime = -1
                    newest = max(newest, child_mtime)
                    items.append(f"{child.name}\0{child_mtime}")
    except OSError:
        return None, 0
    data = "\n".join(sorted(items)).encode("utf-8", "surrogateescape")
    return f"{len(items)}:{zlib.crc32(data):08x}{zlib.adler32(data):08x}", newest


def _invalidate_metadata_caches() -> None:
    """Drop importlib_metadata's in-process directory cache (it is keyed on the same mtimes)."""
    finder = getattr(sys.modules.get("importlib_metadata"), "MetadataPathFinder", None)
    if finder is not None:
        finder.invalidate_caches()


def _name_from_stem(dist_path: str | None) -> str | None:
    """``/x/Foo_Bar-1.0.dist-info`` -> ``"Foo_Bar"``, as importlib_metadata derives it."""
    if dist_path is None:
        return None
    filename, ext = os.path.splitext(os.path.basename(dist_path))
    if ext not in (".dist-info", ".egg-info"):
        return None
    name = filename.partition("-")[0]
    return name or None


def _scan_entry(entry: str, groups: tuple[str, ...]) -> list[list[Any]]:
    """Scan one path entry: ``[[normalized_name, [record_fields, ...]], ...]`` in discovery order.

    Every distribution is listed (so that it can shadow a same-named one later on the
    path), even without entry points in ``groups``; ``""`` as normalized name means
    "unknown" and never shadows anything.
    """
    import importlib_metadata  # the cold path only

    headers = tuple(f"[{group}]" for group in groups)
    out: list[list[Any]] = []
    for dist in importlib_metadata.distributions(path=[entry]):
        raw_path = getattr(dist, "_path", None)
        dist_path = str(raw_path) if raw_path is not None else None
        stem_name = _name_from_stem(dist_path)
        eps: list[list[Any]] = []
        try:
            text = dist.read_text("entry_points.txt")
            wanted = bool(text) and any(header in text for header in headers)
            if wanted or stem_name is None:
                metadata = dist.metadata  # parsed once: name and version
                name = metadata["Name"] or stem_name
            else:
                name = stem_name
            if wanted:
                version = metadata["Version"] or ""
                for ep in dist.entry_points:
                    if ep.group in groups:
                        eps.append([name, version, ep.group, ep.name, ep.value, dist_path])
        except Exception:  # noqa: BLE001 - a broken distribution is skipped, as importlib does
            if stem_name is None:
                continue
            name, eps = stem_name, []
        key = stem_name or name  # importlib_metadata de-duplicates on the same key
        out.append([normalize_name(key) if key else "", eps])
    return out


def _merge(rows: Sequence[dict[str, Any]]) -> list[EntryPointRecord]:
    """Merge per-entry rows in path order, the first distribution of a name winning."""
    seen: set[str] = set()
    records: list[EntryPointRecord] = []
    for row in rows:
        for norm, eps in row["dists"]:
            if not isinstance(norm, str) or not isinstance(eps, list):
                raise TypeError("malformed distribution row")
            if norm:
                if norm in seen:
                    continue
                seen.add(norm)
            for fields in eps:
                record = EntryPointRecord(*fields)
                if not all(isinstance(f, str) for f in fields[:5]) or not isinstance(
                    fields[5], (str, type(None))
                ):
                    raise TypeError("malformed entry-point record")
                records.append(record)
    return records
