"""The ``requests`` processor: ``Session.send`` (every ``requests.get``/``post``/...).

Selects ``send`` in ``requests/sessions.py`` (Kolo's choice): the request event is made
from the ``PreparedRequest``, the response event from the ``Response``. Redirects are
followed by ``send`` calling itself: those hops are nested in the first call. The
response body is ``response.content`` when requests has read it (not ``stream=True``).
"""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.http import begin, finish, http_processor

NAME = "requests"


def _on_call(frame: Any, context: dict[str, Any]) -> dict[str, Any]:
    request = frame.f_locals.get("request")
    return begin(
        context, frame, NAME, getattr(request, "method", None), getattr(request, "url", None),
        getattr(request, "headers", None), getattr(request, "body", None),
    )


def _on_return(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    if event != "return" or arg is None:
        return finish(context, frame)
    content = getattr(arg, "_content", None)  # False while a streamed body is unread
    return finish(
        context, frame, getattr(arg, "status_code", None), getattr(arg, "headers", None),
        content if isinstance(content, (bytes, bytearray)) else None,
    )


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/requests/sessions.py",
    co_names=("send",),
    on_call=_on_call,
    on_return=_on_return,
    requires=("requests",),
    description="requests: Session.send",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``requests`` processor."""
    return PROCESSOR
