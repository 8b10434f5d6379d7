"""The renderer of HTTP calls: the call records of the built-in HTTP processors
(``outbound_http_request``, one per call) and the request/response events of Kolo-style
processors, as ``hostapp events`` and the web view show them."""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.renderers._text import short

REQUEST = "outbound_http_request"
RESPONSE = "outbound_http_response"


def _outcome(data: dict[str, Any]) -> str:
    error = data.get("error")
    if data.get("status_code") is not None:
        return str(data["status_code"])
    if isinstance(error, dict):
        return str(error.get("type") or "error").rsplit(".", 1)[-1]
    if data.get("exception_type"):  # a Kolo-style response event
        return str(data["exception_type"]).rsplit(".", 1)[-1]
    return "…"  # a request whose response is not (yet) there


def _summary(event: Any) -> str:
    data = event.data
    line = f"{data.get('method') or '?'} {short(data.get('url') or '?', 200)} -> {_outcome(data)}"
    if event.subtype:
        line += f"  {event.subtype}"
    if data.get("redirects"):
        line += f" ({data['redirects']} redirect{'s' if data['redirects'] > 1 else ''})"
    return line


def _fields(event: Any) -> list[tuple[str, Any]]:
    data = event.data
    out: list[tuple[str, Any]] = [
        ("method", data.get("method")), ("url", data.get("url")), ("status", data.get("status_code")),
        ("library", event.subtype),
    ]
    for key, label in (("via", "via"), ("redirects", "redirects"), ("error", "error"), ("span_id", "span"),
                       ("trace_id", "trace")):
        if data.get(key):
            out.append((label, data[key]))
    return out


@hostapp.hookimpl
def hostapp_event_renderers() -> hostapp.EventRenderer:
    """The HTTP call renderer."""
    return hostapp.EventRenderer(
        name="http", event_types=(REQUEST, RESPONSE), summary=_summary, fields=_fields, shape="span",
        label="HTTP", description="Outbound HTTP calls: method, URL, status, library.",
    )
