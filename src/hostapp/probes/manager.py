"""The probe manager: probe specs in, probes applied, ``applied`` records out (Diagnose's
``InstrumentManager``).

A *spec* is Diagnose's dict, accepted unchanged::

    {
        "target": "shop.cart.Cart.add",
        "instrument": {"type": "hist", "name": "cart.sizes", "value": "len(items)",
                       "event": "call", "custom": {}},
        "lifespan": 10,                      # minutes from lastmodified; None: no end
        "lastmodified": datetime.utcnow(),   # or an ISO 8601 time
        "applied": {},                       # filled per process
    }

plus ``instrument.condition`` (ours). :meth:`ProbeManager.apply` reconciles the probes of
this process with :attr:`ProbeManager.specs`: new and changed specs are attached, deleted
and expired ones removed. Each spec is applied on its own (one bad spec never blocks the
others), and its outcome in this process is its ``applied[process]`` record: ``host``,
``pid``, ``run_id``, ``lm`` (the ``lastmodified`` applied), ``applied_at``, ``err``
(Diagnose's: the error, or ``None``), ``state`` (``active``, ``pending`` - the target is
not importable yet, retried when its module is imported -, ``error``, ``expired``,
``off`` - switched off after ``probes.max_errors`` errors -, ``removed``, ``ended``),
``fires``, ``errors``, ``last_error``, ``first_traceback``, ``values`` (the
instrument's snapshot: the counter, the histogram), ``backend``, ``instrumented``
(whether its target is instrumented for it now: ``false`` once it expired, was switched
off or removed) and ``updated_at``.

With a store (:mod:`hostapp.probes.stores`), :attr:`specs` is read from it and the
records are written to it; :meth:`tick` is what the probe poller runs every
``probes.poll_interval``: read the change marker, apply when it moved, retry pending
targets, and write the records that changed (so ``hostapp probes show`` reads the
counters of a running process).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from hostapp.probes import ProbeSpecError
from hostapp.probes._probe import EVENTS, Instrument, ProbeContext, ProbeRegistry, as_datetime, default_registry

if TYPE_CHECKING:
    from hostapp.probes.stores import SpecStore
    from hostapp.types import InstrumentType

__all__ = ["ProbeManager", "ProbeSpec", "new_spec_id", "process_key"]

logger = logging.getLogger("hostapp.probes")

_INSTRUMENT_KEYS: Final = ("type", "name", "value", "event", "custom", "condition")
_SPEC_KEYS: Final = ("id", "target", "instrument", "lifespan", "lastmodified", "applied")


def new_spec_id() -> str:
    """A new probe spec id: ``"p-"`` and 8 hex digits."""
    return "p-" + secrets.token_hex(4)


def process_key(run_id: str | None = None) -> str:
    """This process's key in ``applied``: ``"host:pid"`` or ``"host:pid:run_id"``."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{run_id}" if run_id else base


