"""The ``celery`` processors: tasks sent (``celery``) and tasks run (``celery.execute``).

Selected functions, all in ``celery/app/`` and all module-level functions or methods, so
every backend (``monitoring``, ``trampoline``, ``profile``) instruments them:

``celery`` (``background_job`` / ``background_job_end``)
    ``Task.apply_async`` (``celery/app/task.py``), which ``Task.delay``, signatures and
    canvas primitives end in; and ``Celery.send_task`` (``celery/app/base.py``) for tasks
    sent by name. ``apply_async`` calls ``send_task`` itself when not eager: that inner
    call is skipped (its caller, a few frames up, is ``Task.apply_async``), so each
    message is one job. ``job_id`` on the return event is the id of the returned
    ``AsyncResult``.
``celery.execute`` (``background_job_start`` / ``background_job_finish``)
    ``Task.apply`` (``celery/app/task.py``): eager execution (``task_always_eager``,
    ``task.apply()``); and, in a worker, ``fast_trace_task`` (what ``celery worker`` runs
    every task through, whatever the pool, after ``setup_worker_optimizations``) and the
    module-level ``trace_task`` (workers set up without those optimisations, such as
    ``celery.contrib.testing``'s ``start_worker``, through ``trace_task_ret``; and
    ``Request.execute``) in ``celery/app/trace.py``. Not the tracer closure
    ``build_tracer`` returns - the one function that runs every task - because the
    ``trampoline`` backend (3.11) cannot reach nested functions; a ``call`` filter on
    ``co_qualname`` drops that closure on the other backends, where it also matches
    ``trace_task``.

The return event of an execution has ``state`` (celery's: ``SUCCESS``, ``FAILURE``,
``RETRY``, ...), ``result_type`` (the type of the return value, on success) and, when
celery caught the task's exception (a failure not propagated), ``exception_type`` and
``exception_message``. A propagated exception (``task_eager_propagates``) is an ``unwind``
event with the engine's ``exception_type``/``exception_message``.

Limits: ``queue`` is the ``queue`` option or the task's ``queue`` attribute, else
``None`` (routing by ``task_routes`` happens later, inside ``send_task``); in a worker it is
``None`` and ``routing_key`` gives the message's routing key instead. ``fast_trace_task``
receives the message body still serialized: ``args``/``kwargs`` come from the worker's
request dict, which holds them decoded (celery 5); where it does not, they are ``None``
rather than decoded a second time. Tasks run in the processes of the ``prefork`` pool
are traced only by an engine running in those processes; run the worker with ``--pool
solo`` or ``--pool threads`` to trace execution in the process that started the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import hostapp
from hostapp_plugins.jobs import (
    ENQUEUE_CALL,
    ENQUEUE_RETURN,
    EXECUTE_CALL,
    EXECUTE_RETURN,
    NOT_DECODED,
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

LIBRARY: Final = "celery"

_APPLY_ASYNC: Final = "Task.apply_async"
_SEND_TASK: Final = "Celery.send_task"
_APPLY: Final = "Task.apply"
_TRACE_TASK: Final = "trace_task"
_FAST_TRACE: Final = ("fast_trace_task", "_fast_trace_task")  # the latter: older releases

#: Frames looked at above ``send_task`` for ``Task.apply_async``: its own caller, or on the
#: ``trampoline`` backend the dispatcher and trampoline frames, then the caller.
_CALLER_DEPTH: Final = 4

_is_execution = qualname_filter((_APPLY, _TRACE_TASK, *_FAST_TRACE))


def _sent_by_apply_async(frame: FrameType) -> bool:
    """``True`` when ``Celery.send_task`` was called by celery's ``Task.apply_async``."""
    caller = frame.f_back
    for _ in range(_CALLER_DEPTH):
        if caller is None:
            return False
        code = caller.f_code
        if code.co_qualname == _APPLY_ASYNC and "celery" in code.co_filename:
            return True
        caller = caller.f_back
    return False


def _is_enqueue(frame: FrameType, event: str, arg: Any, context: dict[str, Any]) -> bool:
    """``call`` filter of ``celery``: ``Task.apply_async``, and ``Celery.send_task`` unless
    ``apply_async`` called it. Depends on the code and the callers only, so a call and its
    return are kept or dropped together."""
    qualname = frame.f_code.co_qualname
    if qualname == _APPLY_ASYNC:
        return True
    return qualname == _SEND_TASK and not _sent_by_apply_async(frame)


def _queue(options: Any, task: Any = None) -> Any:
    queue = options.get("queue") if isinstance(options, dict) else None
    return queue if queue is not None else attr(task, "queue")


