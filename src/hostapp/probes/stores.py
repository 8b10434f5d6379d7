"""Where probe specs live: the embedded SQLite store (one machine) or Redis (many).

Both offer the same small interface (:class:`SpecStore`), used by the probe manager in
every running host and by ``hostapp probes`` from another terminal:

* ``marker()`` - a cheap change marker (an integer bumped by every change to the
  specs), read by the poller every ``probes.poll_interval``; the specs are read only when
  it moved;
* ``specs()`` / ``put(spec)`` / ``remove(ids)`` / ``clear()`` - the specs, Diagnose's
  format as JSON (``lastmodified`` an ISO 8601 time);
* ``mark(rows)`` / ``applied()`` - per spec and process (``host:pid:run_id``), the
  ``applied`` record (Diagnose's ``applied[process_id]``: ``lm``, ``err``, and ours:
  state, fires, errors, values).

SQLite (``probes.store = "sqlite"``, the default): tables ``probe_specs``,
``probe_applied`` and the trigger-maintained ``probe_marker`` in the host's store
(:mod:`hostapp.store`, schema version 4).

Redis (``probes.store = "component:NAME"``, a component of the ``redis`` driver): keys
under ``hostapp:probes:`` - ``specs`` (a hash id -> JSON), ``marker`` (``INCR`` in the
same ``MULTI`` as every change) and ``applied:<id>`` (a hash process -> JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hostapp.config import Config
    from hostapp.store import Store

__all__ = ["RedisSpecStore", "SpecStore", "SqliteSpecStore", "open_spec_store"]


class SpecStore(Protocol):
    """The interface of a probe spec store (see the module docstring)."""

    #: ``"sqlite"`` or ``"redis"``, for messages.
    name: str

    def marker(self) -> Any:
        """The change marker: any value that differs after every change to the specs
        (an integer bumped by each change). One small read: the poller calls it every
        ``probes.poll_interval``. Raises what the store raises (the poller reports it)."""
        ...

    def specs(self) -> dict[str, dict[str, Any]]:
        """Every spec by id, as stored (Diagnose's format, ``lastmodified`` ISO 8601)."""
        ...

    def put(self, spec: Mapping[str, Any]) -> None:
        """Add or replace ``spec`` (a JSON-able dict with ``id`` and ``lastmodified``)
        and move the marker, in one transaction."""
        ...

    def remove(self, ids: Iterable[str]) -> int:
        """Delete these specs and their applied records; the number of specs deleted."""
        ...

    def clear(self) -> int:
        """Delete every spec and applied record; the number of specs deleted."""
        ...

    def mark(self, rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Upsert ``(spec_id, process, record)`` applied records (``process`` is
        ``host:pid:run_id``); does not move the marker."""
        ...

    def applied(self, spec_id: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """``{spec_id: {process: record}}`` (of one spec)."""
        ...


class SqliteSpecStore:
    """Probe specs in the embedded SQLite store (:class:`hostapp.store.Store`).

    Args:
        store: an open store (a host's ``host.store``, or one the CLI opened).
    """

    name = "sqlite"

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"<SqliteSpecStore {self.store.path}>"

    def marker(self) -> int:
        return self.store.probe_marker()

    def specs(self) -> dict[str, dict[str, Any]]:
        return self.store.probe_specs()

    def put(self, spec: Mapping[str, Any]) -> None:
        from hostapp.probes._probe import as_datetime

        lastmodified = as_datetime(spec["lastmodified"])
        self.store.put_probe_spec(str(spec["id"]), spec, int(lastmodified.timestamp() * 1e9))

    def remove(self, ids: Iterable[str]) -> int:
        return self.store.delete_probe_specs(list(ids))

    def clear(self) -> int:
        return self.store.delete_probe_specs(None)

    def mark(self, rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        self.store.put_probe_applied(rows)

    def applied(self, spec_id: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        return self.store.probe_applied(spec_id)


class RedisSpecStore:
    """Probe specs in Redis, shared by the hosts of many machines (module docstring).

    Args:
        client: a ``redis.Redis`` client, or a component of the ``redis`` driver (its
            ``client`` is used).
        prefix: the key prefix (default ``"hostapp:probes:"``).
    """

    name = "redis"

    def __init__(self, client: Any, prefix: str = "hostapp:probes:") -> None:
        self.client = getattr(client, "client", client)
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"<RedisSpecStore {self.prefix}*>"

    def _key(self, name: str) -> str:
        return self.prefix + name

    def marker(self) -> int:
        value = self.client.get(self._key("marker"))
        return int(value) if value is not None else 0

    def specs(self) -> dict[str, dict[str, Any]]:
        raw = self.client.hgetall(self._key("specs"))
        out = {}
        for key, value in sorted(raw.items()):
            name = key.decode() if isinstance(key, bytes) else str(key)
            out[name] = json.loads(value)
        return out

    def put(self, spec: Mapping[str, Any]) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._key("specs"), str(spec["id"]), json.dumps(dict(spec), default=repr))
        pipe.incr(self._key("marker"))
        pipe.execute()

    def remove(self, ids: Iterable[str]) -> int:
        keys = [str(i) for i in ids]
        if not keys:
            return 0
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self._key("specs"), *keys)
        for key in keys:
            pipe.delete(self._key(f"applied:{key}"))
        pipe.incr(self._key("marker"))
        return int(pipe.execute()[0])

    def clear(self) -> int:
        ids = [k.decode() if isinstance(k, bytes) else str(k) for k in self.client.hkeys(self._key("specs"))]
        return self.remove(ids) if ids else 0

    def mark(self, rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        count = 0
        for spec_id, process, data in rows:
            pipe.hset(self._key(f"applied:{spec_id}"), process, json.dumps(dict(data), default=repr))
            count += 1
        if count:
            pipe.execute()

    def applied(self, spec_id: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        ids = [spec_id] if spec_id is not None else list(self.specs())
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for sid in ids:
            raw = self.client.hgetall(self._key(f"applied:{sid}"))
            if raw:
                out[sid] = {
                    (k.decode() if isinstance(k, bytes) else str(k)): json.loads(v) for k, v in sorted(raw.items())
                }
        return out


def store_setting(config: Config) -> tuple[str, str | None]:
    """``probes.store`` as ``("sqlite", None)`` or ``("component", NAME)``.

    Raises:
        ConfigError: anything else (names the key).
    """
    from hostapp.errors import ConfigError

    value = str(config.get("probes.store", "sqlite") or "sqlite").strip()
    if value == "sqlite":
        return "sqlite", None
    if value.startswith("component:") and value[len("component:"):].strip():
        return "component", value[len("component:"):].strip()
    raise ConfigError(config.source, f"expected \"sqlite\" or \"component:NAME\", got {value!r}", key="probes.store")


def open_spec_store(config: Config, *, store: Store | None = None, component: Any = None) -> SpecStore:
    """The spec store ``probes.store`` names, from what the caller has open.

    Args:
        config: the configuration.
        store: the SQLite store, for ``"sqlite"``.
        component: the Redis component, for ``"component:NAME"``.

    Raises:
        ConfigError: a bad ``probes.store``.
        HostappError: the store it names is not open (no SQLite store, no component).
    """
    from hostapp.errors import HostappError

    kind, name = store_setting(config)
    if kind == "sqlite":
        if store is None:
            raise HostappError("probes.store = \"sqlite\" but the host runs without a store (store=False)")
        return SqliteSpecStore(store)
    if component is None:
        raise HostappError(f"probes.store = \"component:{name}\": component {name!r} is not available")
    return RedisSpecStore(component)
