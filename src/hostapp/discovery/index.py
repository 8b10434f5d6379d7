"""The entry-point index: entry points of installed distributions, cached on disk.

Reading entry points the usual way (``importlib.metadata.entry_points(group=...)``) costs an
``import importlib.metadata`` (tens of milliseconds) plus a read of every installed
distribution's ``entry_points.txt`` on every start. This index keeps, per ``sys.path``
entry, the entry-point records found in that entry together with the entry's ``st_mtime_ns``.
Installing or removing a distribution adds or removes a ``*.dist-info`` directory, which
changes the mtime of the ``sys.path`` directory holding it; so a warm read is::

    read one marshal file -> os.stat() each sys.path entry -> merge

and only the entries whose mtime changed are looked at again. For such an entry the
index first compares a fingerprint of its metadata children (the names and mtimes of its
``*.dist-info`` / ``*.egg-info`` directories): if they are the same (the directory changed
for another reason, say a new ``__pycache__`` or an editor's swap file), the records are
reused; otherwise the entry alone is rescanned. The merge de-duplicates distributions by
normalized name, the first on ``sys.path`` winning, exactly like
``importlib.metadata.entry_points()``.

**Scanning** (:mod:`hostapp.discovery._scan`, imported only then) does not go through
``importlib.metadata`` for a directory entry: one
:func:`os.scandir` lists its ``*.dist-info`` / ``*.egg-info`` children (in the order
``importlib.metadata`` visits them), and each one's ``entry_points.txt`` is read directly.
A distribution whose file has no ``[group]`` header of a wanted group (most of them) costs
that one read; the others are parsed exactly as ``importlib.metadata`` parses them, and
their name and version come from the first header lines of ``METADATA`` (``PKG-INFO``).
The de-duplication key is the name in the directory name (``Foo_Bar-1.0.dist-info`` ->
``foo-bar``), as ``importlib.metadata`` uses it. Anything unusual falls back to
``importlib_metadata`` (imported only then): a metadata directory whose name does not parse
(``EGG-INFO`` inside an ``.egg``), ``METADATA`` headers that are folded, missing or
oddly formed, and path entries that are not directories (zip files).

Cache files live in ``cache_dir`` (default ``platformdirs.user_cache_dir("hostapp") /
"entrypoints"``), one per key; the key hashes the cache format, ``sys.executable``,
``sys.version``, the groups and the ``sys.path`` entries. A file is one :mod:`marshal`
payload (much faster to load than JSON), written atomically (a temporary file in the same
directory, then :func:`os.replace`); at most :data:`MAX_CACHE_FILES` are kept (the oldest
are pruned), and a corrupt, foreign or malformed file is ignored and rebuilt.

Limitation: editing an installed ``entry_points.txt`` in place (without reinstalling)
changes neither a ``sys.path`` directory nor a ``.dist-info`` directory and is not seen. Use ``--no-cache`` /
``HOSTAPP_NO_CACHE=1`` or :meth:`EntryPointIndex.clear`.
"""

from __future__ import annotations

import marshal
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hostapp.discovery._names import hash64, normalize_name

if TYPE_CHECKING:
    from pathlib import Path

    from hostapp.discovery._record import EntryPointRecord

__all__ = ["EntryPointIndex", "EntryPointRecord", "MAX_CACHE_FILES", "normalize_name", "read_entry_points"]

#: Version of the cache file layout. It is part of the key (so of the file name) and of the
#: payload; a file with another number is never used.
CACHE_FORMAT = 3
#: At most this many cache files are kept in a cache directory (the oldest are removed).
MAX_CACHE_FILES = 16
#: A ``sys.path`` entry (or ``.dist-info`` directory) modified less than this long before
#: it was scanned is "racy": a later change could get the same coarse-grained mtime, so the
#: next read does not trust that mtime (it fingerprints the directory, or rescans it).
RACY_WINDOW_NS = 1_000_000_000
#: Temporary files older than this (left by a crashed writer) are removed when pruning.
STALE_TMP_NS = 3600 * 1_000_000_000

_PREFIX = "ep-"
_SUFFIX = ".idx"
#: Cache files of earlier formats (``ep-<key>.json``): pruned and cleared like current ones.
_LEGACY_SUFFIXES = (".json",)
_TMP_SUFFIX = ".tmp"
#: First item of every payload, so that a foreign marshal file is never mistaken for ours.
_MAGIC = "hostapp entry-point index"

_TUPLE_ONLY = frozenset({tuple})

# A cache row (one per sys.path entry) is a tuple:
#   (path, mtime_ns | None, racy, listing | None, listing_racy, norms, columns)
# ``norms``: the normalized names of the distributions found directly in the entry (each
# once; unknown names left out), which shadow same-named ones later on the path;
# ``columns``: the entry-point records of the entry's distributions that won within it, as
# seven equally long tuples of str (columns load faster than one tuple per record):
#   (distributions, versions, groups, names, values, dist_paths, normalized names or "")
# where a ``dist_path`` of ``""`` stands for ``None`` (unknown).
_COLUMNS = 7
_NO_COLUMNS: tuple[tuple[str, ...], ...] = ((),) * _COLUMNS


