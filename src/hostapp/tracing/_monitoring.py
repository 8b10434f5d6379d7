"""The ``monitoring`` backend (Python 3.12+): ``sys.monitoring`` local events on selected code.

At start the backend takes the first free tool id among ``sys.monitoring.PROFILER_ID``, 3
and 4 (so coverage.py, which uses ``COVERAGE_ID``, and debuggers, ``DEBUGGER_ID``, keep
working), finds the selected code objects among the loaded modules (pre-filtered on their
file, see :mod:`hostapp.tracing._select`, nested functions included) and turns on *local*
events for those code objects only:

* ``PY_START`` (the call; first start for a generator or coroutine);
* ``PY_RETURN`` when a processor wants a return-side event (a generator or coroutine
  returns once, when it finishes: one ``return`` per call, not one per resume);
* ``PY_YIELD`` / ``PY_RESUME`` only when a processor asks for ``yield`` / ``resume``.

Every other code object runs with no instrumentation at all. Processors get the real
frame (``sys._getframe(1)`` inside the callback); callbacks are process-wide, so every
thread is covered, including threads that were already running.

The exception exit. ``sys.monitoring`` reports it as ``PY_UNWIND``, an event that cannot
be set per code object (``set_local_events`` rejects it), so it is turned on process-wide
(``set_events``), and only when some processor wants a return-side event (``return`` or
``unwind``: the unwind is also what closes the record of a call that raised, so a processor
that lists ``return`` without ``unwind`` needs it too). The cost is one Python callback,
which returns at once for code nobody selected, for every frame an exception propagates
out of, anywhere in the process: measured at about 0.25 us per such frame (a
raise-and-catch one frame down went from 0.58 to 0.81-0.88 us on 3.12/3.13). An exception
raised and caught in the same frame costs nothing, nor does any other code. ``PY_THROW``
(process-wide too) is turned on only for a processor that asks for ``throw``. A processor
whose ``events`` is ``("call",)`` alone runs on local events only.

``stop()`` turns every local and global event off, unregisters the callbacks and frees the
tool id. Limits: code objects created after start other than by importing a module
(``exec``, ``compile``, ``code.replace``) are not found; a generator closed at a ``yield``
without a handler on 3.13 (which skips the unwind there) keeps its record until stop.
"""

from __future__ import annotations

import itertools
import logging
import sys
import types
from typing import TYPE_CHECKING, Any, Final

from hostapp.tracing._runtime import _SKIP, fast_processor
from hostapp.tracing._select import ImportHook, Selection, loaded_modules, module_functions, nested_codes

if TYPE_CHECKING:
    from hostapp.tracing._runtime import Dispatch, ProcessorRuntime

__all__ = ["MonitoringBackend", "NoFreeToolId", "release_tool_id", "take_tool_id"]

if sys.version_info < (3, 12):  # pragma: no cover - the engine imports this on 3.12+ only
    raise ImportError("the 'monitoring' tracing backend needs Python 3.12+ (sys.monitoring)")

logger = logging.getLogger("hostapp.tracing")

_TOOL_NAME: Final = "hostapp"
_RETURN_SIDE: Final = frozenset({"return", "unwind", "yield", "resume", "throw"})
#: Records kept for calls that have not ended; beyond this the oldest half is dropped.
_MAX_ACTIVE: Final = 65536
_SUSPENDABLE: Final = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async generator


class NoFreeToolId(RuntimeError):
    """Tool ids ``PROFILER_ID``, 3 and 4 are all in use."""


def take_tool_id(name: str = _TOOL_NAME) -> int:
    """Take the first free ``sys.monitoring`` tool id among ``PROFILER_ID``, 3 and 4.

    Shared by this backend (``"hostapp"``) and the probes (``"hostapp-probes"``), which
    each hold their own id, so that both can run at once.

    Args:
        name: the tool name ``sys.monitoring.get_tool(id)`` reports.

    Raises:
        NoFreeToolId: all three are in use (the message names their holders).
    """
    mon = sys.monitoring
    for tool in (mon.PROFILER_ID, 3, 4):
        if mon.get_tool(tool) is not None:
            continue
        try:
            mon.use_tool_id(tool, name)
        except ValueError:  # taken meanwhile
            continue
        return tool
    raise NoFreeToolId(
        "sys.monitoring tool ids PROFILER_ID (2), 3 and 4 are all in use "
        f"({', '.join(f'{i}: {sys.monitoring.get_tool(i)!r}' for i in (2, 3, 4))})"
    )


