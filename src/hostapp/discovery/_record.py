""":class:`EntryPointRecord`, defined apart so that a warm discovery never builds the class.

Import it as ``hostapp.discovery.EntryPointRecord`` or ``hostapp.discovery.index.EntryPointRecord``;
both names load this module on first use (creating a dataclass costs about a millisecond,
which :func:`hostapp.discovery.discover` does not need to pay: it works on plain tuples).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EntryPointRecord"]


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


EntryPointRecord.__module__ = "hostapp.discovery.index"
