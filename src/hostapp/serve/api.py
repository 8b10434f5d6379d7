"""The JSON management API of ``hostapp serve`` (under ``/api/``) and ``/-/health``.

Every answer is JSON. A reading endpoint needs no token on a loopback bind; a mutating
one always does (:mod:`hostapp.serve.security`). Errors are ``{"error": "..."}`` with
status 400 (a bad parameter, naming it), 404 (no such run, event or sink), 409 (the host
cannot do it now) or 503. Event data is what the sinks received: secrets were redacted by
the bus before any sink, the store included, saw them. The reference is ``docs/serve.md``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from hostapp.errors import HostappError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from hostapp.events.record import Event
    from hostapp.serve.app import ServeContext
    from hostapp.store import Run, Store

__all__ = ["ApiError", "BadParameter", "EventQuery", "event_row", "json_response", "parse_event_query", "routes", "run_row"]

#: Default and largest ``limit`` of ``GET /api/runs/{id}/events``.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

#: Seconds between two looks at the store of a live stream; longest life of one stream
#: (the browser's ``EventSource`` then reconnects by itself).
STREAM_POLL_S = 0.5
STREAM_S = 600.0


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status`` (by the app's handler).

    Args:
        message: what is wrong, naming the parameter, run, event or sink.
        status: the HTTP status (400, 404, 409, 503).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BadParameter(ApiError, ValueError):
    """A query parameter is malformed; the message names it (answered with 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    """The app's exception handler for :class:`ApiError`."""
    return _error(str(exc), getattr(exc, "status", 500))


class _Json(JSONResponse):
    """JSON with ``repr()`` for what JSON cannot encode (event data may hold anything)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, default=repr, separators=(",", ":")).encode()


def json_response(payload: Any, status: int = 200) -> Response:
    """``payload`` as a JSON response with ``status``; what JSON cannot encode is its
    ``repr()`` (the API's one encoder)."""
    return _Json(payload, status_code=status)


_json = json_response


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


# -- event queries: one parser for the API and the web view ---------------------------------


class EventQuery(dict):  # type: ignore[type-arg]
    """The keyword filters of ``Store.iter_events`` parsed from a request's query string
    (a ``dict``), plus ``limit``; :func:`parse_event_query` builds it."""


def _ns(name: str, text: str) -> int:
    """A time parameter: integer ns since the epoch, or an ISO 8601 time."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        raise BadParameter(f"{name}: expected ns since the epoch or an ISO 8601 time, got {text!r}") from None


def _status_range(text: str) -> tuple[int, int]:
    """``200``, ``4xx`` or ``400-499`` -> ``(min, max)``."""
    text = text.strip().lower()
    try:
        if len(text) == 3 and text.endswith("xx") and text[0].isdigit():
            low = int(text[0]) * 100
            return low, low + 99
        if "-" in text:
            low_text, high_text = text.split("-", 1)
            return int(low_text), int(high_text)
        code = int(text)
        return code, code
    except ValueError:
        raise BadParameter(f"status: expected a code (404), a class (4xx) or a range (400-499), got {text!r}") from None


def parse_event_query(params: Any, *, run_id: str | None, default_limit: int = DEFAULT_LIMIT) -> EventQuery:
    """The filters of an events request, as keyword arguments of ``Store.iter_events``.

    Query parameters (each optional; ``type`` and ``library`` repeat):

    ``type``
        event types, exact or globs (``outbound_http_*``) -> ``types``;
    ``library``
        subtypes, the HTTP library (``requests``) -> ``subtypes``;
    ``status``
        ``404``, ``4xx`` or ``400-499`` -> ``status_min`` / ``status_max``;
    ``url``
        a substring of the URL -> ``url_contains``;
    ``min_duration_ms`` (or ``min_duration_ns``)
        the shortest duration -> ``min_duration_ns``;
    ``since`` / ``until``
        a time range, ns since the epoch or ISO 8601 -> ``since_ns`` / ``until_ns``
        (``until`` exclusive);
    ``after``
        the ``next`` cursor of the previous page -> ``after``;
    ``order``
        ``asc`` (default, oldest first) or ``desc`` -> ``newest_first``;
    ``limit``
        1 to 1000 (default 100).

    Raises:
        BadParameter: a malformed value, naming the parameter.
    """
    query = EventQuery()
    if run_id is not None:
        query["run_id"] = run_id
    types = [t for t in params.getlist("type") if t]
    if types:
        query["types"] = types
    libraries = [s for s in params.getlist("library") if s]
    if libraries:
        query["subtypes"] = libraries
    status = params.get("status")
    if status:
        query["status_min"], query["status_max"] = _status_range(status)
    url = params.get("url")
    if url:
        query["url_contains"] = url
    for name, scale in (("min_duration_ms", 1_000_000), ("min_duration_ns", 1)):
        value = params.get(name)
        if value:
            try:
                query["min_duration_ns"] = int(float(value) * scale)
            except ValueError:
                raise BadParameter(f"{name}: expected a number, got {value!r}") from None
    for name, key in (("since", "since_ns"), ("until", "until_ns")):
        value = params.get(name)
        if value:
            query[key] = _ns(name, value)
    after = params.get("after")
    if after:
        query["after"] = after
    order = params.get("order", "asc")
    if order not in ("asc", "desc"):
        raise BadParameter(f"order: expected 'asc' or 'desc', got {order!r}")
    if order == "desc":
        query["newest_first"] = True
    limit_text = params.get("limit")
    try:
        limit = int(limit_text) if limit_text else default_limit
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameter(f"limit: expected an integer from 1 to {MAX_LIMIT}, got {limit_text!r}")
    query["limit"] = limit
    return query


def page_of_events(store: Store, query: Mapping[str, Any]) -> tuple[list[Event], str | None]:
    """One page of events, one keyset query of at most ``query["limit"] + 1`` rows (so
    memory is bounded by the page, whatever the run holds), and the cursor of the next
    page (``None`` at the end).

    Raises:
        ValueError: ``query["after"]`` is not a cursor.
    """
    limit = int(query["limit"])
    kwargs = {k: v for k, v in query.items() if k != "limit"}
    events = store.events(limit=limit + 1, **kwargs)
    more = len(events) > limit
    del events[limit:]
    return events, (store.cursor(events[-1]) if more else None)


# -- rows ---------------------------------------------------------------------------------


def run_row(store: Store, run: Run) -> dict[str, Any]:
    """A run as the API lists it: :meth:`Run.to_dict` plus ``duration_s``, ``live`` and
    ``events`` (how many it stored)."""
    row = run.to_dict()
    row["duration_s"] = run.duration_s
    row["live"] = run.is_live()
    row["events"] = store.count_events(run_id=run.id)
    return row


def event_row(context: ServeContext, event: Event) -> dict[str, Any]:
    """An event as the API returns it: :meth:`Event.to_dict` plus how it is shown
    (``summary``, ``label``, ``shape``: the plugins' renderers, else generic)."""
    renderers = context.renderers()
    row = event.to_dict()
    row["summary"] = renderers.summary(event)
    row["label"] = renderers.label(event)
    row["shape"] = renderers.shape(event)
    return row


# -- endpoints ----------------------------------------------------------------------------


def need_store(context: ServeContext) -> Store:
    """The context's store.

    Raises:
        ApiError: 404, there is no store yet.
    """
    store = context.store()
    if store is None:
        raise ApiError("no store yet: runs are recorded by a host with a store ('hostapp run', 'hostapp serve')", 404)
    return store


def need_run(store: Store, run_id: str) -> Run:
    """The run ``run_id``.

    Raises:
        ApiError: 404, no such run.
    """
    run = store.run(run_id)
    if run is None:
        raise ApiError(f"no run {run_id!r}", 404)
    return run


def routes(context: ServeContext) -> list[Any]:
    """The Starlette routes of the API and ``/-/health`` for ``context``."""
    from starlette.routing import Route

    host = context.host

    def index(request: Request) -> Response:
        return _json({
            "hostapp": __import__("hostapp").__version__,
            "run_id": host.run_id,
            "state": host.state,
            "endpoints": [
                "/api/plugins", "/api/hooks", "/api/routes", "/api/runs", "/api/runs/{run_id}",
                "/api/runs/{run_id}/events", "/api/runs/{run_id}/events/{event_id}",
                "/api/runs/{run_id}/stream", "/api/sinks",
                "POST /api/sinks/{name}/redeliver", "/api/tasks", "/api/components",
                "/api/probes", "/api/probes/{spec_id}", "POST /api/probes", "DELETE /api/probes/{spec_id}",
                "DELETE /api/probes", "/-/health",
            ],
        })

    def plugins(request: Request) -> Response:
        show_all = request.query_params.get("all", "1") not in ("0", "false", "no")
        return _json(context.plugin_rows(show_all=show_all))

    def hooks(request: Request) -> Response:
        return _json(host.pm.hook_table())

    def plugin_routes(request: Request) -> Response:
        from hostapp.serve.routes import route_rows

        return _json({"routes": route_rows(context.routes), "refused": context.problems})

    def runs(request: Request) -> Response:
        store = need_store(context)
        limit = _int_param(request, "limit", 50, 1, 1000)
        return _json([run_row(store, run) for run in store.runs(limit)])

    def one_run(request: Request) -> Response:
        store = need_store(context)
        return _json(run_row(store, need_run(store, request.path_params["run_id"])))

    def run_events(request: Request) -> Response:
        store = need_store(context)
        run_id = need_run(store, request.path_params["run_id"]).id
        query = parse_event_query(request.query_params, run_id=run_id)
        try:
            events, cursor = page_of_events(store, query)
        except ValueError as exc:  # a cursor the store cannot read
            raise BadParameter(f"after: {exc}") from None
        return _json({"run_id": run_id, "events": [event_row(context, e) for e in events], "next": cursor})

    def one_event(request: Request) -> Response:
        store = need_store(context)
        event = need_event(store, request.path_params["run_id"], request.path_params["event_id"])
        row = event_row(context, event)
        row["fields"] = [[label, value] for label, value in context.renderers().fields(event)]
        return _json(row)

    async def stream(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import StreamingResponse

        store = need_store(context)
        run_id = need_run(store, request.path_params["run_id"]).id
        last = request.query_params.get("last") or request.headers.get("last-event-id") or ""

        def probe() -> tuple[str, bool, int]:
            # The newest event that is not the web view's own live machinery: watching the
            # run of this very server must not make each refresh announce the next one.
            newest = next((e for e in store.events(run_id=run_id, newest_first=True, limit=50)
                           if not _live_machinery(e)), None)
            run = store.run(run_id)
            ended = run is None or not run.is_live()
            if newest is None:
                return last, ended, 0
            return newest.id, ended, newest.timestamp_ns

        async def messages() -> Any:
            nonlocal last
            yield "retry: 2000\n\n"
            deadline = time.monotonic() + STREAM_S
            while not context.stopping.is_set() and time.monotonic() < deadline:
                newest, ended, at_ns = await run_in_threadpool(probe)
                if newest != last:
                    last = newest
                    yield f"id: {newest}\nevent: changed\ndata: {json.dumps({'newest': newest, 'at_ns': at_ns})}\n\n"
                if ended:
                    yield "event: ended\ndata: {}\n\n"
                    return
                for _ in range(int(STREAM_POLL_S / 0.1)):
                    if context.stopping.is_set():
                        return
                    await asyncio.sleep(0.1)

        return StreamingResponse(
            messages(), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def sinks(request: Request) -> Response:
        bus = host.bus
        stats = bus.stats() if bus is not None else {}
        store = context.store()
        pending = store.dead_letter_counts() if store is not None else {}
        rows = []
        for contribution in host.sinks:
            name = contribution.spec.name
            rows.append({
                "name": name,
                "plugin": contribution.plugin,
                "event_types": list(contribution.spec.event_types),
                "enabled": name in stats,
                "counters": stats.get(name),
                "dead_letters": pending.get(name, 0),
            })
        return _json(rows)

    def redeliver(request: Request) -> Response:
        bus = host.bus
        name = request.path_params["name"]
        if bus is None or name not in bus.stats():
            return _error(f"no running sink {name!r}", 404)
        try:
            return _json(bus.redeliver(name, timeout=30.0))
        except HostappError as exc:
            return _error(str(exc), 409)

    def tasks(request: Request) -> Response:
        return _json([record.to_dict() for record in host.tasks.values()])

    def components(request: Request) -> Response:
        return _json([record.to_dict() for record in host.components.values()])

    async def health(request: Request) -> Response:
        checked: dict[str, Any] = {}
        if host.state == "running" and any(r.available for r in host.components.values()):
            checked = await context.on_host_loop(lambda: host.components.ahealth(timeout=2.0))
        states = {}
        down = []
        for name, record in host.components.items():
            result = checked.get(name) or record.health
            ok = record.available and (result is None or bool(result.get("ok")))
            states[name] = {"state": record.state, "load": record.load, "ok": ok, "health": result,
                            "error": record.error}
            if record.load == "yes" and not ok:
                down.append(name)
        healthy = host.state == "running" and not down
        body = {
            "status": "ok" if healthy else "unavailable",
            "host": host.state,
            "run_id": host.run_id,
            "components": states,
            "down": down,
            "tasks": {name: record.state for name, record in host.tasks.items()},
            "checked_ns": time.time_ns(),
        }
        return _json(body, 200 if healthy else 503)

    return [
        Route("/-/health", health, methods=["GET"], name="hostapp:health"),
        Route("/api", index, methods=["GET"], name="hostapp:api"),
        Route("/api/plugins", plugins, methods=["GET"], name="hostapp:plugins"),
        Route("/api/hooks", hooks, methods=["GET"], name="hostapp:hooks"),
        Route("/api/routes", plugin_routes, methods=["GET"], name="hostapp:routes"),
        Route("/api/runs", runs, methods=["GET"], name="hostapp:runs"),
        Route("/api/runs/{run_id}", one_run, methods=["GET"], name="hostapp:run"),
        Route("/api/runs/{run_id}/events", run_events, methods=["GET"], name="hostapp:events"),
        Route("/api/runs/{run_id}/events/{event_id}", one_event, methods=["GET"], name="hostapp:event"),
        Route("/api/runs/{run_id}/stream", stream, methods=["GET"], name="hostapp:stream"),
        Route("/api/sinks", sinks, methods=["GET"], name="hostapp:sinks"),
        Route("/api/sinks/{name}/redeliver", redeliver, methods=["POST"], name="hostapp:redeliver"),
        Route("/api/tasks", tasks, methods=["GET"], name="hostapp:tasks"),
        Route("/api/components", components, methods=["GET"], name="hostapp:components"),
        Route("/api/{rest:path}", _not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]


def _live_machinery(event: Event) -> bool:
    """Whether ``event`` is the ``monitoring_event`` of a live update of the web view (a
    stream, or the waterfall fetched because of one)."""
    if event.source != "hostapp.serve" or event.subtype != "http_request":
        return False
    path = str(event.data.get("path") or "")
    return path.endswith("/stream") or path.endswith("/waterfall")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    try:
        value = default if not text else int(text)
    except ValueError:
        raise BadParameter(f"{name}: expected an integer from {low} to {high}, got {text!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{name}: expected an integer from {low} to {high}, got {value}")
    return value


def need_event(store: Store, run_id: str, event_id: str) -> Event:
    """The event ``event_id`` of run ``run_id`` (:func:`find_event`).

    Raises:
        ApiError: 404, no such run or event.
    """
    need_run(store, run_id)
    event = find_event(store, run_id, event_id)
    if event is None:
        raise ApiError(f"no event {event_id!r} in run {run_id!r}", 404)
    return event


def _not_found(request: Request) -> Response:
    return _error(f"no API endpoint {request.url.path!r}; GET /api lists them", 404)


def find_event(store: Store, run_id: str, event_id: str) -> Event | None:
    """The event ``event_id`` of run ``run_id``, or ``None``.

    An id made by :func:`~hostapp.events.record.new_id` encodes a time, most often the
    event's own: the run's events at that nanosecond are read first. Otherwise the run's
    events are read in time order, a chunk at a time (memory stays bounded).
    """
    from hostapp.events.record import id_timestamp_ns

    try:
        at = id_timestamp_ns(event_id)
    except ValueError:
        return None
    for event in store.events(run_id=run_id, since_ns=at, until_ns=at + 1):
        if event.id == event_id:
            return event
    return next((event for event in store.iter_events(run_id=run_id) if event.id == event_id), None)
