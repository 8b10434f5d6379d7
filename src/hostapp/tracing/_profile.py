"""The ``profile`` backend: a profile function on every thread (any Python version).

The compatibility fallback. ``sys.setprofile`` calls one Python function for every call
and return (and every C call) in the process, so every call pays for it whether selected
or not: expect a call-heavy program to run 3-5x slower. What it has over the other
backends is that it needs no search ahead of time: a code object is matched the first
time it runs, however it was created (``exec``, ``compile``, ``code.replace``).

Threads: on 3.12+ ``threading.setprofile_all_threads`` (every thread, running or
future). On 3.11, ``sys.setprofile`` + ``threading.setprofile`` cover this thread and
future ones; threads already running get the profile function through the C API
(``_PyEval_SetProfile`` on each thread state, via :mod:`ctypes`; the layout of the thread
state is checked at run time first, and when it does not check out those threads are not
covered and a warning says so). Their previous profile functions are put back at stop.
Another profiler active when tracing starts is suspended until stop (a warning says so).

One call is one ``call`` and one ``return``/``unwind`` event, generators and coroutines
included: the profiler's extra call/return pairs for each resume and suspension are told
apart by the instruction the frame stopped at (``RETURN_VALUE``/``RETURN_CONST`` is a
return; a ``yield`` position with a value is a suspension) and become ``resume``/``yield``
events for processors that ask for them.

The exception exit is a ``return`` with ``None`` to a profile function, so the exception
is found separately:

* 3.12+: ``exception.__traceback__`` is kept current while an exception propagates, so it
  is the exception whose traceback starts at this frame: found with two
  ``gc.get_referrers`` scans, whose cost grows with the heap (about 10 ms with 200,000
  objects), paid per exception exit of a selected call (and per ``yield None`` of a
  selected generator, which looks the same);
* 3.11: the exception is not reachable from Python at that point; while a selected
  frame runs, the thread gets ``sys.settrace(getattr)`` - a C no-op for every other
  frame - and the frame a local trace function recording ``exception`` events. When the
  thread already has a trace function (a debugger, coverage.py) that is skipped and the
  exception exit reports ``exception_type`` ``None``.

Only one engine at a time can use this backend (there is one profile function per thread).
"""

from __future__ import annotations

import dis
import gc
import logging
import sys
import threading
import types
from typing import TYPE_CHECKING, Any, Final

from hostapp.tracing._select import Selection

if TYPE_CHECKING:
    from hostapp.tracing._runtime import Dispatch, ProcessorRuntime

__all__ = ["ProfileBackend"]

logger = logging.getLogger("hostapp.tracing")

_PY311: Final = sys.version_info < (3, 12)
_PY313: Final = sys.version_info >= (3, 13)
_RETURN_OPS: Final = frozenset(dis.opmap[op] for op in ("RETURN_VALUE", "RETURN_CONST") if op in dis.opmap)
_YIELD_VALUE: Final = dis.opmap["YIELD_VALUE"]
_RESUME: Final = dis.opmap["RESUME"]
_GEN_FLAGS: Final = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async generator
_RETURN_SIDE: Final = frozenset({"return", "unwind", "yield", "resume", "throw"})

# what is kept per running call: [record from Dispatch.enter, (f_lasti, exception) of the
# last `exception` trace event (3.11) or None]
_REC: Final = 0
_EXC: Final = 1

_active_backend: ProfileBackend | None = None
_lock = threading.Lock()


class _CodeInfo:
    __slots__ = ("capture", "is_gen", "ops", "procs", "stateful")

    def __init__(self, code: types.CodeType, procs: tuple[ProcessorRuntime, ...]) -> None:
        wants = frozenset().union(*(rt.wants for rt in procs))
        self.procs = procs
        self.stateful = bool(wants & _RETURN_SIDE)
        self.is_gen = bool(code.co_flags & _GEN_FLAGS)
        self.ops = code.co_code
        # 3.11: record exceptions while it runs (the value for `unwind`; for a generator
        # also telling an exception thrown in at a yield from a suspension)
        self.capture = _PY311 and self.stateful and ("unwind" in wants or self.is_gen)


