"""A run's events laid out on one time axis: bars for calls and jobs, marks for the rest.

No Starlette here: the layout is plain data, drawn by :mod:`hostapp.serve.web`.

* An event whose renderer says ``shape = "span"`` and that has ``data["duration_ns"]`` is a
  **bar** from its ``timestamp_ns`` (the one-record-per-call HTTP events, any plugin's
  span events).
* An event with a ``data["frame_id"]`` that no earlier event opened **opens** a bar; the
  next event with the same ``frame_id`` **closes** it (Kolo-style call/return pairs:
  ``outbound_http_request`` / ``outbound_http_response``, ``background_job`` /
  ``background_job_end``). A bar never closed is *open*: it runs to the end of the axis
  (a live run's call in flight, or a call the program never finished).
* Every other event is a **mark** at its time (probe events, custom events, logs).

Calls made inside another HTTP call (``data["nested_in"]``) are not drawn: the outer call's
page links them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostapp.events.record import Event
    from hostapp.render import Renderers

__all__ = ["Bar", "Lane", "Mark", "Timeline", "build_timeline", "call_label", "call_site", "kind_label", "status_class", "thread_name"]


@dataclass
class Bar:
    """One call or job: where it starts, how long it took, how it ended.

    Attributes:
        event: the call's event (its opening event for a pair); the bar links to it.
        end: the closing event of a pair, or ``None``.
        start_ns: start, ns since the epoch.
        duration_ns: how long, or ``None`` while open.
        status: the colour class (:func:`status_class`).
        status_text: ``"200"``, ``"ConnectionError"``, ``"…"``.
        label: what it is (``"GET http://127.0.0.1:8000/users/1"``, a renderer's summary).
        kind: the renderer's label (``"HTTP"``, ``"job"``), else the event type.
        site: ``"file.py:12"`` of the call site, or ``""``.
        summary: the renderer's one line (the bar's tooltip).
    """

    event: Event
    end: Event | None
    start_ns: int
    duration_ns: int | None
    status: str
    status_text: str
    label: str
    kind: str
    site: str
    summary: str


@dataclass
class Mark:
    """A point on the axis: an event that is neither a bar nor part of one."""

    event: Event
    at_ns: int
    kind: str
    summary: str


@dataclass
class Lane:
    """One thread's bars and marks, in time order."""

    thread: str
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Timeline:
    """The layout of a run: lanes by thread (in order of first activity) on one axis.

    Attributes:
        lanes: one per thread.
        start_ns: the axis origin (the first event's time).
        end_ns: the axis end (the last end; ``now_ns`` while a bar is open).
        events: how many events were laid out.
    """

    lanes: list[Lane]
    start_ns: int
    end_ns: int
    events: int

    @property
    def span_ns(self) -> int:
        """The axis length in ns (at least 1 ms, so a single instant still has room)."""
        return max(self.end_ns - self.start_ns, 1_000_000)

    def percent(self, at_ns: int) -> float:
        """Where ``at_ns`` lies on the axis, in percent from its origin (0-100)."""
        return min(100.0, max(0.0, (at_ns - self.start_ns) * 100.0 / self.span_ns))

    def ticks(self, count: int = 6) -> list[tuple[float, str]]:
        """About ``count`` round tick marks: ``(percent, "250 ms")``."""
        raw = self.span_ns / count
        step = 1
        while step * 10 <= raw:
            step *= 10
        for factor in (1, 2, 5, 10):
            if step * factor >= raw:
                step *= factor
                break
        out = []
        at = 0
        while at <= self.span_ns:
            out.append((at * 100.0 / self.span_ns, format_duration(at)))
            at += step
        return out

    @property
    def bars(self) -> list[Bar]:
        """Every bar, lane by lane."""
        return [bar for lane in self.lanes for bar in lane.bars]


def format_duration(ns: int | float | None) -> str:
    """``"850 µs"``, ``"12.3 ms"``, ``"1.25 s"``; ``""`` for ``None``."""
    if ns is None:
        return ""
    if ns == 0:
        return "0"
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs"
    if ns < 1_000_000_000:
        ms = ns / 1e6
        return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{ns / 1e9:.2f} s"


def status_class(data: dict[str, Any]) -> tuple[str, str]:
    """The colour class and text of a call from its (merged) data.

    Returns:
        ``("s2xx", "200")`` ... ``("s5xx", "503")`` for an HTTP status; ``("err",
        "TimeoutError")`` when the call raised (``error`` or ``exception_type``) or a job
        failed (``state`` ``FAILURE`` / ``error``); ``("ok", "")`` otherwise.
    """
    error = data.get("error")
    if isinstance(error, dict) and error.get("type"):
        return "err", str(error["type"]).rsplit(".", 1)[-1]
    if data.get("exception_type"):
        return "err", str(data["exception_type"]).rsplit(".", 1)[-1]
    code = data.get("status_code")
    if isinstance(code, int) and 100 <= code <= 599:
        return f"s{code // 100}xx", str(code)
    state = data.get("state")
    if isinstance(state, str) and state.upper() in ("FAILURE", "ERROR", "FAILED"):
        return "err", state
    return "ok", ""


