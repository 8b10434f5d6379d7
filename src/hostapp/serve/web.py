"""The web view (placeholder)."""
from __future__ import annotations
from typing import Any


def routes(context: Any) -> list[Any]:
    return []
