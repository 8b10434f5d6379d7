"""The ``sqlite`` sink: the embedded default, every event into the store's ``events`` table.

Enabled by default (``[events.sinks.sqlite]`` is in the default configuration). Its
table may set:

* ``path`` — the database file (default: ``store.path``, ``.hostapp/hostapp.sqlite3``),
  relative to the configuration file's directory (``config.root``).

When the path is the bus's own store (the default), the sink writes through that
:class:`~hostapp.store.Store` (one connection per process); otherwise it opens its own.
Each batch is one transaction (:meth:`hostapp.store.Store.add_events`); an event whose id
is already stored is skipped, so a retried or redelivered batch never duplicates rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hostapp

if TYPE_CHECKING:
    from hostapp.events import Event
    from hostapp.store import Store

DEFAULT_PATH = ".hostapp/hostapp.sqlite3"


def _same_file(a: Path, b: Path) -> bool:
    if str(a) == ":memory:" or str(b) == ":memory:":
        return False
    return os.path.realpath(a) == os.path.realpath(b)


class SqliteSink:
    """Writes batches with :meth:`Store.add_events`."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self._owned = False

    def open(self, config: dict[str, Any]) -> None:
        """Resolve ``path`` and open the store (or share the bus's).

        Args:
            config: the ``[events.sinks.sqlite]`` table; when it is a
                :class:`hostapp.events.SinkConfig`, its ``config`` gives ``store.path``
                and ``config.root`` and its ``store`` may be shared.

        Raises:
            ValueError: ``path`` is not a non-empty string.
            hostapp.store.StoreError: the store cannot be opened (the bus marks the sink
                failed and keeps its events as dead letters).
        """
        from hostapp.store import Store, resolve_store_path

        host_config = getattr(config, "config", None)
        shared: Store | None = getattr(config, "store", None)
        raw = config.get("path")
        if raw is not None:
            if not isinstance(raw, str) or not raw:
                raise ValueError(f"events.sinks.sqlite.path: expected a non-empty string, got {raw!r}")
            path = Path(raw).expanduser()
            if not path.is_absolute() and raw != ":memory:":
                path = (Path(host_config.root) if host_config is not None else Path.cwd()) / path
        elif host_config is not None:
            path = resolve_store_path(host_config)
        else:
            path = Path.cwd() / DEFAULT_PATH
        if shared is not None and not shared.closed and _same_file(shared.path, path):
            self.store, self._owned = shared, False
        else:
            self.store, self._owned = Store(path), True

    def handle(self, events: list[Event]) -> None:
        """Insert ``events`` in one transaction.

        Raises:
            RuntimeError: the sink was not opened.
            sqlite3.Error: the write failed (the bus retries the batch).
        """
        if self.store is None:
            raise RuntimeError("the sqlite sink is not open")
        self.store.add_events(events)

    def close(self) -> None:
        """Close the store if this sink opened it (a shared store belongs to the bus)."""
        if self.store is not None and self._owned:
            self.store.close()
        self.store = None


@hostapp.hookimpl
def hostapp_event_sinks() -> hostapp.EventSink:
    """Contribute the ``sqlite`` sink."""
    sink = SqliteSink()
    return hostapp.EventSink(
        name="sqlite",
        handle=sink.handle,
        open=sink.open,
        close=sink.close,
        description="The embedded default: every event into the SQLite store (WAL).",
    )
