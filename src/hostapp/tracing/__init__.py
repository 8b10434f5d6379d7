"""``hostapp.tracing``: the tracing engine behind trace processors.

:class:`TracingEngine` takes the trace processors plugins contribute
(``hostapp_trace_processors()``), builds one selection index over all of them (a code
object is selected by its ``co_name`` and by a ``path_fragment`` being in its
``co_filename``), instruments only the selected code with the cheapest backend the
interpreter has, and turns every selected call into events::

    from hostapp.tracing import TracingEngine

    engine = TracingEngine(pm.collect("hostapp_trace_processors"), bus.emit, run_id=run.id)
    engine.start()
    try:
        run_the_program()
    finally:
        engine.stop()
    engine.stats()  # {"urllib": {"calls": 20, "events": 40, "errors": 0, ...}, ...}

Backends (``backend=`` / ``tracing.backend``):

============== ======== ==================================================================
backend        Python   how
============== ======== ==================================================================
``monitoring`` 3.12+    ``sys.monitoring`` local events on the selected code objects only
                        (default on 3.12+)
``trampoline`` 3.11     a trampoline swapped into each selected function's ``__code__``
                        (default on 3.11)
``profile``    any      ``sys.setprofile`` on every thread; the compatibility fallback,
                        3-5x slower on call-heavy code
============== ======== ==================================================================

What is the same on every backend: every thread is traced, including threads already
running at ``start()``; a generator or coroutine call is one ``call`` and one ``return``
event, not one per resume; a call that raises gives its return-side event
(``unwind``, typed ``unwind_type`` or else ``return_type``) with ``exception_type`` and
``exception_message``; methods, static and class methods, properties and functions bound
under other names are all caught; calls made by processors themselves are not traced.

Event data (``Event.data``; ``Event.type`` is the processor's type for the event,
``Event.subtype`` its ``subtype``, ``Event.source`` the contributing plugin):

``frame_id``
    the same on a call's ``call`` and ``return``/``unwind`` events (and ``yield``/``resume``);
``timestamp_ns``
    ``time.time_ns()`` at the event (also ``Event.timestamp_ns``);
``thread``
    ``{"ident", "name"}`` of the thread that made the call;
``call_site``
    ``{"file", "line"}`` of the nearest calling frame outside library code (the standard
    library, site-packages, hostapp), or ``None``;
``processor``
    the processor's name;
``duration_ns``
    on ``return``/``unwind``;
``exception_type``, ``exception_message``
    on ``unwind`` (and ``throw``);

then whatever ``process(frame, event, arg, context)`` returned, merged over it.

Processor errors never reach the traced program: each one is counted
(:meth:`TracingEngine.stats`), the first is logged with the processor's name on the
``hostapp.tracing`` logger, and after ``max_errors`` in a row the processor is switched
off for the run (a warning says so; its code is uninstrumented when no other processor
selects it).

Limits, per backend (details in each backend module's docstring):

* ``monitoring``: code objects are found at ``start()`` among the loaded modules and, for
  modules imported later, by an import hook; code created by ``exec``/``compile``/
  ``code.replace`` is not found. The exception exit needs ``PY_UNWIND``, which
  ``sys.monitoring`` only offers process-wide: it is on whenever a processor wants a
  return-side event, and costs about 0.25 us per frame an exception propagates out of,
  anywhere in the process. The tool id is the first free of ``PROFILER_ID``, 3 and 4; while
  it holds ``PROFILER_ID``, ``cProfile`` (which needs that id on 3.12+) cannot start.
* ``trampoline``: only function objects reachable from a module (functions, methods,
  static/class methods, properties, nested classes, ``__wrapped__`` chains) are
  instrumented - not nested functions created when their enclosing function runs, and not
  async generator functions; ``yield``/``resume``/``throw`` events are not produced.
  Under a C-level profiler (``cProfile``) processors get the trampoline's frame (the right
  ``f_locals`` at the call, only the arguments at the return). Between a traced frame and
  its caller sit two frames (the trampoline, showing the function's first line, and
  hostapp's dispatcher): ``frame.f_back`` and stack dumps show them, exception tracebacks
  do not.
* ``profile``: every call in the process pays for the profile function; finding the
  exception of an exception exit costs a heap scan on 3.12+ and needs the thread to have
  no trace function on 3.11; only one engine at a time.

Importing :mod:`hostapp` does not import this package, and importing this package does
not install anything: backends are imported by ``start()``.
"""

from __future__ import annotations

from hostapp.tracing._engine import BACKENDS, TracingEngine, available_backends, superseded
from hostapp.tracing._runtime import SKIP, default_library_paths

__all__ = ["BACKENDS", "SKIP", "TracingEngine", "available_backends", "default_library_paths", "superseded"]
