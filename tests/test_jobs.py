"""The background-job processors (``jobs.celery``, ``jobs.huey``) on the real libraries.

Each test builds a real celery app or huey instance, traces it with the processors the
plugins contribute, and asserts on the events a user would see. Eager celery and
immediate huey run the job inside the enqueue call; a real celery worker (in a thread, on
the in-memory broker) and a real huey consumer worker run it on another thread. Every
behaviour runs on the interpreter's default backend (``monitoring`` on 3.12+,
``trampoline`` on 3.11) and on the ``profile`` fallback.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import huey
import pytest
from celery import Celery
from celery.app import trace as celery_trace
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from huey.consumer import Worker as HueyWorker

import hostapp
from hostapp.events import Event
from hostapp.tracing import TracingEngine
from hostapp.types import Contribution
from hostapp_plugins.jobs import (
    DEFAULT_MAX_BYTES,
    MAX_DEPTH,
    JsonSafe,
    build_context,
    max_bytes_from,
    safe_repr,
)
from hostapp_plugins.jobs import celery as celery_plugin
from hostapp_plugins.jobs import huey as huey_plugin

ENQUEUE = ("background_job", "background_job_end")
EXECUTE = ("background_job_start", "background_job_finish")


@pytest.fixture(params=["default", "profile"])
def backend(request: pytest.FixtureRequest) -> str:
    """The interpreter's default backend, then the profile fallback."""
    return "auto" if request.param == "default" else "profile"


