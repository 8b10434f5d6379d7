"""Probes, instruments and their runtime: ``attach_to(target)``, ``probe.instruments[name]
= Instrument(...)``, ``probe.start()`` / ``probe.stop()`` (Diagnose's API).

A started probe resolves its target (:mod:`hostapp.probes._resolve`) and *attaches* each
of its instruments to the target's site (:mod:`hostapp.probes._backend`): the
instrument's implementation is built by its type's factory, its ``value`` and
``condition`` are compiled once (:mod:`hostapp.probes._expr`) and one *fire* function
is made for it. On every probed call that function, on the probed thread:

1. checks the deadline (``time.monotonic()`` against the expiry; past it the instrument
   expires and is detached right there, so the function's cost goes back to plain);
2. evaluates the condition, then the value (from the call's arguments, ``result``,
   ``exc``, ``elapsed_ns``);
3. counts the fire and hands the value to the implementation: ``impl(value)``.

Anything raised in 2-3 is caught, counted and kept (the first traceback, the last error)
against the instrument; nothing reaches the probed code. After ``max_errors`` errors the
instrument is switched off in this process (detached, ``state = "off"``, a warning on the
``hostapp.probes`` logger says so).

Process-wide state (the interpreter has one ``sys.monitoring``, one ``__code__`` per
function) lives in one :class:`ProbeRegistry`, made on first use by
:func:`default_registry`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from hostapp.probes import _expr
from hostapp.probes._resolve import NotImported, Resolved, TargetError, resolve, target_name

if TYPE_CHECKING:
    from hostapp.probes._backend import Site, _Hooks
    from hostapp.types import InstrumentType

__all__ = [
    "EVENTS",
    "Attachment",
    "Instrument",
    "Probe",
    "ProbeContext",
    "ProbeRegistry",
    "attach_to",
    "default_registry",
]

logger = logging.getLogger("hostapp.probes")

#: When an instrument fires (Diagnose's ``event``): at the call, at the return, or at the
#: end of the call - its return *or* its raise.
EVENTS: Final = ("call", "return", "end")

_mono: Final = time.monotonic
_INF: Final = math.inf


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def as_datetime(value: Any, what: str = "lastmodified") -> _dt.datetime:
    """A timezone-aware UTC datetime from a datetime (naive = UTC, as Diagnose's
    ``utcnow()``), an ISO 8601 string or epoch seconds.

    Raises:
        ValueError: anything else, naming ``what``.
    """
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _dt.datetime.fromtimestamp(value, _dt.timezone.utc)
    if isinstance(value, str):
        try:
            return as_datetime(_dt.datetime.fromisoformat(value.replace("Z", "+00:00")), what)
        except ValueError:
            pass
    raise ValueError(f"{what}: expected a datetime, an ISO 8601 time or epoch seconds, got {value!r}")


class Instrument:
    """What to do when a probe fires (Diagnose's instrument fields, plus ``condition``).

    Args:
        type: the instrument type: a name (``"log"``, ``"incr"``, ``"hist"``,
            ``"event"``, or one a plugin adds with ``hostapp_instrument_types()``), or an
            :class:`~hostapp.InstrumentType`.
        name: a name for the instrument (log lines, metric names); default
            ``"<type>:<target>"``.
        value: a safe expression (``docs/probes.md``) over the call's arguments,
            ``result``, ``exc``, ``elapsed_ns`` and the probe namespace; ``None``: the
            type's default (``incr``: ``1``, ``hist``: ``elapsed_ns``).
        event: ``"call"``, ``"return"`` (Diagnose's default) or ``"end"`` (the return
            or the raise).
        custom: free settings for the type (``{"window_s": 60}`` for ``hist``).
        condition: a safe expression; the instrument fires only when it is true.
        expires: when it stops firing, a datetime (naive means UTC) or ``None``.
        lifespan: minutes from now until it expires (instead of ``expires``).

    Raises:
        ValueError: an unknown ``event``, a ``custom`` that is not a dict, ``expires``
            and ``lifespan`` both given, a negative ``lifespan``.
    """

    __slots__ = ("condition", "context", "custom", "event", "expires", "name", "type", "value")

    def __init__(
        self,
        type: str | InstrumentType,
        name: str | None = None,
        value: str | None = None,
        event: str = "return",
        custom: Mapping[str, Any] | None = None,
        condition: str | None = None,
        expires: _dt.datetime | None = None,
        lifespan: float | None = None,
    ) -> None:
        if event not in EVENTS:
            raise ValueError(f"instrument.event: expected call, return or end, got {event!r}")
        if custom is not None and not isinstance(custom, Mapping):
            raise ValueError(f"instrument.custom: expected a dict, got {custom.__class__.__name__}")
        if expires is not None and lifespan is not None:
            raise ValueError("instrument: give expires or lifespan, not both")
        if lifespan is not None:
            if isinstance(lifespan, bool) or not isinstance(lifespan, (int, float)) or lifespan < 0:
                raise ValueError(f"lifespan: expected minutes >= 0, got {lifespan!r}")
            expires = _utcnow() + _dt.timedelta(minutes=lifespan)
        for field, text in (("value", value), ("condition", condition)):
            if text is not None and not isinstance(text, str):
                raise ValueError(f"instrument.{field}: expected an expression string, got {text!r}")
        self.type = type
        self.name = name
        self.value = value
        self.event = event
        self.custom = dict(custom or {})
        self.condition = condition
        self.expires = as_datetime(expires, "expires") if expires is not None else None
        #: the :class:`ProbeContext` it is built in (a probe manager's); ``None``: the registry's
        self.context: ProbeContext | None = None

    @property
    def type_name(self) -> str:
        """The type's name (``type`` itself, or an ``InstrumentType``'s ``name``)."""
        return self.type if isinstance(self.type, str) else getattr(self.type, "name", repr(self.type))

    def key(self) -> tuple[Any, ...]:
        """What must be equal for an attached instrument to be kept as it is."""
        return (self.type_name, self.name, self.value, self.event, repr(sorted(self.custom.items())),
                self.condition, self.expires)

    def to_dict(self) -> dict[str, Any]:
        """Diagnose's ``instrument`` dict: ``type``, ``name``, ``value``, ``event``,
        ``custom``, plus ``condition``."""
        return {"type": self.type_name, "name": self.name, "value": self.value, "event": self.event,
                "custom": dict(self.custom), "condition": self.condition}

    def __repr__(self) -> str:
        return (f"Instrument({self.type_name!r}, name={self.name!r}, value={self.value!r}, "
                f"event={self.event!r}, condition={self.condition!r}, expires={self.expires!r})")


class Attachment:
    """One instrument of one probe, attached in this process: its fire function and its
    counters (read by the probe manager for the spec's ``applied`` record).

    Attributes:
        state: ``"active"``, ``"expired"``, ``"off"`` (switched off after
            ``max_errors`` errors) or ``"detached"``.
        fires: times the instrument fired (condition true, value handed over).
        errors: errors raised by the condition, the value or the implementation.
        last_error: ``"Type: message"`` of the latest, or ``None``.
        first_traceback: the traceback text of the first error, or ``None``.
        reason: why it is not active (``"switched off after 10 errors"``), or ``None``.
        impl: the implementation the type's factory made.
    """

    __slots__ = (
        "context", "deadline", "errors", "event", "fire", "fires", "first_traceback", "impl", "instrument",
        "last_error", "max_errors", "name", "needs_elapsed", "probe", "reason", "registry", "site",
        "state",
    )

    def __init__(self, probe: Probe, name: str, instrument: Instrument, registry: ProbeRegistry) -> None:
        self.probe = probe
        self.name = name
        self.instrument = instrument
        self.registry = registry
        self.event = instrument.event
        self.fires = 0
        self.errors = 0
        self.last_error: str | None = None
        self.first_traceback: str | None = None
        self.reason: str | None = None
        self.state = "new"
        self.context = instrument.context or registry.context
        self.max_errors = self.context.max_errors
        self.needs_elapsed = False
        self.impl: Any = None
        self.site: Site | None = None
        self.fire: Callable[[Any, Any, Any, int], None] = _noop
        self.deadline = _INF

    # -- building ------------------------------------------------------------------------

    def build(self, resolved: Resolved, hooks: _Hooks) -> None:
        """Make the implementation and the fire function for ``resolved``.

        Raises:
            ProbeSpecError: an unknown type, a missing value, an expression outside the
                subset or naming what the call does not have, a factory that raised.
        """
        from hostapp.probes import ProbeSpecError

        context = self.context
        inst = self.instrument
        itype = context.instrument_type(inst.type)
        spec = self.probe.spec_for(self.name, inst)
        try:
            impl = itype.factory(spec, context.host)
        except Exception as exc:
            raise ProbeSpecError(
                f"instrument type {itype.name!r}: its factory raised {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(impl):
            raise ProbeSpecError(f"instrument type {itype.name!r}: its factory returned a {type(impl).__name__}, "
                                 "not a callable instrument")
        value = inst.value if inst.value is not None else getattr(impl, "default_value", None)
        if value is None:
            raise ProbeSpecError(f"instrument.value is required for a {itype.name!r} instrument")
        keys = hooks.argument_keys(resolved.function)
        where = f"{resolved.qualname}({', '.join(keys)})"
        namespace = context.namespace
        unsafe = context.allow_unsafe
        trees = {}
        for field, text in (("value", value), ("condition", inst.condition)):
            if text is None:
                continue
            try:
                trees[field] = _expr.parse(text) if unsafe else _expr.check(text, namespace)
                names = _expr.names_used(trees[field])
                if inst.event == "call":
                    late = sorted(names & {"result", "exc", "elapsed_ns"} - set(keys))
                    if late:
                        default = " (the type's default value)" if field == "value" and inst.value is None else ""
                        raise _expr.UnsafeExpression(
                            text, f"{', '.join(late)} exist at return/end only, not at event 'call'{default}",
                            node=f"name {late[0]!r}",
                        )
                fn = _expr.compile_expression(text, arguments=keys, namespace=namespace, unsafe=unsafe, where=where)
            except _expr.UnsafeExpression as exc:
                raise ProbeSpecError(f"instrument.{field} {exc}") from None
            trees[field] = (trees[field], fn)
        self.impl = impl
        needs = set()
        for tree, _ in trees.values():
            needs |= _expr.names_used(tree)
        self.needs_elapsed = inst.event != "call" and (
            "elapsed_ns" in needs - set(keys) or bool(getattr(impl, "wants_elapsed", False))
        )
        self.deadline = _INF if inst.expires is None else _mono() + (inst.expires - _utcnow()).total_seconds()
        call = impl if isinstance(impl, types.FunctionType) else getattr(impl, "__call__", impl)
        self.fire = self._make_fire(trees, keys, hooks.frames, call)

    def _make_fire(self, trees: Mapping[str, Any], keys: Mapping[str, Any], frames: bool, impl: Any
                   ) -> Callable[[Any, Any, Any, int], None]:
        """The fire function: ``fire(src, result, exc, elapsed_ns)``, where ``src`` is the
        frame (3.12+) or the argument tuple (3.11).

        One closure per shape, chosen here once, so that a fire does only what its spec
        needs: a constant value (``incr``: no argument read), a bare argument name (one
        lookup), or the general case (condition, compiled value; on 3.11 under the
        re-entry guard when it may run the program's code). Every shape checks the
        deadline first and catches whatever the condition, value or ``impl`` raise.
        """
        att = self
        deadline = self.deadline
        mono = _mono
        expire = self.expire
        failed = self.failed
        cond = trees["condition"][1] if "condition" in trees else None
        value_tree, value_fn = trees["value"]
        is_const, const = _expr.constant_value(value_tree)
        bare = _expr.bare_name(value_tree)
        bare_key = keys.get(bare) if bare is not None else None
        arg_names = set(keys)
        uses_args = bool(
            (cond is not None and _expr.names_used(trees["condition"][0]) & arg_names)
            or (not is_const and _expr.names_used(value_tree) & arg_names)
        )
        real = self.impl
        with_elapsed = bool(getattr(real, "wants_elapsed", False))  # impl(value, elapsed_ns)
        guard = not frames and (
            not getattr(real, "pure", False) or cond is not None or (not is_const and bare is None)
        )

        if getattr(real, "wants_frame", False):  # impl(frame): breakpoints
            getframe = sys._getframe

            def fire_frame(src: Any, result: Any, exc: Any, elapsed: int) -> None:
                if mono() >= deadline:
                    expire()
                    return
                try:
                    att.fires += 1
                    impl(src if frames else getframe(2))  # 3.11: the trampoline's frame
                except Exception as err:
                    failed(err)

            return fire_frame

        if not with_elapsed and cond is None and is_const:
            def fire_const(src: Any, result: Any, exc: Any, elapsed: int) -> None:
                if mono() >= deadline:
                    expire()
                    return
                try:
                    att.fires += 1
                    impl(const)
                except Exception as err:
                    failed(err)

            return fire_const

        if not with_elapsed and cond is None and bare_key is not None and frames:
            def fire_local(src: Any, result: Any, exc: Any, elapsed: int) -> None:
                if mono() >= deadline:
                    expire()
                    return
                try:
                    value = src.f_locals[bare_key]
                    att.fires += 1
                    impl(value)
                except Exception as err:
                    failed(err)

            return fire_local

        if not with_elapsed and cond is None and bare_key is not None and not guard:
            def fire_argument(src: Any, result: Any, exc: Any, elapsed: int) -> None:
                if mono() >= deadline:
                    expire()
                    return
                try:
                    value = src[bare_key]
                    att.fires += 1
                    impl(value)
                except Exception as err:
                    failed(err)

            return fire_argument

        def body(src: Any, result: Any, exc: Any, elapsed: int) -> None:
            loc = (src.f_locals if uses_args else None) if frames else src
            if cond is not None and not cond(loc, result, exc, elapsed):
                return
            value = const if is_const else value_fn(loc, result, exc, elapsed)
            att.fires += 1
            if with_elapsed:
                impl(value, elapsed)
            else:
                impl(value)

        if guard:
            from hostapp.tracing._trampoline import guard_off, guard_on

            def fire_guarded(src: Any, result: Any, exc: Any, elapsed: int) -> None:
                if mono() >= deadline:
                    expire()
                    return
                guard_on()
                try:
                    body(src, result, exc, elapsed)
                except Exception as err:
                    failed(err)
                finally:
                    guard_off()

            return fire_guarded

        def fire(src: Any, result: Any, exc: Any, elapsed: int) -> None:
            if mono() >= deadline:
                expire()
                return
            try:
                body(src, result, exc, elapsed)
            except Exception as err:
                failed(err)

        return fire

    # -- on the probed thread ------------------------------------------------------------

    def expire(self) -> None:
        """The deadline passed: stop firing and detach (now if the lock is free, else at
        the next call or the manager's next tick)."""
        if self.state == "active":
            self.state = "expired"
            self.reason = "its lifespan ended"
        self.registry.detach_soon(self)

    def failed(self, exc: BaseException) -> None:
        """Count an error of the condition, value or implementation; never raises."""
        try:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.first_traceback is None:
                self.first_traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                logger.debug("probe %s, instrument %r raised: %s", self.probe.name, self.name, self.last_error)
            if self.errors >= self.max_errors and self.state == "active":
                self.state = "off"
                self.reason = f"switched off after {self.errors} errors; last: {self.last_error}"
                logger.warning("probe %s, instrument %r: %s (the probed program is not affected)",
                               self.probe.name, self.name, self.reason)
            if self.state == "off":
                self.registry.detach_soon(self)
        except Exception:  # pragma: no cover - a broken __str__ on the exception
            pass

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> Any:
        """The implementation's current value (``impl.snapshot()``), or ``None``; never raises."""
        snap = getattr(self.impl, "snapshot", None)
        if snap is None:
            return None
        try:
            return snap()
        except Exception as exc:  # noqa: BLE001
            return {"error": f"snapshot() raised {type(exc).__name__}: {exc}"}

    def status(self) -> dict[str, Any]:
        """``state``, ``reason``, ``fires``, ``errors``, ``last_error``,
        ``first_traceback``, ``values`` (the snapshot), as JSON-able values."""
        return {
            "state": self.state, "reason": self.reason, "fires": self.fires, "errors": self.errors,
            "last_error": self.last_error, "first_traceback": self.first_traceback, "values": self.snapshot(),
        }

    def close(self) -> None:
        """Call the implementation's ``close()``, if any (errors are logged, never raised)."""
        close = getattr(self.impl, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # noqa: BLE001
                logger.warning("probe %s, instrument %r: close() raised %s", self.probe.name, self.name, exc)


def _noop(src: Any, result: Any, exc: Any, elapsed: int) -> None:
    return None


class _Instruments(MutableMapping[str, Instrument]):
    """``probe.instruments``: a dict of name -> :class:`Instrument` that re-applies a
    started probe when it changes."""

    def __init__(self, probe: Probe) -> None:
        self._probe = probe
        self._data: dict[str, Instrument] = {}

    def __getitem__(self, key: str) -> Instrument:
        return self._data[key]

    def __setitem__(self, key: str, value: Instrument) -> None:
        if not isinstance(value, Instrument):
            raise TypeError(f"probe.instruments[{key!r}]: expected a hostapp.probes.Instrument, got {value!r}")
        self._data[key] = value
        self._probe._changed()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._probe._changed()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)


class Probe:
    """A probe on one target (Diagnose's ``FunctionProbe``; make it with :func:`attach_to`).

    Attributes:
        target: the target as given (a dotted path or an object).
        name: the target's printable name.
        instruments: name -> :class:`Instrument`; changing it re-applies a started probe.
        started: whether :meth:`start` was called (and not :meth:`stop`).
        resolved: the :class:`~hostapp.probes._resolve.Resolved` target, or ``None``.
        error: why the target is not probed yet (not imported, no such attribute), or
            ``None``; ``pending`` says whether it is retried.
        attachments: name -> :class:`Attachment` of the instruments attached now.
        errors: name -> the error that kept an instrument from being attached.
    """

    def __init__(self, target: Any, registry: ProbeRegistry, key: Any) -> None:
        self.target = target
        self.name = target_name(target)
        self.key = key
        self.registry = registry
        self.instruments = _Instruments(self)
        self.started = False
        self.resolved: Resolved | None = None
        self.error: str | None = None
        self.pending = False
        self.attachments: dict[str, Attachment] = {}
        self.errors: dict[str, str] = {}
        self.spec_ids: dict[str, str] = {}

    def __repr__(self) -> str:
        state = "started" if self.started else "stopped"
        return f"<Probe {self.name} {state}, {len(self.instruments)} instrument(s)>"

    def spec_for(self, name: str, inst: Instrument) -> dict[str, Any]:
        """The probe spec handed to an instrument type's factory (Diagnose's format):
        ``id``, ``target``, ``instrument`` (with ``name`` filled in), ``expires``."""
        data = inst.to_dict()
        data["name"] = inst.name or f"{inst.type_name}:{self.name}"
        return {"id": self.spec_ids.get(name, name), "target": self.name, "instrument": data,
                "expires": inst.expires.isoformat() if inst.expires else None}

    def start(self) -> Probe:
        """Resolve the target and attach every instrument (again, after a change).

        A target that cannot be resolved yet does not raise: :attr:`error` says why and
        the probe is retried when its module is imported (and at every
        :meth:`ProbeRegistry.retry_pending`). An instrument that cannot be attached is
        left out with its error in :attr:`errors`; the others are attached.

        Returns:
            the probe.
        """
        with self.registry.lock:
            self.started = True
            self.registry.sync(self)
        return self

    def stop(self) -> None:
        """Detach every instrument; the target's instrumentation is removed when no other
        probe uses it (its calls cost what they did before). Idempotent."""
        with self.registry.lock:
            self.started = False
            self.registry.sync(self)

    def _changed(self) -> None:
        if self.started:
            with self.registry.lock:
                self.registry.sync(self)


class ProbeContext:
    """What instruments are built with: the instrument types, the host, the expression
    namespace and policy. The registry has a default one; each probe manager has its own
    (so two managers, or a test, never change each other's settings).

    Args:
        types: name -> :class:`~hostapp.InstrumentType`; ``None``: the installed
            plugins' (read on first need).
        host: handed to instrument factories (the ``event`` instrument needs one).
        namespace: names expressions may use besides the call's, merged over Diagnose's
            defaults (``datetime``, ``math``, ``time``, ``mag``).
        allow_unsafe: skip the expression subset check.
        max_errors: errors after which an instrument is switched off.
    """

    def __init__(self, types: Mapping[str, InstrumentType] | None = None, host: Any = None,
                 namespace: Mapping[str, Any] | None = None, allow_unsafe: bool = False,
                 max_errors: int = 10) -> None:
        self._types = dict(types) if types is not None else None
        self.host = host
        self.namespace: dict[str, Any] = _expr.default_namespace()
        if namespace:
            self.namespace.update(namespace)
        self.allow_unsafe = allow_unsafe
        self.max_errors = max_errors

    @property
    def types(self) -> dict[str, InstrumentType]:
        """Name -> :class:`~hostapp.InstrumentType` (the installed plugins' when not given)."""
        if self._types is None:
            self._types = _installed_types()
        return self._types

    @types.setter
    def types(self, value: Mapping[str, InstrumentType]) -> None:
        self._types = dict(value)

    def instrument_type(self, kind: Any) -> InstrumentType:
        """The :class:`~hostapp.InstrumentType` for ``kind`` (a name or the type itself).

        Raises:
            ProbeSpecError: no installed plugin contributes that name.
        """
        from hostapp.probes import ProbeSpecError
        from hostapp.types import InstrumentType

        if isinstance(kind, InstrumentType):
            return kind
        found = self.types.get(kind)
        if found is None:
            known = ", ".join(sorted(self.types)) or "none"
            raise ProbeSpecError(
                f"unknown instrument type {kind!r} in this process (known: {known}; a built-in one may be "
                f"disabled with plugins.disable = [\"instruments.{kind}\"])"
            )
        return found


class ProbeRegistry:
    """The probes of this process and the machinery they share (one per process:
    :func:`default_registry`).

    Attributes:
        lock: held while attachments change (never on the probed thread's fast path).
        probes: key -> :class:`Probe`.
        context: the default :class:`ProbeContext` (instruments added directly with
            ``probe.instruments[...]``; a probe manager's instruments carry its own).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.probes: dict[Any, Probe] = {}
        self.context = ProbeContext()
        self._hooks: _Hooks | None = None
        self._waiting: dict[str, set[Any]] = {}
        self._import_hook: Any = None
        self._detach: list[Attachment] = []
        if not logger.handlers:  # a library's logger: nothing on the program's stderr by default
            logger.addHandler(logging.NullHandler())

    @property
    def hooks(self) -> _Hooks:
        """The interpreter's probe backend (made on first use: nothing is installed before)."""
        if self._hooks is None:
            from hostapp.probes._backend import make_hooks

            self._hooks = make_hooks()
        return self._hooks

    @property
    def backend(self) -> str:
        """``"monitoring"`` (3.12+) or ``"trampoline"`` (3.11)."""
        return self.hooks.name  # type: ignore[attr-defined, no-any-return]

    # -- probes ----------------------------------------------------------------------------

    def attach_to(self, target: Any) -> Probe:
        """The probe on ``target``, made if there is none (see :func:`attach_to`)."""
        key = target if isinstance(target, str) else ("object", id(target), target_name(target))
        if isinstance(target, str) and not target.strip():
            raise TargetError("probe target: expected a dotted path (pkg.mod.Class.method), got ''")
        with self.lock:
            probe = self.probes.get(key)
            if probe is None:
                probe = self.probes[key] = Probe(target, self, key)
            return probe

    def sync(self, probe: Probe) -> None:
        """Make ``probe``'s attachments match its instruments (call with :attr:`lock` held)."""
        self._flush_detach()
        wanted = dict(probe.instruments) if probe.started else {}
        for name, att in list(probe.attachments.items()):
            inst = wanted.get(name)
            if inst is None or inst.key() != att.instrument.key() or att.state not in ("active",):
                if inst is not None and inst.key() == att.instrument.key() and att.state in ("expired", "off"):
                    continue  # stays expired / switched off until its spec changes
                self._detach_now(att, "detached")
                del probe.attachments[name]
        if not wanted:
            probe.errors.clear()
            self._forget_waiting(probe)
            if not probe.started and probe.key in self.probes and not probe.instruments:
                self.probes.pop(probe.key, None)
            return
        if probe.resolved is None:
            try:
                probe.resolved = resolve(probe.target)
            except NotImported as exc:
                probe.error, probe.pending = str(exc), True
                self._wait_for(probe, exc.modules)
                return
            except TargetError as exc:
                probe.error, probe.pending = str(exc), True
                return
            probe.error, probe.pending = None, False
            self._forget_waiting(probe)
        hooks = self.hooks
        try:
            site = hooks.site_for(probe.resolved.function)
        except TargetError as exc:
            probe.error, probe.pending = str(exc), False
            return
        changed = False
        for name, inst in wanted.items():
            if name in probe.attachments:
                continue
            att = Attachment(probe, name, inst, self)
            try:
                att.build(probe.resolved, hooks)
            except Exception as exc:  # noqa: BLE001 - ProbeSpecError and a factory's own
                probe.errors[name] = str(exc)
                continue
            probe.errors.pop(name, None)
            att.state = "active"
            att.site = site
            probe.attachments[name] = att
            site.attachments = (*site.attachments, att)
            changed = True
            if inst.expires is not None and att.deadline <= _mono():
                att.state, att.reason = "expired", "its lifespan ended"
        if changed or not site.attachments:  # an empty site is forgotten (and the tool id given back)
            try:
                hooks.update(site)
            except Exception as exc:  # e.g. no free sys.monitoring tool id: reported, never raised
                for name, att in list(probe.attachments.items()):
                    if att.site is site and att in site.attachments:
                        site.attachments = tuple(a for a in site.attachments if a is not att)
                        del probe.attachments[name]
                        probe.errors[name] = f"cannot instrument {probe.name}: {type(exc).__name__}: {exc}"
                try:
                    hooks.update(site)
                except Exception:  # noqa: BLE001 - nothing is installed then
                    pass

    def _detach_now(self, att: Attachment, state: str) -> None:
        site = att.site
        if site is not None and att in site.attachments:
            site.attachments = tuple(a for a in site.attachments if a is not att)
            self.hooks.update(site)
        if att.state == "active":
            att.state = state
        att.close()

    def detach_soon(self, att: Attachment) -> None:
        """Detach ``att`` from its site now if the lock is free, else at the next sync
        (called on the probed thread: it never waits for the lock)."""
        if self.lock.acquire(blocking=False):
            try:
                site = att.site
                if site is not None and att in site.attachments:
                    site.attachments = tuple(a for a in site.attachments if a is not att)
                    self.hooks.update(site)
            finally:
                self.lock.release()
        elif att not in self._detach:
            self._detach.append(att)

    def _flush_detach(self) -> None:
        pending, self._detach = self._detach, []
        for att in pending:
            site = att.site
            if site is not None and att in site.attachments:
                site.attachments = tuple(a for a in site.attachments if a is not att)
                self.hooks.update(site)

    def retry_pending(self) -> None:
        """Try again every started probe whose target was not found (the probe manager
        calls this at every poll), and finish detaching expired instruments."""
        with self.lock:
            self._flush_detach()
            for probe in list(self.probes.values()):
                if probe.started and probe.resolved is None:
                    self.sync(probe)
            for probe in list(self.probes.values()):
                for att in probe.attachments.values():
                    if att.state == "active" and att.deadline <= _mono():
                        att.expire()

    def _wait_for(self, probe: Probe, modules: tuple[str, ...]) -> None:
        for module in modules:
            self._waiting.setdefault(module, set()).add(probe.key)
        if self._import_hook is None:
            from hostapp.tracing._select import ImportHook

            waiting = self._waiting
            self._import_hook = ImportHook(
                None, self._module_imported, match=lambda fullname, origin: fullname in waiting,
            )
            self._import_hook.install()

    def _forget_waiting(self, probe: Probe) -> None:
        for module, keys in list(self._waiting.items()):
            keys.discard(probe.key)
            if not keys:
                del self._waiting[module]
        if not self._waiting and self._import_hook is not None:
            self._import_hook.uninstall()
            self._import_hook = None

    def _module_imported(self, module: types.ModuleType) -> None:
        with self.lock:
            keys = self._waiting.get(module.__name__, set())
            for key in list(keys):
                probe = self.probes.get(key)
                if probe is not None and probe.started and probe.resolved is None:
                    self.sync(probe)

    def stop_all(self) -> None:
        """Stop every probe and remove all instrumentation (tool id, trampolines)."""
        with self.lock:
            for probe in list(self.probes.values()):
                probe.started = False
                self.sync(probe)
            self.probes.clear()
            if self._hooks is not None:
                self._hooks.close()
            if self._import_hook is not None:
                self._import_hook.uninstall()
                self._import_hook = None
            self._waiting.clear()

    @property
    def instrumented(self) -> int:
        """How many code objects (3.12+) or functions (3.11) are instrumented now."""
        return self._hooks.instrumented if self._hooks is not None else 0


def _installed_types() -> dict[str, InstrumentType]:
    """The instrument types of the installed plugins (entry points, default configuration)."""
    from hostapp.config import Config
    from hostapp.manager import PluginManager

    pm = PluginManager()
    try:
        pm.load(Config.from_dict({}, environ={}))
    except Exception as exc:  # noqa: BLE001 - no types is reported where a type is looked up
        logger.warning("probes: could not load the instrument type plugins: %s", exc)
        return {}
    return {c.spec.name: c.spec for c in pm.collect("hostapp_instrument_types", on_conflict="report")}


_registry: ProbeRegistry | None = None
_registry_lock = threading.Lock()


def default_registry() -> ProbeRegistry:
    """This process's :class:`ProbeRegistry` (made on first use)."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                _registry = ProbeRegistry()
    return _registry


def attach_to(target: Any) -> Probe:
    """The probe attached to ``target``, or a new one (Diagnose's ``probes.attach_to``).

    Args:
        target: a dotted path to a function, method, staticmethod, classmethod or
            property (its getter) - ``"pkg.mod.Class.method"`` - resolved against the
            imported modules when the probe starts; a ``(obj, "name")`` pair; or the
            object itself (a function, bound method, ...). A ``functools.wraps``
            decorator's function is probed at its original (``__wrapped__``).

    Returns:
        the :class:`Probe` (the same one for the same target); add instruments with
        ``probe.instruments[name] = Instrument(...)`` and call ``probe.start()``.

    Raises:
        TargetError: an empty or malformed dotted path.

    Example::

        from hostapp.probes import Instrument, attach_to

        probe = attach_to("shop.cart.Cart.add")
        probe.instruments["adds"] = Instrument("incr", event="call")
        probe.start()
    """
    return default_registry().attach_to(target)
