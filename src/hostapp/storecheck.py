"""``hostapp store check``: is the store file sound, and what does it hold.

:func:`check_store` opens the file read-only (it never writes to it, nor makes one) and
reports: whether it is a SQLite database at all, ``PRAGMA integrity_check``, the schema
version against this hostapp's, the tables hostapp needs, the row counts, and the file and
directory modes (``0600`` / ``0700`` expected). :func:`move_aside` renames a damaged file
(and its ``-wal`` / ``-shm`` files) to ``NAME.damaged-YYYYmmdd-HHMMSS`` so that the next
host makes a new store; nothing is deleted.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostapp.store import SCHEMA_VERSION

__all__ = ["StoreReport", "check_store", "move_aside"]

#: The tables a store of this hostapp has, each counted by the check.
TABLES = ("runs", "events", "dead_letters", "spill", "reports")


@dataclass
class StoreReport:
    """What :func:`check_store` found.

    Attributes:
        path: the store file.
        exists: the file exists.
        ok: nothing is wrong (``problems`` is empty).
        problems: what is wrong, one line each (the file is damaged or foreign).
        notes: what is worth knowing but not wrong (modes others can read, a newer schema).
        schema_version: the store's schema version (``None`` when unknown).
        supported_version: this hostapp's (:data:`hostapp.store.SCHEMA_VERSION`).
        counts: rows per table (tables that cannot be read are left out).
        integrity: the result of ``PRAGMA integrity_check`` (``"ok"`` or its first lines).
        modes: ``{"file": "0600", "directory": "0700"}`` as they are.
    """

    path: str
    exists: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema_version: int | None = None
    supported_version: int = SCHEMA_VERSION
    counts: dict[str, int] = field(default_factory=dict)
    integrity: str | None = None
    modes: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exists and not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields, and ``ok``."""
        return {
            "path": self.path, "exists": self.exists, "ok": self.ok, "problems": self.problems,
            "notes": self.notes, "schema_version": self.schema_version,
            "supported_version": self.supported_version, "counts": self.counts,
            "integrity": self.integrity, "modes": self.modes,
        }


def check_store(path: str | os.PathLike[str]) -> StoreReport:
    """Check the store file at ``path`` (read-only; see the module docstring).

    Never raises for what the file holds: every problem is a line of
    :attr:`StoreReport.problems`.
    """
    file = Path(path)
    report = StoreReport(str(file))
    if not file.exists():
        report.problems.append("no store file here (a host makes one when it starts)")
        return report
    report.exists = True
    _modes(file, report)
    try:
        con = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        report.problems.append(f"cannot open it: {exc}")
        return report
    try:
        _contents(con, report)
    finally:
        con.close()
    return report


def _modes(file: Path, report: StoreReport) -> None:
    try:
        file_mode = file.stat().st_mode & 0o777
        dir_mode = file.parent.stat().st_mode & 0o777
    except OSError:
        return
    report.modes = {"file": f"{file_mode:04o}", "directory": f"{dir_mode:04o}"}
    if file_mode & 0o077:
        report.notes.append(f"the file's mode is {file_mode:04o}: others can read it (hostapp makes it 0600)")
    if dir_mode & 0o077:
        report.notes.append(f"the directory's mode is {dir_mode:04o} (hostapp makes its own 0700)")


def _contents(con: sqlite3.Connection, report: StoreReport) -> None:
    try:
        names = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"not a SQLite database, or its first page is damaged: {exc}")
        return
    try:
        rows = con.execute("PRAGMA integrity_check(20)").fetchall()
        report.integrity = "\n".join(str(r[0]) for r in rows)
        if report.integrity != "ok":
            first = report.integrity.splitlines()
            report.problems.append(
                f"the integrity check failed: {first[0]}" + (f" (+{len(first) - 1} more)" if len(first) > 1 else "")
            )
    except sqlite3.DatabaseError as exc:
        report.integrity = str(exc)
        report.problems.append(f"the integrity check could not run: {exc}")
    if names and "meta" not in names:
        report.problems.append(f"not a hostapp store: no meta table (tables: {', '.join(sorted(names))})")
        return
    if "meta" in names:
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            report.schema_version = int(row[0]) if row is not None else None
        except (sqlite3.DatabaseError, TypeError, ValueError) as exc:
            report.problems.append(f"the schema version cannot be read: {exc}")
    if report.schema_version is not None and report.schema_version > SCHEMA_VERSION:
        report.notes.append(
            f"schema version {report.schema_version} is newer than this hostapp's ({SCHEMA_VERSION}): upgrade hostapp"
        )
    expected = TABLES if report.schema_version is None or report.schema_version >= 2 else TABLES[:4]
    for table in expected:
        if names and table not in names:
            report.problems.append(f"table {table!r} is missing")
            continue
        if not names:
            continue
        try:
            report.counts[table] = int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            report.problems.append(f"table {table!r} cannot be read: {exc}")


def move_aside(path: str | os.PathLike[str]) -> list[Path]:
    """Rename the store file and its ``-wal``/``-shm`` files to
    ``NAME.damaged-YYYYmmdd-HHMMSS[-wal|-shm]``; the next host makes a new store.

    Returns:
        the new paths (the files that existed).

    Raises:
        OSError: a rename failed (the files already moved stay moved).
    """
    file = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{file}{suffix}")
        if not source.exists():
            continue
        target = Path(f"{file}.damaged-{stamp}{suffix}")
        os.replace(source, target)
        moved.append(target)
    return moved
