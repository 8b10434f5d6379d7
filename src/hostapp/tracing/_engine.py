"""``TracingEngine``: processors in, events out, through the cheapest backend available."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from hostapp.tracing._runtime import ProcessorRuntime, default_library_paths, logger, make_dispatch
from hostapp.tracing._select import Selection

if TYPE_CHECKING:
    from hostapp.events import Event, EventBus
    from hostapp.types import Contribution, TraceProcessor

__all__ = ["BACKENDS", "TracingEngine", "available_backends", "superseded"]

#: The values of ``backend`` (``tracing.backend`` in the configuration).
BACKENDS: Final = ("auto", "monitoring", "trampoline", "profile")


def available_backends() -> tuple[str, ...]:
    """The backends this interpreter can run, best first."""
    if sys.version_info >= (3, 12):
        return ("monitoring", "profile")
    return ("trampoline", "profile")


def _fragment_key(fragment: str) -> str:
    key = fragment.replace("\\", "/").strip("/")
    return key[:-3] if key.endswith(".py") else key


def _same_calls(a: TraceProcessor, b: TraceProcessor) -> bool:
    """Whether ``a`` and ``b`` select the same calls into the same event type: one's path
    fragment contains the other's (``requests/sessions`` and ``/requests/sessions.py``), their
    function names meet (or one selects every function of the file), and the call's event
    type is the same."""
    if a.call_type != b.call_type:
        return False
    if a.co_names and b.co_names and not set(a.co_names) & set(b.co_names):
        return False
    fa, fb = _fragment_key(a.path_fragment), _fragment_key(b.path_fragment)
    return fa in fb or fb in fa


def superseded(
    processors: Sequence[Contribution[TraceProcessor]], builtin: Callable[[Contribution[Any]], bool],
) -> dict[str, str]:
    """``{processor name: name of the built-in processor that records its calls instead}``.

    A processor that is not built in is *superseded* when a built-in one selects the same
    calls into the same event type (:func:`_same_calls`): Kolo's ``requests`` processor
    under ``tracing.kolo_compat`` and hostapp's, say, which would otherwise record every
    call twice. The superseded processor does not run; ``hostapp plugins`` and the run
    summary say which one took its place.

    Args:
        processors: the contributed processors.
        builtin: tells a built-in contribution from another.
    """
    builtins = [c for c in processors if builtin(c)]
    out: dict[str, str] = {}
    for contribution in processors:
        if builtin(contribution):
            continue
        for other in builtins:
            if _same_calls(contribution.spec, other.spec):
                out[contribution.spec.name] = other.spec.name
                break
    return out


def is_builtin(contribution: Contribution[Any]) -> bool:
    """Whether a contribution comes from hostapp's own distribution (its built-in plugins)."""
    return (contribution.distribution or "").lower() == "hostapp"


