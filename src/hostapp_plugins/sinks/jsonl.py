"""The ``jsonl`` sink: one JSON object per line, a file per run, rotated by size.

Configured under ``[events.sinks.jsonl]``:

* ``directory`` — where the files go (default ``.hostapp/events``);
* ``max_bytes`` — rotate when a file would grow past this many bytes (default 64 MiB;
  ``0`` never rotates). Rotated files are ``<run_id>.1.jsonl``, ``<run_id>.2.jsonl``, ...

Each line is the event's fields: ``id``, ``type``, ``subtype``, ``data``,
``timestamp_ns``, ``run_id``, ``pid``, ``thread_id``, ``source``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import hostapp

FIELDS = ("id", "type", "subtype", "data", "timestamp_ns", "run_id", "pid", "thread_id", "source")


class JsonlSink:
    """Appends events to ``<directory>/<run_id>.jsonl``, rotating by size."""

    def __init__(self) -> None:
        self.directory = Path(".hostapp/events")
        self.max_bytes = 64 * 1024 * 1024
        self._files: dict[str, tuple[IO[str], int, int]] = {}

    def open(self, config: dict[str, Any]) -> None:
        """Read ``directory`` and ``max_bytes``; create the directory.

        Raises:
            ValueError: ``max_bytes`` is not an integer >= 0.
            OSError: the directory cannot be created.
        """
        self.directory = Path(config.get("directory", self.directory))
        max_bytes = config.get("max_bytes", self.max_bytes)
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"events.sinks.jsonl.max_bytes: expected an integer >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, run_id: str, part: int) -> Path:
        suffix = f".{part}" if part else ""
        return self.directory / f"{run_id}{suffix}.jsonl"

    def handle(self, events: list[Any]) -> None:
        """Append each event of ``events`` as one line to its run's file, then flush."""
        touched = set()
        for event in events:
            run_id = str(event.run_id or "no-run")
            line = json.dumps({f: getattr(event, f, None) for f in FIELDS}, default=repr) + "\n"
            size = len(line.encode("utf-8"))
            entry = self._files.get(run_id)
            if entry is None:
                path = self._path(run_id, 0)
                handle = path.open("a", encoding="utf-8")
                entry = (handle, 0, path.stat().st_size)
            handle, part, written = entry
            if self.max_bytes and written and written + size > self.max_bytes:
                handle.close()
                part += 1
                handle = self._path(run_id, part).open("a", encoding="utf-8")
                written = 0
            handle.write(line)
            self._files[run_id] = (handle, part, written + size)
            touched.add(run_id)
        for run_id in touched:
            handle = self._files[run_id][0]
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        """Close every open file."""
        for handle, _, _ in self._files.values():
            handle.close()
        self._files.clear()


@hostapp.hookimpl
def hostapp_event_sinks() -> hostapp.EventSink:
    """Contribute the ``jsonl`` sink."""
    sink = JsonlSink()
    return hostapp.EventSink(
        name="jsonl",
        handle=sink.handle,
        open=sink.open,
        close=sink.close,
        description="One JSON object per line, a file per run, rotated by size.",
        opt_in=True,  # on only with an [events.sinks.jsonl] table
    )