def _at_yield(ops: bytes, lasti: int) -> bool:
    if _PY313:  # the frame is already past the YIELD_VALUE, at the RESUME after it
        return ops[lasti] == _RESUME and lasti >= 2 and ops[lasti - 2] == _YIELD_VALUE
    return ops[lasti] == _YIELD_VALUE


def _first_start(ops: bytes, lasti: int) -> bool:
    """Whether a ``call`` event at ``lasti`` starts the frame (``RESUME 0``) or resumes it."""
    return lasti < len(ops) - 1 and ops[lasti] == _RESUME and ops[lasti + 1] == 0


def _propagating(frame: types.FrameType) -> BaseException | None:
    """3.12+: the exception propagating out of ``frame`` (see the module doc), or ``None``."""
    lasti = frame.f_lasti
    tbs = [
        ref for ref in gc.get_referrers(frame)
        if isinstance(ref, types.TracebackType) and ref.tb_frame is frame and ref.tb_lasti == lasti
    ]
    if not tbs:
        return None
    found = None
    for ref in gc.get_referrers(*tbs):
        if isinstance(ref, BaseException) and ref.__traceback__ in tbs:
            found = ref
    return found


class _ThreadState(threading.local):
    depth: int = 0
    owned: bool = False


class _OtherThreads:
    """3.11: the profile function of threads already running, through the C API.

    ``_PyEval_SetProfile(tstate, func, arg)`` is what ``sys.setprofile`` does for the
    current thread; it is exported and meant to work on any thread state. ``func`` is the
    C trampoline ``sys.setprofile`` installs, read back from this thread's state; the
    offsets of ``c_profilefunc``/``c_profileobj`` are found by setting known objects and
    checked before anything is written. ``None`` from :meth:`create` means "not possible
    here".
    """

    def __init__(self, ctypes: Any, func_index: int, obj_index: int, trampoline: int) -> None:
        self._ctypes = ctypes
        api = ctypes.pythonapi
        self._set = api._PyEval_SetProfile
        self._set.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._set.restype = ctypes.c_int
        self._func_index = func_index
        self._obj_index = obj_index
        self._trampoline = trampoline
        self._saved: dict[int, tuple[int | None, Any]] = {}

    @classmethod
    def create(cls) -> _OtherThreads | None:
        try:
            import ctypes

            api = ctypes.pythonapi
            api.PyThreadState_Get.restype = ctypes.c_void_p
            api.PyInterpreterState_Get.restype = ctypes.c_void_p
            api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
            api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
            api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
            api.PyThreadState_Next.restype = ctypes.c_void_p
            api._PyEval_SetProfile  # noqa: B018 - fails here when not exported
        except (ImportError, AttributeError, OSError):
            return None
        previous = sys.getprofile()
        if previous is not None:
            return None  # cannot probe without disturbing it
        words_t = ctypes.c_void_p * 24  # c_profileobj is word 10 on 3.11; stay well inside the struct

        def words() -> list[int | None]:
            return list(words_t.from_address(api.PyThreadState_Get()))

        def probe_a(frame: Any, event: str, arg: Any) -> None: ...
        def probe_b(frame: Any, event: str, arg: Any) -> None: ...

        try:
            sys.setprofile(probe_a)
            first = words()
            sys.setprofile(probe_b)
            second = words()
        finally:
            sys.setprofile(None)
        cleared = words()
        candidates = [
            i for i in range(2, len(first))
            if first[i] == id(probe_a) and second[i] == id(probe_b) and not cleared[i]
        ]
        for obj_index in candidates:
            func_index = obj_index - 2  # c_profilefunc, c_tracefunc, c_profileobj, c_traceobj
            trampoline = first[func_index]
            if trampoline and second[func_index] == trampoline and not cleared[func_index]:
                return cls(ctypes, func_index, obj_index, trampoline)
        return None

    def _states(self) -> list[int]:
        api = self._ctypes.pythonapi
        current = api.PyThreadState_Get()
        out = []
        state = api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get())
        while state:
            if state != current:
                out.append(state)
            state = api.PyThreadState_Next(state)
        return out

    def _read(self, state: int) -> tuple[int | None, int | None]:
        words = (self._ctypes.c_void_p * (self._obj_index + 1)).from_address(state)
        return words[self._func_index], words[self._obj_index]

    def install(self, callback: Any) -> None:
        for state in self._states():
            func, obj = self._read(state)
            previous = self._ctypes.cast(obj, self._ctypes.py_object).value if obj else None
            self._saved[state] = (func, previous)
            self._set(state, self._trampoline, id(callback))

    def uninstall(self, callback: Any) -> None:
        for state in self._states():
            func, obj = self._read(state)
            if obj != id(callback):
                continue
            saved_func, saved_obj = self._saved.get(state, (None, None))
            if saved_obj is None:
                self._set(state, None, None)
            else:
                self._set(state, saved_func, id(saved_obj))
        self._saved.clear()