def _enqueue(frame: FrameType, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    """``process`` of ``celery``: the job on the call, its ``job_id`` on the return.

    Args:
        frame: a ``Task.apply_async`` or ``Celery.send_task`` frame.
        event: ``"call"``, ``"return"`` or ``"unwind"``.
        arg: on ``"return"``, the ``AsyncResult`` (or ``EagerResult``) returned.
        context: from :func:`hostapp_plugins.jobs.build_context`.

    Returns:
        ``name``, ``args``, ``kwargs``, ``queue``, ``job_id``, ``truncated`` on the call;
        ``job_id`` on the return (``None`` when unknown). Never raises.
    """
    f_locals = frame_locals(frame)
    if event == "call":
        if frame.f_code.co_qualname == _APPLY_ASYNC:
            task = f_locals.get("self")
            name = attr(task, "name")
        else:
            task, name = None, f_locals.get("name")
        return job_fields(
            context, name, f_locals.get("args"), f_locals.get("kwargs"),
            _queue(f_locals.get("options"), task), f_locals.get("task_id"),
        )
    job_id = attr(arg, "id") if event == "return" else None
    if not isinstance(job_id, str):
        job_id = f_locals.get("task_id")
    return {"job_id": job_id if isinstance(job_id, str) else None}


def _outcome(state: Any, value: Any, info_retval: Any = None) -> dict[str, Any]:
    """``state``, ``result_type`` (on success) and the caught exception (otherwise)."""
    state = state if isinstance(state, str) else None
    data: dict[str, Any] = {"state": state, "result_type": type_name(value) if state == "SUCCESS" else None}
    if state != "SUCCESS":
        exc = info_retval if isinstance(info_retval, BaseException) else value
        if isinstance(exc, BaseException):
            data.update(exception_fields(exc))
    return data


def _execute(frame: FrameType, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    """``process`` of ``celery.execute``.

    Args:
        frame: a ``Task.apply``, ``trace_task`` or ``fast_trace_task`` frame.
        event: ``"call"``, ``"return"`` or ``"unwind"``.
        arg: on ``"return"``: an ``EagerResult`` (``apply``), a ``trace_ok_t`` tuple
            (``trace_task``) or ``(failed, result, runtime)`` (``fast_trace_task``).
        context: from :func:`hostapp_plugins.jobs.build_context`.

    Returns:
        on the call: ``name``, ``args``, ``kwargs``, ``queue``, ``job_id``, ``truncated``
        (and ``routing_key`` in a worker); on the return: ``job_id``, ``state``,
        ``result_type``, and ``exception_type``/``exception_message`` when celery caught
        the task's exception; on an unwind: ``job_id``. Never raises.
    """
    f_locals = frame_locals(frame)
    qualname = frame.f_code.co_qualname
    if qualname == _APPLY:
        if event == "call":
            return job_fields(
                context, attr(f_locals.get("self"), "name"), f_locals.get("args"),
                f_locals.get("kwargs"), _queue(f_locals.get("options")), f_locals.get("task_id"),
            )
        task_id = f_locals.get("task_id")
        data: dict[str, Any] = {"job_id": task_id if isinstance(task_id, str) else None}
        if event == "return":
            # the locals apply() computes; a retry returns the retried task's result
            state = f_locals.get("state")
            if state is None:
                state = attr(arg, "_state")
            data.update(_outcome(state, f_locals.get("retval")))
        return data

    # worker side: trace_task(task, uuid, args, kwargs, request) or
    # fast_trace_task(task_name, uuid, request, body, content_type, content_encoding)
    uuid = f_locals.get("uuid")
    job_id = uuid if isinstance(uuid, str) else None
    fast = qualname != _TRACE_TASK
    if event == "call":
        if fast:  # the body may still be serialized; the worker's request has the payload
            name = f_locals.get("task")
            request = f_locals.get("request")
            args = request.get("args", NOT_DECODED) if isinstance(request, dict) else NOT_DECODED
            kwargs = request.get("kwargs", NOT_DECODED) if isinstance(request, dict) else NOT_DECODED
            if args is NOT_DECODED:
                body = f_locals.get("body")
                if not f_locals.get("content_type") and isinstance(body, (tuple, list)) and len(body) >= 2:
                    args, kwargs = body[0], body[1]
        else:
            name = attr(f_locals.get("task"), "name")
            args, kwargs = f_locals.get("args"), f_locals.get("kwargs")
        data = job_fields(context, name, args, kwargs, None, job_id)
        request = f_locals.get("request")
        delivery = request.get("delivery_info") if isinstance(request, dict) else None
        routing_key = delivery.get("routing_key") if isinstance(delivery, dict) else None
        data["routing_key"] = routing_key if isinstance(routing_key, str) else None
        return data
    data = {"job_id": job_id}
    if event != "return":
        return data
    # trace_task returns (R, I, T, Rstr); fast_trace_task has R and I as locals and
    # returns (failed, R or Rstr, T). I is the TraceInfo of anything but a success.
    if fast and "I" in f_locals:
        info, value = f_locals.get("I"), f_locals.get("R")
    elif not fast and isinstance(arg, tuple) and len(arg) >= 2:
        value, info = arg[0], arg[1]
    else:  # an unknown celery version: say only what is certain
        data.update(_outcome(None, None))
        return data
    state = attr(info, "state") if info is not None else "SUCCESS"
    data.update(_outcome(state, value, attr(info, "retval")))
    return data


#: Tasks put on the queue.
ENQUEUE: Final = hostapp.TraceProcessor(
    name=LIBRARY,
    path_fragment="/celery/app/",
    co_names=("apply_async", "send_task"),
    call_type=ENQUEUE_CALL,
    return_type=ENQUEUE_RETURN,
    subtype=LIBRARY,
    call=_is_enqueue,
    process=_enqueue,
    build_context=build_context,
    requires=(LIBRARY,),
    description="celery: tasks sent (delay, apply_async, send_task)",
)

#: Tasks run (eagerly, or by a worker in this process).
EXECUTE: Final = hostapp.TraceProcessor(
    name=f"{LIBRARY}.execute",
    path_fragment="/celery/app/",
    co_names=("apply", _TRACE_TASK, *_FAST_TRACE),
    call_type=EXECUTE_CALL,
    return_type=EXECUTE_RETURN,
    subtype=LIBRARY,
    call=_is_execution,
    process=_execute,
    build_context=build_context,
    requires=(LIBRARY,),
    description="celery: tasks run (eager apply, worker trace_task/fast_trace_task)",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> list[hostapp.TraceProcessor]:
    """The ``celery`` and ``celery.execute`` processors."""
    return [ENQUEUE, EXECUTE]
