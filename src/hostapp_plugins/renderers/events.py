"""Renderers of hostapp's own event types: ``monitoring_event`` and ``sending_event``
(LUNA's event types, emitted by applications and plugins with ``host.emit``) and
``background_task_failed`` (emitted by the background-task supervisor, ``hostapp.tasks``)."""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.renderers._text import pairs, short


def _event_summary(event: Any) -> str:
    head = event.subtype or ""
    rest = pairs(event.data)
    return f"{head} {rest}".strip() or "(no data)"


def _task_summary(event: Any) -> str:
    data = event.data
    line = f"task {data.get('task') or event.subtype!r} failed in {data.get('phase') or '?'}: {short(data.get('error'), 120)}"
    attempt, retry = data.get("attempt"), data.get("next_retry_s")
    if attempt is not None:
        line += f" (attempt {attempt}"
        line += f", retry in {retry:g} s)" if isinstance(retry, (int, float)) else f", {data.get('state') or 'not retried'})"
    return line


def _task_fields(event: Any) -> list[tuple[str, Any]]:
    data = event.data
    keys = ("task", "plugin", "phase", "error", "attempt", "failures", "restarts", "state", "next_retry_s", "traceback")
    return [(key, data.get(key)) for key in keys if key in data]


@hostapp.hookimpl
def hostapp_event_renderers() -> list[hostapp.EventRenderer]:
    """``monitoring_event``, ``sending_event`` and ``background_task_failed``."""
    return [
        hostapp.EventRenderer(
            name="monitoring", event_types=("monitoring_event",), summary=_event_summary, label="monitor",
            description="LUNA's monitoring events: the subtype, then the data.",
        ),
        hostapp.EventRenderer(
            name="sending", event_types=("sending_event",), summary=_event_summary, label="sending",
            description="LUNA's sending events: the subtype, then the data.",
        ),
        hostapp.EventRenderer(
            name="task-failure", event_types=("background_task_failed",), summary=_task_summary, fields=_task_fields,
            label="task", description="A background task that raised: which, where, the error, the retry.",
        ),
    ]