def __getattr__(name: str) -> Any:
    # EntryPointRecord is created on first use: discover() works on plain tuples.
    if name == "EntryPointRecord":
        from hostapp.discovery._record import EntryPointRecord

        globals()[name] = EntryPointRecord
        return EntryPointRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_cache_dir() -> Path:
    """Return ``platformdirs.user_cache_dir("hostapp") / "entrypoints"`` (not created here).

    On Linux and the other Unix systems but macOS that is ``$XDG_CACHE_HOME/hostapp``
    (``~/.cache/hostapp`` when the variable is unset or not absolute), which is computed
    here: importing :mod:`platformdirs` costs a start-up ~5-9 ms (it imports
    :mod:`tempfile`, :mod:`shutil` and the compression modules).
    """
    import sys
    from pathlib import Path

    if os.name == "posix" and sys.platform != "darwin":  # platformdirs' Unix rule
        base = os.environ.get("XDG_CACHE_HOME", "").strip()
        if not os.path.isabs(base):
            base = os.path.expanduser("~/.cache")
        return Path(base) / "hostapp" / "entrypoints"
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
    rescanned; the file is rewritten only when an entry's mtime changed without any change
    to its distributions) or ``"updated"`` (some entries rescanned, file rewritten);
    :attr:`rescanned` lists the rescanned entries. Neither a warm read nor a scan of plain
    directories imports ``importlib.metadata`` / ``importlib_metadata``.
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
        self._material: tuple[Any, ...] = (CACHE_FORMAT, sys.executable, sys.version, self.groups, self.entries)
        parts = [str(CACHE_FORMAT), sys.executable, sys.version, str(len(self.groups)), *self.groups, *self.entries]
        self._key = f"{hash64(chr(0).join(parts)):016x}"

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
        """A 16-hex-digit hash of the cache format, ``sys.executable``, ``sys.version``, the groups and the path entries.

        The file also stores these values in full and is only used when they match, so a
        hash collision costs a rebuild, never wrong records.
        """
        return self._key

    @property
    def cache_file(self) -> Path:
        """The cache file for this key: ``cache_dir / "ep-<key>.idx"``."""
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
        reading one distribution's metadata skip that distribution's entry points.
        """
        return _records(self._read_segments())

    def _read_segments(self) -> list[tuple[tuple[str, ...], ...]]:
        """:meth:`read` as column segments, one per row that contributes (see the row layout above).

        :func:`hostapp.discovery.discover` builds its records straight from these, without
        an :class:`EntryPointRecord` or a tuple per entry point.
        """
        if not self.use_cache:
            self.status, self.rescanned = "disabled", self.entries
            return self._scan_all()

        cached = self._load()
        rows: list[tuple[Any, ...]] = []
        scanned: list[str] = []
        changed = cached is None
        for entry in self.entries:
            mtime = _mtime_ns(entry)
            old = cached.get(entry) if cached is not None else None
            if old is not None and old[1] == mtime and not old[2]:
                rows.append(old)
                continue
            row = self._refresh_row(entry, mtime, old)
            if row is None:
                if not scanned:
                    _scanner().invalidate_metadata_caches()
                row = self._scan_row(entry, mtime)
                scanned.append(entry)
            rows.append(row)
            changed = changed or row != old

        if changed:
            self._write(rows)
        self.status = "cold" if cached is None else "updated" if scanned else "warm"
        self.rescanned = tuple(scanned)
        return _merge(rows)

    def scan(self) -> list[EntryPointRecord]:
        """Return the records by scanning every entry now, without reading or writing the cache."""
        return _records(self._scan_all())

    def _scan_all(self) -> list[tuple[tuple[str, ...], ...]]:
        _scanner().invalidate_metadata_caches()
        return _merge([self._scan_row(entry, _mtime_ns(entry)) for entry in self.entries])

    def _scan_row(self, entry: str, mtime: int | None) -> tuple[Any, ...]:
        """Scan ``entry`` (stat'ed as ``mtime``; ``None`` = missing, nothing to scan)."""
        if mtime is None:
            return _row(entry, None, None, 0, (), ())
        scan = _scanner()
        children = scan.metadata_children(entry)
        if children is None:  # not a directory (a zip file): the library knows those
            norms, records = scan.scan_with_library(entry, self.groups)
            return _row(entry, mtime, None, 0, norms, records)
        listing, newest = scan.fingerprint(children)
        norms, records = scan.scan_directory(entry, children, self.groups)
        return _row(entry, mtime, listing, newest, norms, records)

    def _refresh_row(self, entry: str, mtime: int | None, old: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        """``old`` with a new mtime if ``entry``'s metadata children are unchanged, else ``None``.

        The fingerprint covers the names and mtimes of the ``*.dist-info`` / ``*.egg-info``
        children of a directory, so an install, uninstall or reinstall changes it; it is
        trusted only if those children were not modified just before it was taken.
        """
        if old is None or old[3] is None or old[4] or mtime is None:
            return None
        scan = _scanner()
        children = scan.metadata_children(entry)
        if children is None:
            return None
        listing, newest = scan.fingerprint(children)
        if listing != old[3]:
            return None
        return _row(entry, mtime, listing, newest, old[5], old[6], columns=True)

    def _load(self) -> dict[str, tuple[Any, ...]] | None:
        """The cached rows by entry, or ``None`` when there is no usable cache file."""
        try:
            with open(self._file_str(), "rb") as fh:
                payload = marshal.loads(fh.read())
        except Exception:  # noqa: BLE001 - unreadable, truncated or not marshal data: rebuild
            return None
        if not (
            type(payload) is tuple
            and len(payload) == 4
            and payload[0] == _MAGIC
            and payload[1] == CACHE_FORMAT
            and payload[2] == self._material
            and type(payload[3]) is tuple
        ):
            return None
        by_entry: dict[str, tuple[Any, ...]] = {}
        for row in payload[3]:
            if not _valid_row(row):
                return None
            by_entry[row[0]] = row
        return by_entry

    # -- writing ------------------------------------------------------------------------

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        """Write the cache file atomically, then prune; any OSError just skips caching."""
        payload = marshal.dumps((_MAGIC, CACHE_FORMAT, self._material, tuple(rows)))
        target = self._file_str()
        folder, name = os.path.split(target)
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}{_TMP_SUFFIX}")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "wb") as fh:
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
                if item.name.startswith(_PREFIX) and item.name.endswith((_SUFFIX, *_LEGACY_SUFFIXES)):
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
        """Remove every cache file (all keys, this format and earlier ones) from :attr:`cache_dir`.

        Returns the number of files removed; a missing directory removes nothing. The next
        :meth:`read` is cold. Raises nothing for files that vanish concurrently.
        """
        removed = 0
        try:
            names = os.listdir(self._dir_str())
        except OSError:
            return 0
        for name in names:
            if name.startswith((_PREFIX, f".{_PREFIX}")) and name.endswith((_SUFFIX, _TMP_SUFFIX, *_LEGACY_SUFFIXES)):
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


def _scanner() -> Any:
    """The scanning code (:mod:`hostapp.discovery._scan`), which a warm read never imports."""
    from hostapp.discovery import _scan

    return _scan


def _records(segments: list[tuple[tuple[str, ...], ...]]) -> list[EntryPointRecord]:
    from hostapp.discovery._record import EntryPointRecord

    return [
        EntryPointRecord(dist, version, group, name, value, dist_path or None)
        for columns in segments
        for dist, version, group, name, value, dist_path, _ in zip(*columns)
    ]


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


def _row(
    entry: str,
    mtime: int | None,
    listing: str | None,
    newest: int,
    norms: tuple[str, ...],
    records: Sequence[tuple[str, ...]] | tuple[tuple[str, ...], ...],
    *,
    columns: bool = False,
) -> tuple[Any, ...]:
    """One cache row from record tuples (or, with ``columns=True``, from columns already).

    ``racy``: the entry's mtime alone cannot be trusted next time (it was modified within
    :data:`RACY_WINDOW_NS` of now); ``listing_racy``: nor can the listing fingerprint (a
    metadata child was).
    """
    now = time.time_ns()
    racy = mtime is not None and now - mtime < RACY_WINDOW_NS
    listing_racy = listing is not None and now - newest < RACY_WINDOW_NS
    if not columns:
        records = tuple(zip(*records)) if records else _NO_COLUMNS
    return (entry, mtime, racy, listing, listing_racy, norms, records)


def _valid_row(row: Any) -> bool:
    """Whether ``row`` (from a cache file) has the shape of a row; the per-field checks run at C speed."""
    if type(row) is not tuple or len(row) != 7:
        return False
    path, mtime, racy, listing, listing_racy, norms, columns = row
    if not (
        type(path) is str
        and (mtime is None or type(mtime) is int)
        and type(racy) is bool
        and (listing is None or type(listing) is str)
        and type(listing_racy) is bool
        and type(norms) is tuple
        and type(columns) is tuple
        and len(columns) == _COLUMNS
        and _TUPLE_ONLY.issuperset(map(type, columns))
        and len(set(map(len, columns))) == 1
    ):
        return False
    try:  # str.join takes str items only: the cheapest complete type check of a column
        "".join(norms)
        for column in columns:
            "".join(column)
    except TypeError:
        return False
    return True


def _merge(rows: Sequence[tuple[Any, ...]]) -> list[tuple[tuple[str, ...], ...]]:
    """Merge per-entry rows in path order, the first distribution of a name winning.

    Returns the rows' columns, one segment per row that contributes records.
    """
    seen: set[str] = set()
    segments: list[tuple[tuple[str, ...], ...]] = []
    for row in rows:
        norms, columns = row[5], row[6]
        if columns[0]:
            if seen.isdisjoint(norms):
                segments.append(columns)
            else:
                kept = [rec for rec in zip(*columns) if rec[6] not in seen]
                if kept:
                    segments.append(tuple(zip(*kept)))
        seen.update(norms)
    return segments
