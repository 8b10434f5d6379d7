"""Bounded, contained calls into plugin code: :class:`PluginCalls` and :class:`Outcome`.

Every call the host makes into plugin code at start and stop (a plugin's import, a hook
implementation, a registration hook, a driver's ``connect``) goes through
:meth:`PluginCalls.each`:

* it runs on a helper thread (``hostapp-call``, a daemon thread the tracer skips), never on
  the caller's, so whatever the plugin raises — ``SystemExit`` and ``KeyboardInterrupt``
  included — is the plugin's failure and cannot end the caller's thread, and a
  ``KeyboardInterrupt`` that does reach the caller is a real Ctrl-C;
* each call has a bound (seconds); one that takes longer is *abandoned*: its thread is
  left running (it is a daemon thread), the outcome says it timed out, and the calls after
  it go on in a fresh thread;
* a call that returns an awaitable (an ``async def`` hook, a coroutine from a driver's
  ``connect``) has it awaited on an asyncio loop, within the same bound. The loop is the
  caller's (``PluginCalls(loop=...)``, for ``await host.astart()``) or one this object
  starts on first use, on a thread of its own (``hostapp-loop``), so that :mod:`asyncio`
  is imported only when some plugin code is async. A loop that a coroutine blocks
  (``time.sleep`` inside ``async def``) is replaced by a new one for the calls after.

Nothing here knows about plugins: the callers name the plugin and stage when they report
an :class:`Outcome`.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

__all__ = ["Outcome", "PluginCalls", "describe_error", "resolve"]

_monotonic = time.monotonic

#: Seconds a loop gets to run a no-op after a coroutine on it timed out; a loop that does
#: not is taken as blocked by that coroutine and replaced.
LOOP_PROBE_S: Final = 0.2


def describe_error(exc: BaseException) -> str:
    """``"ExceptionType: message"`` (``"ExceptionType"`` when the message is empty); never
    raises, even for an exception whose ``__str__`` does."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__
        text = "<str() failed>"
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class Outcome:
    """How one bounded call ended.

    Attributes:
        value: what the call returned (its awaited result when it returned an awaitable);
            ``None`` when it raised or timed out.
        error: the exception it raised (any :class:`BaseException`), or ``None``.
        timed_out: it did not return within its bound and was abandoned.
        seconds: how long it ran (s), up to the bound when it timed out.
        bound: the bound it had (s), or ``None`` for none.
    """

    __slots__ = ("bound", "error", "seconds", "timed_out", "value")

    def __init__(
        self, value: Any = None, error: BaseException | None = None, *, timed_out: bool = False,
        seconds: float = 0.0, bound: float | None = None,
    ) -> None:
        self.value = value
        self.error = error
        self.timed_out = timed_out
        self.seconds = seconds
        self.bound = bound

    @property
    def ok(self) -> bool:
        """It returned (neither raised nor timed out)."""
        return self.error is None and not self.timed_out

    def describe(self, setting: str | None = None) -> str:
        """One line: ``"RuntimeError: boom"``, or ``"did not return within 2 s (SETTING);
        abandoned"``; ``""`` for a call that returned."""
        if self.timed_out:
            bound = f"{self.bound:g} s" if self.bound is not None else "its bound"
            where = f" ({setting})" if setting else ""
            return f"did not return within {bound}{where}; abandoned"
        return describe_error(self.error) if self.error is not None else ""

    def __repr__(self) -> str:
        state = "ok" if self.ok else self.describe()
        return f"<Outcome {state} {self.seconds:.3f}s>"


