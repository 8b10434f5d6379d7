"""The ``trampoline`` backend (Python 3.11): selected functions get a new ``__code__``.

For each selected function ``f`` (original code ``C``), the backend builds:

* ``C2``: ``C`` with every parameter made positional (``co_argcount`` = all parameters,
  no keyword-only, no ``*``/``**`` flags) - the same bytecode and locals layout, so a
  function ``G`` built on it (``f``'s globals and closure) runs ``f``'s body unchanged and
  can be called with the already-bound arguments in one positional call;
* ``T``, the *trampoline*: a code object with ``f``'s exact parameters (names, kinds,
  ``*args``/``**kwargs``), ``co_name``, ``co_qualname``, ``co_filename``,
  ``co_firstlineno`` and free-variable count, whose body passes the bound arguments to a
  per-function object kept in ``T.co_consts``: ``return <R>.call(p0, p1, ...)``.

``f.__code__ = T`` makes every reference to ``f`` go through the trampoline, including
names bound before tracing started (``from m import f as g``), methods, static and class
methods and closures holding ``f``. ``inspect.signature(f)`` is unchanged (same
parameters, same ``__defaults__``), and so are argument errors. An exception leaving
``f`` keeps its traceback: the trampoline frames remove their own entries before
re-raising, so tracebacks read exactly as without tracing.

The real frame: ``R.call`` arms a one-shot profile function on the calling thread and
calls ``G``; the first ``call`` event whose code is ``C2`` is the real frame of this call.
The one-shot function disarms itself at once (so nothing else is profiled), runs the call
side there - ``f_locals`` are the arguments, exactly at the call - and keeps the frame,
whose ``f_locals`` after the return are the final locals. If another Python-level
profiler is installed it is chained and put back at once; under a C-level profiler
(``cProfile``) the processors get the trampoline's frame instead (same ``f_locals`` at
the call, arguments only at the return). When no processor selecting ``f`` has ``call``
or ``process`` nothing is armed at all.

Generators and coroutines get a trampoline of the same kind (a generator delegating with
``yield from``, a coroutine with ``await``), so ``inspect.isgeneratorfunction`` and
``iscoroutinefunction`` are unchanged and a call is one ``call`` event (when the body
starts) and one ``return``/``unwind`` event (when it finishes), whatever happens in
between; their real frame is ``gi_frame``/``cr_frame``. Async generators are not
instrumented by this backend, and neither are ``yield``/``resume``/``throw`` events.

``stop()`` puts every original ``__code__`` back (only where ``f.__code__`` is still our
trampoline). Calls in flight finish normally and emit nothing more.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import types
from typing import TYPE_CHECKING, Any, Final

from hostapp.tracing._runtime import _SKIP, fast_processor
from hostapp.tracing._select import ImportHook, Selection, loaded_modules, module_functions

if TYPE_CHECKING:
    from types import FrameType

    from hostapp.tracing._runtime import Dispatch, ProcessorRuntime

__all__ = ["TRAMPOLINES", "TrampolineBackend", "guard_off", "guard_on", "parameter_count", "strip_traceback", "trampoline_codes"]

logger = logging.getLogger("hostapp.tracing")

_VARARGS: Final = inspect.CO_VARARGS
_VARKEYWORDS: Final = inspect.CO_VARKEYWORDS
_GENERATOR: Final = inspect.CO_GENERATOR
_COROUTINE: Final = inspect.CO_COROUTINE
_ASYNC_GENERATOR: Final = inspect.CO_ASYNC_GENERATOR
_ITERABLE_COROUTINE: Final = inspect.CO_ITERABLE_COROUTINE

_SLOT: Final = "__hostapp_trampoline_slot__"
_BASE: Final = "__hostapp_trampoline_base__"
_EXC: Final = "__hostapp_exc__"

_getprofile = sys.getprofile
_setprofile = sys.setprofile
_getframe = sys._getframe

#: Every trampoline code object in the process -> its per-function object (any engine).
_TRAMPOLINES: dict[types.CodeType, Any] = {}
TRAMPOLINES = _TRAMPOLINES
_templates: dict[tuple[int, str, int], types.CodeType] = {}


def _template(n: int, kind: str, nfree: int) -> types.CodeType:
    """The trampoline template for ``n`` positional parameters and ``nfree`` free variables.

    The body is ``try: return <slot>.<method>(p0, ..., pN)`` plus an ``except`` that
    drops the trampoline's own traceback entry and re-raises. ``<slot>`` and the
    ``except`` class are string constants replaced per function in ``co_consts``; the
    free variables exist only so that ``co_freevars`` has the function's length.
    """
    key = (n, kind, nfree)
    cached = _templates.get(key)
    if cached is not None:
        return cached
    params = ", ".join(f"p{i}" for i in range(n))
    if kind == "gen":
        body = f"return (yield from {_SLOT!r}.gen({params}))"
    elif kind == "coro":
        body = f"return await {_SLOT!r}.coro({params})"
    else:
        body = f"return {_SLOT!r}.call({params})"
    lines = ["def __outer__():"]
    lines += [f"    __f{i} = None" for i in range(nfree)]
    lines += [
        f"    {'async ' if kind == 'coro' else ''}def __hostapp_trampoline__({params}):",
        f"        try: {body}",
        f"        except {_BASE!r} as {_EXC}: {_EXC}.__traceback__ = "
        f"({_EXC}.__traceback__.tb_next or {_EXC}.__traceback__); raise",
    ]
    if nfree:
        lines.append("        if 0: (" + "".join(f"__f{i}, " for i in range(nfree)) + ")")
    lines.append("    return __hostapp_trampoline__")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", "<hostapp-trampoline>", "exec"), namespace)
    code: types.CodeType = namespace["__outer__"]().__code__
    _templates[key] = code
    return code


def parameter_count(code: types.CodeType) -> int:
    """How many parameters ``code`` has, ``*args`` and ``**kwargs`` included: the length
    of the positional tuple a trampoline passes on (``co_varnames[:n]`` are their names)."""
    flags = code.co_flags
    return code.co_argcount + code.co_kwonlyargcount + bool(flags & _VARARGS) + bool(flags & _VARKEYWORDS)


def trampoline_codes(
    function: types.FunctionType, slot: Any
) -> tuple[types.CodeType, types.FunctionType, types.CodeType]:
    """``(C2, G, T)`` for ``function`` (see the module docstring), ``T`` calling ``slot``.

    ``slot`` is the object ``T`` keeps in its constants and calls: ``slot.call(p0, ...)``
    for a plain function, ``slot.gen(...)`` (delegated to with ``yield from``) for a
    generator function, ``await slot.coro(...)`` for a coroutine function. The tracing
    backend's :class:`_Trampoline` and the probes' trampolines are both built here.

    Raises:
        ValueError: ``function`` is an async generator function (not supported here).
        Exception: whatever ``code.replace`` raises for a code object it cannot rebuild.
    """
    code = function.__code__
    flags = code.co_flags
    if flags & _ASYNC_GENERATOR:
        raise ValueError("async generator functions cannot get a trampoline")
    n = parameter_count(code)
    code2 = code.replace(
        co_argcount=n, co_posonlyargcount=0, co_kwonlyargcount=0,
        co_flags=flags & ~(_VARARGS | _VARKEYWORDS),
    )
    func = types.FunctionType(code2, function.__globals__, function.__name__, None, function.__closure__)
    func.__qualname__ = function.__qualname__
    if flags & _GENERATOR:
        kind = "gen"
    elif flags & _COROUTINE:
        kind = "coro"
    else:
        kind = "plain"
    template = _template(n, kind, len(code.co_freevars))
    consts = tuple(
        slot if const == _SLOT else BaseException if const == _BASE else const
        for const in template.co_consts
    )
    trampoline = template.replace(
        co_name=code.co_name,
        co_qualname=code.co_qualname,
        co_filename=code.co_filename,
        co_firstlineno=code.co_firstlineno,
        co_argcount=code.co_argcount,
        co_posonlyargcount=code.co_posonlyargcount,
        co_kwonlyargcount=code.co_kwonlyargcount,
        co_flags=(template.co_flags & ~(_VARARGS | _VARKEYWORDS))
        | (flags & (_VARARGS | _VARKEYWORDS | _ITERABLE_COROUTINE)),
        co_varnames=code.co_varnames[:n] + (_EXC,),
        co_freevars=code.co_freevars,
        co_consts=consts,
    )
    return code2, func, trampoline


class _State(threading.local):
    """Per thread: the slot the one-shot profile function fills, and the re-entry guard."""

    slot: list[Any] | None = None
    busy: bool = False


_state = _State()
#: How many threads are running processors right now. Calls made by processors are not
#: traced (as with the other backends, whose callbacks are never re-entered): a call first
#: checks this global, and only when it is not zero its own thread's ``busy`` flag
#: (a thread-local lookup is the expensive part).
_busy = [0]


def guard_on() -> None:
    """Mark this thread busy: trampolined calls it makes run untraced and unprobed (the
    tracing backend's processors and the probes' instruments share the guard)."""
    _busy[0] += 1
    _state.busy = True


def guard_off() -> None:
    """Undo :func:`guard_on`."""
    _state.busy = False
    _busy[0] -= 1


def _guard_on() -> None:
    _busy[0] += 1
    _state.busy = True


def _guard_off() -> None:
    _state.busy = False
    _busy[0] -= 1


def _oneshot(frame: FrameType, event: str, arg: Any) -> None:
    """The armed profile function: catches the real frame of the call being made.

    It runs inside a profile callback, where the interpreter does not profile (or arm)
    anything else, so the call side needs no guard.
    """
    if event != "call":
        return
    slot = _state.slot
    if slot is None:  # pragma: no cover - armed without a slot: disarm
        _setprofile(None)
        return
    owner = slot[0]
    if frame.f_code is not owner.code2:
        return  # e.g. a signal handler ran first: keep waiting for our frame
    _setprofile(slot[3])
    slot[1] = frame
    caller = frame.f_back.f_back.f_back  # type: ignore[union-attr]  # G <- R.call <- T <- caller
    slot[2] = owner.enter(owner.procs, frame, caller)


def _oneshot_chained(frame: FrameType, event: str, arg: Any) -> None:
    """:func:`_oneshot` while a Python-level profiler is installed: it sees every event."""
    slot = _state.slot
    previous = slot[3] if slot is not None else None
    if event == "call" and slot is not None and frame.f_code is slot[0].code2:
        _oneshot(frame, event, arg)
    if previous is not None:
        previous(frame, event, arg)


def strip_traceback(exc: BaseException) -> None:
    """Drop the head of ``exc``'s traceback (the trampoline frame re-raising it)."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        exc.__traceback__ = tb.tb_next


