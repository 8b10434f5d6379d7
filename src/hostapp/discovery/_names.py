"""Names and hashes shared by the warm and the cold paths of discovery.

:mod:`hostapp.discovery.index` (the warm read) and :mod:`hostapp.discovery._scan` (the
cold scan) both normalise distribution names and hash cache keys; they live here so that
neither module imports the other for them.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["hash64", "normalize_name"]

_separators_sub: Any = None
_PRIME64 = (1 << 64) - 59


def normalize_name(name: str) -> str:
    """Return the PEP 503 normalized form of a distribution name (``"Foo.Bar_baz"`` -> ``"foo-bar-baz"``).

    That is ``re.sub(r"[-_.]+", "-", name).lower()``; the regular expression runs only for
    names with a run of separators (``str.replace`` is several times faster).
    """
    global _separators_sub
    key = name.lower().replace("_", "-").replace(".", "-")
    if "--" in key:
        if _separators_sub is None:
            _separators_sub = re.compile(r"-{2,}").sub
        key = _separators_sub("-", key)
    return key


def hash64(text: str) -> int:
    """A stable 64-bit hash of ``text`` (its UTF-8 bytes as one integer, modulo a prime)."""
    return int.from_bytes(text.encode("utf-8", "surrogatepass"), "little") % _PRIME64
