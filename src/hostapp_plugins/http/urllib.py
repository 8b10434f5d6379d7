"""The ``urllib`` processor: ``urllib.request`` requests (``urlopen``, openers).

Selects ``AbstractHTTPHandler.do_open`` in ``urllib/request.py`` (Kolo's choice), which
sends one request and returns its ``http.client.HTTPResponse``: the request event is made
from the ``Request`` object (``req``), the response event from that response, before
urllib turns a 4xx/5xx status into ``HTTPError`` - so error statuses are recorded too. A
redirect is a new ``do_open`` call, so each hop is its own HTTP call. The response body is
not read (it is the program's stream); ``body_size`` comes from ``Content-Length``.
"""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.http import begin, finish, http_processor

NAME = "urllib"


def _on_call(frame: Any, context: dict[str, Any]) -> dict[str, Any]:
    req = frame.f_locals.get("req")
    return begin(
        context, frame, NAME,
        req.get_method() if req is not None else None,
        getattr(req, "full_url", None),
        req.header_items() if req is not None else None,
        getattr(req, "data", None),
    )


def _on_return(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    if event != "return" or arg is None:
        return finish(context, frame)
    headers = getattr(arg, "headers", None)
    length = headers.get("Content-Length") if headers is not None else None
    return finish(
        context, frame, getattr(arg, "status", None), headers, None,
        body_size=int(length) if length is not None and str(length).isdigit() else None,
    )


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/urllib/request.py",
    co_names=("do_open",),
    on_call=_on_call,
    on_return=_on_return,
    description="urllib.request: urlopen() and openers",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``urllib`` processor."""
    return PROCESSOR
