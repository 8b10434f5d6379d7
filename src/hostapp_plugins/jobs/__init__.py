"""Built-in background-job trace processors: ``celery`` and ``huey``.

Each library is its own plugin (``jobs.celery``, ``jobs.huey``; disable one with
``plugins.disable``) contributing two :class:`~hostapp.TraceProcessor` objects, because a
processor has one call type and one return type and a job has two sides:

============================ =================================== ===========================
processor                    selects                             event types (call / return)
============================ =================================== ===========================
``celery``, ``huey``         putting a job on the queue          ``background_job`` /
                             (``delay``, ``apply_async``,        ``background_job_end``
                             ``send_task``; huey ``enqueue``)
``celery.execute``,          running a job (eager, or in the     ``background_job_start`` /
``huey.execute``             worker process)                     ``background_job_finish``
============================ =================================== ===========================

``subtype`` is the library (``"celery"``/``"huey"``) on all four. A processor whose
library is not installed is *not applicable* (``requires``), not an error, and nothing in
this package imports celery or huey: the processors select code by name and path only,
and a ``call`` filter on ``co_qualname`` keeps exactly the intended functions (the name
alone would also match nested functions of the same name on the ``monitoring`` and
``profile`` backends).

Data (``docs/jobs.md`` lists every field):

call side
    ``name`` (the task name), ``args`` (a list), ``kwargs`` (a dict), ``queue`` (where the
    library gives it, else ``None``), ``job_id`` (when known at that point, else
    ``None``), ``truncated`` (``True`` when ``args``/``kwargs`` were cut);
return side
    ``job_id``; for an execution also ``state``, ``result_type`` and, when the library
    caught the task's exception, ``exception_type`` / ``exception_message``.

``args`` and ``kwargs`` go through :class:`JsonSafe`: JSON values are kept, anything else
becomes its ``repr()``, and text is cut at ``tracing.max_body_bytes`` (UTF-8 bytes, for
the args and kwargs of one event together). Nothing is iterated that is not a built-in
container, so no iterator is consumed and no user method other than ``__repr__`` runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ENQUEUE_CALL",
    "ENQUEUE_RETURN",
    "EXECUTE_CALL",
    "EXECUTE_RETURN",
    "MAX_DEPTH",
    "NOT_DECODED",
    "JsonSafe",
    "attr",
    "build_context",
    "exception_fields",
    "frame_locals",
    "job_fields",
    "max_bytes_from",
    "qualname_filter",
    "queue_name",
    "safe_repr",
    "type_name",
]

#: Event types of the enqueue processors (``celery``, ``huey``).
ENQUEUE_CALL: Final = "background_job"
ENQUEUE_RETURN: Final = "background_job_end"
#: Event types of the execution processors (``celery.execute``, ``huey.execute``).
EXECUTE_CALL: Final = "background_job_start"
EXECUTE_RETURN: Final = "background_job_finish"

#: ``tracing.max_body_bytes`` when there is no configuration or it lacks the key.
DEFAULT_MAX_BYTES: Final = 65_536

#: Containers nested deeper than this are shown as ``"<list of N items>"``.
MAX_DEPTH: Final = 16

#: Pass as ``args``/``kwargs`` to :func:`job_fields` when the library has not decoded them
#: yet (celery's ``fast_trace_task`` gets the serialized message body).
NOT_DECODED: Final = object()


def max_bytes_from(config: Any) -> int:
    """``tracing.max_body_bytes`` from a :class:`hostapp.Config` (or any mapping).

    Args:
        config: the run's configuration, or ``None``.

    Returns:
        the value when it is an integer >= 0, else :data:`DEFAULT_MAX_BYTES` (also for
        ``config=None`` and a configuration without the key). Never raises.
    """
    if config is None:
        return DEFAULT_MAX_BYTES
    try:
        value = config["tracing.max_body_bytes"]
    except Exception:
        return DEFAULT_MAX_BYTES
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return DEFAULT_MAX_BYTES


def build_context(config: Any) -> dict[str, Any]:
    """``build_context`` of every job processor: ``{"max_bytes": int}``.

    Args:
        config: the run's :class:`hostapp.Config`, or ``None`` (defaults).

    Returns:
        a new dict; ``max_bytes`` is ``tracing.max_body_bytes`` (see :func:`max_bytes_from`).
    """
    return {"max_bytes": max_bytes_from(config)}


def qualname_filter(qualnames: Iterable[str]) -> Callable[[FrameType, str, Any, dict[str, Any]], bool]:
    """A ``call`` filter keeping the functions whose ``co_qualname`` is in ``qualnames``.

    The processors' ``co_names`` select by bare name; this keeps, say, the module-level
    ``trace_task`` and drops the ``build_tracer.<locals>.trace_task`` closure of the same
    name and file. The decision depends on the code object only, so a call and its
    return are always kept or dropped together.

    Args:
        qualnames: qualified names (``"Task.apply_async"``, ``"trace_task"``).

    Returns:
        ``call(frame, event, arg, context) -> bool``.
    """
    allowed = frozenset(qualnames)

    def call(frame: FrameType, event: str, arg: Any, context: dict[str, Any]) -> bool:
        return frame.f_code.co_qualname in allowed

    return call


def frame_locals(frame: FrameType) -> Mapping[str, Any]:
    """``frame.f_locals``, or ``{}`` when it cannot be read. Never raises."""
    try:
        return frame.f_locals
    except Exception:
        return {}


def attr(obj: Any, name: str, default: Any = None) -> Any:
    """``getattr(obj, name, default)``, also ``default`` when the attribute raises.

    Only used on library objects whose attributes are plain values (a task's ``name``,
    ``id``, ``args``), never to call anything.
    """
    try:
        return getattr(obj, name, default)
    except Exception:
        return default


def type_name(value: Any) -> str:
    """``type(value).__qualname__``, prefixed by its module unless builtin (``"int"``,
    ``"decimal.Decimal"``), as the engine names exception types."""
    cls = type(value)
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module in (None, "builtins", "__main__") else f"{module}.{name}"


def exception_fields(exc: BaseException) -> dict[str, Any]:
    """``{"exception_type", "exception_message"}`` for an exception the library caught.

    Same format as the engine's fields of an ``unwind`` event: the type as
    :func:`type_name` gives it, the message as ``str(exc)`` (a placeholder when ``__str__``
    raises). Never raises.
    """
    try:
        message = str(exc)
    except Exception as err:
        message = f"<str() failed: {type(err).__name__}>"
    return {"exception_type": type_name(exc), "exception_message": message}


def _repr(value: Any) -> str:
    """``repr(value)``, or a placeholder when ``__repr__`` raises."""
    try:
        text = repr(value)
    except Exception as err:
        return f"<{type_name(value)} object (repr failed: {type(err).__name__})>"
    return text if type(text) is str else str.__str__(text)


def safe_repr(value: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """``repr(value)`` cut at ``max_bytes`` UTF-8 bytes; never raises.

    Args:
        value: anything.
        max_bytes: the longest result, in UTF-8 bytes.

    Returns:
        the repr, cut; ``"<Type object (repr failed: Error)>"`` when ``__repr__`` raises.
    """
    return _cut(_repr(value), max_bytes)[0]


def _cut(text: str, max_bytes: int) -> tuple[str, bool]:
    """``(text cut at max_bytes UTF-8 bytes, whether it was cut)``; never splits a character."""
    if len(text) * 4 <= max_bytes:  # at most 4 bytes a character: no need to encode
        return text, False
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text, False
    return raw[:max_bytes].decode("utf-8", "ignore"), True


def _size(text: str) -> int:
    """UTF-8 length of ``text``."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class JsonSafe:
    """Converts values to JSON-serialisable ones within one size budget.

    ``None``, ``bool``, ``int``, finite ``float`` and ``str`` are kept (subclasses, such as
    ``IntEnum`` members, become the plain value; ``nan``/``inf`` become strings);
    ``dict``, ``list``, ``tuple``, ``set`` and ``frozenset`` (and their subclasses) are
    converted item by item (tuples and sets become lists, dict keys strings, as
    :func:`json.dumps` writes them); anything else - other iterables included, which are
    never iterated - becomes its ``repr()``. Containers nested deeper than
    :data:`MAX_DEPTH` become ``"<list of N items>"``.

    The budget is ``max_bytes`` (UTF-8 bytes of text; every value also costs one) over
    everything converted with the same instance: a string is cut to what is left, and the
    items of a container whose turn comes when nothing is left are left out.
    :attr:`truncated` then says so.

    Args:
        max_bytes: the budget (``tracing.max_body_bytes``).

    Attributes:
        left: what is left of the budget (may go below zero by the one-per-value cost).
        truncated: ``True`` once anything was cut or left out.
    """

    __slots__ = ("left", "truncated")

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.left = max_bytes
        self.truncated = False

    def convert(self, value: Any) -> Any:
        """``value`` as JSON-serialisable data (see the class docstring); never raises."""
        try:
            return self._convert(value, 0)
        except Exception:  # a hostile object (a dict subclass whose keys break, ...)
            self.truncated = True
            return self._text(_repr(value))

    def _text(self, text: str) -> str:
        if self.left <= 0:
            if text:
                self.truncated = True
            return ""
        out, cut = _cut(text, self.left)
        if cut:
            self.truncated = True
            self.left = 0
        else:
            self.left -= _size(out)
        return out

    def _convert(self, value: Any, depth: int) -> Any:
        self.left -= 1
        cls = type(value)
        if value is None or cls is bool:
            return value
        if cls is str:
            return self._text(value)
        if cls is int:
            # json.dumps refuses ints past sys.get_int_max_str_digits() (4300 digits)
            return value if value.bit_length() < 14_000 else f"<int of {value.bit_length()} bits>"
        if cls is float:
            return value if math.isfinite(value) else repr(value)
        if isinstance(value, str):
            return self._text(str.__str__(value))
        if isinstance(value, int):
            return self._convert(int.__index__(value), depth)
        if isinstance(value, float):
            return self._convert(float.__float__(value), depth)
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return self._text(f"<{type_name(value)} of {dict.__len__(value)} items>")
            out: dict[str, Any] = {}
            for key, item in dict.items(value):
                if self.left <= 0:
                    self.truncated = True
                    break
                out[self._text(self._key(key))] = self._convert(item, depth + 1)
            return out
        if isinstance(value, (list, tuple, set, frozenset)):
            base = next(b for b in (list, tuple, set, frozenset) if isinstance(value, b))
            if depth >= MAX_DEPTH:
                return self._text(f"<{type_name(value)} of {base.__len__(value)} items>")
            result: list[Any] = []
            for item in base.__iter__(value):
                if self.left <= 0:
                    self.truncated = True
                    break
                result.append(self._convert(item, depth + 1))
            return result
        return self._text(_repr(value))

    @staticmethod
    def _key(key: Any) -> str:
        """A dict key as :func:`json.dumps` writes it; other keys as their repr."""
        if type(key) is str:
            return key
        if key is None:
            return "null"
        if isinstance(key, bool):
            return "true" if key else "false"
        if isinstance(key, str):
            return str.__str__(key)
        if isinstance(key, int):
            return int.__repr__(key) if key.bit_length() < 14_000 else f"<int of {key.bit_length()} bits>"
        if isinstance(key, float):
            return float.__repr__(key)
        return _repr(key)


