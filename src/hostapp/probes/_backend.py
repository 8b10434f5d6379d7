"""Where probes hook into the interpreter: one *site* per probed code, on the tracing
engine's mechanisms.

* Python 3.12+ (:class:`MonitoringHooks`): ``sys.monitoring`` **local** events on the
  probed code objects only, under a tool id of the probes' own (taken with the tracing
  backend's :func:`~hostapp.tracing._monitoring.take_tool_id`, so tracing and probes run
  side by side): ``PY_START`` for ``call`` instruments, ``PY_RETURN`` for ``return`` and
  ``end`` ones. ``PY_UNWIND`` (the raise of an ``end`` instrument, and the clean-up of a
  call whose ``elapsed_ns`` is measured) is only available process-wide; it is on only
  while such an instrument is attached, and costs about 0.25 us per frame an exception
  leaves, anywhere. The instrumented code object is shared by every function object made
  from it, so every reference to the function is covered, and the callbacks run on every
  thread, running ones included. A generator or coroutine starts once (``PY_START``;
  resumes are ``PY_RESUME``, not enabled) and returns once: one call and one return per
  call.
* Python 3.11 (:class:`TrampolineHooks`): the tracing trampoline
  (:func:`~hostapp.tracing._trampoline.trampoline_codes`): the function's ``__code__``
  becomes a trampoline with the same parameters that hands the bound arguments, as one
  tuple, to this module's :class:`_Slot`; every reference to the function object goes
  through it. Generators and coroutines get a generator/coroutine trampoline (one call,
  one return). Async generator functions cannot be probed on 3.11.

A site holds three fire functions, rebuilt (copy-on-write) whenever an instrument is
attached or detached: ``call(src, None, None, 0)``, ``ret(src, result, None,
elapsed_ns)`` and ``unwind(src, None, exc, elapsed_ns)``, where ``src`` is the frame
(3.12+) or the argument tuple (3.11). When a site has no instrument left its
instrumentation is removed entirely: the code runs exactly as it did before.
"""

from __future__ import annotations

import logging
import sys
import time
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from hostapp.probes._probe import Attachment

__all__ = ["Site", "make_hooks"]

logger = logging.getLogger("hostapp.probes")

Fire = Callable[[Any, Any, Any, int], None]

_perf_ns: Final = time.perf_counter_ns


def _combine(fires: Sequence[Fire]) -> Fire | None:
    if not fires:
        return None
    if len(fires) == 1:
        return fires[0]
    chain = tuple(fires)

    def fire_all(src: Any, result: Any, exc: Any, elapsed: int) -> None:
        for fire in chain:
            fire(src, result, exc, elapsed)

    return fire_all


class Site:
    """One probed code object (3.12+) or function object (3.11) and its attachments.

    Attributes:
        function: the function first resolved to this site.
        code: its original code object.
        attachments: the attached instruments, in attach order.
        call, ret, unwind: the fire functions of each side, or ``None``.
        track: some attachment reads ``elapsed_ns``: the start time of each call is kept.
    """

    __slots__ = ("attachments", "call", "code", "function", "ret", "slot", "track", "unwind")

    def __init__(self, function: types.FunctionType, code: types.CodeType) -> None:
        self.function = function
        self.code = code
        self.attachments: tuple[Attachment, ...] = ()
        self.call: Fire | None = None
        self.ret: Fire | None = None
        self.unwind: Fire | None = None
        self.track = False
        self.slot: Any = None

    def rebuild(self) -> None:
        atts = self.attachments
        self.track = any(a.needs_elapsed for a in atts)
        call = [a.fire for a in atts if a.event == "call"]
        ret = [a.fire for a in atts if a.event in ("return", "end")]
        unwind = [a.fire for a in atts if a.event == "end"]
        # publish the return side before the call side: a call that starts now finds both
        self.ret, self.unwind, self.call = _combine(ret), _combine(unwind), _combine(call)

    @property
    def wants_unwind(self) -> bool:
        return self.track or self.unwind is not None


class _Hooks:
    """What both backends offer the probe runtime (see the module docstring)."""

    #: ``src`` is a frame (3.12+) rather than the argument tuple (3.11).
    frames: bool = False

    def __init__(self) -> None:
        self.sites: dict[int, Site] = {}

    def site_for(self, function: types.FunctionType) -> Site:
        raise NotImplementedError

    def update(self, site: Site) -> None:
        raise NotImplementedError

    def argument_keys(self, function: types.FunctionType) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def instrumented(self) -> int:
        return sum(1 for site in self.sites.values() if site.attachments)


# -- 3.12+: sys.monitoring --------------------------------------------------------------


