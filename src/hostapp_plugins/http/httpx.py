"""The ``httpx`` processor: ``Client.send`` and ``AsyncClient.send``.

Selects ``send`` in ``httpx/_client.py`` (Kolo's choice), which every ``get``/``post``/
``request``/``stream`` of both clients goes through, redirects included (followed inside
one ``send``). An ``AsyncClient.send`` is one call and one return event however many times
it awaits, and calls in concurrent asyncio tasks are told apart (the set of calls in
progress is per task). The request body is recorded when it is in memory; the response
body when httpx has read it (not ``stream=True``).
"""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.http import begin, finish, http_processor

NAME = "httpx"


def _on_call(frame: Any, context: dict[str, Any]) -> dict[str, Any]:
    request = frame.f_locals.get("request")
    url = getattr(request, "url", None)
    return begin(
        context, frame, NAME, getattr(request, "method", None), str(url) if url is not None else None,
        getattr(request, "headers", None), getattr(request, "_content", None),
    )


def _on_return(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    if event != "return" or arg is None:
        return finish(context, frame)
    content = getattr(arg, "_content", None)  # set once the body has been read
    return finish(
        context, frame, getattr(arg, "status_code", None), getattr(arg, "headers", None),
        content if isinstance(content, (bytes, bytearray)) else None,
    )


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/httpx/_client.py",
    co_names=("send",),
    on_call=_on_call,
    on_return=_on_return,
    requires=("httpx",),
    description="httpx: Client.send and AsyncClient.send",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``httpx`` processor."""
    return PROCESSOR
