"""Request monitoring: one ``monitoring_event`` per request served (LUNA's monitoring
events), so the sinks plugins already write for LUNA receive them."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostapp.host import Host

__all__ = ["REQUEST_SUBTYPE", "RequestMonitor"]

logger = logging.getLogger("hostapp.serve")

#: The subtype of the ``monitoring_event`` of a served request.
REQUEST_SUBTYPE = "http_request"


class RequestMonitor:
    """ASGI middleware: after each HTTP request, emit a ``monitoring_event``.

    The event (type ``monitoring_event``, subtype ``"http_request"``, source
    ``"hostapp.serve"``) is stamped with the request's start time and carries in ``data``:

    ``request_id`` (str)
        the request's ``X-Request-ID`` header when it sent one (at most 128 characters),
        else a new id; also sent back as the response's ``X-Request-ID`` header;
    ``method``, ``path`` (str)
        the method and the path, without the query string (which may hold a token);
    ``route`` (str | None)
        the matched route's path template (``"/api/runs/{run_id}"``), ``None`` when no
        route matched;
    ``plugin`` (str | None)
        the plugin whose route answered (``None`` for hostapp's own routes);
    ``status_code`` (int | None)
        the response status (``None`` when the app failed before starting a response);
    ``duration_ns`` (int)
        from the request's arrival to the end of its response (a streamed response, such
        as the web view's live updates, ends when its stream does);
    ``client`` (str | None)
        the client's address.

    Args:
        app: the ASGI app to wrap.
        host: the host whose ``emit`` is used (a host that is not running drops the event).

    A plugin's route names its plugin in the scope (``scope["hostapp.plugin"]``, set by
    :func:`hostapp.serve.app.create_app`).
    """

    def __init__(self, app: Callable[..., Any], host: Host) -> None:
        self.app = app
        self.host = host

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from hostapp.events.record import new_id

        start_ns = time.time_ns()
        started = time.perf_counter_ns()
        offered = next((v for k, v in scope.get("headers", ()) if k.lower() == b"x-request-id"), b"")
        request_id = offered.decode("latin-1")[:128] if offered else new_id(start_ns)
        root = scope.get("root_path", "")
        status: list[int] = []

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._emit(scope, root, request_id, start_ns, time.perf_counter_ns() - started, status)

    def _emit(
        self, scope: dict[str, Any], root: str, request_id: str, start_ns: int, duration_ns: int, status: list[int]
    ) -> None:
        from hostapp.events.record import Event, new_id

        route = scope.get("route")
        template = getattr(route, "path", None)
        if template is not None:
            inner_root = scope.get("root_path", root)
            template = inner_root[len(root):] + template if inner_root.startswith(root) else template
        client = scope.get("client")
        data = {
            "request_id": request_id,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "route": template,
            "plugin": scope.get("hostapp.plugin"),
            "status_code": status[0] if status else None,
            "duration_ns": duration_ns,
            "client": client[0] if client else None,
        }
        host = self.host
        event = Event.create("monitoring_event", REQUEST_SUBTYPE, data=data, run_id=host.run_id, source="hostapp.serve")
        event = dataclasses.replace(event, id=new_id(start_ns), timestamp_ns=start_ns)
        try:
            host.emit(event)
        except Exception as exc:  # a host that stopped: the request was served all the same
            logger.debug("monitoring_event of %s %s not emitted: %s", data["method"], data["path"], exc)