class TracingEngine:
    """Runs trace processors over a program: selects code, installs a backend, emits events.

    Args:
        processors: the processors, each tagged with its plugin
            (``PluginManager.collect("hostapp_trace_processors")`` returns exactly this).
        emit: called with every :class:`~hostapp.events.Event`, from the thread that made
            the traced call (``EventBus.emit``, or ``list.append`` in a test). It must be
            thread-safe and should be quick.
        config: passed to each processor's ``build_context(config)`` once, at ``start()``.
        run_id: stamped on every event.
        backend: ``"auto"`` (``monitoring`` on 3.12+, ``trampoline`` on 3.11),
            ``"monitoring"``, ``"trampoline"`` or ``"profile"`` (see
            :mod:`hostapp.tracing`).
        app_paths: the program's own directories (``tracing.app_paths``, and the script's
            directory or the ``-m`` module's package under ``hostapp run``): code there is
            the program's even when it is installed among the libraries (``-m pip``), so
            the call site is the program's line, not a library's or the launcher's.
        library_paths: the directories whose code is library code when looking for the
            user-code call site; default :func:`default_library_paths` (the standard
            library, site-packages, hostapp).
        max_errors: a processor whose ``call``/``process`` raises this many times in a row
            is switched off for the run.
        bus: the :class:`~hostapp.events.EventBus` ``emit`` belongs to. With it, the
            events of processors without ``call``/``process`` are handed to the bus as raw
            items and built on the sinks' threads (the fast path: see
            :meth:`hostapp.events.EventBus.raw_emitter`), and the processors' ``redact``
            names are added to its redaction policy.
        supersede: let a built-in processor take the calls of another processor that
            selects the same ones (:func:`superseded`; ``tracing.supersede``). ``False``:
            both record.
        builtin: tells a built-in contribution from another (default: it comes from the
            ``hostapp`` distribution).

    Raises:
        ValueError: an unknown or unavailable ``backend``, ``max_errors`` < 1, or two
            processors with the same name.

    Attributes:
        backend: the backend in use (after ``start()``; before it, the one that will be
            tried first).
    """

    def __init__(
        self,
        processors: Sequence[Contribution[TraceProcessor]],
        emit: Callable[[Event], None],
        *,
        config: Any = None,
        run_id: str | None = None,
        backend: str = "auto",
        library_paths: Sequence[str] | None = None,
        app_paths: Sequence[str] = (),
        max_errors: int = 10,
        bus: EventBus | None = None,
        supersede: bool = True,
        builtin: Callable[[Contribution[Any]], bool] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"tracing.backend: expected one of {', '.join(BACKENDS)}; got {backend!r}")
        available = available_backends()
        if backend != "auto" and backend not in available:
            raise ValueError(
                f"tracing.backend: {backend!r} is not available on Python "
                f"{sys.version_info.major}.{sys.version_info.minor}; choose one of "
                f"{', '.join(('auto', *available))}"
            )
        if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 1:
            raise ValueError(f"tracing.max_errors: expected an integer >= 1, got {max_errors!r}")
        seen: dict[str, Contribution[TraceProcessor]] = {}
        for contribution in processors:
            other = seen.get(contribution.spec.name)
            if other is not None:
                raise ValueError(
                    f"two trace processors are named {contribution.spec.name!r}: from "
                    f"{other.describe()} and {contribution.describe()}; names must be unique"
                )
            seen[contribution.spec.name] = contribution
        self._contributions = tuple(processors)
        self._emit = emit
        self._config = config
        self._run_id = run_id
        self._requested = backend
        self._library_paths = list(default_library_paths() if library_paths is None else library_paths)
        self._app_paths = list(app_paths)
        self._max_errors = max_errors
        self._bus = bus
        self._runtimes: tuple[ProcessorRuntime, ...] = tuple(
            ProcessorRuntime(c, i) for i, c in enumerate(self._contributions)
        )
        #: processor name -> the built-in processor recording its calls instead
        self.superseded: dict[str, str] = (
            superseded(self._contributions, builtin or is_builtin) if supersede else {}
        )
        for rt in self._runtimes:
            by = self.superseded.get(rt.name)
            if by is not None:
                rt.superseded_by = by
                rt.off = True
        self._backend: Any = None
        self._selection: Selection | None = None
        self._lock = threading.Lock()
        self._state = "new"
        self.backend: str = available[0] if backend == "auto" else backend

    def __repr__(self) -> str:
        return f"<TracingEngine {self.backend} {self._state}, {len(self._runtimes)} processor(s)>"

    def __enter__(self) -> TracingEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def instrumented(self) -> int:
        """How many functions (trampoline) or code objects (monitoring, profile) are selected now."""
        return self._backend.instrumented if self._backend is not None else 0

    @property
    def tool_id(self) -> int | None:
        """The ``sys.monitoring`` tool id in use (``monitoring`` backend), else ``None``."""
        return getattr(self._backend, "tool_id", None)

    def start(self) -> None:
        """Build every processor's context and install the backend.

        Raises:
            RuntimeError: already started, or the backend cannot be installed (for
                example the ``profile`` backend while another engine uses it).
        """
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"TracingEngine.start(): the engine is {self._state} (start it once)")
            bus = self._bus
            emitters: dict[str, Callable[[tuple[Any, ...]], None]] = {}  # event type -> raw emitter
            for rt in self._runtimes:
                if rt.superseded_by is not None:
                    continue
                rt.build(self._config)
                if bus is None:
                    continue
                if rt.spec.redact:
                    bus.add_redaction(rt.spec.redact)
                for t in rt.types.values():
                    if t not in emitters:
                        emitters[t] = bus.raw_emitter(t)
                rt.raw_events = {event: emitters[t] for event, t in rt.types.items()}
                if rt.simple:
                    rt.raw_call = rt.raw_events["call"]
                    rt.raw_return = rt.raw_events["return"]
            selection = Selection([rt for rt in self._runtimes if rt.missing is None and not rt.off])
            dispatch = make_dispatch(
                self._emit, run_id=self._run_id, library_paths=self._library_paths, app_paths=self._app_paths,
                max_errors=self._max_errors, runtimes=self._runtimes,
                raw_builder=bus.raw_builder if bus is not None else None,
            )
            self._selection = selection
            self._backend = self._install(selection, dispatch)
            self.backend = self._backend.name
            self._state = "running"
            logger.debug(
                "tracing: %d processor(s) on the %s backend, %d target(s) instrumented",
                len(self._runtimes), self.backend, self._backend.instrumented,
            )

    def _install(self, selection: Selection, dispatch: Any) -> Any:
        choice = self._requested
        if choice == "auto":
            choice = available_backends()[0]
        if choice == "monitoring":
            from hostapp.tracing._monitoring import MonitoringBackend, NoFreeToolId

            backend: Any = MonitoringBackend(selection, dispatch)
            try:
                backend.start()
            except NoFreeToolId as exc:
                if self._requested != "auto":
                    raise RuntimeError(f"tracing.backend = 'monitoring': {exc}") from exc
                logger.warning("tracing: %s; falling back to the 'profile' backend", exc)
                choice = "profile"
            else:
                return backend
        if choice == "trampoline":
            from hostapp.tracing._trampoline import TrampolineBackend

            backend = TrampolineBackend(selection, dispatch)
        else:
            from hostapp.tracing._profile import ProfileBackend

            backend = ProfileBackend(selection, dispatch)
        try:
            backend.start()
        except BaseException:
            backend.stop()
            raise
        return backend

    def selects_path(self, path: str) -> bool:
        """Whether some processor's ``path_fragment`` is in ``path`` (a file whose code
        may be selected). ``False`` before ``start()``."""
        selection = getattr(self, "_selection", None)
        return selection is not None and selection.path_matches(path)

    def add_module(self, module: Any) -> None:
        """Instrument the selected functions of ``module`` now.

        Modules imported after ``start()`` are found by the import hook; this is for code
        that does not come through the import system - ``hostapp run`` calls it for the
        program's ``__main__`` module after each top-level ``def``/``class``. Does nothing
        on the ``profile`` backend (it sees every call anyway) or when not running.
        """
        backend = self._backend
        if self._state == "running" and backend is not None and hasattr(backend, "add_module"):
            with self._lock:
                backend.add_module(module)

    def stop(self) -> None:
        """Uninstall completely: no code stays instrumented, tool ids and profile functions
        are given back. Calls in flight finish normally and emit nothing more. Idempotent."""
        with self._lock:
            if self._state != "running":
                self._state = "stopped" if self._state != "new" else self._state
                return
            try:
                self._backend.stop()
            finally:
                self._state = "stopped"

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per processor name: ``calls`` (matched calls seen), ``events`` (emitted),
        ``errors`` (in ``build_context``/``call``/``process``/``emit``), ``disabled``
        (switched off for the run), ``last_error`` (``"where: Type: message"``),
        ``applicable`` and ``not_applicable`` (why not: a module of ``requires`` is not
        installed) and ``plugin``."""
        return {rt.name: rt.stats() for rt in self._runtimes}
