"""Getting ``probe`` events off the probed thread: a bounded buffer and one exporter thread.

The ``event`` instrument calls :meth:`EventExporter.put` on the probed thread. ``put``
makes the value JSON-able (as it is at the fire), appends one tuple to a
``collections.deque`` and returns: no lock, no wake-up call, no I/O. When the buffer
holds ``maxsize`` records, the record is dropped and counted instead (``counts()``;
``hostapp probes show`` prints them). The exporter's thread (``hostapp-probe-events``,
untraced) takes what is there every 50 ms, builds the :class:`~hostapp.events.Event`
objects and hands them to the host's event bus (``host.emit``), which may block *that*
thread for up to ``events.max_block_ms`` when a sink's queue is full - never the probed
one. This is the OpenTelemetry batch-processor shape, with the drops counted, as the
REFERENCE's ddtrace deadlock (a lock held while waking the uploader) says it must be.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any, Final

__all__ = ["EventExporter", "exporter_for", "jsonable"]

logger = logging.getLogger("hostapp.probes")

#: The event type of the ``event`` instrument.
EVENT_TYPE: Final = "probe"
_PLAIN: Final = (int, float, str, bool, type(None))


def jsonable(value: Any, depth: int = 3) -> Any:
    """``value`` as JSON can hold it: numbers, strings, ``None``, and lists/tuples/dicts
    of those (``depth`` levels, 100 items each); anything else is its ``repr()`` (cut at
    1,000 characters). Never raises."""
    kind = type(value)
    if kind in _PLAIN:
        return value if kind is not str or len(value) <= 10_000 else value[:10_000]
    try:
        if depth > 0 and kind in (list, tuple):
            return [jsonable(v, depth - 1) for v in value[:100]]
        if depth > 0 and kind is dict:
            return {str(k): jsonable(v, depth - 1) for k, v in list(value.items())[:100]}
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__
        text = f"<repr() failed: {type(exc).__name__}>"
    return text if len(text) <= 1000 else text[:997] + "..."


class EventExporter:
    """The bounded buffer and exporter thread of one host (see the module docstring).

    Args:
        host: the running host; ``host.emit`` receives the events, ``host.run_id`` is
            stamped on them.
        maxsize: records the buffer holds (``probes.event_buffer``).
        interval: seconds between two exports.
    """

    def __init__(self, host: Any, maxsize: int = 10_000, interval: float = 0.05) -> None:
        self.host = host
        self.maxsize = maxsize
        self.interval = interval
        self._buf: collections.deque[tuple[Any, ...]] = collections.deque()
        self.exported = 0
        self.dropped = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostapp-probe-events", daemon=True)
        self._thread.hostapp_untraced = True  # type: ignore[attr-defined]
        self._thread.start()

    def put(self, meta: tuple[str, str, str | None, str], value: Any, elapsed: int = 0) -> None:
        """Queue one fire (the probed thread): never blocks, drops and counts when full."""
        buf = self._buf
        if len(buf) >= self.maxsize:
            self.dropped += 1
            return
        buf.append((meta, jsonable(value), elapsed, time.time_ns(), threading.get_ident()))

    def counts(self) -> dict[str, int]:
        """``{"exported", "dropped", "pending", "failed"}``."""
        return {"exported": self.exported, "dropped": self.dropped, "pending": len(self._buf), "failed": self.failed}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.drain()
        self.drain()

    def drain(self) -> int:
        """Hand every buffered record to the bus now; the number handed over."""
        from hostapp.events import Event, new_id

        buf = self._buf
        host = self.host
        pid = os.getpid()
        done = 0
        while buf:
            try:
                meta, value, elapsed, ts, thread = buf.popleft()
            except IndexError:  # pragma: no cover - emptied meanwhile
                break
            data = {"probe": meta[0], "target": meta[1], "instrument": meta[2], "event": meta[3], "value": value}
            if meta[3] != "call":
                data["elapsed_ns"] = elapsed
            event = Event(new_id(ts), EVENT_TYPE, meta[2], data, ts, host.run_id, pid, thread, "instruments.event")
            try:
                host.emit(event)
            except Exception as exc:  # noqa: BLE001 - the bus stopped: counted, never raised
                self.failed += 1
                if self.failed == 1:
                    logger.warning("probes: could not hand a probe event to the event bus: %s", exc)
                continue
            self.exported += 1
            done += 1
        return done

    def close(self, timeout: float = 5.0) -> None:
        """Export what is left and stop the thread (waits at most ``timeout`` s)."""
        self._stop.set()
        self._thread.join(timeout)


_exporters: dict[int, EventExporter] = {}
_lock = threading.Lock()


def exporter_for(host: Any) -> EventExporter:
    """The exporter of ``host`` (made on first use; the probe manager closes it)."""
    with _lock:
        exporter = _exporters.get(id(host))
        if exporter is None or exporter.host is not host:
            maxsize = 10_000
            config = getattr(host, "config", None)
            if config is not None:
                maxsize = int(config.get("probes.event_buffer", maxsize) or maxsize)
            exporter = _exporters[id(host)] = EventExporter(host, maxsize)
        return exporter


def close_exporter(host: Any) -> None:
    """Export what is left of ``host``'s probe events and stop its exporter, if any."""
    with _lock:
        exporter = _exporters.pop(id(host), None)
    if exporter is not None:
        exporter.close()
