"""Probe specs as an operator manages them from outside the probed processes: a new spec
built and checked before it is stored, the listing of the stored specs with their
``applied`` records, removal, and the one-line texts that describe them.

Shared by the two ways in: ``hostapp probes add|list|show|rm|clear`` (``docs/cli.md``)
and the management API of ``hostapp serve`` (``/api/probes``, ``docs/serve.md``), so that
both store the same specs, refuse the same ones with the same one-line message, and list
the same rows. Everything here works on a :class:`~hostapp.probes.stores.SpecStore`; no
probe is attached in this process.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from hostapp.probes import ProbeSpecError

if TYPE_CHECKING:
    from hostapp.config import Config
    from hostapp.probes.manager import ProbeSpec
    from hostapp.probes.stores import SpecStore

__all__ = [
    "ADD_FIELDS",
    "BUILTIN_TYPES",
    "DEFAULT_LIFESPAN",
    "check_namespace",
    "checked_spec",
    "describe_instrument",
    "duration_text",
    "expires_text",
    "format_values",
    "new_spec",
    "remove_specs",
    "spec_from_request",
    "spec_rows",
]

#: The built-in instrument types (``hostapp_plugins.instruments``); another type is
#: checked against the installed plugins' ``hostapp_instrument_types()``. A built-in type
#: disabled in the target's host is reported there (its ``applied`` record).
BUILTIN_TYPES: Final = ("log", "incr", "hist", "event")

#: Minutes a probe added without a lifespan lives (``hostapp probes add --lifespan``).
DEFAULT_LIFESPAN: Final = 10.0

#: The fields of a new spec given the way ``hostapp probes add`` takes them (its
#: argument and options, by their names: ``type`` is ``--type``, ``id`` is ``--id``).
ADD_FIELDS: Final = ("id", "target", "type", "name", "value", "event", "lifespan", "no_lifespan", "condition",
                     "custom")

#: The keys of a spec in Diagnose's format (``hostapp.probes.manager``).
_SPEC_KEYS: Final = ("id", "target", "instrument", "lifespan", "lastmodified", "applied")


# -- a new spec ------------------------------------------------------------------------------


def new_spec(
    target: Any,
    kind: Any,
    *,
    value: Any = None,
    event: Any = "return",
    lifespan: Any = DEFAULT_LIFESPAN,
    condition: Any = None,
    name: Any = None,
    custom: Any = None,
    spec_id: str | None = None,
) -> dict[str, Any]:
    """A new spec in Diagnose's format from the fields of ``hostapp probes add``, not yet
    validated (:func:`checked_spec` does that).

    Args:
        target: the dotted path (``pkg.mod.Class.method``).
        kind: the instrument type (``log``, ``incr``, ``hist``, ``event``, or a plugin's).
        value: the value expression, or ``None`` for the type's default.
        event: ``"call"``, ``"return"`` or ``"end"``.
        lifespan: minutes from now; ``None``: it never expires.
        condition: the condition expression, or ``None``.
        name: the instrument's name, or ``None`` (``TYPE:TARGET``).
        custom: the type's settings (a dict), or ``None``.
        spec_id: the id; ``None``: a new ``p-XXXXXXXX``.

    Returns:
        ``{"id", "target", "instrument": {...}, "lifespan", "lastmodified" (now, UTC),
        "applied": {}}``.
    """
    from hostapp.probes.manager import new_spec_id

    return {
        "id": spec_id or new_spec_id(), "target": target,
        "instrument": {"type": kind, "name": name, "value": value, "event": event,
                       "custom": {} if custom is None else custom, "condition": condition},
        "lifespan": lifespan,
        "lastmodified": _dt.datetime.now(_dt.timezone.utc),
        "applied": {},
    }


def spec_from_request(body: Any) -> dict[str, Any]:
    """A new spec from what a client sends (the body of ``POST /api/probes``), either:

    * a spec in Diagnose's format (it has an ``instrument`` dict): ``id`` (default a new
      one), ``target``, ``instrument``, ``lifespan`` (``None`` or absent: it never
      expires, as Diagnose's), ``lastmodified`` (default now); ``applied`` is ignored
      (each process writes its own);
    * the fields of ``hostapp probes add`` (:data:`ADD_FIELDS`), with its defaults:
      ``event`` ``"return"``, ``lifespan`` 10 minutes (``null`` or ``no_lifespan: true``:
      it never expires).

    Not yet validated beyond its shape (:func:`checked_spec` does that).

    Raises:
        ProbeSpecError: not a dict, both formats mixed, an unknown key, or
            ``no_lifespan`` not a boolean (naming the spec and the key).
    """
    if not isinstance(body, Mapping):
        raise ProbeSpecError(f"probe spec: expected a JSON object, got {type(body).__name__}")
    spec_id = body.get("id")
    if spec_id is not None and not isinstance(spec_id, str):
        raise ProbeSpecError(f"probe spec: id: expected a string, got {spec_id!r}")
    where = f"probe spec {spec_id!r}" if spec_id else "probe spec"
    if "instrument" in body:
        unknown = sorted(set(body) - set(_SPEC_KEYS))
        if unknown:
            raise ProbeSpecError(f"{where}: unknown key(s) {unknown}; a spec in Diagnose's format has "
                                 f"{', '.join(_SPEC_KEYS)} (or send the fields of 'hostapp probes add': "
                                 f"{', '.join(ADD_FIELDS)}, without 'instrument')")
        from hostapp.probes.manager import new_spec_id

        raw = dict(body)
        raw["id"] = spec_id or new_spec_id()
        raw["lastmodified"] = raw.get("lastmodified") or _dt.datetime.now(_dt.timezone.utc)
        raw["applied"] = {}
        return raw
    unknown = sorted(set(body) - set(ADD_FIELDS))
    if unknown:
        raise ProbeSpecError(f"{where}: unknown key(s) {unknown}; expected the fields of 'hostapp probes add' "
                             f"({', '.join(ADD_FIELDS)}) or a spec in Diagnose's format ({', '.join(_SPEC_KEYS)})")
    no_lifespan = body.get("no_lifespan", False)
    if not isinstance(no_lifespan, bool):
        raise ProbeSpecError(f"{where}: no_lifespan: expected true or false, got {no_lifespan!r}")
    lifespan = None if no_lifespan else body.get("lifespan", DEFAULT_LIFESPAN)
    return new_spec(
        body.get("target"), body.get("type"), value=body.get("value"), event=body.get("event") or "return",
        lifespan=lifespan, condition=body.get("condition"), name=body.get("name"), custom=body.get("custom"),
        spec_id=spec_id,
    )


def check_namespace(config: Config) -> dict[str, Any]:
    """The probe namespace's names for the safe-subset check made before a spec is stored:
    Diagnose's defaults and the names ``probes.namespace`` adds (only their callability
    matters here; the names are resolved for real in each probed host)."""
    from hostapp.probes._expr import default_namespace

    names = default_namespace()
    for entry in config.get("probes.namespace") or []:
        module, _, attr = str(entry).partition(":")
        names[attr or module.rsplit(".", 1)[-1]] = len  # a callable stand-in: checked in the host
    return names


def checked_spec(raw: Mapping[str, Any], *, config: Config, types: Iterable[str] | None) -> ProbeSpec:
    """``raw`` validated and checked as it is before it is stored: its fields
    (:meth:`ProbeSpec.from_dict`), its expressions in the safe subset (unless
    ``probes.allow_unsafe``), its type among ``types``.

    Args:
        raw: a spec in Diagnose's format (:func:`new_spec`, :func:`spec_from_request`).
        config: the configuration (``probes.allow_unsafe``, ``probes.namespace``).
        types: the instrument type names known (``None``: not checked).

    Returns:
        the :class:`~hostapp.probes.ProbeSpec` to store (``spec.to_dict()``).

    Raises:
        ProbeSpecError: a malformed field, an unknown type, or an expression outside the
            safe subset: one line naming the spec, the field, the expression and the
            offending node.
    """
    from hostapp.probes.manager import ProbeSpec

    spec = ProbeSpec.from_dict(raw)
    spec.check(allow_unsafe=bool(config.get("probes.allow_unsafe")),
               types=None if types is None else dict.fromkeys(types), namespace=check_namespace(config))
    return spec


# -- the stored specs ------------------------------------------------------------------------


def spec_rows(store: SpecStore, spec_id: str | None = None) -> list[dict[str, Any]]:
    """The stored specs as ``hostapp probes list --json`` prints them (one spec:
    ``hostapp probes show ID --json``), in id order.

    Each row is the stored spec (Diagnose's keys) with:

    * ``applied``: ``{process: record}``, each process's record (``docs/probes.md``, "The
      ``applied`` record"); a record ``active``/``pending`` of a process of this machine
      that is not alive any more reads ``gone``;
    * ``expires_in_s``: seconds until it expires (negative: since it did), ``None`` for
      no lifespan;
    * ``status``: ``"expired"``, or the processes counted by state (``"1 active, 1
      pending"``), or ``"not applied yet"``;
    * ``fires``, ``errors``: summed over the processes.

    Args:
        store: the spec store.
        spec_id: only this spec (an empty list when it does not exist).

    Raises:
        Exception: what the store raises (``sqlite3.Error``, a Redis error).
    """
    from hostapp.probes.manager import expires_in

    specs = store.specs()
    if spec_id is not None:
        specs = {spec_id: specs[spec_id]} if spec_id in specs else {}
        if not specs:
            return []
    applied = store.applied(spec_id)
    here = socket.gethostname()
    rows = []
    for sid, spec in specs.items():
        records = applied.get(sid, {})
        for record in records.values():  # a process of this machine that died without stopping
            if record.get("state") in ("active", "pending") and record.get("host") == here \
                    and not _alive(record.get("pid")):
                record["state"] = "gone"
                record["err"] = record.get("err") or "its process ended without stopping (values as of its last poll)"
        left = expires_in(spec)
        expired = left is not None and left <= 0
        states: dict[str, int] = {}
        for record in records.values():
            states[record.get("state", "?")] = states.get(record.get("state", "?"), 0) + 1
        rows.append({
            **spec,
            "applied": records,
            "expires_in_s": None if left is None else round(left, 3),
            "status": "expired" if expired else (", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "not applied yet"),
            "fires": sum(int(r.get("fires") or 0) for r in records.values()),
            "errors": sum(int(r.get("errors") or 0) for r in records.values()),
        })
    return rows


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def remove_specs(store: SpecStore, ids: Iterable[str]) -> tuple[int, list[str]]:
    """Remove the specs ``ids`` that exist (and their applied records); running hosts
    remove their probes at their next poll.

    Returns:
        ``(removed, missing)``: how many were removed, and the ids that do not exist.

    Raises:
        Exception: what the store raises.
    """
    wanted = list(dict.fromkeys(ids))
    known = store.specs()
    missing = [i for i in wanted if i not in known]
    removed = store.remove([i for i in wanted if i in known]) if len(missing) < len(wanted) else 0
    return removed, missing


# -- texts -----------------------------------------------------------------------------------


def describe_instrument(inst: Mapping[str, Any]) -> str:
    """A spec's instrument in words: ``"hist of len(items) at call if x > 1"``."""
    value = inst.get("value")
    text = f"{inst.get('type')}"
    if value:
        text += f" of {value}"
    text += f" at {inst.get('event') or 'return'}"
    if inst.get("condition"):
        text += f" if {inst['condition']}"
    return text


def duration_text(seconds: float) -> str:
    """``42s``, ``9m 41s``, ``2h 05m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def expires_text(seconds: float | None) -> str:
    """A row's ``expires_in_s`` in words: ``"in 9m 41s"``, ``"expired 3s ago"``, ``"never"``."""
    if seconds is None:
        return "never"
    if seconds <= 0:
        return f"expired {duration_text(-seconds)} ago"
    return f"in {duration_text(seconds)}"


def format_values(values: Any) -> str:
    """One line for an instrument's snapshot (a counter, a histogram, a log, events)."""
    if not isinstance(values, dict):
        return "" if values is None else json.dumps(values, default=repr)
    kind = values.get("kind")
    if kind == "counter":
        return f"counter {values.get('total')}"
    if kind == "histogram":
        if not values.get("count"):
            return f"histogram: nothing in the last {values.get('window_s'):g} s ({values.get('total_count')} in all)"

        def num(key: str) -> str:
            v = values.get(key)
            return "-" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

        return (f"histogram over {values.get('window_s'):g} s: count {values.get('count')}, min {num('min')}, "
                f"max {num('max')}, mean {num('mean')}, p50 {num('p50')}, p95 {num('p95')}, p99 {num('p99')} "
                f"({values.get('total_count')} in all)")
    if kind == "log":
        return f"{values.get('lines')} line(s), {values.get('suppressed')} suppressed; last: {values.get('last')}"
    if kind == "events":
        return f"{values.get('exported')} event(s) exported, {values.get('dropped')} dropped"
    return json.dumps(values, default=repr)
