"""The ``logging`` sink: every event through stdlib :mod:`logging` (logger ``hostapp.events``).

Enable it with ``[events.sinks.logging]``; ``level`` (default ``"INFO"``) sets the level
the records are logged at. Each record's message is ``"<type>[/<subtype>] <json data>"``
and the event's fields are attached as ``record.hostapp_event`` for structured handlers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import hostapp

logger = logging.getLogger("hostapp.events")


class LoggingSink:
    """Logs each event of a batch; ``level`` comes from the sink's config table."""

    def __init__(self) -> None:
        self.level = logging.INFO

    def open(self, config: dict[str, Any]) -> None:
        """Read ``level`` (a logging level name or number) from ``[events.sinks.logging]``.

        Raises:
            ValueError: ``level`` is not a known logging level.
        """
        level = config.get("level", "INFO")
        resolved = logging.getLevelName(level.upper()) if isinstance(level, str) else level
        if not isinstance(resolved, int):
            raise ValueError(f"events.sinks.logging.level: unknown logging level {level!r}")
        self.level = resolved

    def handle(self, events: list[Any]) -> None:
        """Log every event of ``events`` (a list of ``hostapp.events.Event``)."""
        if not logger.isEnabledFor(self.level):
            return
        for event in events:
            kind = event.type if not event.subtype else f"{event.type}/{event.subtype}"
            logger.log(
                self.level,
                "%s %s",
                kind,
                json.dumps(event.data, default=repr, sort_keys=True),
                extra={"hostapp_event": event},
            )


@hostapp.hookimpl
def hostapp_event_sinks() -> hostapp.EventSink:
    """Contribute the ``logging`` sink."""
    sink = LoggingSink()
    return hostapp.EventSink(
        name="logging",
        handle=sink.handle,
        open=sink.open,
        description="Every event through stdlib logging (logger hostapp.events).",
        opt_in=True,  # on only with an [events.sinks.logging] table
    )