class ProfileBackend:
    """A profile function on every thread, matching code objects as they run (module doc)."""

    name: Final = "profile"

    def __init__(self, selection: Selection, dispatch: Dispatch) -> None:
        self._selection = selection
        self._dispatch = dispatch
        # id(code) -> (code, info or None): keyed by id, because hashing a code object
        # hashes its contents and this lookup runs on every call and return in the
        # process; the code object is kept and compared, so a reused id cannot hit
        self._infos: dict[int, tuple[types.CodeType, _CodeInfo | None]] = {}
        self._active: dict[types.FrameType, list[Any]] = {}  # frame -> [record, exc]
        self._callback: Any = None
        self._previous: Any = None
        self._previous_threading: Any = None
        self._others: _OtherThreads | None = None
        self._tls = _ThreadState()
        dispatch.on_disable = self._on_disable

    @property
    def instrumented(self) -> int:
        entries = list(self._infos.values())  # one C call: the profile function cannot run meanwhile
        return sum(1 for _, info in entries if info is not None)

    def start(self) -> None:
        global _active_backend
        with _lock:
            if _active_backend is not None:
                raise RuntimeError(
                    "another TracingEngine already uses the 'profile' backend (one profile "
                    "function per thread); stop it first or use backend='auto'"
                )
            _active_backend = self
        self._callback = callback = self._make_callback()
        self._previous = sys.getprofile()
        self._previous_threading = threading.getprofile()
        if self._previous is not None:
            logger.warning(
                "tracing: a profiler is already installed (%r); it is suspended while the "
                "'profile' backend runs and put back at stop", self._previous,
            )
        if sys.version_info >= (3, 12):
            threading.setprofile_all_threads(callback)
            return
        if self._previous is None:
            self._others = _OtherThreads.create()
        if self._others is None and threading.active_count() > 1:
            logger.warning(
                "tracing: the 'profile' backend cannot reach the %d threads already running "
                "on this interpreter; only this thread and threads started from now on are "
                "traced", threading.active_count() - 1,
            )
        threading.setprofile(callback)
        sys.setprofile(callback)
        if self._others is not None:
            self._others.install(callback)

    def stop(self) -> None:
        global _active_backend
        callback = self._callback
        if callback is None:
            return
        if sys.version_info >= (3, 12):
            threading.setprofile_all_threads(None)
        else:
            if self._others is not None:
                self._others.uninstall(callback)
            if sys.getprofile() is callback:
                sys.setprofile(None)
            if sys.gettrace() is getattr:  # stopped inside a selected call (exception capture)
                sys.settrace(None)
            self._tls.depth = 0
            self._tls.owned = False
        threading.setprofile(self._previous_threading)
        if self._previous is not None and callable(self._previous):
            sys.setprofile(self._previous)
        self._callback = None
        self._infos.clear()
        self._active.clear()
        self._selection.clear()
        with _lock:
            if _active_backend is self:
                _active_backend = None

    def _on_disable(self, rt: ProcessorRuntime) -> None:
        for key, (code, info) in list(self._infos.items()):
            if info is not None and rt in info.procs and all(p.off for p in info.procs):
                self._infos[key] = (code, None)

    # -- the profile function --------------------------------------------------------

    def _make_callback(self) -> Any:
        infos = self._infos
        active = self._active
        match = self._selection.match
        enter = self._dispatch.enter
        leave = self._dispatch.leave
        tls = self._tls
        settrace = sys.settrace
        gettrace = sys.gettrace

        def recorder(frame: types.FrameType, event: str, arg: Any) -> Any:
            if event == "exception":
                state = active.get(frame)
                if state is not None:
                    state[_EXC] = (frame.f_lasti, arg[1])
            return recorder

        def capture_on(frame: types.FrameType) -> None:
            if tls.depth == 0:
                if gettrace() is None:
                    settrace(getattr)  # C no-op as the global trace function
                    tls.owned = True
                else:
                    tls.owned = False
            tls.depth += 1
            if tls.owned:
                frame.f_trace_lines = False
                frame.f_trace = recorder

        def capture_off() -> None:
            if tls.depth > 0:
                tls.depth -= 1
                if tls.depth == 0 and tls.owned:
                    tls.owned = False
                    if gettrace() is getattr:
                        settrace(None)

        def new_info(code: types.CodeType) -> _CodeInfo | None:
            procs = tuple(rt for rt in match(code) if not rt.off)
            info = _CodeInfo(code, procs) if procs else None
            infos[id(code)] = (code, info)
            return info

        def on_call(frame: types.FrameType, info: _CodeInfo) -> None:
            state = active.get(frame)
            if state is None:
                if info.is_gen and not _first_start(info.ops, frame.f_lasti):
                    return  # a generator started before tracing did
                record = enter(info.procs, frame, frame.f_back)
                if info.stateful:
                    active[frame] = [record, None]
                    if info.capture:
                        capture_on(frame)
                return
            state[_EXC] = None
            if info.capture:
                capture_on(frame)
            leave(state[_REC], info.procs, frame, "resume", None)

        def on_return(frame: types.FrameType, info: _CodeInfo, arg: Any) -> None:
            state = active.get(frame)
            if state is None:
                return
            if info.capture:
                capture_off()
            record = state[_REC]
            ops = info.ops
            lasti = frame.f_lasti
            if ops[lasti] in _RETURN_OPS:
                del active[frame]
                leave(record, info.procs, frame, "return", arg)
                return
            at_yield = info.is_gen and _at_yield(ops, lasti)
            if _PY311:
                recorded = state[_EXC]
                if at_yield and not (arg is None and recorded is not None and recorded[0] == lasti):
                    leave(record, info.procs, frame, "yield", arg)
                    return
                exc = recorded[1] if recorded is not None else None
            else:
                if at_yield and arg is not None:
                    leave(record, info.procs, frame, "yield", arg)
                    return
                exc = _propagating(frame)
                if at_yield and exc is None:
                    leave(record, info.procs, frame, "yield", arg)
                    return
            active.pop(frame, None)
            leave(record, info.procs, frame, "unwind", exc)

        internal_error = self._dispatch.internal_error

        def callback(frame: types.FrameType, event: str, arg: Any) -> None:
            try:
                if event == "call":
                    code = frame.f_code
                    entry = infos.get(id(code))
                    if entry is not None and entry[0] is code:
                        info = entry[1]
                    else:
                        info = new_info(code)
                    if info is not None:
                        on_call(frame, info)
                elif event == "return":
                    code = frame.f_code
                    entry = infos.get(id(code))
                    if entry is not None and entry[1] is not None and entry[0] is code:
                        on_return(frame, entry[1], arg)
            except Exception as exc:  # never into the traced program
                internal_error(exc)

        return callback
