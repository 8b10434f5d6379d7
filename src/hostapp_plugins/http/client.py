"""The ``http.client`` processor: ``HTTPConnection`` requests, and anything built on it.

``http.client`` has no one function spanning a request and its response, so this
processor selects two in ``http/client.py``: ``HTTPConnection.request`` (the request
event, made from its arguments and the connection's host and port) and
``HTTPConnection.getresponse`` (the response event). They are paired by the connection
object; a ``getresponse`` with no ``request`` of ours before it (a library that sends
with ``putrequest``/``send`` itself, like urllib3 2.x) makes no event. When ``request``
raises (connection refused), its exception exit is the response event.

Under ``urllib`` (and urllib3 1.x) these calls are nested in the outer library's call
and carry ``nested_in``. The response body is not read (the program's stream).
"""

from __future__ import annotations

import sys
from typing import Any

import hostapp
from hostapp_plugins.http import begin, finish, full_url, http_processor, in_progress

NAME = "http.client"


def _scheme(conn: Any) -> str:
    module = sys.modules.get("http.client")
    https = getattr(module, "HTTPSConnection", None)
    return "https" if https is not None and isinstance(conn, https) else "http"


def _call(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> bool:
    name = frame.f_code.co_name
    if name == "request":
        return event != "return"  # the request; its exception exit ends the call
    # getresponse: only its return/exit, and only after a request of ours
    return event != "call" and in_progress(frame.f_locals.get("self"), context)


def _on_call(frame: Any, context: dict[str, Any]) -> dict[str, Any]:
    local = frame.f_locals
    conn = local.get("self")
    url = full_url(_scheme(conn), getattr(conn, "host", None), getattr(conn, "port", None), local.get("url"))
    return begin(
        context, conn, NAME, local.get("method"), url, local.get("headers"), local.get("body"), frame=frame,
    )


def _on_return(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    conn = frame.f_locals.get("self")
    if event != "return" or arg is None:
        return finish(context, conn)
    headers = getattr(arg, "headers", None)
    length = getattr(arg, "length", None)
    return finish(context, conn, getattr(arg, "status", None), headers, None, body_size=length)


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/http/client.py",
    co_names=("request", "getresponse"),
    on_call=_on_call,
    on_return=_on_return,
    call=_call,
    description="http.client: HTTPConnection.request / getresponse",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``http.client`` processor."""
    return PROCESSOR