class _Batch:
    """The calls one helper thread runs, in order, and what became of each.

    ``current`` is the index of the call running (or about to run) and ``began`` when it
    began; both change together with ``outcomes``, under ``cond``.
    """

    __slots__ = ("abandoned", "began", "calls", "cond", "current", "future", "loop", "outcomes", "owner")

    def __init__(self, owner: PluginCalls, calls: Sequence[Callable[[], Any]], start: int) -> None:
        self.owner = owner
        self.calls = calls
        self.cond = threading.Condition(threading.Lock())
        self.current = start
        self.began = _monotonic()
        self.outcomes: dict[int, Outcome] = {}
        self.abandoned = False
        self.future: concurrent.futures.Future[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        _here.batch = self
        calls, cond = self.calls, self.cond
        i = self.current
        while i < len(calls):
            outcome = self._one(calls[i])
            with cond:
                if self.abandoned:
                    return
                now = _monotonic()
                outcome.seconds = now - self.began
                self.outcomes[i] = outcome
                i += 1
                self.current, self.began = i, now
                cond.notify_all()

    def _one(self, call: Callable[[], Any]) -> Outcome:
        try:
            value = call()
            if value is not None and inspect.isawaitable(value):
                value = self._await(value)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are the plugin's too
            return Outcome(error=exc)
        return Outcome(value)

    def resolve(self, value: Any) -> Any:
        """``value``, awaited on the loop when it is awaitable (see :func:`resolve`)."""
        if value is not None and inspect.isawaitable(value):
            return self._await(value)
        return value

    def _await(self, awaitable: Any) -> Any:
        import asyncio

        loop = self.owner.loop()

        async def wait() -> tuple[bool, Any]:
            try:
                return True, await awaitable
            except (KeyboardInterrupt, SystemExit) as exc:  # asyncio would end the loop with them
                return False, exc

        future = asyncio.run_coroutine_threadsafe(wait(), loop)
        with self.cond:
            self.future, self.loop = future, loop
        try:
            returned, value = future.result()
        finally:
            with self.cond:
                self.future = self.loop = None
        if not returned:
            raise value
        return value


_here = threading.local()


def resolve(value: Any) -> Any:
    """Inside a bounded call (a function given to :meth:`PluginCalls.each`): ``value``, or,
    when it is awaitable, what it gives once awaited on the calls' loop. The wait is part
    of the call's bound: a call that times out cancels the awaitable. For a function that
    calls several plugin functions, any of which may be ``async def`` (a driver's
    ``factory``, ``connect``, ``validate``).

    Raises:
        RuntimeError: not called from inside a bounded call.
        BaseException: whatever awaiting ``value`` raises.
    """
    if value is None or not inspect.isawaitable(value):
        return value
    batch = getattr(_here, "batch", None)
    if batch is None:
        raise RuntimeError("hostapp._bounded.resolve() is for functions run by PluginCalls.each()")
    return batch._await(value)


class PluginCalls:
    """Runs plugin code bounded and contained (see the module docstring).

    Args:
        loop: returns the running asyncio loop awaitables are run on (the caller's, for a
            host started with ``await host.astart()``); ``None``: a loop of this object's
            own, started on first use on the ``hostapp-loop`` thread.
        name: the helper threads' name.

    Thread-safe; one object serves a host for its whole life.
    """

    def __init__(
        self, loop: Callable[[], asyncio.AbstractEventLoop] | None = None, *, name: str = "hostapp-call",
    ) -> None:
        self._external = loop
        self._name = name
        self._lock = threading.Lock()
        self._own: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        #: loops given up on (blocked by a coroutine); closed, if they ever stop, at close()
        self._blocked: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []

    # -- the loop ----------------------------------------------------------------------

    @property
    def started_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop in use if there is one already (the caller's, or ours once started)."""
        if self._external is not None:
            return self._external()
        return self._own

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop awaitables run on; ours is started here on first use."""
        if self._external is not None:
            return self._external()
        with self._lock:
            if self._own is None:
                self._own, self._own_thread = _start_loop_thread()
            return self._own

    def _check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """After a coroutine on ``loop`` timed out: replace our loop if it is blocked."""
        if self._external is not None or loop is not self._own:
            return
        ran = threading.Event()
        try:
            loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # closed meanwhile
            return
        if ran.wait(LOOP_PROBE_S):
            return
        with self._lock:
            if self._own is loop:
                assert self._own_thread is not None
                self._blocked.append((loop, self._own_thread))
                self._own = self._own_thread = None

    def close(self, timeout: float = 1.0) -> None:
        """Stop and close our own loop (its thread joined at most ``timeout`` s); idempotent.
        A loop a coroutine still blocks is left to the process's exit."""
        with self._lock:
            own = [(self._own, self._own_thread)] if self._own is not None else []
            loops, self._blocked = own + self._blocked, []
            self._own = self._own_thread = None
        for loop, thread in loops:
            _stop_loop_thread(loop, thread, timeout)  # type: ignore[arg-type]

    # -- calls ---------------------------------------------------------------------------

    def call(
        self, function: Callable[..., Any], *args: Any, timeout: float | None, deadline: float | None = None,
    ) -> Outcome:
        """Run ``function(*args)`` bounded by ``timeout`` seconds (``None``: no bound) and
        by ``deadline`` (a :func:`time.monotonic` time, or ``None``).

        Returns:
            its :class:`Outcome` (never raises for what ``function`` does).

        Raises:
            KeyboardInterrupt: Ctrl-C while waiting (the call is abandoned).
        """
        if args:
            return self.each([lambda: function(*args)], timeout, deadline=deadline)[0]
        return self.each([function], timeout, deadline=deadline)[0]

    def each(
        self, calls: Sequence[Callable[[], Any]], timeout: float | None, *, deadline: float | None = None,
    ) -> list[Outcome]:
        """Run ``calls`` one after another, each bounded by ``timeout`` seconds, and all of
        them by ``deadline`` (a :func:`time.monotonic` time; ``None``: none).

        A call that times out is abandoned and the next one starts at once on a new
        helper thread, so one stuck plugin costs at most ``timeout``. Once ``deadline`` has
        passed, each call left still gets a moment (10 ms) to finish.

        Returns:
            one :class:`Outcome` per call, in order.

        Raises:
            KeyboardInterrupt: Ctrl-C while waiting (the calls in flight are abandoned).
        """
        outcomes: list[Outcome] = []
        start = 0
        while start < len(calls):
            batch = _Batch(self, calls, start)
            thread = threading.Thread(target=batch.run, name=self._name, daemon=True)
            thread.hostapp_untraced = True  # type: ignore[attr-defined]  # the tracer skips it
            thread.start()
            start = self._wait(batch, timeout, deadline, outcomes)
        return outcomes

    def _wait(
        self, batch: _Batch, timeout: float | None, deadline: float | None, outcomes: list[Outcome],
    ) -> int:
        """Collect ``batch``'s outcomes until every call is done or one times out; returns
        the index the next batch starts at."""
        cond = batch.cond
        total = len(batch.calls)
        try:
            with cond:
                while True:
                    done = len(outcomes)
                    while done in batch.outcomes:
                        outcomes.append(batch.outcomes.pop(done))
                        done += 1
                    if done == total:
                        return total
                    bound = _bound(batch.began, timeout, deadline)
                    if bound is None:
                        cond.wait()
                        continue
                    left = batch.began + bound - _monotonic()
                    if left <= 0:
                        break
                    cond.wait(left)
                batch.abandoned = True
                future, loop = batch.future, batch.loop
            outcomes.append(Outcome(timed_out=True, seconds=bound, bound=bound))
        except BaseException:  # Ctrl-C while waiting: the thread is left to finish alone
            with cond:
                batch.abandoned = True
                future = batch.future
            if future is not None:
                future.cancel()
            raise
        if future is not None and loop is not None:  # a coroutine: cancel it, look at its loop
            future.cancel()
            self._check_loop(loop)
        return len(outcomes)


def _bound(began: float, timeout: float | None, deadline: float | None) -> float | None:
    """Seconds a call that began at ``began`` may run: ``timeout``, cut to ``deadline``
    (but never under 10 ms)."""
    if deadline is None:
        return timeout
    left = max(0.01, deadline - began)
    return left if timeout is None else min(timeout, left)


def _start_loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """A new asyncio loop running on a daemon thread named ``hostapp-loop`` (untraced)."""
    import asyncio

    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=run, name="hostapp-loop", daemon=True)
    thread.hostapp_untraced = True  # type: ignore[attr-defined]  # the tracer skips it
    thread.start()
    ready.wait()
    return loop, thread


def _stop_loop_thread(loop: asyncio.AbstractEventLoop, thread: threading.Thread, timeout: float) -> None:
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # already closed
        return
    thread.join(timeout)
    if not thread.is_alive():
        loop.close()