def job_fields(
    context: Mapping[str, Any],
    name: Any,
    args: Any,
    kwargs: Any,
    queue: Any = None,
    job_id: Any = None,
) -> dict[str, Any]:
    """The call-side data of a job event.

    Args:
        context: the processor's context (``max_bytes`` from :func:`build_context`).
        name: the task name; kept when a string, else ``None``.
        args: the positional arguments (a tuple or list; ``None`` means none).
        kwargs: the keyword arguments (a dict; ``None`` means none).
        queue: the queue name, or an object with a ``name`` (kombu's ``Queue``), or
            ``None``.
        job_id: the job id when already known, else ``None``.

    Returns:
        ``{"name", "args", "kwargs", "queue", "job_id", "truncated"}``: ``args`` a list
        and ``kwargs`` a dict of JSON-safe values (:class:`JsonSafe`, one budget for both;
        ``None`` when the library has not decoded them yet). Never raises.
    """
    conv = JsonSafe(context.get("max_bytes", DEFAULT_MAX_BYTES))
    if args is None:
        safe_args: Any = []
    elif isinstance(args, (list, tuple)):
        safe_args = conv.convert(args)
    elif args is NOT_DECODED:
        safe_args = None
    else:  # a single non-sequence value passed as args
        safe_args = [conv.convert(args)]
    if kwargs is None:
        safe_kwargs: Any = {}
    elif isinstance(kwargs, dict):
        safe_kwargs = conv.convert(kwargs)
    elif kwargs is NOT_DECODED:
        safe_kwargs = None
    else:
        safe_kwargs = {"<kwargs>": conv.convert(kwargs)}
    return {
        "name": name if isinstance(name, str) else None,
        "args": safe_args,
        "kwargs": safe_kwargs,
        "queue": queue_name(queue),
        "job_id": job_id if isinstance(job_id, str) else (None if job_id is None else safe_repr(job_id, 200)),
        "truncated": conv.truncated,
    }


def queue_name(queue: Any) -> str | None:
    """A queue given as a name or as an object with a ``name`` (kombu's ``Queue``)."""
    if queue is None:
        return None
    if isinstance(queue, str):
        return str.__str__(queue)
    name = attr(queue, "name")
    return str.__str__(name) if isinstance(name, str) else None