def call_site(data: dict[str, Any], cwd: str | None = None) -> str:
    """``"path/file.py:12"`` from ``data["call_site"]`` (relative to ``cwd``, default the
    working directory, when below it), or ``""``."""
    site = data.get("call_site")
    if not isinstance(site, dict) or not site.get("file"):
        return ""
    path = str(site["file"])
    try:
        relative = os.path.relpath(path, cwd) if cwd else os.path.relpath(path)
        path = relative if not relative.startswith("..") else path
    except ValueError:
        pass
    return f"{path}:{site.get('line')}" if site.get("line") is not None else path


def thread_name(event: Event) -> str:
    """The name of the thread ``event`` happened on (``data["thread_name"]``, a pair's
    ``data["thread"]["name"]``), else ``"thread <id>"``."""
    name = event.data.get("thread_name")
    if not name and isinstance(event.data.get("thread"), dict):  # a call/return pair's event
        name = event.data["thread"].get("name")
    return str(name) if name else f"thread {event.thread_id}"


def call_label(event: Event, summary: str) -> str:
    """``"GET https://..."`` for an event with a ``method`` and a ``url``, else ``summary``."""
    method, url = event.data.get("method"), event.data.get("url")
    if method and url:
        return f"{method} {url}"
    return summary


def kind_label(event: Event, renderers: Renderers) -> str:
    """What kind of thing ``event`` is, in a word: its renderer's label, else its library
    (subtype), else its type."""
    if renderers.lookup(event.type) is not None:
        return renderers.label(event)
    return event.subtype or event.type


def build_timeline(
    events: Iterable[Event], renderers: Renderers, *, now_ns: int | None = None, cwd: str | None = None
) -> Timeline:
    """Lay out ``events`` (one run's, in time order) as bars and marks by thread.

    Args:
        events: the events, oldest first (``Store.iter_events(run_id=..., limit=...)``).
        renderers: the plugins' event renderers (shape, label and summary of each event).
        now_ns: where open bars end (a live run: now); default the last event's time.
        cwd: the run's working directory (call sites are shown relative to it).
    """
    lanes: dict[str, Lane] = {}
    open_pairs: dict[str, Bar] = {}
    nested: set[str] = set()  # frame ids of the nested calls left out, whose ends are left out too
    start = end = None
    count = 0
    for event in events:
        count += 1
        data = event.data
        ts = event.timestamp_ns
        start = ts if start is None else min(start, ts)
        end = ts if end is None else max(end, ts)
        frame = data.get("frame_id")
        pending = open_pairs.pop(frame, None) if isinstance(frame, str) else None
        if pending is not None:  # the closing event of a pair
            duration = data.get("duration_ns")
            pending.duration_ns = int(duration) if isinstance(duration, int) else max(0, ts - pending.start_ns)
            pending.end = event
            pending.status, pending.status_text = status_class({**pending.event.data, **data})
            end = max(end, pending.start_ns + pending.duration_ns)
            continue
        if data.get("nested_in") is not None or frame in nested:
            if isinstance(frame, str):
                if frame in nested:
                    nested.discard(frame)
                else:
                    nested.add(frame)
            continue
        lane = lanes.get(thread_name(event))
        if lane is None:
            lane = lanes[thread_name(event)] = Lane(thread_name(event))
        summary = renderers.summary(event)
        duration = data.get("duration_ns")
        is_span = isinstance(duration, int) and not isinstance(duration, bool) and renderers.shape(event) == "span"
        if is_span or isinstance(frame, str):
            status, text = status_class(data) if is_span else ("open", "…")
            bar = Bar(
                event=event, end=None, start_ns=ts, duration_ns=int(duration) if is_span else None,
                status=status, status_text=text, label=call_label(event, summary),
                kind=kind_label(event, renderers), site=call_site(data, cwd), summary=summary,
            )
            lane.bars.append(bar)
            if is_span:
                end = max(end, ts + int(duration))
            else:
                open_pairs[frame] = bar
            continue
        lane.marks.append(Mark(event=event, at_ns=ts, kind=kind_label(event, renderers), summary=summary))
    if start is None:
        start = end = now_ns or 0
    if open_pairs:
        end = max(end or 0, now_ns or 0)
    return Timeline(lanes=[lane for lane in lanes.values() if lane.bars or lane.marks], start_ns=start,
                    end_ns=end or start, events=count)


def open_bars(timeline: Timeline) -> Sequence[Bar]:
    """The bars still open (no closing event yet)."""
    return [bar for bar in timeline.bars if bar.duration_ns is None]