class ProbeSpec:
    """A validated probe spec (Diagnose's format; see the module docstring).

    Attributes:
        id: the spec id.
        target: the dotted path.
        instrument: ``{"type", "name", "value", "event", "custom", "condition"}``.
        lifespan: minutes from ``lastmodified`` (``None``: no end).
        lastmodified: a UTC datetime.
        applied: ``{process: record}``.
    """

    __slots__ = ("applied", "id", "instrument", "lastmodified", "lifespan", "target")

    def __init__(self, spec_id: str, target: str, instrument: dict[str, Any], lifespan: float | None,
                 lastmodified: _dt.datetime, applied: dict[str, Any] | None = None) -> None:
        self.id = spec_id
        self.target = target
        self.instrument = instrument
        self.lifespan = lifespan
        self.lastmodified = lastmodified
        self.applied = applied or {}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], spec_id: str | None = None) -> ProbeSpec:
        """Validate Diagnose's spec dict.

        Args:
            raw: the spec (``id`` optional when ``spec_id`` is given).
            spec_id: the id (the key of ``InstrumentManager.specs``).

        Raises:
            ProbeSpecError: a missing or malformed key, naming the spec and the key.
        """
        sid = spec_id if spec_id is not None else raw.get("id")
        if not isinstance(raw, Mapping):
            raise ProbeSpecError(f"probe spec {sid!r}: expected a dict, got {type(raw).__name__}")
        if not isinstance(sid, str) or not sid.strip():
            raise ProbeSpecError(f"probe spec: expected a non-empty string id, got {sid!r}")
        where = f"probe spec {sid!r}"
        target = raw.get("target")
        if not isinstance(target, str) or not target.strip():
            raise ProbeSpecError(f"{where}: target: expected a dotted path (pkg.mod.Class.method), got {target!r}")
        parts = target.strip().split(".")
        if len(parts) < 2 or not all(p.isidentifier() for p in parts):
            raise ProbeSpecError(f"{where}: target: expected a dotted path module.function, got {target!r}")
        inst = raw.get("instrument")
        if not isinstance(inst, Mapping):
            raise ProbeSpecError(f"{where}: instrument: expected a dict with type, name, value, event, custom")
        unknown = sorted(set(inst) - set(_INSTRUMENT_KEYS))
        if unknown:
            raise ProbeSpecError(f"{where}: instrument: unknown key(s) {unknown}; expected {', '.join(_INSTRUMENT_KEYS)}")
        kind = inst.get("type")
        if not isinstance(kind, str) or not kind:
            raise ProbeSpecError(f"{where}: instrument.type: expected a type name (log, incr, hist, event), got {kind!r}")
        event = inst.get("event") or "return"
        if event not in EVENTS:
            raise ProbeSpecError(f"{where}: instrument.event: expected call, return or end, got {event!r}")
        custom = inst.get("custom") or {}
        if not isinstance(custom, Mapping):
            raise ProbeSpecError(f"{where}: instrument.custom: expected a dict, got {type(custom).__name__}")
        for key in ("name", "value", "condition"):
            if inst.get(key) is not None and not isinstance(inst.get(key), str):
                raise ProbeSpecError(f"{where}: instrument.{key}: expected a string, got {inst.get(key)!r}")
        lifespan = raw.get("lifespan")
        if lifespan is not None and (isinstance(lifespan, bool) or not isinstance(lifespan, (int, float)) or lifespan < 0):
            raise ProbeSpecError(f"{where}: lifespan: expected minutes >= 0 or None, got {lifespan!r}")
        try:
            lastmodified = as_datetime(raw.get("lastmodified") or _dt.datetime.now(_dt.timezone.utc))
        except ValueError as exc:
            raise ProbeSpecError(f"{where}: {exc}") from None
        applied = raw.get("applied") or {}
        if not isinstance(applied, Mapping):
            raise ProbeSpecError(f"{where}: applied: expected a dict, got {type(applied).__name__}")
        instrument = {
            "type": kind, "name": inst.get("name"), "value": inst.get("value"), "event": event,
            "custom": dict(custom), "condition": inst.get("condition"),
        }
        return cls(sid.strip(), target.strip(), instrument, lifespan, lastmodified, dict(applied))

    @property
    def expires(self) -> _dt.datetime | None:
        """``lastmodified + lifespan`` (Diagnose's rule), or ``None``."""
        if self.lifespan is None:
            return None
        return self.lastmodified + _dt.timedelta(minutes=self.lifespan)

    def expired(self, now: _dt.datetime | None = None) -> bool:
        """Whether ``now`` (default: now, UTC) is at or past :attr:`expires`."""
        expires = self.expires
        return expires is not None and (now or _dt.datetime.now(_dt.timezone.utc)) >= expires

    def check(self, *, namespace: Mapping[str, Any] | None = None, allow_unsafe: bool = False,
              types: Mapping[str, Any] | None = None) -> None:
        """Check what can be checked away from the target's process: the expressions are
        in the safe subset, the type is known (when ``types`` is given).

        Raises:
            ProbeSpecError: naming the spec, the field, the expression and the node.
        """
        from hostapp.probes import _expr

        where = f"probe spec {self.id!r} ({self.target})"
        if types is not None and self.instrument["type"] not in types:
            known = ", ".join(sorted(types)) or "none"
            raise ProbeSpecError(f"{where}: instrument.type {self.instrument['type']!r} is unknown (known: {known})")
        if allow_unsafe:
            for field in ("value", "condition"):
                if self.instrument.get(field) is not None:
                    try:
                        _expr.parse(self.instrument[field])
                    except _expr.UnsafeExpression as exc:
                        raise ProbeSpecError(f"{where}: instrument.{field} {exc}") from None
            return
        for field in ("value", "condition"):
            text = self.instrument.get(field)
            if text is None:
                continue
            try:
                _expr.check(text, namespace)
            except _expr.UnsafeExpression as exc:
                raise ProbeSpecError(f"{where}: instrument.{field} {exc}") from None

    def make_instrument(self) -> Instrument:
        """The :class:`~hostapp.probes.Instrument` this spec describes (expiry included)."""
        inst = self.instrument
        return Instrument(inst["type"], name=inst.get("name") or f"{inst['type']}:{self.target}",
                          value=inst.get("value"), event=inst["event"], custom=inst.get("custom"),
                          condition=inst.get("condition"), expires=self.expires)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON: Diagnose's keys, ``lastmodified`` as ISO 8601, ``applied`` included."""
        return {"id": self.id, "target": self.target, "instrument": dict(self.instrument),
                "lifespan": self.lifespan, "lastmodified": self.lastmodified.isoformat(),
                "applied": dict(self.applied)}


