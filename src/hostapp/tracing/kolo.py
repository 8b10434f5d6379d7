"""Kolo compatibility: Kolo processor configs as hostapp plugins.

A Kolo processor config (the dict Kolo's plugin documentation describes, with
``co_names``, ``path_fragment``, ``call_type``, ...) converts to a
:class:`~hostapp.TraceProcessor` with :meth:`~hostapp.TraceProcessor.from_kolo`. This
module makes such configs loadable as plugins: :class:`KoloProcessors` is a plugin made of
them, and :func:`adapt` is the plugin manager's adapter (``hostapp.manager.OBJECT_ADAPTERS``)
for what ``tracing.kolo_processors``, the ``kolo.processors`` entry-point group or any
plugin source names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hostapp._markers import hookimpl
from hostapp.types import TraceProcessor

__all__ = ["KoloProcessors", "adapt"]


def adapt(obj: object, name: str | None) -> KoloProcessors | None:
    """``obj`` as a :class:`KoloProcessors` plugin named ``name`` (default ``"kolo"``)
    when it looks like a Kolo processor config or a list of them, else ``None``.

    Raises:
        ValueError: ``obj`` looks like Kolo configs but one is malformed (names the
            plugin and the key).
    """
    if not KoloProcessors.accepts(obj):
        return None
    return KoloProcessors(obj, name or "kolo")  # type: ignore[arg-type]


class KoloProcessors:
    """A plugin made of Kolo processor configs (``tracing.kolo_processors``, the
    ``kolo.processors`` entry-point group, or any plugin source naming such an object).

    Args:
        configs: one Kolo processor config dict (the keys of Kolo's plugin documentation,
            converted by :meth:`TraceProcessor.from_kolo`), a :class:`TraceProcessor`, or a
            list/tuple of them.
        name: the plugin name. A processor is named by its dict's ``name`` key, else by the
            plugin name (one config) or ``PLUGIN[i]`` (the i-th of a list).

    Raises:
        ValueError: a config is malformed: the message names the plugin and the key.
    """

    def __init__(self, configs: Mapping[str, Any] | Sequence[Any], name: str) -> None:
        items = [configs] if isinstance(configs, (Mapping, TraceProcessor)) else list(configs)
        processors: list[TraceProcessor] = []
        for i, item in enumerate(items):
            label = name if len(items) == 1 else f"{name}[{i}]"
            if isinstance(item, TraceProcessor):
                processors.append(item)
                continue
            try:
                processors.append(TraceProcessor.from_kolo(item, name=item.get("name") or label))
            except ValueError as exc:
                raise ValueError(f"Kolo processor {label!r}: {exc}") from None
        self.processors = tuple(processors)
        self.name = name

    @staticmethod
    def accepts(obj: object) -> bool:
        """Whether ``obj`` looks like a Kolo processor config or a list of them."""

        def one(item: object) -> bool:
            return isinstance(item, TraceProcessor) or (
                isinstance(item, Mapping) and "co_names" in item and "path_fragment" in item
            )

        if isinstance(obj, (list, tuple)):
            return bool(obj) and all(one(item) for item in obj)
        return one(obj)

    @hookimpl
    def hostapp_trace_processors(self) -> list[Any]:
        """The processors, for ``hostapp_trace_processors()``."""
        return list(self.processors)

    def __repr__(self) -> str:
        return f"<KoloProcessors {self.name!r}: {', '.join(p.name for p in self.processors)}>"
