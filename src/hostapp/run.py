"""``hostapp run``: run a program under a started host, exactly as ``python`` would; and
``hostapp.trace()``, the same for a block of code.

``run_program()`` does for ``hostapp run [OPTIONS] SCRIPT [ARGS]...`` and ``hostapp run
[OPTIONS] -m MODULE [ARGS]...`` what ``python SCRIPT [ARGS]`` / ``python -m MODULE [ARGS]``
do - it is modelled on CPython's ``pymain_run_file``/``runpy._run_module_as_main`` and on
coverage.py's runner:

* ``sys.argv`` is ``[SCRIPT, *ARGS]`` (``-m``: the module's file, as ``runpy`` sets it);
* ``sys.path[0]`` is the script's directory (``-m``: the working directory);
* the code runs in a new ``__main__`` module (``__file__`` absolute as since Python 3.9,
  ``__spec__`` ``None`` for a script, the module's spec with ``-m``) that stays in
  ``sys.modules`` after the run, as it does under ``python``;
* stdin, stdout and stderr are the process's own, untouched; hostapp's own log records
  are kept off them while the program runs (they go into the summary);
* an uncaught exception prints the same traceback (``sys.excepthook``, hostapp's frames
  taken off) and exits 1; ``sys.exit(N)`` and ``SystemExit`` end the process with the same
  status and message; ``KeyboardInterrupt`` ends it by ``SIGINT``, as ``python`` does;
* ``SIGTERM`` and ``SIGHUP`` (unless the program handles them itself) end the program as
  under ``python`` — at once, none of its code runs after — but the host stops first:
  the sinks drain, the run is recorded as ended by that signal (``exit_status`` ``-N``,
  summary ``signal``), the summary is written, then the process ends by the same signal;
* a Ctrl-C while the sinks drain at the end cannot change the exit status or lose the run
  record: the first one is noted, a second one skips the rest of the flush (what was not
  delivered is kept as dead letters, counted; the summary says ``flush_skipped``).

When the program's main code ends, non-daemon threads it started are waited for (as the
interpreter would), then tracing stops, the sinks drain, the run is recorded, and a
one-screen summary is written to stderr (unless ``quiet``). The program's ``atexit``
handlers run after that, untraced.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from hostapp.errors import HostappError

if TYPE_CHECKING:
    from hostapp.config import Config
    from hostapp.host import Host
    from hostapp.types import TraceProcessor

__all__ = ["RunTarget", "format_summary", "prepare", "run_program", "run_summary", "trace"]


class RunTarget:
    """What ``hostapp run`` executes: compiled code and the ``__main__`` module it runs in.

    Made by :func:`prepare`.

    Attributes:
        code: the compiled code object.
        argv: the program's ``sys.argv``.
        path0: the program's ``sys.path[0]``.
        main: the ``__main__`` module the code runs in.
        source: the source text (``None`` when only compiled code is available).
        filename: the file name the code is compiled with.
        app_paths: the program's own directories, for call sites: the script's directory,
            or the top-level package of the ``-m`` module (``site-packages/pip`` for
            ``-m pip``).
    """

    def __init__(
        self, code: types.CodeType, argv: list[str], path0: str, main: types.ModuleType,
        source: bytes | str | None = None, filename: str | None = None,
        app_paths: Sequence[str] = (),
    ) -> None:
        self.code = code
        self.argv = argv
        self.path0 = path0
        self.main = main
        self.source = source
        self.filename = filename or code.co_filename
        self.app_paths = list(app_paths)


# The program being run and the engine tracing it, for the calls compile_for_tracing() adds.
_main_hook: tuple[types.ModuleType, Any] | None = None


def _main_defined() -> None:
    """Called by the ``__main__`` code after each top-level ``def``/``class`` (see
    :func:`compile_for_tracing`): the new functions are instrumented before they can run."""
    hook = _main_hook
    if hook is not None:
        with contextlib.suppress(Exception):
            hook[1].add_module(hook[0])


def compile_for_tracing(source: bytes | str, filename: str) -> types.CodeType:
    """Compile a ``__main__`` script so that its functions can be traced as they are defined.

    The ``__main__`` module does not come through the import system, so the tracing
    engine's import hook never sees it, and its functions are created while it runs. After
    every ``def`` and ``class`` statement at module level (also inside module-level
    ``if``/``for``/``while``/``try``/``with`` blocks) a call to hostapp is added, which
    instruments the selected functions at once. Nothing else changes: every other node keeps
    its position, so tracebacks and line numbers are those of the file. Only used when a
    processor's ``path_fragment`` is in the script's path.

    Raises:
        SyntaxError: as ``compile()``.
    """
    import ast

    tree = ast.parse(source, filename, "exec")

    def hook_after(node: ast.stmt) -> ast.stmt:
        call = ast.parse("__import__('hostapp.run').run._main_defined()", mode="exec").body[0]
        for sub in ast.walk(call):
            sub.lineno = sub.end_lineno = node.end_lineno or node.lineno  # type: ignore[attr-defined]
            sub.col_offset = sub.end_col_offset = 0  # type: ignore[attr-defined]
        return call

    def visit(body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for node in body:
            for field in ("body", "orelse", "finalbody"):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                        setattr(node, field, visit(inner))
            for handler in getattr(node, "handlers", []) or []:
                handler.body = visit(handler.body)
            for case in getattr(node, "cases", []) or []:
                case.body = visit(case.body)
            out.append(node)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.append(hook_after(node))
        return out

    tree.body = visit(tree.body)
    return compile(tree, filename, "exec", dont_inherit=True)


def prepare(target: str, args: Sequence[str], *, module: bool = False) -> RunTarget:
    """Find and compile a script or module the way ``python`` would, without running it.

    Args:
        target: the script path, or the module name with ``module=True``.
        args: the program's arguments.
        module: ``target`` is a module name (``python -m``); a package runs its
            ``__main__`` submodule. ``sys.path[0]`` becomes the working directory first,
            as under ``python -m``, so that the module is found there.

    Raises:
        FileNotFoundError / OSError: the script cannot be read ("can't open file").
        ImportError: the module cannot be found or has no code.
        SyntaxError: the code does not compile (print it with ``sys.excepthook``).
    """
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if not module:
        path = os.path.abspath(target)
        if os.path.isdir(path) or not os.path.isfile(path) and os.path.exists(path):
            raise OSError(f"can't open file {path!r}: not a Python source file")
        with open(path, "rb") as f:
            source = f.read()
        code = compile(source, path, "exec", dont_inherit=True)
        from importlib.machinery import SourceFileLoader

        main.__file__ = path
        main.__loader__ = SourceFileLoader("__main__", path)
        main.__spec__ = None
        main.__package__ = None
        main.__cached__ = None  # type: ignore[attr-defined]
        return RunTarget(code, [target, *args], os.path.dirname(path), main, source, path, [os.path.dirname(path)])

    import importlib.util

    cwd = os.getcwd()
    if sys.path:  # as python -m: the module is looked up with the working directory first
        sys.path[0] = cwd
    else:
        sys.path.append(cwd)
    spec = importlib.util.find_spec(target)
    if spec is None:
        raise ImportError(f"No module named {target}")
    if spec.submodule_search_locations is not None:  # a package: its __main__
        if target == "__main__" or target.endswith(".__main__"):
            raise ImportError(f"Cannot use package as __main__ module")
        spec = importlib.util.find_spec(f"{target}.__main__")
        if spec is None:
            raise ImportError(f"No module named {target}.__main__; '{target}' is a package and cannot be directly executed")
    loader = spec.loader
    code = loader.get_code(spec.name) if loader is not None and hasattr(loader, "get_code") else None
    if code is None:
        raise ImportError(f"No code object available for {target}")
    main.__file__ = spec.origin
    main.__loader__ = loader
    main.__spec__ = spec
    main.__package__ = spec.parent
    main.__cached__ = spec.cached  # type: ignore[attr-defined]
    source = None
    with contextlib.suppress(Exception):
        source = loader.get_source(spec.name)  # type: ignore[union-attr]
    top = importlib.util.find_spec(target.partition(".")[0])
    package = list(top.submodule_search_locations or ()) if top is not None else []
    if not package and spec.origin:
        package = [os.path.dirname(spec.origin)]
    return RunTarget(code, [spec.origin or target, *args], cwd, main, source, code.co_filename, package)


class _LogKeeper(logging.Handler):
    """Keeps hostapp's log records of WARNING and above for the summary."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 1000:
            self.records.append(record)