class MonitoringHooks(_Hooks):
    """``sys.monitoring`` local events on the probed code objects (module docstring)."""

    frames = True
    name: Final = "monitoring"

    def __init__(self) -> None:
        super().__init__()
        self.tool_id: int | None = None
        self._active: dict[types.FrameType, int] = {}
        self._callbacks: list[int] = []
        self._unwind_on = False

    def _ensure_tool(self) -> int:
        if self.tool_id is not None:
            return self.tool_id
        from hostapp.tracing._monitoring import take_tool_id

        tool = take_tool_id("hostapp-probes")
        mon = sys.monitoring
        events = mon.events
        for event, callback in self._make_callbacks().items():
            mon.register_callback(tool, event, callback)
            self._callbacks.append(event)
        self.tool_id = tool
        return tool

    def argument_keys(self, function: types.FunctionType) -> dict[str, Any]:
        from hostapp.tracing._trampoline import parameter_count

        code = function.__code__
        return {name: name for name in code.co_varnames[: parameter_count(code)]}

    def site_for(self, function: types.FunctionType) -> Site:
        code = function.__code__
        site = self.sites.get(id(code))
        if site is None:
            site = Site(function, code)
            self.sites[id(code)] = site
        return site

    def update(self, site: Site) -> None:
        """Set the site's local events from its attachments (0 and forgotten when none)."""
        mon = sys.monitoring
        events = mon.events
        code = site.code
        site.rebuild()
        local = 0
        if site.call is not None or site.track:
            local |= events.PY_START
        if site.ret is not None or site.track:
            local |= events.PY_RETURN
        if local:
            tool = self._ensure_tool()
            mon.set_local_events(tool, code, local)
        else:
            self.sites.pop(id(code), None)
            if self.tool_id is not None:
                mon.set_local_events(self.tool_id, code, 0)
        self._global_events()
        if not self.sites:
            self.close()

    def _global_events(self) -> None:
        tool = self.tool_id
        if tool is None:
            return
        wanted = any(site.wants_unwind for site in self.sites.values())
        if wanted != self._unwind_on:
            sys.monitoring.set_events(tool, sys.monitoring.events.PY_UNWIND if wanted else 0)
            self._unwind_on = wanted
        if not any(site.track for site in self.sites.values()):
            self._active.clear()

    def close(self) -> None:
        """Turn every event off and give the tool id back."""
        tool = self.tool_id
        if tool is None:
            return
        mon = sys.monitoring
        for site in list(self.sites.values()):
            try:
                mon.set_local_events(tool, site.code, 0)
            except ValueError:  # pragma: no cover
                pass
        from hostapp.tracing._monitoring import release_tool_id

        release_tool_id(tool, self._callbacks)
        self._callbacks.clear()
        self._active.clear()
        self._unwind_on = False
        self.tool_id = None

    def _make_callbacks(self) -> dict[int, Any]:
        events = sys.monitoring.events
        sites = self.sites
        active = self._active
        getframe = sys._getframe
        perf = _perf_ns

        def on_start(code: types.CodeType, offset: int) -> None:
            site = sites.get(id(code))
            if site is None:
                return
            call = site.call
            if call is not None:
                call(getframe(1), None, None, 0)
            if site.track:
                active[getframe(1)] = perf()

        def on_return(code: types.CodeType, offset: int, value: Any) -> None:
            site = sites.get(id(code))
            if site is None:
                return
            ret = site.ret
            if site.track:
                frame = getframe(1)
                started = active.pop(frame, None)
                if ret is not None:
                    ret(frame, value, None, perf() - started if started is not None else 0)
            elif ret is not None:
                ret(getframe(1), value, None, 0)

        def on_unwind(code: types.CodeType, offset: int, exc: BaseException) -> None:
            site = sites.get(id(code))
            if site is None:
                return
            frame = getframe(1)
            started = active.pop(frame, None) if site.track else None
            unwind = site.unwind
            if unwind is not None:
                unwind(frame, None, exc, perf() - started if started is not None else 0)

        return {events.PY_START: on_start, events.PY_RETURN: on_return, events.PY_UNWIND: on_unwind}


# -- 3.11: the trampoline ---------------------------------------------------------------