def release_tool_id(tool: int, callbacks: Any = ()) -> None:
    """Give ``tool`` back: its global events off, the callbacks of ``callbacks`` (event
    ids) unregistered, its local events cleared (``clear_tool_id``, 3.13+) and the id freed.
    Local events on code objects should be turned off by the caller first on 3.12."""
    mon = sys.monitoring
    mon.set_events(tool, 0)
    for event in callbacks:
        mon.register_callback(tool, event, None)
    clear = getattr(mon, "clear_tool_id", None)
    if clear is not None:
        clear(tool)
    mon.free_tool_id(tool)


class MonitoringBackend:
    """``sys.monitoring`` local events on the selected code objects (see the module doc)."""

    name: Final = "monitoring"

    def __init__(self, selection: Selection, dispatch: Dispatch) -> None:
        self._selection = selection
        self._dispatch = dispatch
        # id(code) -> (processors, kind, fast): kind 0 = call events only, 1 = a call has
        # a return side (its record is kept until then), 2 = the same for a generator or
        # coroutine (whose records are also capped); fast = the one processor when the
        # callbacks can run the inline fast path (_runtime.FastPath), else None. Keyed by
        # id: hashing a code object hashes its contents. The code objects are kept in
        # _codes, so an id stays theirs.
        self._targets: dict[int, tuple[tuple[ProcessorRuntime, ...], int, ProcessorRuntime | None]] = {}
        self._codes: dict[int, types.CodeType] = {}
        self._active: dict[types.FrameType, tuple[Any, ...]] = {}
        self._hook: ImportHook | None = None
        self._callbacks: list[int] = []
        self.tool_id: int | None = None
        dispatch.on_disable = self._on_disable

    @property
    def instrumented(self) -> int:
        return len(self._targets)

    # -- install ---------------------------------------------------------------------

    def start(self) -> None:
        mon = sys.monitoring
        events = mon.events
        wants = frozenset().union(*(rt.wants for rt in self._selection.runtimes if not rt.off))
        self.tool_id = tool = take_tool_id()
        try:
            callbacks = self._make_callbacks()
            global_events = 0
            if wants & {"return", "unwind"}:
                global_events |= events.PY_UNWIND
            if "throw" in wants:
                global_events |= events.PY_THROW
            for event, callback in callbacks.items():
                mon.register_callback(tool, event, callback)
                self._callbacks.append(event)
            mon.set_events(tool, global_events)
            seen: set[int] = set()
            for module in loaded_modules(self._selection):
                self._add_functions(module_functions(module, seen))
            self._hook = ImportHook(self._selection, self.add_module)
            self._hook.install()
        except BaseException:
            self.stop()
            raise

    def add_module(self, module: types.ModuleType) -> None:
        """Instrument the selected code of a module imported after ``start()``."""
        self._add_functions(module_functions(module))

    def _add_functions(self, functions: Any) -> None:
        for function in functions:
            for code in nested_codes(function.__code__):
                if id(code) not in self._codes:
                    self._add_code(code)

    def _add_code(self, code: types.CodeType) -> None:
        procs = tuple(rt for rt in self._selection.match(code) if not rt.off)
        if not procs:
            return
        events = sys.monitoring.events
        wants = frozenset().union(*(rt.wants for rt in procs))
        local = events.PY_START
        kind = 0
        if wants & _RETURN_SIDE:
            local |= events.PY_RETURN
            kind = 2 if code.co_flags & _SUSPENDABLE else 1
        if "yield" in wants:
            local |= events.PY_YIELD
        if "resume" in wants:
            local |= events.PY_RESUME
        assert self.tool_id is not None
        try:
            sys.monitoring.set_local_events(self.tool_id, code, local)
        except ValueError as exc:  # pragma: no cover - a code object monitoring refuses
            logger.debug("tracing: cannot monitor %s: %s", code.co_qualname, exc)
            return
        self._codes[id(code)] = code
        self._targets[id(code)] = (procs, kind, fast_processor(procs))

    def _on_disable(self, rt: ProcessorRuntime) -> None:
        tool = self.tool_id
        if tool is None:
            return
        for key, (procs, _, _) in list(self._targets.items()):
            if rt in procs and all(p.off for p in procs):
                sys.monitoring.set_local_events(tool, self._codes[key], 0)
                del self._targets[key]

    # -- uninstall -------------------------------------------------------------------

    def stop(self) -> None:
        if self._hook is not None:
            self._hook.uninstall()
            self._hook = None
        tool = self.tool_id
        if tool is None:
            return
        mon = sys.monitoring
        for code in self._codes.values():
            try:
                mon.set_local_events(tool, code, 0)
            except ValueError:  # pragma: no cover
                pass
        release_tool_id(tool, self._callbacks)
        self._callbacks.clear()
        self._targets.clear()
        self._codes.clear()
        self._active.clear()
        self.tool_id = None

    # -- callbacks -------------------------------------------------------------------

    def _make_callbacks(self) -> dict[int, Any]:
        events = sys.monitoring.events
        targets = self._targets
        active = self._active
        enter = self._dispatch.enter
        leave = self._dispatch.leave
        getframe = sys._getframe

        def evict() -> None:
            logger.warning(
                "tracing: %d calls started without ending (generators never finished?); "
                "dropping the oldest half of their records", len(active),
            )
            for frame in list(itertools.islice(active, len(active) // 2)):
                active.pop(frame, None)

        fast = self._dispatch.fast
        threads, thread_info, sites, call_site = fast.threads, fast.thread_info, fast.sites, fast.call_site
        lows, time_ns, call_key, return_key, failed = (
            fast.lows, fast.time_ns, fast.call_key, fast.return_key, fast.failed,
        )
        internal_error = self._dispatch.internal_error

        # The fast path (one processor, events deferred to the bus) is Dispatch.enter /
        # leave written out inline: no Python call beyond the callback and the bus's
        # raw emitter.
        def on_start(code: types.CodeType, offset: int) -> None:
            target = targets.get(id(code))
            if target is None:
                return
            frame = getframe(1)
            rt = target[2]
            if rt is None or rt.off:
                record = enter(target[0], frame, frame.f_back)
                if record is _SKIP:  # nested in a call of its group, or an untraced thread
                    return
            else:
                try:
                    try:
                        thread = threads.t
                    except AttributeError:
                        thread = thread_info()
                    if thread < 0:
                        return
                    caller = frame.f_back
                    site = -1
                    if caller is not None:
                        ccode = caller.f_code
                        hit = sites.get(id(ccode) | caller.f_lasti << 48)
                        site = hit[1] if hit is not None and hit[0] is ccode else call_site(caller)
                    seq = next(lows)
                    record = (seq, time_ns(), site, thread)
                    rt.calls += 1
                    if rt.want_call:
                        rt.raw_call((call_key, rt.index, record, seq))
                        rt.events += 1
                except Exception as exc:
                    failed(rt, "emit", exc, frame)
                    return
            kind = target[1]
            if kind:
                active[frame] = record
                if kind == 2 and len(active) > _MAX_ACTIVE:
                    evict()

        def on_return(code: types.CodeType, offset: int, value: Any) -> None:
            target = targets.get(id(code))
            if target is None:
                return
            frame = getframe(1)
            record = active.pop(frame, None)
            if record is None:
                return
            rt = target[2]
            if rt is None:
                leave(record, target[0], frame, "return", value)
            elif rt.want_return and not rt.off:
                try:
                    rt.raw_return((return_key, rt.index, record, next(lows), time_ns()))
                    rt.events += 1
                except Exception as exc:
                    failed(rt, "emit", exc, frame)

        def on_unwind(code: types.CodeType, offset: int, exc: BaseException) -> None:
            target = targets.get(id(code))
            if target is None:
                return
            frame = getframe(1)
            record = active.pop(frame, None)
            if record is not None:
                leave(record, target[0], frame, "unwind", exc)

        def on_yield(code: types.CodeType, offset: int, value: Any) -> None:
            target = targets.get(id(code))
            if target is None:
                return
            frame = getframe(1)
            record = active.get(frame)
            if record is not None:
                leave(record, target[0], frame, "yield", value)

        def on_resume(code: types.CodeType, offset: int) -> None:
            target = targets.get(id(code))
            if target is None:
                return
            frame = getframe(1)
            record = active.get(frame)
            if record is not None:
                leave(record, target[0], frame, "resume", None)

        def on_throw(code: types.CodeType, offset: int, exc: BaseException) -> None:
            target = targets.get(id(code))
            if target is None:
                return
            frame = getframe(1)
            record = active.get(frame)
            if record is not None:
                leave(record, target[0], frame, "throw", exc)

        return {
            events.PY_START: on_start,
            events.PY_RETURN: on_return,
            events.PY_UNWIND: on_unwind,
            events.PY_YIELD: on_yield,
            events.PY_RESUME: on_resume,
            events.PY_THROW: on_throw,
        }
