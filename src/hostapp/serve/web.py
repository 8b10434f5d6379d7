"""The web view of ``hostapp serve``: server-rendered HTML and one small script.

Pages (links are relative to the app's ``root_path``, so it can be mounted anywhere):

``/``
    the runs: command, start, duration, exit status, event counts; live runs marked;
``/runs/{run_id}``
    one run: the **waterfall** of its calls and jobs (one bar per call, placed by start and
    sized by duration, coloured by status, grouped by thread, labelled with method, URL and
    call site), other events as marks on the same axis, filters; a live run updates while
    it runs (server-sent events from ``/api/runs/{run_id}/stream``);
``/runs/{run_id}/events/{event_id}``
    one event whole; for an HTTP call, request and response side by side (method, URL,
    headers, body, with their truncation), duration, call site, the libraries it went
    through and the calls made inside it;
``/plugins``
    every plugin with its state and why, the components, tasks, sinks and routes, and the
    probe specs with their state per process (read-only).

Events are drawn through the plugins' renderers (:class:`hostapp.render.Renderers`), the
same ones ``hostapp events`` uses. Everything shown comes from the store, where the bus
wrote it already redacted.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.responses import HTMLResponse, Response

from hostapp.serve import api
from hostapp.serve.timeline import (
    Timeline,
    build_timeline,
    call_label,
    call_site,
    format_duration,
    kind_label,
    status_class,
    thread_name,
)

if TYPE_CHECKING:
    from starlette.requests import Request

    from hostapp.events.record import Event
    from hostapp.serve.app import ServeContext
    from hostapp.store import Run, Store

__all__ = ["MAX_WATERFALL_EVENTS", "routes"]

#: Most events one waterfall lays out (the page says when a run has more).
MAX_WATERFALL_EVENTS = 5000

STATIC = Path(__file__).with_name("static")

_FILTERS = ("type", "library", "status", "url", "min_duration_ms")


def h(value: Any) -> str:
    """``value`` as HTML text (escaped; ``None`` is empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _when(ns: int | None) -> str:
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / 1e9).isoformat(sep=" ", timespec="milliseconds")


class _Links:
    """Links of one request: under its ``root_path``, carrying its ``?token=`` along (a
    browser on a non-loopback bind has no other way to send it)."""

    def __init__(self, request: Request) -> None:
        self.base = request.scope.get("root_path", "").rstrip("/")
        token = request.query_params.get("token")
        self.token = {"token": token} if token else {}

    def __call__(self, path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "", [])}
        query.update(self.token)
        text = urlencode(query, doseq=True)
        return f"{self.base}{path}" + (f"?{text}" if text else "")