@contextlib.contextmanager
def _hostapp_logs_kept() -> Iterator[_LogKeeper]:
    """Route the ``hostapp`` logger to a keeper, not to the program's stderr or its logging."""
    logger = logging.getLogger("hostapp")
    keeper = _LogKeeper()
    old_handlers, old_propagate = logger.handlers[:], logger.propagate
    logger.handlers[:] = [keeper]
    logger.propagate = False
    try:
        yield keeper
    finally:
        logger.handlers[:] = old_handlers
        logger.propagate = old_propagate


def _strip_own_frames(exc: BaseException) -> Any:
    """The exception's traceback without this module's frames (what python would print)."""
    tb = exc.__traceback__
    here = __file__
    while tb is not None and tb.tb_frame.f_code.co_filename == here:
        tb = tb.tb_next
    return tb


def _exit_status(exc: SystemExit) -> int:
    """The status ``python`` exits with for ``SystemExit(code)``."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF if code >= 0 else code & 0xFF
    if isinstance(code, bool):
        return int(code)
    return 1


def _wait_for_threads() -> None:
    """Wait for the program's non-daemon threads, as the interpreter does at exit.

    Thread-pool workers (``concurrent.futures``, asyncio's default executor) are not
    waited for: the interpreter stops those through ``atexit`` hooks that run later.
    """
    me = threading.current_thread()
    while True:
        pending = [
            t for t in threading.enumerate()
            if t is not me and not t.daemon and t.is_alive() and not _is_pool_worker(t)
        ]
        if not pending:
            return
        for t in pending:
            t.join()


def _is_pool_worker(thread: threading.Thread) -> bool:
    target = getattr(thread, "_target", None)
    return getattr(target, "__module__", None) == "concurrent.futures.thread"


def run_program(
    target: RunTarget,
    *,
    config: Config,
    command: Sequence[str],
    quiet: bool = False,
    json_summary: str | None = None,
    summary_stream: Any = None,
    see: str = "hostapp events --last",
) -> NoReturn:
    """Run ``target`` under a started host with tracing on, then exit as ``python`` would.

    Args:
        target: from :func:`prepare`.
        config: the configuration (``tracing.*``, ``events.*``, ``store.path``...).
        command: the command line recorded on the run.
        quiet: no summary on stderr.
        json_summary: also write the summary (:func:`run_summary`) to this file.
        summary_stream: where the summary goes (default ``sys.stderr``).
        see: the command the summary's last line offers for the run's events (the CLI
            repeats the ``--config`` and ``--db`` it was given, so it reads the same store).

    Raises:
        SystemExit: always, with the program's exit status (``KeyboardInterrupt`` ends the
            process by ``SIGINT`` instead, after the run is recorded).
        ConfigError, HostappError: the host cannot start (nothing of the program ran).
    """
    from hostapp.host import Host

    _refuse_program_in_plugin_folder(target, config)
    host = Host(config, command=list(command), tracing=True)
    host.app_paths = list(target.app_paths)
    started = time.monotonic()
    # the program's sys.argv and sys.path first: plugins and Kolo processors named in
    # the configuration are found next to the program, as they would be inside it
    sys.argv[:] = target.argv
    if sys.path:
        sys.path[0] = target.path0
    else:
        sys.path.append(target.path0)
    global _main_hook
    ending = _Ending(host)
    with _hostapp_logs_kept() as keeper:

        def report() -> None:
            summary = run_summary(host, time.monotonic() - started, keeper.records)
            summary["see"] = see
            if json_summary:
                with open(json_summary, "w", encoding="utf-8") as f:
                    json.dump(summary, f, indent=2, default=repr)
            if not quiet:
                stream = summary_stream if summary_stream is not None else sys.stderr
                with contextlib.suppress(Exception):
                    stream.write(format_summary(summary))
                    stream.flush()

        ending.report = report
        host.start()
        ending.install()
        code = target.code
        tracer = host.tracer
        if tracer is not None and target.source is not None and tracer.selects_path(target.filename):
            code = compile_for_tracing(target.source, target.filename)
            _main_hook = (target.main, tracer)
        sys.modules["__main__"] = target.main
        status = 0
        exit_exc: SystemExit | None = None
        interrupted = False
        try:
            exec(code, target.main.__dict__)
        except SystemExit as exc:
            exit_exc = exc
            status = _exit_status(exc)
        except KeyboardInterrupt as exc:
            interrupted = True
            status = 130
            _print_exception(exc)
        except BaseException as exc:  # noqa: BLE001 - the program's uncaught exception
            status = 1
            _print_exception(exc)
        try:
            _wait_for_threads()
        except KeyboardInterrupt:
            interrupted, status = True, 130
        host.exit_status = status
        _main_hook = None
        host.stop_tracing()
        ending.stop()
        ending.uninstall()
    report()
    if ending.signum is not None:  # SIGTERM/SIGHUP during the exit flush: end by it, as python would have
        _die_by_signal(ending.signum)
    if interrupted:
        _die_by_sigint()
    if exit_exc is not None:
        exit_exc.__traceback__ = None
        raise exit_exc
    raise SystemExit(status)


def _refuse_program_in_plugin_folder(target: RunTarget, config: Config) -> None:
    """A program whose file is in a ``plugins.paths`` folder would be imported as a plugin
    before it runs (its body would run twice).

    Raises:
        ConfigError: naming ``plugins.paths`` and the program.
    """
    folders = config["plugins.paths"]
    if not folders or not target.filename or not os.path.isabs(target.filename):
        return
    here = os.path.dirname(os.path.realpath(target.filename))
    for folder in folders:
        if os.path.realpath(folder) == here:
            from hostapp.errors import ConfigError

            raise ConfigError(
                config.origins.get("plugins.paths") or config.source,
                f"the program {target.filename} is in plugin folder {folder}: it would be imported "
                "as a plugin and run twice; keep plugins in a folder of their own",
                key="plugins.paths",
            )


def _print_exception(exc: BaseException) -> None:
    exc.__traceback__ = _strip_own_frames(exc)
    try:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    except Exception:  # a broken excepthook: python falls back to the default one
        sys.__excepthook__(type(exc), exc, exc.__traceback__)


def _die_by_sigint() -> NoReturn:
    """End the process as ``python`` does after an uncaught ``KeyboardInterrupt``."""
    _die_by_signal(getattr(signal, "SIGINT", 2))


def _die_by_signal(signum: int) -> NoReturn:
    """End the process by signal ``signum`` with its default action (as ``python`` ends when
    it gets one it does not handle); exit status ``128 + signum`` where that cannot be."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            time.sleep(1)
    raise SystemExit(128 + signum)