@contextmanager
def tracing(*plugins: Any, backend: str = "auto", config: Any = None) -> Iterator[list[Event]]:
    """A started engine over the processors ``plugins`` contribute, and its events."""
    events: list[Event] = []
    contributions = [
        Contribution(p, plugin.__name__.rsplit(".", 1)[-1])
        for plugin in plugins for p in plugin.hostapp_trace_processors()
    ]
    engine = TracingEngine(contributions, events.append, backend=backend, config=config)
    engine.start()
    try:
        yield events
    finally:
        engine.stop()
    for name, stats in engine.stats().items():
        assert stats["errors"] == 0, f"{name}: {stats['last_error']}"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` is true (another thread's doing); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def of(events: list[Event], *types: str) -> list[Event]:
    return [e for e in events if e.type in types]


def eager_app(**conf: Any) -> Celery:
    """A celery app that runs tasks in ``apply_async`` (``task_always_eager``)."""
    app = Celery("t", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(task_always_eager=True, **conf)

    @app.task(name="add", shared=False)
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(name="boom", shared=False)
    def boom(message: str) -> None:
        raise ValueError(message)

    return app


# -- celery, eager -----------------------------------------------------------------------


def test_celery_delay_gives_enqueue_and_execution_events(backend: str) -> None:
    app = eager_app()
    with tracing(celery_plugin, backend=backend) as events:
        result = app.tasks["add"].delay(2, 3)
    assert result.get() == 5
    # exactly these four: not the tracer closure (also named trace_task) that apply() runs
    assert [e.type for e in events] == [ENQUEUE[0], EXECUTE[0], EXECUTE[1], ENQUEUE[1]]
    sent, started, finished, sent_end = events
    assert {(e.subtype, e.source) for e in events} == {("celery", "celery")}
    assert [e.data["processor"] for e in events] == ["celery", "celery.execute", "celery.execute", "celery"]
    job = {"name": "add", "args": [2, 3], "kwargs": {}, "queue": None, "truncated": False}
    assert sent.data | job == sent.data and sent.data["job_id"] is None  # not chosen yet
    assert started.data | job == started.data and started.data["job_id"] == result.id
    assert finished.data["job_id"] == sent_end.data["job_id"] == result.id
    assert (finished.data["state"], finished.data["result_type"]) == ("SUCCESS", "int")
    assert "exception_type" not in finished.data
    assert sent.data["frame_id"] == sent_end.data["frame_id"] != started.data["frame_id"]
    assert started.data["frame_id"] == finished.data["frame_id"]
    assert sent.data["call_site"]["file"] == __file__
    json.dumps([e.data for e in events])  # JSON all the way down


def test_celery_apply_async_shows_queue_kwargs_and_a_given_task_id(backend: str) -> None:
    app = eager_app()
    with tracing(celery_plugin, backend=backend) as events:
        result = app.tasks["add"].apply_async((1,), {"y": 4}, queue="q1", task_id="job-1")
    assert result.get() == 5
    sent, started, finished, sent_end = events
    for event in (sent, started):
        assert (event.data["args"], event.data["kwargs"]) == ([1], {"y": 4})
        assert (event.data["queue"], event.data["job_id"]) == ("q1", "job-1")
    assert finished.data["job_id"] == sent_end.data["job_id"] == "job-1"


def test_celery_task_that_raises_gives_unwind_events(backend: str) -> None:
    app = eager_app(task_eager_propagates=True)
    with tracing(celery_plugin, backend=backend) as events:
        with pytest.raises(ValueError, match="bad input"):
            app.tasks["boom"].delay("bad input")
    assert [e.type for e in events] == [ENQUEUE[0], EXECUTE[0], EXECUTE[1], ENQUEUE[1]]
    started, finished, sent_end = events[1:]
    assert started.data["args"] == ["bad input"]
    for event in (finished, sent_end):  # the exception exit, from the engine
        assert event.data["exception_type"] == "ValueError"
        assert event.data["exception_message"] == "bad input"
        assert event.data["duration_ns"] >= 0
    assert "state" not in finished.data  # the task never returned
    assert finished.data["job_id"] == started.data["job_id"] is not None


def test_celery_failure_caught_by_celery_is_in_the_finish_event(backend: str) -> None:
    app = eager_app()  # task_eager_propagates off: apply() returns a failed result
    with tracing(celery_plugin, backend=backend) as events:
        result = app.tasks["boom"].delay("nope")
    assert result.failed()
    finished = of(events, EXECUTE[1])[0]
    assert finished.data["state"] == "FAILURE"
    assert finished.data["result_type"] is None
    assert (finished.data["exception_type"], finished.data["exception_message"]) == ("ValueError", "nope")
    assert of(events, ENQUEUE[1])[0].data["job_id"] == result.id


# -- celery, a real worker -----------------------------------------------------------------


@contextmanager
def celery_worker(optimized: bool) -> Iterator[Celery]:
    """A real celery worker (``solo`` pool, in a thread) on the in-memory broker.

    ``optimized``: set up as ``celery worker`` does at start (``setup_worker_optimizations``),
    so that tasks run through ``fast_trace_task`` rather than ``trace_task``.
    """
    app = Celery("w", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(broker_transport_options={"polling_interval": 0.01}, worker_hijack_root_logger=False)

    @app.task(name="mul", shared=False)
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="fail", shared=False)
    def fail() -> None:
        raise KeyError("missing")

    @app.task(name="wake", shared=False)
    def wake() -> None:
        return None

    environ = {k: os.environ.get(k) for k in ("CELERY_LOG_LEVEL", "CELERY_LOG_FILE")}
    if optimized:
        celery_trace.setup_worker_optimizations(app)
    try:
        # start_worker sets up logging: warning filters and captureWarnings, put back after
        with warnings.catch_warnings(), start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING",
        ):
            try:
                yield app
            finally:
                # The worker looks at its stop flag between waits of up to 2 s for a
                # message, and waits once more after seeing it: raise the flag, wake it twice.
                worker_state.should_terminate = 0
                app.tasks["wake"].delay()
                app.tasks["wake"].delay()
    finally:
        if optimized:
            celery_trace.reset_worker_optimizations(app)
        logging.captureWarnings(False)
        for key, value in environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.parametrize("optimized", [False, True], ids=["trace_task", "fast_trace_task"])
def test_celery_worker_execution_and_send_task(backend: str, optimized: bool) -> None:
    with celery_worker(optimized) as app:
        with tracing(celery_plugin, backend=backend) as events:
            sent = app.tasks["mul"].apply_async((6, 7))
            assert sent.get(timeout=10, interval=0.01) == 42
            by_name = app.send_task("mul", (2, 5), queue="celery")
            assert by_name.get(timeout=10, interval=0.01) == 10
            failed = app.tasks["fail"].delay()
            with pytest.raises(KeyError):
                failed.get(timeout=10, interval=0.01)
            # a result is stored before the worker's function returns: wait for the return
            wait_for(lambda: len(of(events, EXECUTE[1])) == 3)
    here = threading.current_thread().name
    enqueued = of(events, ENQUEUE[0])
    # apply_async calls send_task itself: still one event per message
    assert [(e.data["name"], e.data["args"], e.data["queue"]) for e in enqueued] == [
        ("mul", [6, 7], None), ("mul", [2, 5], "celery"), ("fail", [], None),
    ]
    assert {e.data["thread"]["name"] for e in enqueued} == {here}
    assert [e.data["job_id"] for e in of(events, ENQUEUE[1])] == [sent.id, by_name.id, failed.id]

    started, finished = of(events, EXECUTE[0]), of(events, EXECUTE[1])
    assert [e.data["job_id"] for e in started] == [sent.id, by_name.id, failed.id]
    assert [e.data["job_id"] for e in finished] == [sent.id, by_name.id, failed.id]
    assert all(e.data["thread"]["name"] != here for e in started + finished)  # the worker's
    assert [e.data["name"] for e in started] == ["mul", "mul", "fail"]
    assert {e.data["routing_key"] for e in started} == {"celery"}
    assert [e.data["state"] for e in finished] == ["SUCCESS", "SUCCESS", "FAILURE"]
    assert [e.data["result_type"] for e in finished] == ["int", "int", None]
    assert (finished[2].data["exception_type"], finished[2].data["exception_message"]) == (
        "KeyError", "'missing'",
    )
    # fast_trace_task gets the body still serialized: the worker's request has them decoded
    assert [(e.data["args"], e.data["kwargs"]) for e in started] == [([6, 7], {}), ([2, 5], {}), ([], {})]
    assert all("args" not in e.data for e in finished)


# -- huey ------------------------------------------------------------------------------------


def huey_app(**options: Any) -> tuple[huey.Huey, Any, Any]:
    """A ``MemoryHuey`` named ``jobs-queue`` with a ``multiply`` and a ``crash`` task."""
    h = huey.MemoryHuey("jobs-queue", **options)

    @h.task()
    def multiply(a: int, b: int = 2) -> int:
        return a * b

    @h.task()
    def crash(reason: str) -> None:
        raise RuntimeError(reason)

    return h, multiply, crash


def test_huey_immediate_gives_enqueue_and_execution_events(backend: str) -> None:
    h, multiply, _ = huey_app(immediate=True)
    with tracing(huey_plugin, backend=backend) as events:
        result = multiply(3, b=5)
    assert result() == 15
    assert [e.type for e in events] == [ENQUEUE[0], EXECUTE[0], EXECUTE[1], ENQUEUE[1]]
    assert {(e.subtype, e.source) for e in events} == {("huey", "huey")}
    sent, started, finished, sent_end = events
    job = {"name": "multiply", "args": [3], "kwargs": {"b": 5}, "queue": "jobs-queue",
           "job_id": result.id, "truncated": False}
    assert sent.data | job == sent.data  # the task object has its id before it is enqueued
    assert started.data | job == started.data
    assert (finished.data["state"], finished.data["result_type"]) == ("complete", "int")
    assert finished.data["job_id"] == sent_end.data["job_id"] == result.id
    assert sent.data["call_site"]["file"] == __file__


def test_huey_group_is_one_job_per_member_and_pipelines_enqueue_the_next(backend: str) -> None:
    h, multiply, _ = huey_app(immediate=True)
    with tracing(huey_plugin, backend=backend) as events:
        h.enqueue(huey.group([multiply.s(1), multiply.s(2, b=3)]))
        h.enqueue(multiply.s(2).then(multiply, 10))  # 2*2, then multiply(10, 4)
    assert [(e.data["args"], e.data["kwargs"]) for e in of(events, ENQUEUE[0])] == [
        ([1], {}), ([2], {"b": 3}), ([2], {}), ([10, 4], {}),
    ]
    assert len(of(events, ENQUEUE[1])) == 4
    assert [e.data["state"] for e in of(events, EXECUTE[1])] == ["complete"] * 4


def test_huey_consumer_worker_runs_the_job_on_its_thread(backend: str) -> None:
    h, multiply, crash = huey_app()
    worker = HueyWorker(h, threading.Event(), 0.01, 0.1, 1.15)  # what `huey_consumer` runs
    with tracing(huey_plugin, backend=backend) as events:
        ok = multiply(4)
        failed = crash("disk full")
        assert [e.type for e in events] == [ENQUEUE[0], ENQUEUE[1]] * 2  # queued only
        for _ in range(2):
            thread = threading.Thread(target=worker.loop, name="huey-worker")
            thread.start()
            thread.join()
    assert ok() == 8
    assert [(e.type, e.data.get("name")) for e in of(events, *EXECUTE)] == [
        (EXECUTE[0], "multiply"), (EXECUTE[1], None), (EXECUTE[0], "crash"), (EXECUTE[1], None),
    ]
    started_ok, finished_ok, started_crash, finished_crash = of(events, *EXECUTE)
    assert {e.data["thread"]["name"] for e in of(events, *EXECUTE)} == {"huey-worker"}
    assert (started_ok.data["job_id"], finished_ok.data["job_id"]) == (ok.id, ok.id)
    assert (started_ok.data["args"], started_ok.data["kwargs"]) == ([4], {})
    assert finished_ok.data["state"] == "complete"
    # huey catches the task's exception: a normal return that says what happened
    assert started_crash.data["job_id"] == finished_crash.data["job_id"] == failed.id
    assert finished_crash.data["state"] == "error"
    assert (finished_crash.data["exception_type"], finished_crash.data["exception_message"]) == (
        "RuntimeError", "disk full",
    )


def test_huey_arguments_are_json_safe_cut_and_never_consumed(backend: str) -> None:
    h, _, _ = huey_app(immediate=True)
    consumed: list[list[int]] = []

    class Point:
        def __repr__(self) -> str:
            return "Point(1, 2)"

    @h.task()
    def take(items: Any, text: str, point: Point, data: bytes) -> None:
        consumed.append(list(items))

    config = hostapp.Config.from_dict({"tracing": {"max_body_bytes": 200}}, environ={})
    with tracing(huey_plugin, backend=backend, config=config) as events:
        take(iter([1, 2, 3]), Point(), "x" * 300, data=b"\x00\xff")
    assert consumed == [[1, 2, 3]]  # the processor did not consume the iterator
    sent = events[0].data
    iterator, point, text = sent["args"]
    assert iterator.startswith("<list_iterator object at")
    assert point == "Point(1, 2)"
    assert 100 < len(text) < 200 and set(text) == {"x"}  # cut: the budget is 200 bytes in all
    assert sent["kwargs"] == {}  # nothing left of the budget for them
    assert sent["truncated"] is True
    json.dumps(sent)
    assert events[1].data["job_id"] == sent["job_id"]


# -- JSON-safe conversion ----------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    def __str__(self) -> str:
        return "overridden"


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (3, 3),
        (1.5, 1.5),
        (math.nan, "nan"),
        (-math.inf, "-inf"),
        ("text", "text"),
        (Color.RED, 1),
        (Name("plain"), "plain"),
        ((1, (2, 3)), [1, [2, 3]]),
        ({2: "a", None: "b", True: "c", (1, 2): "d"}, {"2": "a", "null": "b", "true": "c", "(1, 2)": "d"}),
        (frozenset({7}), [7]),
        (b"\x00ab", "b'\\x00ab'"),
        (BadRepr(), f"<{__name__}.BadRepr object (repr failed: RuntimeError)>"),
        (10 ** 5000, "<int of 16610 bits>"),
    ],
    ids=lambda v: safe_repr(v, 24),
)
def test_json_safe_keeps_json_values_and_reprs_the_rest(value: Any, expected: Any) -> None:
    conv = JsonSafe()
    assert conv.convert(value) == expected
    assert conv.truncated is False
    json.dumps(expected, allow_nan=False)


def test_json_safe_cuts_text_at_the_budget_in_utf8_bytes() -> None:
    conv = JsonSafe(11)  # the string costs 1, its text 10 bytes: 5 of the 2-byte "é"
    assert conv.convert("é" * 20) == "é" * 5
    assert conv.truncated is True
    conv = JsonSafe(10)
    assert conv.convert("é" * 20) == "é" * 4  # 9 bytes left: never half a character
    assert conv.truncated is True
    # one budget for everything: each value costs 1, text its length; then items stop
    conv = JsonSafe(10)
    assert conv.convert(["abc", "defgh", "ijklmnop", "q"]) == ["abc", "defg"]
    assert conv.truncated is True
    assert conv.convert({"more": 1}) == {}
    conv = JsonSafe(0)
    assert (conv.convert(["a"]), conv.truncated) == ([], True)


def test_json_safe_is_bounded_for_deep_and_recursive_containers() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(MAX_DEPTH + 5):
        node.append([])
        node = node[0]
    out = JsonSafe().convert(deep)
    for _ in range(MAX_DEPTH):
        out = out[0]
    assert out == "<list of 1 items>"
    loop: list[Any] = [1]
    loop.append(loop)
    json.dumps(JsonSafe(1000).convert(loop))
    conv = JsonSafe(100)
    assert len(conv.convert(list(range(10_000)))) < 100 and conv.truncated


def test_safe_repr_and_the_max_bytes_setting() -> None:
    assert safe_repr("x" * 50, 5) == "'xxxx"
    assert safe_repr(BadRepr()).endswith("(repr failed: RuntimeError)>")
    assert max_bytes_from(None) == DEFAULT_MAX_BYTES == 65_536
    assert max_bytes_from({}) == DEFAULT_MAX_BYTES
    assert max_bytes_from(hostapp.Config.default()) == DEFAULT_MAX_BYTES
    config = hostapp.Config.from_dict({"tracing": {"max_body_bytes": 100}}, environ={})
    assert build_context(config) == {"max_bytes": 100}
    assert build_context(None) == {"max_bytes": DEFAULT_MAX_BYTES}


# -- the plugins -------------------------------------------------------------------------------


def test_plugin_modules_import_without_importing_the_libraries() -> None:
    code = (
        "import sys\n"
        "import hostapp_plugins.jobs.celery, hostapp_plugins.jobs.huey\n"
        "loaded = sorted(m for m in ('celery', 'kombu', 'huey') if m in sys.modules)\n"
        "print(loaded)\n"
        "print(hostapp_plugins.jobs.celery.ENQUEUE.requires, hostapp_plugins.jobs.huey.ENQUEUE.requires)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "('celery',) ('huey',)"]


def test_plugin_manager_collects_the_four_processors() -> None:
    pm = hostapp.PluginManager()
    pm.register(celery_plugin, name="jobs.celery")
    pm.register(huey_plugin, name="jobs.huey")
    found = {c.name: c for c in pm.collect("hostapp_trace_processors")}
    assert sorted(found) == ["celery", "celery.execute", "huey", "huey.execute"]
    for name, contribution in found.items():
        library = name.split(".")[0]
        spec = contribution.spec
        assert contribution.plugin == f"jobs.{library}"
        assert spec.subtype == library and spec.requires == (library,)
        assert (spec.call_type, spec.return_type) == (EXECUTE if name.endswith(".execute") else ENQUEUE)
        assert spec.description


def test_without_the_library_the_processors_are_not_applicable() -> None:
    """What a user without celery sees: the processors are skipped, not failed."""
    code = (
        "import sys, json\n"
        "sys.modules['celery'] = None  # as if not installed: find_spec raises, import fails\n"
        "import importlib.util\n"
        "from hostapp.tracing import TracingEngine\n"
        "from hostapp.types import Contribution\n"
        "from hostapp_plugins.jobs import celery\n"
        "engine = TracingEngine([Contribution(p, 'jobs.celery') for p in celery.hostapp_trace_processors()], print)\n"
        "engine.start(); engine.stop()\n"
        "print(json.dumps({n: s['applicable'] for n, s in engine.stats().items()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"celery": False, "celery.execute": False}


# -- the documentation ---------------------------------------------------------------------------


def test_the_example_in_docs_jobs_md_prints_what_the_page_shows(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "jobs.md").read_text(encoding="utf-8")
    example = re.search(r"^\*\*`trace_jobs.py`\*\*\n```python\n(.*?)^```$", page, re.M | re.S)
    shown = re.search(r"^It prints.*?\n```\n(.*?)^```$", page, re.M | re.S)
    assert example and shown, "docs/jobs.md lost its example or its output"
    (tmp_path / "trace_jobs.py").write_text(example[1], encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    done = subprocess.run(
        [sys.executable, "trace_jobs.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr

    def ids_hidden(text: str) -> list[str]:
        return re.sub(r'"job_id": "[^"]+"', '"job_id": "<id>"', text).splitlines()

    assert ids_hidden(done.stdout) == ids_hidden(shown[1])
