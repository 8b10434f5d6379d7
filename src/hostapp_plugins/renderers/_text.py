"""Small text helpers shared by the built-in renderers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["pairs", "short"]


def short(value: Any, limit: int = 60) -> str:
    """``value`` as compact text (strings as they are, the rest as JSON), cut at ``limit``."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pairs(data: Mapping[str, Any], skip: Iterable[str] = ()) -> str:
    """``key=value`` for each item of ``data`` but those in ``skip``, values :func:`short`."""
    left_out = set(skip)
    return " ".join(f"{key}={short(value)}" for key, value in data.items() if key not in left_out)
