"""The ``sqlite`` driver: a SQLite database file through the standard library's ``sqlite3``.

Configured as::

    [components.db]
    driver = "sqlite"
    options = { path = "var/app.sqlite3", timeout = 5.0 }

Options:

* ``path`` (required) — the database file, relative to the configuration file's
  directory (else the working directory); its folder is created. ``":memory:"`` for an
  in-memory database.
* ``timeout`` — seconds a statement waits for a lock held by another connection
  (``sqlite3.connect(timeout=...)``, default 5.0).

``connect()`` opens the file in WAL mode (``PRAGMA journal_mode=WAL``, so readers in other
processes do not block the writer) with ``check_same_thread=False``: the host builds the
component on its loop thread and the application uses it from its own threads.
:meth:`SqliteComponent.execute` serialises the calls with a lock; ``connection`` is the
raw ``sqlite3.Connection`` (autocommit off, as ``sqlite3`` opens it: commit yourself, or
use ``with component.connection:``). ``health()`` runs ``SELECT 1`` and reports the
journal mode; ``close()`` closes the connection.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hostapp

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable

    from hostapp.drivers import ComponentOptions

__all__ = ["SqliteComponent", "hostapp_drivers"]


class SqliteComponent:
    """One SQLite database (a ``[components.NAME]`` with ``driver = "sqlite"``).

    Args:
        options: the component's options (``path``, ``timeout``).

    Attributes:
        path: the absolute database path (or ``":memory:"``).
        timeout: the lock timeout, seconds.
        connection: the ``sqlite3.Connection`` once connected, else ``None``.

    Raises:
        ValueError: ``path`` is missing, or ``timeout`` is not a number >= 0.
        TypeError: an unknown option (the message names it).
    """

    def __init__(self, options: ComponentOptions) -> None:
        unknown = sorted(set(options) - {"path", "timeout"})
        if unknown:
            raise TypeError(f"sqlite driver: unknown option(s) {unknown}; expected path, timeout")
        if "path" not in options:
            raise ValueError("sqlite driver: option 'path' is required (the database file)")
        raw = options["path"]
        self.path: str = raw if raw == ":memory:" else str(options.path("path"))
        timeout = options.get("timeout", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"sqlite driver: option 'timeout' must be a number of seconds >= 0, got {timeout!r}")
        self.timeout = float(timeout)
        self.connection: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def connect(self) -> None:
        """Open the database (creating its folder) in WAL mode.

        Raises:
            sqlite3.Error, OSError: the file cannot be opened or created.
        """
        import sqlite3

        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL").fetchone()
        except BaseException:
            connection.close()
            raise
        self.connection = connection

    def execute(self, sql: str, parameters: Iterable[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement and commit; return its rows (thread-safe).

        Raises:
            sqlite3.Error: as ``sqlite3`` raises it (the transaction is rolled back).
            RuntimeError: the component is not connected.
        """
        connection = self._connection()
        with self._lock, connection:
            return connection.execute(sql, parameters).fetchall()

    def health(self) -> dict[str, Any]:
        """``SELECT 1`` and the journal mode: ``{"journal_mode": "wal"}``.

        Raises:
            sqlite3.Error: the database does not answer; RuntimeError: not connected.
        """
        connection = self._connection()
        with self._lock:
            connection.execute("SELECT 1").fetchone()
            (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        return {"journal_mode": mode, "path": self.path}

    def close(self) -> None:
        """Close the connection (idempotent)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            with self._lock:
                connection.close()

    def _connection(self) -> sqlite3.Connection:
        if self.connection is None:
            raise RuntimeError(f"sqlite component for {self.path!r} is not connected")
        return self.connection

    def __repr__(self) -> str:
        return f"<SqliteComponent {self.path!r} {'open' if self.connection is not None else 'closed'}>"


@hostapp.hookimpl
def hostapp_drivers() -> hostapp.DriverSpec:
    """Contribute the ``sqlite`` driver."""
    return hostapp.DriverSpec(
        name="sqlite",
        factory=SqliteComponent,
        description="A SQLite database file (sqlite3, WAL); options: path, timeout.",
    )