def _strip(exc: BaseException) -> None:
    """Drop the head of ``exc``'s traceback (the frame re-raising it)."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        exc.__traceback__ = tb.tb_next


class _Trampoline:
    """What a trampoline calls: one per instrumented function object.

    Attributes:
        func: ``G``, the function on ``C2`` (the original body, parameters positional).
        code: ``C``, the original code; ``code2``: ``C2``; ``trampoline``: ``T``.
        procs: the processors selecting the function.
        guard: some processor runs user code (``call``/``process``): the return side runs
            with the re-entry guard on.
    """

    __slots__ = (
        "active", "code", "code2", "enter", "function", "func", "guard", "leave", "procs", "trampoline",
    )

    def __init__(
        self, function: types.FunctionType, procs: tuple[ProcessorRuntime, ...], dispatch: Dispatch,
    ) -> None:
        self.function = function
        self.code = function.__code__
        self.code2, self.func, self.trampoline = trampoline_codes(function, self)
        self.procs = procs
        self.guard = not all(rt.simple for rt in procs)
        self.enter = dispatch.enter
        self.leave = dispatch.leave
        self.active = True

    def _finish(self, record: Any, frame: FrameType | None, event: str, arg: Any) -> None:
        """The return side (``leave``), under the re-entry guard when processors run code."""
        if not self.active:
            return
        if self.guard:
            _guard_on()
            try:
                self.leave(record, self.procs, frame, event, arg)
            finally:
                _guard_off()
        else:
            self.leave(record, self.procs, frame, event, arg)

    # -- plain functions -----------------------------------------------------------------

    def call(self, *params: Any) -> Any:
        if (_busy[0] and _state.busy) or not self.active:
            return self.func(*params)
        previous = _getprofile()
        slot: list[Any]
        if previous is None:
            slot = [self, None, None, None]
            _state.slot = slot
            _setprofile(_oneshot)
        elif callable(previous):
            slot = [self, None, None, previous]
            _state.slot = slot
            _setprofile(_oneshot_chained)
        else:  # a C-level profiler: leave it alone, use the trampoline's frame
            return self._call_unarmed(_getframe(1), params)
        try:
            result = self.func(*params)
        except BaseException as exc:
            if slot[1] is None and _getprofile() in (_oneshot, _oneshot_chained):
                _setprofile(slot[3])
            if slot[2] is not None:
                self._finish(slot[2], slot[1], "unwind", exc)
            _strip(exc)
            raise
        if slot[2] is None:
            if _getprofile() in (_oneshot, _oneshot_chained):  # pragma: no cover - never fired
                _setprofile(slot[3])
            return result
        self._finish(slot[2], slot[1], "return", result)
        return result

    def _call_unarmed(self, frame: FrameType | None, params: tuple[Any, ...]) -> Any:
        """A call without the one-shot profile: ``frame`` (the trampoline's) goes to processors."""
        if self.guard:
            _guard_on()
            try:
                record = self.enter(self.procs, frame, _getframe(2).f_back)
            finally:
                _guard_off()
        else:
            record = self.enter(self.procs, frame, _getframe(2).f_back)
        try:
            result = self.func(*params)
        except BaseException as exc:
            self._finish(record, frame, "unwind", exc)
            _strip(exc)
            raise
        self._finish(record, frame, "return", result)
        return result

    # -- generators and coroutines -------------------------------------------------------

    def _start(self, frame: FrameType, caller: FrameType | None) -> Any:
        if self.guard:
            _guard_on()
            try:
                return self.enter(self.procs, frame, caller)
            finally:
                _guard_off()
        return self.enter(self.procs, frame, caller)

    def gen(self, *params: Any) -> Any:
        if (_busy[0] and _state.busy) or not self.active:
            return (yield from self.func(*params))
        generator = self.func(*params)
        frame = generator.gi_frame
        record = self._start(frame, _getframe(2))
        try:
            result = yield from generator
        except BaseException as exc:
            self._finish(record, frame, "unwind", exc)
            _strip(exc)
            raise
        self._finish(record, frame, "return", result)
        return result

    async def coro(self, *params: Any) -> Any:
        if (_busy[0] and _state.busy) or not self.active:
            return await self.func(*params)
        coroutine = self.func(*params)
        frame = coroutine.cr_frame
        record = self._start(frame, _getframe(2))
        try:
            result = await coroutine
        except BaseException as exc:
            self._finish(record, frame, "unwind", exc)
            _strip(exc)
            raise
        self._finish(record, frame, "return", result)
        return result


class _Frameless(_Trampoline):
    """A trampoline whose processors have no ``call``/``process``: no frame is captured,
    and no processor code runs, so no guard either."""

    __slots__ = ()

    def call(self, *params: Any) -> Any:
        if (_busy[0] and _state.busy) or not self.active:
            return self.func(*params)
        procs = self.procs
        record = self.enter(procs, None, _getframe(1).f_back)
        try:
            result = self.func(*params)
        except BaseException as exc:
            if self.active:
                self.leave(record, procs, None, "unwind", exc)
            _strip(exc)
            raise
        if self.active:
            self.leave(record, procs, None, "return", result)
        return result


class _Args(_Trampoline):
    """A trampoline for call-record processors whose ``capture`` reads the arguments: no
    frame is captured (no one-shot profile armed); the arguments are handed over by name,
    from the trampoline's own parameters. ``capture`` runs under the re-entry guard."""

    __slots__ = ("argnames",)

    def __init__(
        self, function: types.FunctionType, procs: tuple[ProcessorRuntime, ...], dispatch: Dispatch,
    ) -> None:
        super().__init__(function, procs, dispatch)
        self.argnames = self.code2.co_varnames[: self.code2.co_argcount]

    def call(self, *params: Any) -> Any:
        if (_busy[0] and _state.busy) or not self.active:
            return self.func(*params)
        procs = self.procs
        state = _state
        _busy[0] += 1
        state.busy = True
        try:
            record = self.enter(procs, None, _getframe(1).f_back, (self.argnames, params))
        finally:
            _busy[0] -= 1
            state.busy = False
        if record is _SKIP:  # nested in a call of the processors' group, or an untraced thread
            return self.func(*params)
        try:
            result = self.func(*params)
        except BaseException as exc:
            self._finish(record, None, "unwind", exc)
            _strip(exc)
            raise
        self._finish(record, None, "return", result)
        return result


class _Fast(_Trampoline):
    """A :class:`_Frameless` trampoline for **one** processor whose events are deferred to
    the bus: ``Dispatch.enter``/``leave`` written out inline (see
    :class:`hostapp.tracing._runtime.FastPath`), no Python call beyond the function's own
    and the bus's raw emitter.
    The exception exit goes through ``leave`` as usual."""

    __slots__ = ("fast", "rt")

    def __init__(
        self, function: types.FunctionType, procs: tuple[ProcessorRuntime, ...], dispatch: Dispatch,
    ) -> None:
        super().__init__(function, procs, dispatch)
        self.rt = procs[0]
        self.fast = dispatch.fast

    def call(self, *params: Any) -> Any:
        rt = self.rt
        if (_busy[0] and _state.busy) or not self.active or rt.off:
            return self.func(*params)
        fast = self.fast
        record = None
        try:
            try:
                thread = fast.threads.t
            except AttributeError:
                thread = fast.thread_info()
            if thread >= 0:
                caller = _getframe(1).f_back
                site = -1
                if caller is not None:
                    code = caller.f_code
                    hit = fast.sites.get(id(code) | caller.f_lasti << 48)
                    site = hit[1] if hit is not None and hit[0] is code else fast.call_site(caller)
                seq = next(fast.lows)
                record = (seq, fast.time_ns(), site, thread)
                rt.calls += 1
                if rt.want_call:
                    rt.raw_call((fast.call_key, rt.index, record, seq))  # type: ignore[misc]
                    rt.events += 1
        except Exception as exc:  # never into the traced program
            fast.failed(rt, "emit", exc, None)
        if record is None:
            return self.func(*params)
        try:
            result = self.func(*params)
        except BaseException as exc:
            if self.active:
                self.leave(record, self.procs, None, "unwind", exc)
            _strip(exc)
            raise
        if self.active and rt.want_return and not rt.off:
            try:
                rt.raw_return((fast.return_key, rt.index, record, next(fast.lows), fast.time_ns()))  # type: ignore[misc]
                rt.events += 1
            except Exception as exc:
                fast.failed(rt, "emit", exc, None)
        return result


class TrampolineBackend:
    """Swaps a trampoline into the ``__code__`` of every selected function (see module doc)."""

    name: Final = "trampoline"

    def __init__(self, selection: Selection, dispatch: Dispatch) -> None:
        self._selection = selection
        self._dispatch = dispatch
        self._installed: dict[types.FunctionType, _Trampoline] = {}
        self._hook: ImportHook | None = None
        self.skipped: dict[str, str] = {}
        dispatch.on_disable = self._on_disable

    @property
    def instrumented(self) -> int:
        return len(self._installed)

    def start(self) -> None:
        seen: set[int] = set()
        for module in loaded_modules(self._selection):
            self._add_functions(module_functions(module, seen))
        self._hook = ImportHook(self._selection, self.add_module)
        self._hook.install()

    def add_module(self, module: types.ModuleType) -> None:
        """Instrument the selected functions of a module imported after ``start()``."""
        self._add_functions(module_functions(module))

    def _add_functions(self, functions: Any) -> None:
        for function in functions:
            if function in self._installed:
                continue
            code = function.__code__
            if code in _TRAMPOLINES:
                continue  # already a trampoline (another engine's): leave it
            procs = tuple(rt for rt in self._selection.match(code) if not rt.off)
            if procs:
                self._install(function, procs)

    def _install(self, function: types.FunctionType, procs: tuple[ProcessorRuntime, ...]) -> None:
        code = function.__code__
        where = f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"
        if code.co_flags & _ASYNC_GENERATOR:
            self.skipped[where] = "async generator functions are not instrumented by the trampoline backend"
            return
        frameless = not any(rt.needs_frame() for rt in procs)
        kind = _Trampoline
        if frameless and any(rt.needs_args() for rt in procs):
            kind = _Args
        elif frameless:
            kind = _Fast if fast_processor(procs) is not None else _Frameless
        try:
            trampoline = kind(function, procs, self._dispatch)
            function.__code__ = trampoline.trampoline
        except Exception as exc:  # a code object this backend cannot rebuild
            self.skipped[where] = f"{type(exc).__name__}: {exc}"
            logger.debug("tracing: cannot instrument %s: %s", where, exc)
            return
        _TRAMPOLINES[trampoline.trampoline] = trampoline
        self._installed[function] = trampoline

    def _restore(self, function: types.FunctionType, trampoline: _Trampoline) -> None:
        trampoline.active = False
        if function.__code__ is trampoline.trampoline:
            function.__code__ = trampoline.code
        _TRAMPOLINES.pop(trampoline.trampoline, None)

    def _on_disable(self, rt: ProcessorRuntime) -> None:
        for function, trampoline in list(self._installed.items()):
            if all(p.off for p in trampoline.procs):
                self._restore(function, trampoline)
                del self._installed[function]

    def stop(self) -> None:
        if self._hook is not None:
            self._hook.uninstall()
            self._hook = None
        for function, trampoline in self._installed.items():
            self._restore(function, trampoline)
        self._installed.clear()
