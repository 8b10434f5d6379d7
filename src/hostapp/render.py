"""Showing events to people: the renderers plugins contribute, and the generic fallback.

:class:`Renderers` is what ``hostapp events`` and the web view of ``hostapp serve`` hold:
the :class:`~hostapp.types.EventRenderer` specs of every plugin
(``pm.collect("hostapp_event_renderers")``), looked up by event type. Every method here
never raises for an event: a renderer that raises is reported once (logger
``hostapp.render``, and :attr:`Renderers.errors`) and the event is shown generically, so a
broken renderer never hides an event::

    renderers = Renderers(pm.collect("hostapp_event_renderers"))
    for event in store.events(run_id=run.id):
        print(renderers.summary(event))
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostapp.events.record import Event
    from hostapp.types import Contribution, EventRenderer

__all__ = ["Renderers", "generic_fields", "generic_summary"]

logger = logging.getLogger("hostapp.render")

#: A summary longer than this many characters is cut (with "...").
MAX_SUMMARY = 400


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=repr, separators=(",", ":"))
    except Exception:  # a value json cannot take even with default=repr (a cycle, ...)
        return repr(value)


def generic_summary(event: Event) -> str:
    """One line for an event no renderer claims: its subtype, then ``key=value`` for each
    item of its data (values as compact JSON), cut at :data:`MAX_SUMMARY` characters."""
    parts = [event.subtype] if event.subtype else []
    parts.extend(f"{key}={_text(value)}" for key, value in event.data.items())
    line = " ".join(parts)
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 3] + "..."


def generic_fields(event: Event) -> list[tuple[str, Any]]:
    """The labelled fields of an event no renderer claims: ``subtype``, ``source``, then
    each item of its data."""
    out: list[tuple[str, Any]] = [("subtype", event.subtype), ("source", event.source)]
    out.extend(event.data.items())
    return out


class Renderers:
    """The event renderers of a plugin manager, looked up by event type.

    Args:
        contributions: the renderers, each tagged with its plugin
            (``PluginManager.collect("hostapp_event_renderers")`` returns exactly this).
            Earlier ones win: an exact ``event_types`` match beats a glob, then plugin
            order decides.

    Attributes:
        errors: ``{renderer name: "ExceptionType: message"}`` of the renderers that raised
            (the last error each).
    """

    def __init__(self, contributions: Sequence[Contribution[EventRenderer]] = ()) -> None:
        self._contributions = tuple(contributions)
        self._exact: dict[str, Contribution[EventRenderer]] = {}
        self._globs: list[tuple[str, Contribution[EventRenderer]]] = []
        for contribution in self._contributions:
            for pattern in contribution.spec.event_types:
                if any(c in pattern for c in "*?["):
                    self._globs.append((pattern, contribution))
                else:
                    self._exact.setdefault(pattern, contribution)
        self._cache: dict[str, Contribution[EventRenderer] | None] = {}
        self.errors: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._contributions)

    def __iter__(self) -> Iterable[Contribution[EventRenderer]]:  # type: ignore[override]
        return iter(self._contributions)

    def lookup(self, event_type: str) -> EventRenderer | None:
        """The renderer of ``event_type``, or ``None`` (shown generically)."""
        found = self._cache.get(event_type, self)
        if found is self:
            found = self._exact.get(event_type)
            if found is None:
                found = next((c for p, c in self._globs if fnmatch.fnmatchcase(event_type, p)), None)
            if len(self._cache) < 10_000:
                self._cache[event_type] = found
        return found.spec if found is not None else None  # type: ignore[union-attr]

    def _failed(self, renderer: EventRenderer, where: str, exc: Exception) -> None:
        if renderer.name not in self.errors:
            logger.warning(
                "event renderer %r raised in %s(); its events are shown generically: %s: %s",
                renderer.name, where, type(exc).__name__, exc, exc_info=exc,
            )
        self.errors[renderer.name] = f"{type(exc).__name__}: {exc}"

    def summary(self, event: Event) -> str:
        """One line for ``event`` (its renderer's ``summary``, else :func:`generic_summary`).
        Never raises."""
        renderer = self.lookup(event.type)
        if renderer is not None:
            try:
                line = renderer.summary(event)
                text = line if isinstance(line, str) else str(line)
                return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 3] + "..."
            except Exception as exc:
                self._failed(renderer, "summary", exc)
        return generic_summary(event)

    def fields(self, event: Event) -> list[tuple[str, Any]]:
        """The labelled fields of ``event`` in display order (its renderer's ``fields``,
        else :func:`generic_fields`). Never raises."""
        renderer = self.lookup(event.type)
        if renderer is not None and renderer.fields is not None:
            try:
                items = renderer.fields(event)
                return list(items.items() if hasattr(items, "items") else items)
            except Exception as exc:
                self._failed(renderer, "fields", exc)
        return generic_fields(event)

    def shape(self, event: Event) -> str:
        """``"span"`` (drawn as a bar: the event has ``data["duration_ns"]``) or ``"mark"``."""
        renderer = self.lookup(event.type)
        if renderer is not None:
            return renderer.shape
        return "span" if isinstance(event.data.get("duration_ns"), int) else "mark"

    def label(self, event: Event) -> str:
        """The short kind label of ``event`` (its renderer's ``label`` or name, else its type)."""
        renderer = self.lookup(event.type)
        if renderer is None:
            return event.type
        return renderer.label or renderer.name
