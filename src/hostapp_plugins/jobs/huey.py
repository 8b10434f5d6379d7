"""The ``huey`` processors: tasks enqueued (``huey``) and tasks run (``huey.execute``).

Selected functions, both methods of ``Huey`` in ``huey/api.py``, so every backend
(``monitoring``, ``trampoline``, ``profile``) instruments them:

``huey`` (``background_job`` / ``background_job_end``)
    ``Huey.enqueue``, which calling a task, ``task.schedule()``, ``task.map()``,
    pipelines (``.then()``) and the periodic-task scheduler all go through. Enqueueing a
    ``group`` or ``chord`` is not an event itself: ``enqueue`` is called again for each
    member task, and those calls are. The task object exists before it is enqueued, so
    ``job_id`` is known on the call event already.
``huey.execute`` (``background_job_start`` / ``background_job_finish``)
    ``Huey._execute``, which runs one task: called by ``Huey.execute`` from a consumer
    worker, or from ``enqueue`` itself with ``immediate=True``. ``Huey.execute`` is not
    selected because it also handles the tasks that do not run (revoked, expired, or not
    due yet and put on the schedule): those give no execution event. huey catches the
    exceptions of a task itself, so a failed task is a normal return event with
    ``state`` ``"error"`` and the exception in ``exception_type``/``exception_message``.

``queue`` is the ``Huey`` instance's ``name``, the name its storage queues under.
``state`` on the return of an execution is huey's signal name: ``"complete"`` (the task
returned; ``result_type`` is the type of its value), ``"error"`` (it raised, including
``RetryTask``, ``TaskLockedException``, rate limits and timeouts: see
``exception_type``) or ``"canceled"`` (a pre-execute hook raised ``CancelExecution``).

Limit: the consumer's ``process`` worker type runs tasks in child processes, which the
engine of the parent process does not trace; use ``-k thread`` (or ``greenlet``) to trace
execution in the process that started the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import hostapp
from hostapp_plugins.jobs import (
    ENQUEUE_CALL,
    ENQUEUE_RETURN,
    EXECUTE_CALL,
    EXECUTE_RETURN,
    attr,
    build_context,
    exception_fields,
    frame_locals,
    job_fields,
    qualname_filter,
    type_name,
)

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["ENQUEUE", "EXECUTE", "hostapp_trace_processors"]

LIBRARY: Final = "huey"

#: What ``Huey.enqueue`` takes besides tasks: it calls ``enqueue`` again for each member.
_GROUPS: Final = frozenset({"group", "chord"})

_in_enqueue = qualname_filter(("Huey.enqueue",))


def _is_enqueue(frame: FrameType, event: str, arg: Any, context: dict[str, Any]) -> bool:
    """``call`` filter of ``huey``: ``Huey.enqueue`` of a task, not of a group or chord.
    ``enqueue`` never rebinds ``task``, so a call and its return are decided alike."""
    if not _in_enqueue(frame, event, arg, context):
        return False
    task = frame_locals(frame).get("task")
    cls = type(task)
    return not (cls.__name__ in _GROUPS and cls.__module__.startswith("huey"))


def _task_fields(frame: FrameType, context: dict[str, Any]) -> dict[str, Any]:
    f_locals = frame_locals(frame)
    task = f_locals.get("task")
    return job_fields(
        context, attr(task, "name"), attr(task, "args"), attr(task, "kwargs"),
        attr(f_locals.get("self"), "name"), attr(task, "id"),
    )


def _job_id(frame: FrameType) -> str | None:
    job_id = attr(frame_locals(frame).get("task"), "id")
    return job_id if isinstance(job_id, str) else None


def _enqueue(frame: FrameType, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    """``process`` of ``huey``.

    Args:
        frame: a ``Huey.enqueue`` frame (locals ``self``, the ``Huey``, and ``task``).
        event: ``"call"``, ``"return"`` or ``"unwind"``.
        arg: on ``"return"``, the ``Result`` (or ``None`` without a result store).
        context: from :func:`hostapp_plugins.jobs.build_context`.

    Returns:
        ``name``, ``args``, ``kwargs``, ``queue``, ``job_id``, ``truncated`` on the call;
        ``job_id`` on the return. Never raises.
    """
    if event == "call":
        return _task_fields(frame, context)
    return {"job_id": _job_id(frame)}


def _execute(frame: FrameType, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    """``process`` of ``huey.execute``.

    Args:
        frame: a ``Huey._execute`` frame (locals ``self``, ``task``, ``timestamp``; on the
            return also ``exception``, which huey sets to the exception the task raised).
        event: ``"call"``, ``"return"`` or ``"unwind"``.
        arg: on ``"return"``, the task's return value (``None`` when it raised).
        context: from :func:`hostapp_plugins.jobs.build_context`.

    Returns:
        on the call: ``name``, ``args``, ``kwargs``, ``queue``, ``job_id``, ``truncated``;
        on the return: ``job_id``, ``state``, ``result_type`` and, when the task raised,
        ``exception_type``/``exception_message``; on an unwind: ``job_id``. Never raises.
    """
    if event == "call":
        return _task_fields(frame, context)
    data: dict[str, Any] = {"job_id": _job_id(frame)}
    if event != "return":
        return data
    f_locals = frame_locals(frame)
    if "exception" not in f_locals:  # returned before running: a pre-execute hook canceled it
        data.update(state="canceled", result_type=None)
        return data
    exc = f_locals.get("exception")
    if isinstance(exc, BaseException):
        data.update(state="error", result_type=None)
        data.update(exception_fields(exc))
    else:
        data.update(state="complete", result_type=type_name(arg))
    return data


#: Tasks put on the queue.
ENQUEUE: Final = hostapp.TraceProcessor(
    name=LIBRARY,
    path_fragment="/huey/api.py",
    co_names=("enqueue",),
    call_type=ENQUEUE_CALL,
    return_type=ENQUEUE_RETURN,
    subtype=LIBRARY,
    call=_is_enqueue,
    process=_enqueue,
    build_context=build_context,
    requires=(LIBRARY,),
    description="huey: tasks enqueued (calls, schedule, map, pipelines, periodic)",
)

#: Tasks run (by a consumer worker in this process, or immediately).
EXECUTE: Final = hostapp.TraceProcessor(
    name=f"{LIBRARY}.execute",
    path_fragment="/huey/api.py",
    co_names=("_execute",),
    call_type=EXECUTE_CALL,
    return_type=EXECUTE_RETURN,
    subtype=LIBRARY,
    call=qualname_filter(("Huey._execute",)),
    process=_execute,
    build_context=build_context,
    requires=(LIBRARY,),
    description="huey: tasks run (consumer workers, immediate mode)",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> list[hostapp.TraceProcessor]:
    """The ``huey`` and ``huey.execute`` processors."""
    return [ENQUEUE, EXECUTE]
