"""The ``http.client`` processor: ``HTTPConnection`` requests, and anything built on it.

``http.client`` has no one function spanning a request and its response, so this
processor selects two in ``http/client.py``: ``HTTPConnection.request`` and
``HTTPConnection.getresponse``. ``request`` keeps what it was asked to send on the
connection (method, URL rebuilt from the connection's host and port, headers, body, start
time); the following ``getresponse`` makes the record, which starts when ``request`` was
called. A ``getresponse`` with no ``request`` of ours before it (a library that sends with
``putrequest``/``send`` itself, like urllib3 2.x) makes no record. When ``request`` raises
(connection refused), that is the record, with its ``error``.

Under ``urllib`` (and urllib3 1.x) these calls are inner calls of the outer library's
record (``via``). The response body is not read (the program's stream).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import hostapp
from hostapp.types import SKIP
from hostapp_plugins.http import content_length, exchange, full_url, http_processor, method_text

NAME = "http.client"
#: The attribute of an ``HTTPConnection`` holding the request it was last asked to send.
_PENDING = "_hostapp_http_request"


def _scheme(conn: Any) -> str:
    module = sys.modules.get("http.client")
    https = getattr(module, "HTTPSConnection", None)
    return "https" if https is not None and isinstance(conn, https) else "http"


def _capture(args: Any, context: dict[str, Any]) -> Any:
    conn = args.get("self")
    if "method" in args:  # request(self, method, url, body=None, headers={}, ...)
        pending = (
            conn, args.get("method"), args.get("url"), args.get("headers"), args.get("body"), time.time_ns(),
        )
        try:
            setattr(conn, _PENDING, pending)
        except (AttributeError, TypeError):  # a connection class with __slots__
            return SKIP
        return ("request", pending)
    pending = getattr(conn, _PENDING, None)  # getresponse(self)
    if pending is None:
        return SKIP
    try:
        delattr(conn, _PENDING)
    except AttributeError:
        pass
    return ("response", pending)


def _build(captured: Any, response: Any, error: BaseException | None, context: dict[str, Any]) -> dict[str, Any] | None:
    stage, (conn, method, url, headers, body, start) = captured
    if stage == "request" and error is None:
        return None  # sent: the getresponse that follows makes the record
    limit = context["settings"].max_body_bytes
    record: dict[str, Any] = {
        "timestamp_ns": start,
        "method": method_text(method),
        "url": full_url(_scheme(conn), getattr(conn, "host", None), getattr(conn, "port", None), url),
        "request": exchange(headers, body, limit),
        "status_code": None,
        "response": None,
    }
    if response is not None:
        response_headers = getattr(response, "headers", None)
        record["status_code"] = getattr(response, "status", None)
        record["response"] = exchange(
            response_headers, None, limit,
            body_size=getattr(response, "length", None) or content_length(response_headers),
        )
    return record


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/http/client.py",
    co_names=("request", "getresponse"),
    capture=_capture,
    build=_build,
    description="http.client: HTTPConnection.request / getresponse",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``http.client`` processor."""
    return PROCESSOR
