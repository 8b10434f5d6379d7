"""Breakpoints for concurrency tests (Diagnose's ``Breakpoint``, on hostapp's probes).

A :class:`Breakpoint` stops the threads that reach a function, until the test releases
them, so that a test can hold one thread between a check and its act while another
thread runs - reproducing a race every time instead of once in a thousand runs::

    with Breakpoint(Account, "audit") as bp:
        first = bp.start_thread(account.withdraw, 80)
        bp.wait()                  # `first` checked the balance and is held in audit()
        second = bp.start_thread(account.withdraw, 80)
        bp.wait()                  # so did `second`
        bp.release()               # both act on what they checked
    assert account.balance == -60  # the race, deterministically

The target is probed like any other (every reference, threads already running, threads
the test did not start). Synchronisation is a :class:`threading.Condition` (no
sleep-polling: Diagnose polls every 0.1 s): a hit wakes the waiting test at once, a
release wakes the held threads at once. A thread held longer than ``timeout`` goes on by
itself (counted in ``timed_out``), so a test that forgets to release never hangs.

For targets running on an event loop, ``await bp.async_wait()`` waits without blocking
the loop; a hit on a thread that runs an event loop is recorded and never held (holding
it would stop the loop the test itself may be awaiting on).

The ``hostapp_breakpoint`` fixture of :mod:`hostapp.testing` makes breakpoints that are
released and removed at teardown.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from hostapp.probes._probe import Instrument, Probe, ProbeRegistry, default_registry

__all__ = ["Breakpoint"]


class _Hook:
    """The instrument implementation: called with the frame of each hit."""

    default_value = "None"
    wants_frame = True

    def __init__(self, bp: Breakpoint) -> None:
        self.bp = bp

    def __call__(self, frame: FrameType) -> None:
        self.bp._hit(frame)


class Breakpoint:
    """Hold the threads that call ``target`` until released (see the module docstring).

    Args:
        target: a dotted path (``"pkg.mod.Class.method"``), an object (a function, a
            bound method), or a class/instance/module with ``name`` the attribute:
            ``Breakpoint(obj, "method")``.
        name: the attribute of ``target`` (the two-argument form).
        event: ``"call"`` (default: held before the body runs) or ``"return"`` (held
            after it ran; ``stackframe.f_locals`` are the final locals on 3.12+).
        condition: which hits count: ``None`` (all), an int or a list of ints (the
            0-based call numbers, as Diagnose's), or ``condition(frame) -> bool``.
        block: hold the hitting threads (default); ``False`` only records the hits.
        timeout: seconds a thread is held at most, and the default of :meth:`wait`.
        registry: the probe registry (default: the process's).

    Attributes:
        hits: the counted hits so far.
        calls: every call of the target seen (counted or not).
        frames: the frame of each counted hit (3.11: the frame of the function's
            trampoline, whose ``f_locals`` are the arguments and ``f_back`` the caller).
        stackframe: the frame of the latest counted hit, or ``None``.
        held: threads held right now.
        timed_out: hits whose thread went on by itself after ``timeout``.
        threads: the threads :meth:`start_thread` started; each has ``.result`` and
            ``.exception`` when it ended.
    """

    def __init__(
        self,
        target: Any,
        name: str | None = None,
        *,
        event: str = "call",
        condition: int | list[int] | Callable[[FrameType], bool] | None = None,
        block: bool = True,
        timeout: float = 10.0,
        registry: ProbeRegistry | None = None,
    ) -> None:
        if event not in ("call", "return"):
            raise ValueError(f"Breakpoint: event must be 'call' or 'return', got {event!r}")
        self.target = (target, name) if name is not None else target
        self.event = event
        self.condition = condition
        self.block = block
        self.timeout = timeout
        self.registry = registry or default_registry()
        self.hits = 0
        self.calls = 0
        self.frames: list[FrameType] = []
        self.stackframe: FrameType | None = None
        self.held = 0
        self.timed_out = 0
        self.threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._seen = 0
        self._released = 0
        self._open = False
        self._async: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], int]] = []
        self._probe: Probe | None = None
        self._key = f"breakpoint:{id(self)}"

    def __repr__(self) -> str:
        return f"<Breakpoint {self.describe()} hits={self.hits} held={self.held}>"

    def describe(self) -> str:
        """The target's printable name (``pkg.mod.Class.method``)."""
        from hostapp.probes._resolve import target_name

        return target_name(self.target)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Breakpoint:
        """Probe the target.

        Raises:
            LookupError: the target cannot be resolved (it must be imported).
            ValueError: the probe could not be attached (the message says why).
        """
        from hostapp.types import InstrumentType

        probe = self.registry.attach_to(self.target)
        kind = InstrumentType(name="breakpoint", factory=lambda spec, host: _Hook(self))
        probe.instruments[self._key] = Instrument(kind, name=self._key, event=self.event)
        probe.start()
        if probe.error is not None or self._key in probe.errors:
            del probe.instruments[self._key]
            error = probe.error or probe.errors.get(self._key)
            raise LookupError(f"Breakpoint {self.describe()}: {error}")
        self._probe = probe
        return self

    def stop(self) -> None:
        """Release every held thread and remove the probe. Idempotent."""
        self.release_all()
        probe, self._probe = self._probe, None
        if probe is not None and self._key in probe.instruments:
            del probe.instruments[self._key]
            if not probe.instruments:
                probe.stop()

    def __enter__(self) -> Breakpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- on the hitting thread -----------------------------------------------------------

    def _counts(self, frame: FrameType, number: int) -> bool:
        condition = self.condition
        if condition is None:
            return True
        if isinstance(condition, int) and not isinstance(condition, bool):
            return number == condition
        if isinstance(condition, (list, tuple, set, frozenset)):
            return number in condition
        return bool(condition(frame))

    def _hit(self, frame: FrameType) -> None:
        with self._cond:
            number = self.calls
            self.calls += 1
            if not self._counts(frame, number):
                return
            self.hits += 1
            hit = self.hits
            self.frames.append(frame)
            self.stackframe = frame
            self._cond.notify_all()
            for loop, future, wanted in list(self._async):
                if hit >= wanted:
                    self._async.remove((loop, future, wanted))
                    loop.call_soon_threadsafe(_resolve, future, frame)
            on_loop = asyncio._get_running_loop() is not None
            if not self.block or on_loop or self._released == -1:
                return
            self.held += 1
            deadline = time.monotonic() + self.timeout
            try:
                while self._released != -1 and self._released < hit:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.timed_out += 1
                        return
                    self._cond.wait(left)
            finally:
                self.held -= 1
                self._cond.notify_all()

    # -- in the test ---------------------------------------------------------------------

    def wait(self, timeout: float | None = None, *, hits: int | None = None) -> FrameType:
        """Wait until the target is hit once more than at the previous ``wait`` (or
        until ``hits`` hits in all); returns the frame of that hit.

        Raises:
            TimeoutError: not hit within ``timeout`` seconds (default: the breakpoint's),
                naming the target and the hits so far.
        """
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            wanted = self._seen + 1 if hits is None else hits
            deadline = time.monotonic() + limit
            while self.hits < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"Breakpoint {self.describe()} ({self.event}) was not hit within {limit:g} s "
                        f"(waiting for hit {wanted}; {self.hits} hit(s) so far)"
                    )
                self._cond.wait(left)
            self._seen = max(self._seen, wanted)
            return self.frames[wanted - 1]

    async def async_wait(self, timeout: float | None = None, *, hits: int | None = None) -> FrameType:
        """:meth:`wait` for a test running on an event loop: the loop keeps running.

        Raises:
            TimeoutError: as :meth:`wait`.
        """
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        with self._cond:
            wanted = self._seen + 1 if hits is None else hits
            if self.hits >= wanted:
                self._seen = max(self._seen, wanted)
                return self.frames[wanted - 1]
            future: asyncio.Future[Any] = loop.create_future()
            entry = (loop, future, wanted)
            self._async.append(entry)
        try:
            await asyncio.wait_for(future, limit)
        except (TimeoutError, asyncio.TimeoutError):
            with self._cond:
                if entry in self._async:
                    self._async.remove(entry)
            raise TimeoutError(
                f"Breakpoint {self.describe()} ({self.event}) was not hit within {limit:g} s "
                f"(waiting for hit {wanted}; {self.hits} hit(s) so far)"
            ) from None
        with self._cond:
            self._seen = max(self._seen, wanted)
            return self.frames[wanted - 1]

    def release(self, count: int | None = None) -> None:
        """Let held threads go on: every hit so far (default), or the next ``count``."""
        with self._cond:
            if self._released == -1:
                return
            self._released = self.hits if count is None else min(self.hits, self._released + count)
            self._cond.notify_all()

    def release_all(self) -> None:
        """Release every held thread and hold no more (the breakpoint only records from now on)."""
        with self._cond:
            self._released = -1
            self._cond.notify_all()

    def start_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        """Run ``fn(*args, **kwargs)`` in a new daemon thread; its ``.result`` /
        ``.exception`` are set when it ends. Returns the started thread."""
        thread = threading.Thread(target=_run, args=(fn, args, kwargs), daemon=True,
                                  name=f"breakpoint-{len(self.threads) + 1}")
        thread.result = None  # type: ignore[attr-defined]
        thread.exception = None  # type: ignore[attr-defined]
        self.threads.append(thread)
        thread.start()
        return thread

    def join(self, timeout: float = 10.0) -> None:
        """Wait for the threads of :meth:`start_thread` (at most ``timeout`` s in all).

        Raises:
            TimeoutError: one is still running, naming it.
        """
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise TimeoutError(f"Breakpoint {self.describe()}: thread {thread.name} still runs after {timeout:g} s")


def _run(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    thread = threading.current_thread()
    try:
        thread.result = fn(*args, **kwargs)  # type: ignore[attr-defined]
    except BaseException as exc:  # noqa: BLE001 - kept for the test to look at
        thread.exception = exc  # type: ignore[attr-defined]


def _resolve(future: asyncio.Future[Any], frame: FrameType) -> None:
    if not future.done():
        future.set_result(frame)