def _page(links: _Links, title: str, body: str, *, active: str = "") -> HTMLResponse:
    nav = "".join(
        f'<a href="{h(links(path))}"{" class=active" if key == active else ""}>{label}</a>'
        for key, path, label in (("runs", "/", "Runs"), ("plugins", "/plugins", "Plugins"), ("api", "/api", "API"))
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{h(title)} · hostapp</title>
<link rel="stylesheet" href="{h(links('/-/static/hostapp.css'))}">
<script src="{h(links('/-/static/hostapp.js'))}" defer></script>
</head><body>
<header class="top"><a class="brand" href="{h(links('/'))}">hostapp</a><nav>{nav}</nav></header>
<main>
{body}
</main></body></html>"""
    response = HTMLResponse(page)
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        # inline style attributes place the bars; every text in the page is escaped
        "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'"
    )
    return response


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, css: str = "") -> str:
    head = "".join(f"<th>{h(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _badge(text: str, css: str) -> str:
    return f'<span class="badge {css}">{h(text)}</span>'


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"<pre>{h(json.dumps(value, indent=2, ensure_ascii=False, default=repr))}</pre>"
    return h(value)


# -- runs ---------------------------------------------------------------------------------


def _run_status(run: Run, live: bool) -> str:
    if live:
        return _badge("live", "live")
    if run.ended_ns is None:
        return _badge("gone", "gone")
    return _badge(f"exit {run.exit_status}", "exit-ok" if not run.exit_status else "exit-bad") if run.exit_status is not None else ""


def _runs_page(context: ServeContext, request: Request) -> Response:
    links = _Links(request)
    store = context.store()
    if store is None:
        return _page(links, "Runs", "<h1>Runs</h1><p class=empty>No store yet: runs are recorded by "
                     "<code>hostapp run</code> and <code>hostapp serve</code>.</p>", active="runs")
    rows = []
    for run in store.runs(100):
        live = run.is_live()
        calls = store.count_events(run_id=run.id, types=["outbound_http_request"])
        rows.append((
            f'<a href="{h(links(f"/runs/{run.id}"))}"><code>{h(run.id[:12])}</code></a>',
            f"<code>{h(run.command or '')}</code>",
            h(_when(run.started_ns)),
            h(format_duration(run.ended_ns - run.started_ns) if run.ended_ns else ""),
            _run_status(run, live),
            h(store.count_events(run_id=run.id)),
            h(calls),
        ))
    body = "<h1>Runs</h1>"
    if rows:
        body += _table(("Run", "Command", "Started", "Duration", "Status", "Events", "HTTP calls"), rows, css="runs")
    else:
        body += "<p class=empty>No runs recorded yet.</p>"
    return _page(links, "Runs", body, active="runs")


# -- one run: the waterfall -----------------------------------------------------------------


def _filters(request: Request) -> dict[str, Any]:
    """The waterfall's filters from the query string (those of the events API)."""
    return {name: request.query_params.getlist(name) if name in ("type", "library") else request.query_params.get(name)
            for name in _FILTERS}


def _waterfall_events(store: Store, run_id: str, request: Request) -> tuple[list[Event], bool]:
    query = api.parse_event_query(request.query_params, run_id=run_id, default_limit=1)
    query.pop("limit", None)
    query.pop("after", None)
    query.pop("newest_first", None)
    events = list(store.iter_events(limit=MAX_WATERFALL_EVENTS + 1, **query))
    more = len(events) > MAX_WATERFALL_EVENTS
    return events[:MAX_WATERFALL_EVENTS], more


def _bar_html(links: _Links, timeline: Timeline, run_id: str, bar: Any) -> str:
    left = timeline.percent(bar.start_ns)
    if bar.duration_ns is None:
        width = max(100.0 - left, 0.3)
    else:
        width = max(bar.duration_ns * 100.0 / timeline.span_ns, 0.3)
    width = min(width, 100.0 - left) if left < 99.7 else 0.3
    href = h(links(f"/runs/{run_id}/events/{bar.event.id}"))
    duration = format_duration(bar.duration_ns) if bar.duration_ns is not None else "in progress"
    tooltip = f"{bar.summary} — {duration}"
    status = f'<span class="status {bar.status}">{h(bar.status_text)}</span>' if bar.status_text else ""
    site = f'<span class="site">{h(bar.site)}</span>' if bar.site else ""
    return (
        f'<div class="row call" data-event-id="{h(bar.event.id)}">'
        f'<a class="label" href="{href}" title="{h(bar.summary)}">'
        f'<span class="line1"><span class="kind">{h(bar.kind)}</span> <span class="what">{h(bar.label)}</span>'
        f'{status}</span>{site}</a>'
        f'<div class="track"><a class="bar {bar.status}" href="{href}" title="{h(tooltip)}" '
        f'style="left:{left:.3f}%;width:{width:.3f}%" data-start-ns="{bar.start_ns}" '
        f'data-duration-ns="{"" if bar.duration_ns is None else bar.duration_ns}">'
        f'<span class="dur">{h(duration)}</span></a></div></div>'
    )


def _waterfall_html(links: _Links, timeline: Timeline, run_id: str) -> str:
    if not timeline.lanes:
        return '<p class="empty">No events match.</p>'
    ticks = "".join(
        f'<span class="tick" style="left:{at:.3f}%">{h(text)}</span>' for at, text in timeline.ticks()
    )
    parts = [f'<div class="waterfall"><div class="row axis"><div class="label"></div>'
             f'<div class="track">{ticks}</div></div>']
    for lane in timeline.lanes:
        count = len(lane.bars)
        parts.append(
            f'<section class="lane" data-thread="{h(lane.thread)}"><div class="row lane-head">'
            f'<div class="label"><b>{h(lane.thread)}</b> <small>{count} call{"s" if count != 1 else ""}'
            f'{f", {len(lane.marks)} other" if lane.marks else ""}</small></div><div class="track marks">'
        )
        for mark in lane.marks:
            href = h(links(f"/runs/{run_id}/events/{mark.event.id}"))
            parts.append(
                f'<a class="mark" href="{href}" style="left:{timeline.percent(mark.at_ns):.3f}%" '
                f'title="{h(mark.kind)}: {h(mark.summary)}"></a>'
            )
        parts.append("</div></div>")
        parts.extend(_bar_html(links, timeline, run_id, bar) for bar in lane.bars)
        parts.append("</section>")
    parts.append("</div>")
    return "".join(parts)


def _legend() -> str:
    items = (("s2xx", "2xx"), ("s3xx", "3xx"), ("s4xx", "4xx"), ("s5xx", "5xx"), ("err", "error"),
             ("ok", "job / span"), ("open", "in progress"))
    marks = '<span class="key"><i class="mark-key"></i> other event</span>'
    return '<p class="legend">' + "".join(
        f'<span class="key"><i class="bar-key {css}"></i> {h(text)}</span>' for css, text in items
    ) + marks + "</p>"


def _run_live_html(context: ServeContext, request: Request, store: Store, run: Run) -> str:
    """The part of a run's page that live updates replace: its summary line and waterfall."""
    links = _Links(request)
    live = run.is_live()
    events, more = _waterfall_events(store, run.id, request)
    timeline = build_timeline(events, context.renderers(), now_ns=time.time_ns() if live else None, cwd=run.cwd)
    total = store.count_events(run_id=run.id)
    duration = format_duration(run.ended_ns - run.started_ns) if run.ended_ns else format_duration(
        time.time_ns() - run.started_ns) + " so far" if live else ""
    summary = (
        f'<p class="run-meta">{_run_status(run, live)} started {h(_when(run.started_ns))}'
        f"{f' · {h(duration)}' if duration else ''} · {total} events · "
        f"{len(timeline.bars)} calls drawn"
        f"{f' · <b>only the first {MAX_WATERFALL_EVENTS} events are laid out</b>' if more else ''}</p>"
    )
    return summary + _waterfall_html(links, timeline, run.id)


def _run_page(context: ServeContext, request: Request) -> Response:
    links = _Links(request)
    store = api.need_store(context)
    run = api.need_run(store, request.path_params["run_id"])
    filters = _filters(request)
    live = run.is_live()
    newest = store.events(run_id=run.id, newest_first=True, limit=1)
    stream = links(f"/api/runs/{run.id}/stream", last=newest[0].id if newest else "")
    fragment = links(f"/runs/{run.id}/waterfall", **filters)
    form = "".join(
        f'<label>{h(label)} <input name="{name}" value="{h(value[0] if isinstance(value, list) and value else value or "")}"'
        f' placeholder="{h(hint)}"></label>'
        for (name, label, hint), value in zip(
            (("type", "type", "outbound_http_*"), ("library", "library", "requests"), ("status", "status", "4xx"),
             ("url", "URL contains", "/users"), ("min_duration_ms", "min ms", "10")),
            filters.values(),
        )
    )
    token = f'<input type="hidden" name="token" value="{h(links.token["token"])}">' if links.token else ""
    stream_attr = f' data-stream="{h(stream)}"' if live else ""
    body = (
        f'<h1>Run <code>{h(run.id[:12])}</code></h1>'
        f'<p class="command"><code>{h(run.command or "")}</code></p>'
        f'<form class="filters" method="get">{form}{token}<button>Filter</button> '
        f'<a href="{h(links(f"/runs/{run.id}"))}">clear</a> · '
        f'<a href="{h(links(f"/api/runs/{run.id}/events", **filters))}">as JSON</a></form>'
        f"{_legend()}"
        f'<div id="run-live" data-fragment="{h(fragment)}"{stream_attr}>'
        f"{_run_live_html(context, request, store, run)}</div>"
    )
    return _page(links, f"Run {run.id[:12]}", body, active="runs")


def _waterfall_fragment(context: ServeContext, request: Request) -> Response:
    store = api.need_store(context)
    run = api.need_run(store, request.path_params["run_id"])
    return HTMLResponse(_run_live_html(context, request, store, run))


# -- one event / one call ---------------------------------------------------------------------


def _closing_event(store: Store, event: Event) -> Event | None:
    """The event closing ``event``'s pair (the same ``frame_id``), looked for among the
    next events of its run (at most a few thousand, read in chunks)."""
    frame = event.data.get("frame_id")
    if not isinstance(frame, str) or isinstance(event.data.get("duration_ns"), int):
        return None
    for later in store.iter_events(run_id=event.run_id, after=store.cursor(event), limit=5000):
        if later.data.get("frame_id") == frame:
            return later
    return None


def _inner_calls(store: Store, event: Event, end_ns: int | None) -> list[Event]:
    """The calls made inside ``event`` (``nested_in`` its frame, or ``parent_span_id`` its
    span), among the events of its run up to its end."""
    frame = event.data.get("frame_id")
    span = event.data.get("span_id")
    if not frame and not span:
        return []
    found = []
    for later in store.iter_events(run_id=event.run_id, after=store.cursor(event), until_ns=end_ns, limit=2000):
        data = later.data
        if (frame and data.get("nested_in") == frame) or (span and data.get("parent_span_id") == span):
            if not later.type.endswith("_response"):
                found.append(later)
    return found


def _side(part: Any, fallback: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """One side of a call (request or response) as ``{"headers", "body", "body_size",
    "body_truncated"}``: the record's ``request`` / ``response`` dict, else the keys of a
    call/return pair's own event."""
    if isinstance(part, dict):
        return part
    if fallback is None:
        return None
    return {key: fallback.get(key) for key in ("headers", "body", "body_size", "body_truncated")}


def _headers_html(headers: Any) -> str:
    if not headers:
        return '<p class="empty">no headers</p>'
    items = headers.items() if isinstance(headers, dict) else headers
    rows = []
    for name, value in items:
        css = ' class="redacted"' if str(value) == "[REDACTED]" else ""
        rows.append(f"<tr><th>{h(name)}</th><td{css}>{h(value)}</td></tr>")
    return f'<table class="headers">{"".join(rows)}</table>'


def _body_html(side: Mapping[str, Any]) -> str:
    body = side.get("body")
    size = side.get("body_size")
    note = ""
    if side.get("body_truncated"):
        shown = len(body.encode("utf-8", "replace")) if isinstance(body, str) else 0
        note = f'<p class="truncated">truncated: {shown} of {h(size if size is not None else "?")} bytes shown</p>'
    elif size is not None:
        note = f'<p class="size">{h(size)} bytes</p>'
    if body is None and size:
        return note + '<p class="empty">body not recorded</p>'
    if body is None or body == "":
        return note + '<p class="empty">no body</p>'
    if not isinstance(body, str):
        body = json.dumps(body, indent=2, ensure_ascii=False, default=repr)
    return note + f'<pre class="body">{h(body)}</pre>'


def _call_html(links: _Links, store: Store, event: Event, end: Event | None, context: ServeContext,
               cwd: str | None) -> str:
    data = {**event.data, **(end.data if end is not None else {})}
    duration = data.get("duration_ns")
    if not isinstance(duration, int) and end is not None:
        duration = end.timestamp_ns - event.timestamp_ns
    css, status_text = status_class(data)
    request_side = _side(event.data.get("request"), event.data)
    response = event.data.get("response")
    response_side = _side(response, end.data if end is not None else None) if response is not None or end else None
    error = data.get("error") if isinstance(data.get("error"), dict) else (
        {"type": data.get("exception_type"), "message": data.get("exception_message")} if data.get("exception_type") else None)
    meta = [
        ("status", f'<span class="status {css}">{h(status_text or "—")}</span>'),
        ("duration", h(format_duration(duration) if isinstance(duration, int) else "in progress")),
        ("started", h(_when(event.timestamp_ns))),
        ("call site", f"<code>{h(call_site(data, cwd))}</code>"),
        ("library", h(data.get("library") or event.subtype)),
        ("via", h(" → ".join(str(v) for v in data.get("via") or ()) or "")),
        ("thread", h(thread_name(event))),
        ("trace / span", h(" / ".join(str(data.get(k) or "–") for k in ("trace_id", "span_id", "parent_span_id")))),
    ]
    if error:
        meta.insert(1, ("error", f'<span class="status err">{h(error.get("type"))}</span> {h(error.get("message"))}'))
    meta_html = "".join(f"<tr><th>{h(k)}</th><td>{v}</td></tr>" for k, v in meta if v)
    request_html = (
        f'<h2>Request</h2><p class="line"><b>{h(data.get("method"))}</b> <code>{h(data.get("url"))}</code></p>'
        f"<h3>Headers</h3>{_headers_html((request_side or {}).get('headers'))}"
        f"<h3>Body</h3>{_body_html(request_side or {})}"
    )
    if response_side is None:
        response_html = '<h2>Response</h2><p class="empty">' + (
            "no response: the call raised" if error else "no response recorded (yet)") + "</p>"
    else:
        response_html = (
            f'<h2>Response</h2><p class="line"><span class="status {css}">{h(data.get("status_code") or "")}</span></p>'
            f"<h3>Headers</h3>{_headers_html(response_side.get('headers'))}"
            f"<h3>Body</h3>{_body_html(response_side)}"
        )
    end_ns = event.timestamp_ns + duration if isinstance(duration, int) else None
    inner = _inner_calls(store, event, end_ns + 1 if end_ns is not None else None)
    inner_html = ""
    if inner:
        items = "".join(
            f'<li><a href="{h(links(f"/runs/{e.run_id}/events/{e.id}"))}">{h(context.renderers().summary(e))}</a></li>'
            for e in inner
        )
        inner_html = f"<h2>Calls made inside this one</h2><ul class=inner>{items}</ul>"
    return (
        f'<table class="meta">{meta_html}</table>'
        f'<div class="sides"><section class="side request">{request_html}</section>'
        f'<section class="side response">{response_html}</section></div>{inner_html}'
    )


def _event_page(context: ServeContext, request: Request) -> Response:
    links = _Links(request)
    store = api.need_store(context)
    event = api.need_event(store, request.path_params["run_id"], request.path_params["event_id"])
    renderers = context.renderers()
    end = _closing_event(store, event)
    back = f'<p><a href="{h(links(f"/runs/{event.run_id}"))}">← run {h((event.run_id or "")[:12])}</a></p>'
    title = call_label(event, renderers.summary(event))
    body = f'{back}<h1 class="event-title"><span class="kind">{h(kind_label(event, renderers))}</span> {h(title)}</h1>'
    if event.data.get("method") and event.data.get("url"):
        run = store.run(event.run_id) if event.run_id else None
        body += _call_html(links, store, event, end, context, run.cwd if run is not None else None)
    else:
        rows = "".join(f"<tr><th>{h(k)}</th><td>{_value(v)}</td></tr>" for k, v in renderers.fields(event))
        body += f'<table class="meta"><tr><th>type</th><td><code>{h(event.type)}</code></td></tr>' \
                f'<tr><th>time</th><td>{h(_when(event.timestamp_ns))}</td></tr>{rows}</table>'
    raw = json.dumps(event.to_dict(), indent=2, ensure_ascii=False, default=repr)
    body += f"<details><summary>the stored event (JSON)</summary><pre>{h(raw)}</pre></details>"
    return _page(links, title[:60], body, active="runs")


# -- plugins --------------------------------------------------------------------------------


def _plugins_page(context: ServeContext, request: Request) -> Response:
    from hostapp.serve.routes import route_rows

    links = _Links(request)
    host = context.host
    colours = {"started": "ok", "registered": "ok", "failed": "bad", "filtered": "warn", "shadowed": "warn"}
    plugin_rows = []
    for row in context.plugin_rows(show_all=True):
        state = str(row["state"])
        if state == "failed":
            why = f"failed at {row['stage']}: {row['error']}"
        elif state == "filtered":
            why = f"filtered by {row['rule']}"
        elif state == "shadowed":
            why = f"shadowed by {row['shadowed_by']}"
        else:
            why = "; ".join(f"{k}: {', '.join(v)}" for k, v in row["provides"].items())
        errors = "".join(f'<div class="hook-error">{h(e["hook"])}: {h(e["error"])}</div>' for e in row["hook_errors"])
        plugin_rows.append((
            f"<b>{h(row['name'])}</b>" + (' <small class="builtin">built-in</small>' if row["builtin"] else ""),
            _badge(state, colours.get(state, "")),
            h(row["source"]),
            h(f"{row['distribution']} {row['version']}" if row["distribution"] else ""),
            h(why) + errors,
        ))
    components = [
        (f"<b>{h(r.name)}</b>", h(r.driver), h(r.load), _badge(r.state, "ok" if r.available else "bad"),
         h(r.error or ""), _value(r.health) if r.health else "")
        for r in host.components.values()
    ]
    tasks = [
        (f"<b>{h(r.name)}</b>", h(r.plugin), h(r.kind), _badge(r.state, "bad" if r.state in ("failed", "stuck") else "ok"),
         h(r.runs), h(r.failures), h(r.restarts), h(r.last_error or ""))
        for r in host.tasks.values()
    ]
    stats = host.bus.stats() if host.bus is not None else {}
    store = context.store()
    pending = store.dead_letter_counts() if store is not None else {}
    counters = ("accepted", "delivered", "dead_lettered", "dropped", "retried", "failed")
    sinks = [
        (f"<b>{h(c.spec.name)}</b>", h(c.plugin), h(", ".join(c.spec.event_types)),
         _badge(str(stats.get(c.spec.name, {}).get("state", "not enabled")), "ok" if c.spec.name in stats else ""),
         *(h(stats.get(c.spec.name, {}).get(k, "")) for k in counters), h(pending.get(c.spec.name, 0)))
        for c in host.sinks
    ]
    routes = [
        (f"<code>{h(r['path'])}</code>", h(", ".join(r["methods"]) or "*"), h(r["kind"]), h(r["plugin"]),
         f"<code>{h(r['endpoint'])}</code>")
        for r in route_rows(context.routes)
    ]
    body = f'<h1>Plugins</h1><p class="run-meta">host {h(host.state)}, run <a href="{h(links(f"/runs/{host.run_id}"))}">' \
           f"<code>{h((host.run_id or '')[:12])}</code></a></p>"
    body += _table(("Plugin", "State", "Source", "Distribution", "Provides / why"), plugin_rows, css="plugins")
    body += "<h2>Components</h2>" + (_table(("Component", "Driver", "Load", "State", "Error", "Health"), components)
                                     if components else '<p class="empty">No components configured.</p>')
    body += "<h2>Background tasks</h2>" + (_table(("Task", "Plugin", "Kind", "State", "Runs", "Failures", "Restarts",
                                                   "Last error"), tasks) if tasks else '<p class="empty">No tasks.</p>')
    body += "<h2>Sinks</h2>" + (_table(("Sink", "Plugin", "Accepts", "State", *counters, "Dead letters"), sinks)
                                if sinks else '<p class="empty">No sinks.</p>')
    body += "<h2>Routes</h2>" + (_table(("Path", "Methods", "Kind", "Plugin", "Endpoint"), routes)
                                 if routes else '<p class="empty">No plugin routes.</p>')
    body += _probes_html(context, links)
    for problem in context.problems:
        body += f'<p class="hook-error">refused: {h(problem)}</p>'
    return _page(links, "Plugins", body, active="plugins")


def _probes_html(context: ServeContext, links: _Links) -> str:
    """The plugins page's probes section, read-only: the rows of ``GET /api/probes``
    (``hostapp probes list``), one line per process with its state, error and values."""
    from hostapp.probes import admin
    from hostapp.serve.probes import spec_store

    head = (f'<h2 id="probes">Probes</h2><p class="run-meta">the probe specs every host sharing the store applies '
            f'(<code>hostapp probes add</code>, <code>POST /api/probes</code>) · '
            f'<a href="{h(links("/api/probes"))}">as JSON</a></p>')
    try:
        rows = admin.spec_rows(spec_store(context))
    except Exception as exc:  # noqa: BLE001 - a page, whatever the store does
        return head + f'<p class="hook-error">the probe spec store cannot be read: {h(exc)}</p>'
    if not rows:
        return head + '<p class="empty">No probes. Add one with <code>hostapp probes add pkg.mod.func --type incr</code>.</p>'
    colours = {"active": "ok", "pending": "warn", "ended": "", "expired": "warn", "error": "bad", "off": "bad",
               "gone": "bad"}
    cells = []
    for row in rows:
        processes = []
        for record in row["applied"].values():
            state = str(record.get("state"))
            line = f"{h(record.get('host'))}/{h(record.get('pid'))} {_badge(state, colours.get(state, ''))}"
            problem = record.get("err") or (f"last error: {record['last_error']}" if record.get("last_error") else "")
            if problem:  # a pending target is waiting for an import: said, not alarmed
                css = "" if state in ("pending", "ended") else ' class="hook-error"'
                line += f" <small{css}>{h(problem)}</small>"
            values = admin.format_values(record.get("values"))
            if values:
                line += f"<br><small>{h(values)}</small>"
            processes.append(f'<div class="probe-process">{line}</div>')
        expires = _badge("expired", "warn") if row["status"] == "expired" else h(admin.expires_text(row["expires_in_s"]))
        cells.append((
            f"<code>{h(row['id'])}</code>", f"<code>{h(row['target'])}</code>",
            h(admin.describe_instrument(row["instrument"])), expires,
            "".join(processes) or '<span class="empty">not applied yet</span>', h(row["fires"]), h(row["errors"]),
        ))
    return head + _table(("Id", "Target", "Instrument", "Expires", "Processes", "Fires", "Errors"), cells,
                         css="probes")


def routes(context: ServeContext) -> list[Any]:
    """The Starlette routes of the web view (and its assets under ``/-/static``)."""
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def bind(view: Any) -> Any:
        def endpoint(request: Request) -> Response:
            try:
                return view(context, request)
            except api.ApiError as exc:  # a page, not JSON, for a person
                links = _Links(request)
                page = _page(links, "Not found" if exc.status == 404 else "Error",
                             f'<h1>{h(exc)}</h1><p><a href="{h(links("/"))}">the runs</a></p>')
                page.status_code = exc.status
                return page

        endpoint.__name__ = view.__name__.strip("_")
        return endpoint

    return [
        Route("/", bind(_runs_page), methods=["GET"], name="hostapp:web-runs"),
        Route("/runs/{run_id}", bind(_run_page), methods=["GET"], name="hostapp:web-run"),
        Route("/runs/{run_id}/waterfall", bind(_waterfall_fragment), methods=["GET"], name="hostapp:web-waterfall"),
        Route("/runs/{run_id}/events/{event_id}", bind(_event_page), methods=["GET"], name="hostapp:web-event"),
        Route("/plugins", bind(_plugins_page), methods=["GET"], name="hostapp:web-plugins"),
        Mount("/-/static", app=StaticFiles(directory=STATIC), name="hostapp:static"),
    ]
