"""HTTP calls out of events: one event per call, whatever the processor emitted.

hostapp's built-in HTTP processors emit one ``outbound_http_request`` per call when it
ends, carrying the response (``status_code``, ``duration_ns``, ``response``, ``error``).
Kolo's processors, and custom ones written in Kolo's style, emit a request and a response
(``outbound_http_response``) sharing ``data["frame_id"]``. :func:`join_calls` turns such a
pair into one call event of the first shape, so every view shows one row per call.

Imports only :mod:`hostapp.events.record`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from hostapp.events.record import Event

__all__ = ["REQUEST", "RESPONSE", "is_call", "join_calls", "merge_response"]

#: Kolo's type names, kept by hostapp's processors.
REQUEST = "outbound_http_request"
RESPONSE = "outbound_http_response"

#: Keys of a call event that only the end of the call can give.
_ENDED = ("status_code", "duration_ns", "response", "error")


def is_call(event: Event) -> bool:
    """Whether ``event`` is an HTTP call that needs no response event: an
    ``outbound_http_request`` that ended (it has a status, a duration, a response or an
    error)."""
    return event.type == REQUEST and any(key in event.data for key in _ENDED)


def merge_response(request: Event, response: Event) -> Event:
    """One call event from a Kolo-style request/response pair.

    The request's fields and data are kept; the response adds ``status_code``,
    ``duration_ns``, ``response`` (``headers``, ``body`` and what else it holds) and, when
    the call raised, ``error`` (``type``, ``message``: from ``exception_type`` /
    ``exception_message``). Keys the request already has win.
    """
    extra = dict(response.data)
    extra.pop("frame_id", None)
    data: dict[str, Any] = dict(request.data)
    data.setdefault("status_code", extra.pop("status_code", None))
    duration = extra.pop("duration_ns", None)
    if duration is None and response.timestamp_ns and request.timestamp_ns:
        duration = response.timestamp_ns - request.timestamp_ns
    data.setdefault("duration_ns", duration)
    kind, message = extra.pop("exception_type", None), extra.pop("exception_message", None)
    if kind is not None and "error" not in data:
        data["error"] = {"type": kind, "message": message}
    data.setdefault("response", extra if kind is None or extra.get("headers") else None)
    return dataclasses.replace(request, data=data)


def join_calls(events: Iterable[Event], *, window: int = 10_000) -> Iterator[Event]:
    """``events`` in their order, each request/response pair joined into one call.

    A request whose response has not come yet holds back the events after it (so the
    order is kept) until the response arrives, at most ``window`` events: past that the
    request is given as it is (an unfinished call) and the response, when it comes, as
    it is. Responses with no request are given as they are. Memory is bounded by
    ``window``.

    Args:
        events: events in time order (a list, or a stream such as
            ``Store.iter_events(...)``).
        window: the most events held back for one unanswered request.

    Yields:
        events; each joined pair as one ``outbound_http_request`` event at the
        request's place.
    """
    held: list[Event] = []  # held[i] is the event number base + i
    base = 0
    pending: dict[Any, int] = {}  # frame_id -> the number of its unanswered request
    for event in events:
        if event.type == RESPONSE and pending:
            at = pending.pop(event.data.get("frame_id"), None)
            if at is not None:
                held[at - base] = merge_response(held[at - base], event)
                if not pending:
                    yield from held
                    base += len(held)
                    held.clear()
                continue
        opens = event.type == REQUEST and _open_request(event)
        if not pending and not opens:
            yield event
            continue
        if opens:
            pending[event.data.get("frame_id")] = base + len(held)
        held.append(event)
        if len(held) > window:  # the oldest unanswered request waited long enough: unjoined
            oldest = min(pending.values())
            pending = {frame: at for frame, at in pending.items() if at != oldest}
            cut = (min(pending.values()) - base) if pending else len(held)
            yield from held[:cut]
            del held[:cut]
            base += cut
    yield from held


def _open_request(event: Event) -> bool:
    return event.data.get("frame_id") is not None and not is_call(event)