#: The signals whose default action ends a process, which ``hostapp run`` turns into an
#: orderly stop first (when the program does not handle them itself).
_ENDING_SIGNALS: tuple[str, ...] = ("SIGTERM", "SIGHUP")


class _Ending:
    """How ``hostapp run`` ends: the host's stop, safe from Ctrl-C, and ``SIGTERM``/``SIGHUP``.

    :meth:`install` sets a handler for each of :data:`_ENDING_SIGNALS` whose handler is
    still the default. The handler (it runs in the main thread, in place of the program's
    next bytecode) records the signal on the host, stops it (:meth:`stop`), writes the
    summary (:attr:`report`) and ends the process by the same signal: the program's code
    does not go on, as under ``python``. :meth:`stop` runs ``host.stop()`` on a thread of its
    own and waits for it in the main thread, where a first Ctrl-C is noted and a second one
    calls ``host.hurry()``; a signal that arrives meanwhile is kept in :attr:`signum`.
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        self.report: Any = None
        self.signum: int | None = None
        self.presses = 0
        self._stopping = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in _ENDING_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous)
        self._previous = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        host = self.host
        host.ended_by = signal.Signals(signum).name
        if self._stopping:  # the program had ended; end by the signal once the stop is done
            self.signum = signum
            return
        host.exit_status = -signum
        self.stop()
        self.uninstall()
        if self.report is not None:
            self.report()
        _die_by_signal(signum)

    def stop(self) -> None:
        """``host.stop()``, waited for (at most ``host.shutdown_timeout`` and 5 s more)."""
        self._stopping = True
        host = self.host
        done = threading.Event()

        def stop() -> None:
            try:
                host.stop()
            finally:
                done.set()

        thread = threading.Thread(target=stop, name="hostapp-stop", daemon=True)
        thread.hostapp_untraced = True  # type: ignore[attr-defined]  # the tracer skips it
        thread.start()
        deadline = time.monotonic() + host.shutdown_timeout + 5.0
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                logging.getLogger("hostapp").warning(
                    "the host did not stop within host.shutdown_timeout (%s s); exiting without it",
                    host.shutdown_timeout,
                )
                return
            try:
                done.wait(left)
            except KeyboardInterrupt:
                self.presses += 1
                if self.presses == 1:
                    with contextlib.suppress(Exception):
                        sys.stderr.write("hostapp: saving the run's events; Ctrl-C again to skip\n")
                        sys.stderr.flush()
                else:
                    host.hurry()


# -- the summary ---------------------------------------------------------------------------


def run_summary(host: Host, seconds: float, records: Sequence[logging.LogRecord] = ()) -> dict[str, Any]:
    """The summary of a finished run, as a JSON-ready dict.

    Keys: ``run_id``, ``exit_status``, ``duration_s``, ``store`` (the SQLite file, or
    ``None``), ``events`` (count per type, from the store: the run's events that reached
    the ``sqlite`` sink), ``http`` (the slowest HTTP calls, at most 5: ``method``,
    ``url``, ``status_code``, ``duration_ns``, ``library``, ``call_site``), ``processors``
    (per processor: ``calls``, ``events``, ``errors``, ``disabled``, ``last_error``,
    ``applicable``, ``not_applicable``, ``plugin``), ``sinks`` (the bus counters per
    sink), ``tasks`` (per background task: ``state``, ``runs``, ``failures``,
    ``restarts``, ``skipped``, ``last_error``), ``failed_plugins`` (``{name: "stage: error"}``),
    ``not_installed`` (``{plugin: module}``: plugins not imported because the library they
    trace is not installed, ``hostapp.libraries``), ``signal`` (the signal that ended the
    run, ``"SIGTERM"``, or ``None``), ``flush_skipped``
    (a second Ctrl-C cut the exit flush short) and ``warnings`` (hostapp's log messages of
    the run, at most 20).
    """
    from hostapp.lifecycle import PluginState

    events: dict[str, int] = {}
    slowest: list[dict[str, Any]] = []
    store_path = None
    if host.store is not None and host.run_id is not None:
        store_path = str(host.store.path)
        events, slowest = _stored_counts(store_path, host.run_id)
    return {
        "run_id": host.run_id,
        "exit_status": host.exit_status,
        "duration_s": round(seconds, 3),
        "store": store_path,
        "events": events,
        "http": slowest,
        "processors": host.tracing_stats,
        "sinks": host.stats,
        "tasks": {name: record.summary() for name, record in host.tasks.items()},
        "failed_plugins": {
            name: f"{info.stage}: {info.error}"
            for name, info in host.pm.infos.items()
            if info.state is PluginState.FAILED
        },
        "signal": host.ended_by,
        "not_installed": {
            name: info.rule.split("'")[1]
            for name, info in host.pm.infos.items()
            if info.state is PluginState.NOT_APPLICABLE and (info.rule or "").startswith("library '")
        },
        "flush_skipped": host.hurried,
        "warnings": [record.getMessage().splitlines()[0] for record in records[:20]],
    }


def _stored_counts(path: str, run_id: str) -> tuple[dict[str, int], list[dict[str, Any]]]:
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return {}, []
    try:
        counts = dict(con.execute(
            "SELECT type, count(*) FROM events WHERE run_id = ? GROUP BY type ORDER BY count(*) DESC, type",
            (run_id,),
        ).fetchall())
        rows = con.execute(
            "SELECT method, url, status, duration_ns, subtype, site, json_extract(data, '$.error.type') "
            "FROM events WHERE run_id = ? AND type = 'outbound_http_request' AND duration_ns IS NOT NULL "
            "ORDER BY duration_ns DESC LIMIT 5",
            (run_id,),
        ).fetchall()
    except sqlite3.Error:
        return {}, []
    finally:
        con.close()
    slowest = []
    for method, url, status, duration_ns, library, site, error in rows:
        file, _, line = (site or "").rpartition(":")
        slowest.append({
            "method": method, "url": url, "status_code": status, "duration_ns": duration_ns,
            "library": library, "call_site": {"file": file, "line": int(line)} if file else None,
            "exception_type": error,
        })
    return counts, slowest


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as the lines ``hostapp run`` writes to stderr (one screen at most)."""
    lines = []
    status = summary["exit_status"]
    ended = f"ended by {summary['signal']}" if summary.get("signal") else f"exit status {status}"
    head = f"hostapp run {summary['run_id']}: {ended}, {summary['duration_s']:.2f} s"
    lines.append(f"── {head} " + "─" * max(0, 78 - len(head)))
    events = summary["events"]
    total = sum(events.values())
    if summary["store"] is None:
        lines.append("events: not stored (no store)")
    else:
        shown = ", ".join(f"{t} {n}" for t, n in list(events.items())[:6])
        more = f", +{len(events) - 6} more types" if len(events) > 6 else ""
        lines.append(f"events: {total}" + (f" ({shown}{more})" if shown else ""))
    if summary["http"]:
        lines.append("slowest HTTP calls:")
        for call in summary["http"]:
            ms = (call.get("duration_ns") or 0) / 1e6
            status_s = call.get("status_code") or call.get("exception_type") or "-"
            site = call.get("call_site") or {}
            where = f"{os.path.basename(site['file'])}:{site['line']}" if site.get("file") else ""
            url = str(call.get("url") or "")
            if len(url) > 60:
                url = url[:57] + "..."
            lines.append(f"  {ms:9.1f} ms  {call.get('method') or '':6} {url}  {status_s}  {call.get('library') or ''}  {where}".rstrip())
    problems = []
    quiet_ok = []
    for name, stats in summary["processors"].items():
        if not stats.get("applicable", True):
            quiet_ok.append(name)
        elif stats.get("errors") or stats.get("disabled"):
            state = "switched off" if stats.get("disabled") else "still on"
            problems.append(
                f"  processor {name!r} (plugin {stats.get('plugin')!r}): {stats['errors']} error(s), "
                f"{state}; last: {stats.get('last_error')}"
            )
    superseded = {n: s["superseded_by"] for n, s in summary["processors"].items() if s.get("superseded_by")}
    active = [
        n for n, s in summary["processors"].items()
        if s.get("applicable", True) and not s.get("disabled") and n not in superseded
    ]
    line = f"processors: {len(active)} on"
    if superseded:
        line += f", {len(superseded)} superseded by built-in ones ({', '.join(f'{n} by {b}' for n, b in superseded.items())})"
    off = [n for n, s in summary["processors"].items() if s.get("disabled")]
    if off:
        line += f", {len(off)} switched off ({', '.join(off)})"
    quiet_ok += [f"{name} ({module})" for name, module in summary.get("not_installed", {}).items()]
    if quiet_ok:
        line += f"; not applicable (library not installed): {', '.join(quiet_ok)}"
    lines.append(line)
    if problems:
        lines.append("processor errors:")
        lines.extend(problems)
    for name, error in summary["failed_plugins"].items():
        lines.append(f"plugin {name!r} failed at {error}")
    for name, task in summary.get("tasks", {}).items():
        if task["failures"] or task["state"] in ("failed", "stuck"):
            lines.append(
                f"task {name!r} {task['state']}: {task['runs']} run(s), {task['failures']} failure(s), "
                f"{task['restarts']} restart(s); last: {task['last_error']}"
            )
    for name, stats in summary["sinks"].items():
        kept = stats.get("dead_lettered", 0) or 0
        dropped = stats.get("dropped", 0) or 0
        if kept or dropped:
            lines.append(f"sink {name!r}: {kept} event(s) kept as dead letters, {dropped} dropped")
        if stats.get("state") == "stuck":
            lines.append(f"sink {name!r} is stuck: {stats.get('error')}")
    if summary.get("flush_skipped"):
        lines.append("the exit flush was skipped (a second Ctrl-C): what was not delivered is kept as dead letters")
    for warning in summary["warnings"][:5]:
        lines.append(f"warning: {warning}")
    if summary["store"] is not None:
        lines.append(f"stored in {summary['store']}; see them with: {summary.get('see') or 'hostapp events --last'}")
    return "\n".join(lines) + "\n"