class _Slot:
    """What a probe trampoline calls: one per probed function object (3.11)."""

    __slots__ = ("function", "func", "site", "trampoline", "code")

    def __init__(self, function: types.FunctionType, site: Site) -> None:
        from hostapp.tracing._trampoline import trampoline_codes

        self.function = function
        self.code = function.__code__
        self.site = site
        _, self.func, self.trampoline = trampoline_codes(function, self)

    def call(self, *params: Any) -> Any:
        site = self.site
        if _busy[0] and _state.busy:
            return self.func(*params)
        call = site.call
        if call is not None:
            call(params, None, None, 0)
        ret = site.ret
        unwind = site.unwind
        if ret is None and unwind is None and not site.track:
            return self.func(*params)
        started = _perf_ns() if site.track else 0
        try:
            result = self.func(*params)
        except BaseException as exc:
            if unwind is not None:
                unwind(params, None, exc, _perf_ns() - started if started else 0)
            _strip(exc)
            raise
        if ret is not None:
            ret(params, result, None, _perf_ns() - started if started else 0)
        return result

    def gen(self, *params: Any) -> Any:
        site = self.site
        if _busy[0] and _state.busy:
            return (yield from self.func(*params))
        generator = self.func(*params)
        call = site.call
        if call is not None:
            call(params, None, None, 0)
        ret, unwind, track = site.ret, site.unwind, site.track
        started = _perf_ns() if track else 0
        try:
            result = yield from generator
        except BaseException as exc:
            if unwind is not None:
                unwind(params, None, exc, _perf_ns() - started if started else 0)
            _strip(exc)
            raise
        if ret is not None:
            ret(params, result, None, _perf_ns() - started if started else 0)
        return result

    async def coro(self, *params: Any) -> Any:
        site = self.site
        if _busy[0] and _state.busy:
            return await self.func(*params)
        coroutine = self.func(*params)
        call = site.call
        if call is not None:
            call(params, None, None, 0)
        ret, unwind, track = site.ret, site.unwind, site.track
        started = _perf_ns() if track else 0
        try:
            result = await coroutine
        except BaseException as exc:
            if unwind is not None:
                unwind(params, None, exc, _perf_ns() - started if started else 0)
            _strip(exc)
            raise
        if ret is not None:
            ret(params, result, None, _perf_ns() - started if started else 0)
        return result


_busy: Any = [0]
_state: Any = None


def _strip(exc: BaseException) -> None:
    """Drop the trampoline's own frame from ``exc``'s traceback (it reads as unprobed)."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        exc.__traceback__ = tb.tb_next


class TrampolineHooks(_Hooks):
    """Probe trampolines in the probed functions' ``__code__`` (module docstring)."""

    frames = False
    name: Final = "trampoline"

    def __init__(self) -> None:
        global _busy, _state
        super().__init__()
        from hostapp.tracing import _trampoline

        # the tracing trampoline's re-entry guard: instruments' own calls are neither
        # probed nor traced, and processors' calls are not probed
        _busy, _state = _trampoline._busy, _trampoline._state

    def argument_keys(self, function: types.FunctionType) -> dict[str, Any]:
        from hostapp.tracing._trampoline import parameter_count

        code = self._original(function)
        return {name: i for i, name in enumerate(code.co_varnames[: parameter_count(code)])}

    @staticmethod
    def _original(function: types.FunctionType) -> types.CodeType:
        from hostapp.tracing._trampoline import TRAMPOLINES

        code = function.__code__
        owner = TRAMPOLINES.get(code)
        return owner.code if owner is not None else code  # under a tracing trampoline

    def site_for(self, function: types.FunctionType) -> Site:
        site = self.sites.get(id(function))
        if site is None:
            if function.__code__.co_flags & 0x200:  # CO_ASYNC_GENERATOR
                from hostapp.probes._resolve import TargetError

                raise TargetError(
                    f"{function.__module__}.{function.__qualname__} is an async generator function: "
                    "not probed on Python 3.11 (it is on 3.12+)"
                )
            site = Site(function, function.__code__)
            self.sites[id(function)] = site
        return site

    def update(self, site: Site) -> None:
        from hostapp.tracing._trampoline import TRAMPOLINES

        site.rebuild()
        function = site.function
        if site.attachments:
            if site.slot is None:
                slot = _Slot(function, site)
                function.__code__ = slot.trampoline
                TRAMPOLINES[slot.trampoline] = slot
                site.slot = slot
            return
        self.sites.pop(id(function), None)
        slot = site.slot
        site.slot = None
        if slot is None:
            return
        TRAMPOLINES.pop(slot.trampoline, None)
        if function.__code__ is slot.trampoline:
            function.__code__ = slot.code
        # else: another trampoline wraps ours now; the empty site makes ours pass calls through

    def close(self) -> None:
        for site in list(self.sites.values()):
            site.attachments = ()
            self.update(site)


def make_hooks(backend: str = "auto") -> _Hooks:
    """The hooks for this interpreter: ``monitoring`` on 3.12+, ``trampoline`` on 3.11.

    Raises:
        ValueError: ``monitoring`` asked for on 3.11.
    """
    if backend == "auto":
        backend = "monitoring" if sys.version_info >= (3, 12) else "trampoline"
    if backend == "monitoring":
        if sys.version_info < (3, 12):
            raise ValueError("probes: the 'monitoring' backend needs Python 3.12+")
        return MonitoringHooks()
    if backend == "trampoline":
        return TrampolineHooks()
    raise ValueError(f"probes: unknown backend {backend!r}; expected auto, monitoring or trampoline")

