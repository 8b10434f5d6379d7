"""Write real installed distributions into a directory, the way an installer would.

Used by the test suite, the ``hostapp.testing`` fixture for a temporary installed
distribution, and the discovery benchmark's generator. The result is what ``pip install``
of a wheel leaves behind, so ``importlib.metadata`` (and hostapp's entry-point index)
read it like any other installed distribution once ``site_dir`` is on ``sys.path``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

__all__ = ["dist_info_name", "install_distribution", "remove_distribution"]

_EMPTY: Mapping = MappingProxyType({})


def dist_info_name(name: str, version: str) -> str:
    """The ``.dist-info`` directory name a wheel installer uses: ``"Foo.Bar", "1.0-1"`` -> ``"Foo_Bar-1.0_1.dist-info"``."""
    return f"{re.sub(r'[-_.]+', '_', name)}-{version.replace('-', '_')}.dist-info"


def _record_row(site_dir: Path, path: Path, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [path.relative_to(site_dir).as_posix(), f"sha256={digest}", str(len(data))]


def _safe_target(site_dir: Path, relative: str) -> Path:
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"file path {relative!r} must be relative to site_dir, without '..'")
    return site_dir / rel


def install_distribution(
    site_dir: Path,
    name: str,
    version: str = "1.0",
    entry_points: Mapping[str, Mapping[str, str]] = _EMPTY,
    files: Mapping[str, str] = _EMPTY,
) -> Path:
    """Install a distribution into ``site_dir`` and return its ``.dist-info`` directory.

    Writes, like an installer unpacking a wheel:

    * the module files: each ``files`` item is ``relative path -> source text``
      (``{"acme/__init__.py": "...", "acme_sink.py": "..."}``), written under ``site_dir``
      (parent directories are created);
    * ``<name>-<version>.dist-info/`` (name and version escaped as in wheel file names, see
      :func:`dist_info_name`) containing ``METADATA`` (``Metadata-Version: 2.1``, ``Name``
      as given, ``Version``), ``entry_points.txt`` (INI format, one ``[group]`` section per
      ``entry_points`` key, lines ``name = value``; omitted when there are no entry points),
      ``INSTALLER`` (``hostapp-distfactory``) and ``RECORD`` (CSV of every file with its
      sha256 and size, ``RECORD`` itself last with empty hash and size).

    Adding the ``.dist-info`` directory changes ``site_dir``'s mtime, which is what
    invalidates hostapp's entry-point index, as a real install does. After installing into
    a directory already on ``sys.path``, call :func:`importlib.invalidate_caches`.

    Args:
        site_dir: the target directory (created if missing), typically put on ``sys.path``.
        name: the distribution name as written in ``METADATA`` (``"acme-plugins"``).
        version: the version string.
        entry_points: ``{group: {entry point name: "module" or "module:attr"}}``.
        files: ``{relative path: text}``, written UTF-8.

    Returns:
        the ``Path`` of the created ``.dist-info`` directory.

    Raises:
        FileExistsError: that ``.dist-info`` directory already exists (remove it first with
            :func:`remove_distribution`).
        ValueError: a ``files`` path is absolute or contains ``..``.
        OSError: the files cannot be written.
    """
    site_dir = Path(site_dir)
    site_dir.mkdir(parents=True, exist_ok=True)
    dist_info = site_dir / dist_info_name(name, version)
    targets = {relative: _safe_target(site_dir, relative) for relative in files}

    dist_info.mkdir()  # raises FileExistsError when already installed
    rows: list[list[str]] = []
    for relative, target in targets.items():
        data = files[relative].encode("utf-8")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        rows.append(_record_row(site_dir, target, data))

    meta_files = {
        "METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "INSTALLER": "hostapp-distfactory\n",
    }
    if entry_points:
        sections = []
        for group, eps in entry_points.items():
            lines = "".join(f"{ep_name} = {value}\n" for ep_name, value in eps.items())
            sections.append(f"[{group}]\n{lines}")
        meta_files["entry_points.txt"] = "\n".join(sections)
    for filename, text in meta_files.items():
        data = text.encode("utf-8")
        (dist_info / filename).write_bytes(data)
        rows.append(_record_row(site_dir, dist_info / filename, data))

    rows.append([(dist_info / "RECORD").relative_to(site_dir).as_posix(), "", ""])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    (dist_info / "RECORD").write_text(buffer.getvalue(), encoding="utf-8")
    return dist_info


def remove_distribution(dist_info: Path) -> None:
    """Uninstall a distribution written by :func:`install_distribution` (or any installer).

    Removes every file listed in its ``RECORD`` (relative to the ``.dist-info``'s parent),
    then directories left empty by that, then the ``.dist-info`` directory itself, changing
    the site directory's mtime as ``pip uninstall`` does.

    Args:
        dist_info: the ``.dist-info`` directory returned by :func:`install_distribution`.

    Raises:
        FileNotFoundError: ``dist_info`` does not exist.
    """
    dist_info = Path(dist_info)
    site_dir = dist_info.parent
    record = (dist_info / "RECORD").read_text(encoding="utf-8")
    parents: set[Path] = set()
    for row in csv.reader(io.StringIO(record)):
        if not row:
            continue
        path = site_dir / row[0]
        if dist_info in path.parents:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        parents.update(p for p in path.parents if site_dir in p.parents)
    shutil.rmtree(dist_info)
    for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        pycache = directory / "__pycache__"
        if pycache.is_dir():
            shutil.rmtree(pycache, ignore_errors=True)
        try:
            os.rmdir(directory)
        except OSError:
            pass
