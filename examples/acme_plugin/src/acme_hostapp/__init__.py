"""acme-hostapp: writes an audit trail of hostapp events, one JSON object per line.

Configuration (``hostapp.toml``)::

    [plugins.config.acme]      # the plugin's own settings, read in hostapp_configure
    service = "billing"        # stamped on every audit record (default "unknown")
    announce = true            # emit a "started" event at host start (default true)

    [events.sinks.acme]        # the sink's settings, passed to AuditSink.open (optional)
    path = "audit/acme.jsonl"  # where the records go, relative to the configuration file
                               # (default "acme-audit.jsonl")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import hostapp

#: Read by hostapp when the plugin is imported; [plugins.meta.acme] in the config and
#: discovery metadata take precedence.
hostapp_plugin_meta = {
    "tags": ["audit"],
    "priority": 10,
    "description": "Audit trail of hostapp events, as JSON lines.",
}

#: The plugin's settings, filled by hostapp_configure from [plugins.config.acme].
settings: dict[str, Any] = {"service": "unknown", "announce": True}


class AuditSink:
    """Appends each event as one JSON line to ``path``."""

    def __init__(self) -> None:
        self.path = Path("acme-audit.jsonl")
        self._file: IO[str] | None = None

    def open(self, config: dict[str, Any]) -> None:
        """Called once with the ``[events.sinks.acme]`` table before the first batch
        (a ``hostapp.events.SinkConfig``: ``config.config.root`` is the configuration
        file's directory)."""
        host_config = getattr(config, "config", None)
        root = host_config.root if host_config is not None else Path.cwd()
        self.path = root / config.get("path", self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def handle(self, events: list[Any]) -> None:
        """Write a batch; raising here makes the event bus retry the whole batch."""
        if self._file is None:
            raise RuntimeError("acme sink used before open()")
        for event in events:
            record = {
                "service": settings["service"],
                "type": event.type,
                "subtype": event.subtype,
                "data": event.data,
                "timestamp_ns": event.timestamp_ns,
            }
            self._file.write(json.dumps(record, default=repr) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Called once after the last batch."""
        if self._file is not None:
            self._file.close()
            self._file = None


@hostapp.hookimpl
def hostapp_event_sinks() -> hostapp.EventSink:
    """Contribute the ``acme`` sink (a fresh one on every call; no side effects)."""
    sink = AuditSink()
    return hostapp.EventSink(
        name="acme",
        handle=sink.handle,
        open=sink.open,
        close=sink.close,
        event_types=("monitoring_event", "outbound_http_*"),
        batch_size=100,
        description="Audit trail of hostapp events, as JSON lines.",
    )


@hostapp.hookimpl
def hostapp_configure(config: hostapp.Config) -> None:
    """Read ``[plugins.config.acme]``; a bad value fails this plugin, not the host."""
    table = config.plugin_config("acme")
    service = table.get("service", "unknown")
    if not isinstance(service, str) or not service:
        raise ValueError(f"plugins.config.acme.service: expected a non-empty string, got {service!r}")
    settings["service"] = service
    settings["announce"] = bool(table.get("announce", True))


@hostapp.hookimpl
async def hostapp_startup(host: Any) -> None:
    """Announce the plugin once the host is up; awaited on the host's event loop."""
    if settings["announce"]:
        host.emit("monitoring_event", "started", plugin="acme", service=settings["service"])