# -- hostapp.trace() -------------------------------------------------------------------------


@contextlib.contextmanager
def trace(
    config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    processors: Sequence[TraceProcessor] = (),
    plugins: Sequence[object | tuple[str, object]] = (),
    store: bool = True,
    command: str | Sequence[str] | None = None,
) -> Iterator[Host]:
    """Trace a block of code: a started :class:`~hostapp.Host` with tracing on.

    ``hostapp run`` for a block instead of a program: the plugins' trace processors (the
    built-in HTTP and job processors among them) plus ``processors`` select what is
    traced; the events go to the configured sinks (by default the SQLite store, where
    ``hostapp events --last`` shows them). The run's exit status is 0, or 1 when the block
    raises (the exception is not swallowed).

    Example::

        import hostapp, requests

        with hostapp.trace() as host:
            requests.get("https://example.org")
        print(host.run_id, host.tracing_stats["requests"]["events"])

    Args:
        config: as for :class:`~hostapp.Host` (``None``: ``hostapp.toml`` / environment).
        processors: extra :class:`~hostapp.TraceProcessor` objects for this block only
            (contributed by an explicit plugin named ``trace``).
        plugins: more plugins registered explicitly.
        store: open the SQLite store (``False``: events reach only the other sinks).
        command: recorded on the run (default ``sys.argv``).

    Yields:
        the started host (``host.run_id``; after the block ``host.tracing_stats`` and
        ``host.stats``).

    Raises:
        HostappError, ConfigError, MissingHookError: the host cannot start.
    """
    from hostapp._markers import hookimpl
    from hostapp.host import Host

    explicit = list(plugins)
    if processors:
        extra = list(processors)

        class _BlockProcessors:
            @hookimpl
            def hostapp_trace_processors(self) -> list[Any]:
                return extra

        explicit.append(("trace", _BlockProcessors()))
    host = Host(config, explicit, store=store, command=command, tracing=True)
    if host.state != "new":  # pragma: no cover - a fresh host
        raise HostappError("trace(): the host was already started")
    host.start()
    try:
        yield host
    except BaseException:
        host.exit_status = 1
        raise
    else:
        host.exit_status = 0
    finally:
        host.stop()
