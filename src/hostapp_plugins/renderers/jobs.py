"""Renderers of the background-job events of the built-in ``celery`` and ``huey``
processors (``hostapp_plugins.jobs``): a job put on the queue (``background_job`` /
``background_job_end``) and a job run (``background_job_start`` /
``background_job_finish``)."""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.jobs import ENQUEUE_CALL, ENQUEUE_RETURN, EXECUTE_CALL, EXECUTE_RETURN
from hostapp_plugins.renderers._text import short


def _call(data: dict[str, Any]) -> str:
    args = ", ".join(short(a, 30) for a in data.get("args") or [])
    kwargs = ", ".join(f"{k}={short(v, 30)}" for k, v in (data.get("kwargs") or {}).items())
    return f"{data.get('name') or '?'}({', '.join(p for p in (args, kwargs) if p)})"


def _summary(event: Any) -> str:
    data, library = event.data, event.subtype or "job"
    job = f" {data['job_id']}" if data.get("job_id") else ""
    if event.type == ENQUEUE_CALL:
        queue = f" on {data['queue']}" if data.get("queue") else ""
        return f"{library} enqueue {_call(data)}{queue}"
    if event.type == ENQUEUE_RETURN:
        return f"{library} enqueued{job}"
    if event.type == EXECUTE_CALL:
        return f"{library} run {_call(data)}{job}"
    outcome = data.get("state") or "finished"
    if data.get("exception_type"):
        outcome += f": {data['exception_type']}: {short(data.get('exception_message'), 80)}"
    return f"{library} {outcome}{job}"


@hostapp.hookimpl
def hostapp_event_renderers() -> hostapp.EventRenderer:
    """The four job event types."""
    return hostapp.EventRenderer(
        name="jobs", event_types=(ENQUEUE_CALL, ENQUEUE_RETURN, EXECUTE_CALL, EXECUTE_RETURN), summary=_summary,
        label="job", description="Background jobs (celery, huey): enqueued, run, finished.",
    )
