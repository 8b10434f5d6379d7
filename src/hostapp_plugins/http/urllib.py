"""The ``urllib`` processor: ``urllib.request`` requests (``urlopen``, openers).

Selects ``AbstractHTTPHandler.do_open`` in ``urllib/request.py`` (Kolo's choice), which
sends one request and returns its ``http.client.HTTPResponse``: the record is made from the
``Request`` object (``req``) and that response, before urllib turns a 4xx/5xx status into
``HTTPError`` - so error statuses are recorded too. The ``http.client`` calls it makes are
inner calls (``via``). A redirect is a new ``do_open`` call, so each hop is its own record.
The response body is not read (it is the program's stream); ``body_size`` comes from
``Content-Length``.
"""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.http import content_length, exchange, http_processor, method_text

NAME = "urllib"


def _capture(args: Any, context: dict[str, Any]) -> Any:
    return args.get("req")


def _build(req: Any, response: Any, error: BaseException | None, context: dict[str, Any]) -> dict[str, Any]:
    limit = context["settings"].max_body_bytes
    record: dict[str, Any] = {
        "method": method_text(req.get_method() if req is not None else None),
        "url": str(getattr(req, "full_url", "") or ""),
        "request": exchange(req.header_items() if req is not None else None, getattr(req, "data", None), limit),
        "status_code": None,
        "response": None,
    }
    if response is not None:
        headers = getattr(response, "headers", None)
        record["status_code"] = getattr(response, "status", None)
        record["response"] = exchange(headers, None, limit, body_size=content_length(headers))
    return record


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/urllib/request.py",
    co_names=("do_open",),
    capture=_capture,
    build=_build,
    description="urllib.request: urlopen() and openers",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``urllib`` processor."""
    return PROCESSOR
