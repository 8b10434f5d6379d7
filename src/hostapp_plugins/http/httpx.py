"""The ``httpx`` processor: ``Client.send`` and ``AsyncClient.send``.

Selects ``send`` in ``httpx/_client.py`` (Kolo's choice), which every ``get``/``post``/
``request``/``stream`` of both clients goes through, redirects included (followed inside
one ``send``: one record, ``redirects`` counting the hops). An ``AsyncClient.send`` is one
record however many times it awaits, and calls in concurrent asyncio tasks are told apart
(the call in progress is per task). The request body is recorded when it is in memory; the
response body when httpx has read it (not ``stream=True``).
"""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.http import exchange, http_processor, method_text

NAME = "httpx"


def _capture(args: Any, context: dict[str, Any]) -> Any:
    return args.get("request")


def _build(request: Any, response: Any, error: BaseException | None, context: dict[str, Any]) -> dict[str, Any]:
    limit = context["settings"].max_body_bytes
    url = getattr(request, "url", None)
    record: dict[str, Any] = {
        "method": method_text(getattr(request, "method", None)),
        "url": str(url) if url is not None else "",
        "request": exchange(getattr(request, "headers", None), getattr(request, "_content", None), limit),
        "status_code": None,
        "response": None,
    }
    if response is not None:
        content = getattr(response, "_content", None)  # set once the body has been read
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
    path_fragment="/httpx/_client.py",
    co_names=("send",),
    capture=_capture,
    build=_build,
    requires=("httpx",),
    description="httpx: Client.send and AsyncClient.send",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``httpx`` processor."""
    return PROCESSOR