class ProbeManager:
    """Applies probe specs in this process (Diagnose's ``InstrumentManager``).

    Args:
        store: where the specs live (:mod:`hostapp.probes.stores`); ``None``: the specs
            are :attr:`specs`, a plain dict set in-process (Diagnose's way).
        registry: the process's probes (default :func:`~hostapp.probes.default_registry`).
        host: the running host (instrument factories get it; the ``event`` instrument
            needs it), or ``None``.
        process_id: this process's key in ``applied`` (default :func:`process_key`).
        types: instrument type name -> :class:`~hostapp.InstrumentType` (default: the
            installed plugins').
        namespace: more names for expressions (merged over Diagnose's defaults).
        allow_unsafe: ``probes.allow_unsafe`` (expressions unchecked; warned at start).
        max_errors: ``probes.max_errors``.

    Attributes:
        specs: id -> spec dict (Diagnose's ``InstrumentManager.specs``); read from the
            store when there is one.
        global_namespace: the expression namespace (Diagnose's name).
    """

    def __init__(
        self,
        store: SpecStore | None = None,
        *,
        registry: ProbeRegistry | None = None,
        host: Any = None,
        process_id: str | None = None,
        types: Mapping[str, InstrumentType] | None = None,
        namespace: Mapping[str, Any] | None = None,
        allow_unsafe: bool = False,
        max_errors: int = 10,
    ) -> None:
        self.store = store
        self.registry = registry if registry is not None else default_registry()
        self.host = host
        self.run_id = getattr(host, "run_id", None)
        self.process_id = process_id or process_key(self.run_id)
        self.context = ProbeContext(types, host, namespace, allow_unsafe, max_errors)
        self.global_namespace = self.context.namespace
        self.allow_unsafe = allow_unsafe
        self._specs: dict[str, Any] = {}
        self._applied: dict[str, tuple[ProbeSpec, str]] = {}  # spec id -> (spec, instrument key)
        self._records: dict[str, dict[str, Any]] = {}
        self._written: dict[str, Any] = {}
        self._marker: Any = object()
        self._lock = threading.RLock()
        self.short_id = secrets.token_hex(3)
        self.closed = False
        if allow_unsafe:
            logger.warning(
                "probes.allow_unsafe = true: probe expressions are NOT checked; any Python expression in a "
                "probe spec runs in this process (pid %d)", os.getpid(),
            )

    # -- specs ---------------------------------------------------------------------------

    @property
    def specs(self) -> dict[str, Any]:
        """Spec id -> spec dict: the store's (read on every access) or the in-process dict."""
        if self.store is not None:
            return self.store.specs()
        return self._specs

    @specs.setter
    def specs(self, value: dict[str, Any]) -> None:
        self._specs = value

    def add(self, spec: Mapping[str, Any]) -> str:
        """Validate ``spec`` and add it (to the store, or to :attr:`specs`); its id.

        Raises:
            ProbeSpecError: as :meth:`ProbeSpec.from_dict` and :meth:`ProbeSpec.check`.
        """
        raw = dict(spec)
        raw.setdefault("id", new_spec_id())
        raw.setdefault("lastmodified", _dt.datetime.now(_dt.timezone.utc))
        parsed = ProbeSpec.from_dict(raw)
        parsed.check(namespace=self.global_namespace, allow_unsafe=self.allow_unsafe)
        data = parsed.to_dict()
        data["applied"] = {}
        if self.store is not None:
            self.store.put(data)
        else:
            self._specs[parsed.id] = data
        return parsed.id

    # -- applying ------------------------------------------------------------------------

    def apply(self) -> dict[str, dict[str, Any]]:
        """Reconcile this process's probes with :attr:`specs` (Diagnose's ``apply``).

        Returns:
            ``{spec id: this process's applied record}``.
        """
        with self._lock:
            try:  # read outside the registry's lock: an import waiting for a probe never waits on the store
                raw_specs = dict(self.specs)
            except Exception as exc:  # noqa: BLE001 - a store that fails: keep what is applied
                logger.warning("probes: could not read the probe specs: %s", exc)
                return dict(self._records)
            with self.registry.lock:
                return self._reconcile(raw_specs)

    def _reconcile(self, raw_specs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        seen: set[str] = set()
        for spec_id, raw in raw_specs.items():
            seen.add(spec_id)
            try:
                self._apply_one(spec_id, raw)
            except Exception as exc:  # noqa: BLE001 - one bad spec never blocks the others
                self._record(spec_id, None, state="error", err=f"{type(exc).__name__}: {exc}")
        for spec_id in list(self._applied):
            if spec_id not in seen:
                self._remove(spec_id, "removed")
                self._records.pop(spec_id, None)
        for spec_id in list(self._records):
            if spec_id not in seen:
                self._records.pop(spec_id, None)
        if self.store is None:
            for spec_id, record in self._records.items():
                raw = self._specs.get(spec_id)
                if isinstance(raw, dict):
                    raw.setdefault("applied", {})[self.process_id] = dict(record)
        return dict(self._records)

    def _instrument_name(self, spec_id: str) -> str:
        return f"{self.short_id}:{spec_id}"

    def _apply_one(self, spec_id: str, raw: Any) -> None:
        if isinstance(raw, dict) and not raw.get("lastmodified"):
            raw["lastmodified"] = _dt.datetime.now(_dt.timezone.utc)  # once: its lifespan counts from here
        try:
            spec = ProbeSpec.from_dict(raw, spec_id if not isinstance(raw, Mapping) or "id" not in raw else None)
            if spec.id != spec_id:
                spec.id = spec_id
            spec.check(namespace=self.global_namespace, allow_unsafe=self.allow_unsafe)
        except ProbeSpecError as exc:
            self._remove(spec_id, "error")
            self._record(spec_id, None, state="error", err=str(exc))
            return
        key = repr((spec.target, spec.instrument, spec.lifespan, spec.lastmodified))
        current = self._applied.get(spec_id)
        if current is not None and current[1] == key:
            self._refresh(spec_id)
            return
        if current is not None:
            self._remove(spec_id, "changed")
        if spec.expired():
            self._record(spec_id, spec, state="expired", err=None)
            return
        probe = self.registry.attach_to(spec.target)
        name = self._instrument_name(spec_id)
        probe.spec_ids[name] = spec_id
        instrument = spec.make_instrument()
        instrument.context = self.context
        probe.instruments[name] = instrument
        if not probe.started:
            probe.start()
        self._applied[spec_id] = (spec, key)
        self._refresh(spec_id, applied_now=True)

    def _remove(self, spec_id: str, why: str) -> None:
        current = self._applied.pop(spec_id, None)
        if current is None:
            return
        spec = current[0]
        probe = self.registry.probes.get(spec.target)
        name = self._instrument_name(spec_id)
        if probe is not None:
            att = probe.attachments.get(name)
            if att is not None and spec_id in self._records:
                self._records[spec_id]["values"] = att.snapshot()
                self._records[spec_id]["fires"] = att.fires
            probe.spec_ids.pop(name, None)
            if name in probe.instruments:
                del probe.instruments[name]
            if not probe.instruments:
                probe.stop()

    def _refresh(self, spec_id: str, *, applied_now: bool = False) -> None:
        """Rebuild this process's record of an applied spec from its attachment."""
        spec, _ = self._applied[spec_id]
        probe = self.registry.probes.get(spec.target)
        name = self._instrument_name(spec_id)
        att = probe.attachments.get(name) if probe is not None else None
        err = None
        if probe is None:
            state = "error"
        elif att is not None:
            state = att.state
            if att.state == "active" and spec.expired():
                att.expire()
                state = "expired"
            err = att.reason if att.state == "off" else None
        elif name in probe.errors:
            state, err = "error", probe.errors[name]
        elif probe.error is not None:
            state, err = ("pending" if probe.pending else "error"), probe.error
        else:
            state = "error"
        record = self._record(spec_id, spec, state=state, err=err, applied_now=applied_now)
        if att is not None:
            site = att.site
            record.update({
                "fires": att.fires, "errors": att.errors, "last_error": att.last_error,
                "first_traceback": att.first_traceback, "values": att.snapshot(),
                "backend": self.registry.backend,
                "instrumented": site is not None and att in site.attachments,
            })

    def _record(self, spec_id: str, spec: ProbeSpec | None, *, state: str, err: str | None,
                applied_now: bool = False) -> dict[str, Any]:
        old = self._records.get(spec_id) or {}
        now = _dt.datetime.now(_dt.timezone.utc).isoformat()
        record = {
            "host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
            "lm": spec.lastmodified.isoformat() if spec is not None else None,
            "applied_at": now if applied_now or "applied_at" not in old else old["applied_at"],
            "err": err, "state": state,
            "fires": old.get("fires", 0), "errors": old.get("errors", 0), "last_error": old.get("last_error"),
            "first_traceback": old.get("first_traceback"), "values": old.get("values"),
            "backend": old.get("backend"), "instrumented": old.get("instrumented", False), "updated_at": now,
        }
        self._records[spec_id] = record
        return record

    # -- the poller's tick -----------------------------------------------------------------

    def tick(self, *, force: bool = False) -> bool:
        """One poll: apply when the store's marker moved (or ``force``), retry pending
        targets, expire what is due, refresh the records and write those that changed.

        Returns:
            whether the specs were (re)applied.
        """
        applied = False
        with self._lock:
            if self.closed:
                return False
            marker = self.store.marker() if self.store is not None else None
            if force or marker != self._marker or self.store is None:
                self.apply()
                self._marker = marker
                applied = True
            self.registry.retry_pending()
            for spec_id in list(self._applied):
                self._refresh(spec_id)
            self._write()
        return applied

    def _write(self, *, final: bool = False) -> None:
        if self.store is None:
            return
        rows = []
        for spec_id, record in self._records.items():
            sig = {k: v for k, v in record.items() if k != "updated_at"}
            if final or self._written.get(spec_id) != sig:
                rows.append((spec_id, self.process_id, record))
                self._written[spec_id] = sig
        if rows:
            try:
                self.store.mark(rows)
            except Exception as exc:  # noqa: BLE001 - reported, the probes go on
                logger.warning("probes: could not write the applied records: %s", exc)

    def close(self) -> None:
        """Remove this manager's probes; their last counters and histograms are kept in
        the records (state ``ended``), written to the store. Idempotent."""
        with self._lock:
            if self.closed:
                return
            with self.registry.lock:
                for spec_id in list(self._applied):
                    self._refresh(spec_id)
                    record = self._records.get(spec_id)
                    if record is not None and record["state"] == "active":
                        record["state"] = "ended"
                    self._remove(spec_id, "ended")
                    if record is not None:
                        record["instrumented"] = False
            self._write(final=True)
            self.closed = True
            if self.host is not None:
                from hostapp.probes._export import close_exporter

                close_exporter(self.host)

    def records(self) -> dict[str, dict[str, Any]]:
        """This process's applied records, by spec id (a copy)."""
        with self._lock:
            return {k: dict(v) for k, v in self._records.items()}


def expires_in(spec: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds until the spec (a dict from a store) expires (negative: since it did), or
    ``None`` for no lifespan."""
    lifespan = spec.get("lifespan")
    if lifespan is None:
        return None
    lastmodified = as_datetime(spec.get("lastmodified"))
    expires = lastmodified.timestamp() + float(lifespan) * 60
    return expires - (time.time() if now is None else now)
