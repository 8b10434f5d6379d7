"""The ``requests`` processor: ``Session.send`` (every ``requests.get``/``post``/...).

Selects ``send`` in ``requests/sessions.py`` (Kolo's choice). At the call it keeps the
``PreparedRequest``; the record is built from it and the returned ``Response`` on the
sink's thread. Redirects are followed by ``send`` calling itself: one record, with
``redirects`` counting the hops. The response body is ``response.content`` when requests has
read it (not ``stream=True``).
"""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.http import exchange, http_processor, method_text

NAME = "requests"


def _capture(args: Any, context: dict[str, Any]) -> Any:
    return args.get("request")


def _build(request: Any, response: Any, error: BaseException | None, context: dict[str, Any]) -> dict[str, Any]:
    limit = context["settings"].max_body_bytes
    record: dict[str, Any] = {
        "method": method_text(getattr(request, "method", None)),
        "url": str(getattr(request, "url", "") or ""),
        "request": exchange(getattr(request, "headers", None), getattr(request, "body", None), limit),
        "status_code": None,
        "response": None,
    }
    if response is not None:
        content = getattr(response, "_content", None)  # False while a streamed body is unread
        record["status_code"] = getattr(response, "status_code", None)
        record["response"] = exchange(
            getattr(response, "headers", None), content if isinstance(content, (bytes, bytearray)) else None, limit,
        )
        history = getattr(response, "history", None)
        if history:
            record["redirects"] = len(history)
    return record


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/requests/sessions.py",
    co_names=("send",),
    capture=_capture,
    build=_build,
    requires=("requests",),
    description="requests: Session.send",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``requests`` processor."""
    return PROCESSOR
