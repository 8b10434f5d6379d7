"""The tracing engine: selection, backends, event data, error isolation, clean stop.

Every test traces real code: a module written to ``tmp_path`` (so ``co_filename`` contains
a unique directory the processors' ``path_fragment`` selects) and imported the ordinary
way. Each behaviour runs on the interpreter's default backend (``monitoring`` on 3.12+,
``trampoline`` on 3.11) and on the ``profile`` fallback. No timing assertions.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hostapp.events import Event
from hostapp.tracing import TracingEngine, available_backends
from hostapp.types import Contribution, TraceProcessor

PY312 = sys.version_info >= (3, 12)
DEFAULT = available_backends()[0]

App = tuple[ModuleType, str]
WriteModule = Callable[..., tuple[str, str]]

APP = '''
import asyncio


def send(url, timeout=1.0, *, retries=0):
    status = 200
    return f"{url}:{status}"


def boom(message):
    marker = "about to raise"
    raise ValueError(message)


def fetch_all(n):
    total = 0
    for i in range(n):
        total += i
        yield i
    return f"done:{total}"


async def afetch(url):
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    result = url.upper()
    return result


async def aboom(url):
    await asyncio.sleep(0)
    raise KeyError(url)


def make_sender(prefix):
    def send(url):
        return prefix + url
    return send


prefixed = make_sender("pre:")  # a closure bound at import time


class Client:
    def send(self, url):
        return "method:" + url

    @staticmethod
    def static_send(url):
        return "static:" + url

    @classmethod
    def class_send(cls, url):
        return "class:" + cls.__name__ + ":" + url

    @property
    def sender(self):
        return "property"

    class Inner:
        def send(self, url):
            return "inner:" + url


def untraced(x):
    return x


def calls_send(url):
    return send(url)
'''

_counter = itertools.count()


@pytest.fixture(params=["default", "profile"])
def backend(request: pytest.FixtureRequest) -> str:
    """The interpreter's default backend, then the profile fallback."""
    return "auto" if request.param == "default" else "profile"


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """``write_module(source) -> (module name, path fragment)``: a module on ``sys.path``
    whose file path holds a unique fragment. The module is not imported yet."""
    names: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str = APP, stem: str = "app") -> tuple[str, str]:
        package = f"tracingtest_{os.getpid()}_{next(_counter)}"
        directory = tmp_path / package
        directory.mkdir()
        (directory / "__init__.py").write_text("")
        (directory / f"{stem}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        names.extend((package, f"{package}.{stem}"))
        return f"{package}.{stem}", f"{package}/{stem}"

    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def app(write_module: WriteModule) -> App:
    """The APP module, imported; and the fragment selecting its file."""
    name, fragment = write_module()
    return importlib.import_module(name), fragment


def processor(
    fragment: str, name: str = "p", co_names: tuple[str, ...] = ("send",), **fields: Any,
) -> TraceProcessor:
    fields.setdefault("call_type", f"{name}_call")
    fields.setdefault("return_type", f"{name}_return")
    return TraceProcessor(name=name, co_names=co_names, path_fragment=fragment, **fields)


@contextmanager
def tracing(
    *processors: TraceProcessor, backend: str = "auto", **options: Any,
) -> Iterator[tuple[TracingEngine, list[Event]]]:
    """A started engine over ``processors`` (all from plugin ``test-plugin``), and its events."""
    events: list[Event] = []
    contributions = [Contribution(p, "test-plugin") for p in processors]
    engine = TracingEngine(contributions, events.append, backend=backend, **options)
    engine.start()
    try:
        yield engine, events
    finally:
        engine.stop()


def by_type(events: list[Event]) -> list[str]:
    return [e.type for e in events]


# -- event data -------------------------------------------------------------------------


def test_call_and_return_events_carry_the_documented_data(app: App, backend: str) -> None:
    module, fragment = app
    with tracing(processor(fragment, subtype="demo"), backend=backend, run_id="run-1") as (engine, events):
        result = module.send("http://x")  # the call site
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    assert result == "http://x:200"
    assert engine.backend == (DEFAULT if backend == "auto" else "profile")
    call, ret = events
    assert (call.type, ret.type) == ("p_call", "p_return")
    for event in events:
        assert type(event) is Event
        assert event.subtype == "demo"
        assert event.source == "test-plugin"
        assert event.run_id == "run-1"
        assert event.pid == os.getpid()
        assert event.thread_id == threading.get_ident()
        assert event.data["processor"] == "p"
        assert event.data["thread"] == {
            "ident": threading.get_ident(), "name": threading.current_thread().name,
        }
        assert event.data["call_site"] == {"file": __file__, "line": line}
        assert event.data["timestamp_ns"] == event.timestamp_ns
        assert len(event.id) == 32
    assert call.data["frame_id"] == ret.data["frame_id"]
    assert call.id != ret.id
    assert "duration_ns" not in call.data
    assert 0 <= ret.data["duration_ns"] == ret.timestamp_ns - call.timestamp_ns
    assert engine.stats()["p"] == {
        "applicable": True, "not_applicable": None, "calls": 1, "events": 2, "nested": 0, "errors": 0,
        "disabled": False, "superseded_by": None, "last_error": None, "plugin": "test-plugin",
    }


def test_each_call_gets_its_own_frame_id(app: App, backend: str) -> None:
    module, fragment = app
    with tracing(processor(fragment, co_names=("send", "calls_send")), backend=backend) as (_, events):
        module.calls_send("a")
        module.send("b")
    assert by_type(events) == ["p_call", "p_call", "p_return", "p_return", "p_call", "p_return"]
    outer, inner = events[0].data["frame_id"], events[1].data["frame_id"]
    last = events[4].data["frame_id"]
    assert [e.data["frame_id"] for e in events] == [outer, inner, inner, outer, last, last]
    assert len({outer, inner, last}) == 3


def test_process_gets_the_real_frame_at_the_call_and_at_the_return(app: App, backend: str) -> None:
    module, fragment = app
    seen: list[tuple[str, dict[str, Any], Any]] = []

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
        seen.append((event, dict(frame.f_locals), arg))
        return {"url": frame.f_locals["url"], "processor": "overridden", "event": event}

    with tracing(processor(fragment, process=process), backend=backend) as (_, events):
        module.send("u", timeout=2.0, retries=3)
    assert seen == [
        ("call", {"url": "u", "timeout": 2.0, "retries": 3}, None),
        ("return", {"url": "u", "timeout": 2.0, "retries": 3, "status": 200}, "u:200"),
    ]
    assert [(e.data["url"], e.data["processor"], e.data["event"]) for e in events] == [
        ("u", "overridden", "call"), ("u", "overridden", "return"),
    ]


def test_call_filter_runs_after_the_name_and_path_match(app: App, backend: str) -> None:
    module, fragment = app
    asked: list[tuple[str, str]] = []

    def call(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> bool:
        asked.append((frame.f_code.co_name, event))
        return frame.f_locals["url"] != "skip"

    with tracing(processor(fragment, call=call), backend=backend) as (engine, events):
        module.send("keep")
        module.send("skip")
        module.untraced(1)
    assert [e.type for e in events] == ["p_call", "p_return"]
    assert asked == [("send", "call"), ("send", "return"), ("send", "call"), ("send", "return")]
    assert engine.stats()["p"]["calls"] == 2


def test_only_the_events_a_processor_asks_for(app: App, backend: str) -> None:
    module, fragment = app
    calls_only = processor(fragment, name="c", events=("call",))
    returns_only = processor(fragment, name="r", events=("return",))
    with tracing(calls_only, returns_only, backend=backend) as (_, events):
        module.send("x")
    assert by_type(events) == ["c_call", "r_return"]
    assert events[0].data["frame_id"] == events[1].data["frame_id"]


def test_build_context_runs_once_and_is_shared(app: App, backend: str) -> None:
    module, fragment = app
    built: list[Any] = []

    def build_context(config: Any) -> dict[str, Any]:
        built.append(config)
        return {"n": 0}

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
        context["n"] += 1
        return {"n": context["n"]}

    proc = processor(fragment, build_context=build_context, process=process)
    with tracing(proc, backend=backend, config={"k": 1}) as (_, events):
        module.send("a")
        module.send("b")
    assert built == [{"k": 1}]
    assert [e.data["n"] for e in events] == [1, 2, 3, 4]


def test_empty_co_names_select_every_function_in_the_file(app: App, backend: str) -> None:
    module, fragment = app
    with tracing(processor(fragment, co_names=()), backend=backend) as (_, events):
        module.untraced(1)
        module.Client().sender  # noqa: B018 - a property getter is a function too
    assert [e.type for e in events] == ["p_call", "p_return"] * 2


def test_library_frames_are_skipped_for_the_call_site(write_module: WriteModule, backend: str) -> None:
    lib_name, lib_fragment = write_module(
        """
        def send(url):
            return url

        def wrapper(url):
            return send(url)
        """,
        stem="lib",
    )
    lib = importlib.import_module(lib_name)
    library = str(Path(lib.__file__).parent)
    with tracing(processor(lib_fragment), backend=backend, library_paths=[library]) as (_, events):
        lib.wrapper("x")
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    assert [e.data["call_site"] for e in events] == [{"file": __file__, "line": line}] * 2


# -- what is caught ---------------------------------------------------------------------


def test_methods_static_class_nested_and_aliases_are_all_caught(app: App, backend: str) -> None:
    module, fragment = app
    alias = module.send  # bound before tracing starts
    client = module.Client()
    bound = client.send
    names = ("send", "static_send", "class_send")
    proc = processor(fragment, co_names=names, process=lambda f, e, a, c: {"q": f.f_code.co_qualname})
    with tracing(proc, backend=backend) as (_, events):
        results = [
            alias("a"),
            bound("b"),
            module.Client.static_send("c"),
            client.class_send("d"),
            module.Client.Inner().send("e"),
            module.prefixed("f"),
            module.make_sender(">")("g"),
        ]
    assert results == ["a:200", "method:b", "static:c", "class:Client:d", "inner:e", "pre:f", ">g"]
    calls = [e.data["q"] for e in events if e.type == "p_call"]
    expected = [
        "send", "Client.send", "Client.static_send", "Client.class_send", "Client.Inner.send",
        "make_sender.<locals>.send",
    ]
    if engine_reaches_nested_functions(backend):
        expected.append("make_sender.<locals>.send")
    assert calls == expected
    assert by_type(events) == ["p_call", "p_return"] * len(expected)


def engine_reaches_nested_functions(backend: str) -> bool:
    """Nested functions are created at run time: found by code object (monitoring,
    profile), not by function object (trampoline)."""
    return backend == "profile" or DEFAULT == "monitoring"


def test_a_function_imported_under_another_name(write_module: WriteModule, backend: str) -> None:
    name, fragment = write_module()
    user_name, _ = write_module(f"from {name} import send as post\n\ndef use():\n    return post('x')\n")
    user = importlib.import_module(user_name)
    with tracing(processor(fragment), backend=backend) as (_, events):
        assert user.use() == "x:200"
        assert user.post("y") == "y:200"
    assert by_type(events) == ["p_call", "p_return"] * 2


def test_modules_imported_after_start_are_traced(write_module: WriteModule, backend: str) -> None:
    name, fragment = write_module()
    assert name not in sys.modules
    with tracing(processor(fragment), backend=backend) as (engine, events):
        late = importlib.import_module(name)
        late.send("x")
        late.Client().send("y")
        if backend != "profile":
            assert engine.instrumented >= 3  # send, Client.send, Client.Inner.send
    assert by_type(events) == ["p_call", "p_return"] * 2
    assert not [f for f in sys.meta_path if type(f).__name__ == "ImportHook"]


def test_unselected_code_is_not_instrumented(app: App, backend: str) -> None:
    module, fragment = app
    untraced_code = module.untraced.__code__
    with tracing(processor(fragment), backend=backend) as (engine, events):
        module.untraced(1)
        module.Client().sender  # noqa: B018
        assert module.untraced.__code__ is untraced_code
        if engine.backend == "monitoring":
            assert sys.monitoring.get_local_events(engine.tool_id, untraced_code) == 0
            assert sys.monitoring.get_local_events(engine.tool_id, module.send.__code__) != 0
        if engine.backend == "trampoline":
            assert module.send.__code__ is not untraced_code
    assert events == []


# -- generators, coroutines, exceptions -------------------------------------------------


def test_a_generator_call_is_one_call_and_one_return(app: App, backend: str) -> None:
    module, fragment = app
    args: list[tuple[str, Any, dict[str, Any]]] = []

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
        args.append((event, arg, dict(frame.f_locals)))
        return {}

    proc = processor(fragment, co_names=("fetch_all",), process=process)
    with tracing(proc, backend=backend) as (_, events):
        assert list(module.fetch_all(3)) == [0, 1, 2]
    assert by_type(events) == ["p_call", "p_return"]
    assert args[0] == ("call", None, {"n": 3})
    assert args[1][:2] == ("return", "done:3")
    assert args[1][2]["total"] == 3


def test_a_coroutine_under_asyncio_run_is_one_call_and_one_return(app: App, backend: str) -> None:
    module, fragment = app
    returned: list[Any] = []

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
        if event == "return":
            returned.append((arg, frame.f_locals["result"]))
        return {"url": frame.f_locals["url"]}

    async def main() -> list[str]:
        return await asyncio.gather(module.afetch("a"), module.afetch("b"))

    with tracing(processor(fragment, co_names=("afetch",), process=process), backend=backend) as (_, events):
        assert asyncio.run(main()) == ["A", "B"]
    assert sorted(by_type(events)) == ["p_call", "p_call", "p_return", "p_return"]
    assert sorted(returned) == [("A", "A"), ("B", "B")]
    pairs: dict[str, list[tuple[str, str]]] = {e.data["frame_id"]: [] for e in events}
    for e in events:
        pairs[e.data["frame_id"]].append((e.type, e.data["url"]))
    assert sorted(pairs.values()) == [
        [("p_call", "a"), ("p_return", "a")], [("p_call", "b"), ("p_return", "b")],
    ]


def test_a_raising_call_gives_its_exception_exit(app: App, backend: str) -> None:
    module, fragment = app
    plain = processor(fragment, name="plain", co_names=("boom",))
    typed = processor(
        fragment, name="typed", co_names=("boom",), unwind_type="typed_unwind",
        process=lambda f, e, a, c: {"marker": f.f_locals.get("marker"), "arg": repr(a)},
    )
    with pytest.raises(ValueError, match="bad input") as caught:
        with tracing(plain, typed, backend=backend) as (_, events):
            module.boom("bad input")
    assert by_type(events) == ["plain_call", "typed_call", "plain_return", "typed_unwind"]
    exits = events[2:]
    for event in exits:
        assert event.data["exception_type"] == "ValueError"
        assert event.data["exception_message"] == "bad input"
        assert event.data["duration_ns"] >= 0
    assert exits[1].data["marker"] == "about to raise"
    assert exits[1].data["arg"] == "ValueError('bad input')"
    assert caught.value.args == ("bad input",)


def test_the_traceback_is_unchanged_by_tracing(app: App, backend: str) -> None:
    module, fragment = app

    def frames() -> list[tuple[str, str, int | None]]:
        try:
            module.boom("x")
        except ValueError as exc:
            return [(f.filename, f.name, f.lineno) for f in traceback.extract_tb(exc.__traceback__)]
        raise AssertionError("did not raise")

    untraced = frames()
    with tracing(processor(fragment, co_names=("boom",)), backend=backend):
        traced = frames()
    assert traced == untraced
    assert [name for _, name, _ in traced] == ["frames", "boom"]


def test_a_raising_coroutine_gives_its_exception_exit(app: App, backend: str) -> None:
    module, fragment = app
    with tracing(processor(fragment, co_names=("aboom",)), backend=backend) as (_, events):
        with pytest.raises(KeyError):
            asyncio.run(module.aboom("k"))
    assert by_type(events) == ["p_call", "p_return"]
    assert events[1].data["exception_type"] == "KeyError"
    assert events[1].data["exception_message"] == "'k'"


def test_an_exception_thrown_into_a_generator_ends_its_call(app: App, backend: str) -> None:
    module, fragment = app
    with tracing(processor(fragment, co_names=("fetch_all",)), backend=backend) as (_, events):
        generator = module.fetch_all(5)
        assert next(generator) == 0
        with pytest.raises(RuntimeError):
            generator.throw(RuntimeError("stop"))
    assert by_type(events) == ["p_call", "p_return"]
    assert events[1].data["exception_type"] == "RuntimeError"


def test_yield_and_resume_events_when_asked(app: App, backend: str) -> None:
    if backend == "auto" and DEFAULT == "trampoline":
        pytest.skip("yield/resume events: monitoring and profile backends only")
    module, fragment = app
    proc = processor(fragment, co_names=("fetch_all",), events=("call", "yield", "resume", "return"))
    with tracing(proc, backend=backend) as (_, events):
        assert list(module.fetch_all(2)) == [0, 1]
    assert by_type(events) == ["p_call", "p_return", "p_call", "p_return", "p_call", "p_return"]
    frame_ids = {e.data["frame_id"] for e in events}
    assert len(frame_ids) == 1
    assert "duration_ns" in events[-1].data and "duration_ns" not in events[1].data


# -- threads ----------------------------------------------------------------------------


def test_threads_running_before_start_and_threads_started_after(app: App, backend: str) -> None:
    module, fragment = app
    go = threading.Event()
    results: dict[str, Any] = {}

    def worker(key: str) -> None:
        go.wait(10)
        results[key] = module.send(key)

    early = threading.Thread(target=worker, args=("early",), name="early-worker")
    early.start()
    try:
        with tracing(processor(fragment), backend=backend) as (_, events):
            late = threading.Thread(target=worker, args=("late",), name="late-worker")
            late.start()
            go.set()
            early.join(10)
            late.join(10)
    finally:
        go.set()
        early.join(10)
    assert results == {"early": "early:200", "late": "late:200"}
    names = sorted(e.data["thread"]["name"] for e in events)
    assert names == ["early-worker", "early-worker", "late-worker", "late-worker"]
    for e in events:
        assert e.thread_id == e.data["thread"]["ident"]


def test_concurrent_calls_pair_up_per_thread(app: App, backend: str) -> None:
    module, fragment = app

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
        return {"url": frame.f_locals["url"], "result": arg}

    def worker(n: int) -> None:
        for i in range(50):
            assert module.send(f"{n}-{i}") == f"{n}-{i}:200"

    with tracing(processor(fragment, process=process), backend=backend) as (_, events):
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    pairs: dict[str, list[Event]] = {}
    for event in events:
        pairs.setdefault(event.data["frame_id"], []).append(event)
    assert len(pairs) == 200
    for call, ret in pairs.values():
        assert (call.type, ret.type) == ("p_call", "p_return")
        assert call.data["url"] == ret.data["url"] and ret.data["result"] == ret.data["url"] + ":200"
        assert call.thread_id == ret.thread_id


def test_calls_made_by_processors_are_not_traced(app: App, backend: str) -> None:
    module, fragment = app

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
        return {"nested": module.send("from-processor")}  # would recurse if it were traced

    with tracing(processor(fragment, process=process), backend=backend) as (engine, events):
        assert module.send("x") == "x:200"
    assert by_type(events) == ["p_call", "p_return"]
    assert events[0].data["nested"] == "from-processor:200"
    assert engine.stats()["p"]["calls"] == 1


# -- processor errors -------------------------------------------------------------------


def test_a_failing_processor_never_reaches_the_program_and_is_switched_off(
    app: App, backend: str, caplog: pytest.LogCaptureFixture,
) -> None:
    module, fragment = app

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("processor bug")

    failing = processor(fragment, name="failing", process=process)
    healthy = processor(fragment, name="healthy")
    caplog.set_level(logging.WARNING, logger="hostapp.tracing")
    with tracing(failing, healthy, backend=backend, max_errors=3) as (engine, events):
        results = [module.send(str(i)) for i in range(4)]
        stats = engine.stats()
    assert results == [f"{i}:200" for i in range(4)]
    assert stats["failing"]["errors"] == 3
    assert stats["failing"]["disabled"] is True
    assert stats["failing"]["last_error"] == "process: RuntimeError: processor bug"
    assert stats["healthy"]["events"] == 8
    assert {e.data["processor"] for e in events} == {"healthy"}
    messages = [r.getMessage() for r in caplog.records if r.name == "hostapp.tracing"]
    assert len([m for m in messages if "raised in process()" in m]) == 1
    assert len([m for m in messages if "switched off for this run after" in m]) == 1
    assert all("'failing'" in m and "test-plugin" in m for m in messages)


def test_errors_must_be_consecutive_to_switch_a_processor_off(app: App, backend: str) -> None:
    module, fragment = app

    def call(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> bool:
        if frame.f_locals["url"] == "bad" and event == "call":
            raise ValueError("no")
        return True

    with tracing(processor(fragment, call=call), backend=backend, max_errors=2) as (engine, events):
        for url in ("bad", "ok", "bad", "ok", "bad"):
            module.send(url)
    assert engine.stats()["p"]["errors"] == 3
    assert engine.stats()["p"]["disabled"] is False
    assert engine.stats()["p"]["last_error"] == "call: ValueError: no"
    assert len(events) == 2 + 2 + 3  # ok, ok, and the returns of the three bad calls


def test_a_switched_off_processor_leaves_its_code(app: App, backend: str) -> None:
    module, fragment = app
    original = module.send.__code__

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> None:
        raise RuntimeError("x")

    with tracing(processor(fragment, process=process), backend=backend, max_errors=1) as (engine, _):
        module.send("a")
        assert engine.stats()["p"]["disabled"]
        assert engine.instrumented == 0
        assert module.send.__code__ is original
        module.send("b")
        assert engine.stats()["p"]["calls"] == 1


def test_a_failing_build_context_switches_only_that_processor_off(
    app: App, backend: str, caplog: pytest.LogCaptureFixture,
) -> None:
    module, fragment = app

    def build_context(config: Any) -> dict[str, Any]:
        raise OSError("no config")

    bad = processor(fragment, name="bad", build_context=build_context)
    with tracing(bad, processor(fragment, name="good"), backend=backend) as (engine, events):
        module.send("x")
    assert engine.stats()["bad"]["disabled"] is True
    assert engine.stats()["bad"]["last_error"] == "build_context: OSError: no config"
    assert by_type(events) == ["good_call", "good_return"]
    assert any("build_context" in r.getMessage() for r in caplog.records)


def test_an_emit_that_raises_is_counted_not_raised(app: App, backend: str) -> None:
    module, fragment = app

    def emit(event: Event) -> None:
        raise TypeError("bus closed")

    engine = TracingEngine([Contribution(processor(fragment), "p")], emit, backend=backend, max_errors=100)
    engine.start()
    try:
        assert module.send("x") == "x:200"
    finally:
        engine.stop()
    assert engine.stats()["p"]["errors"] == 2
    assert engine.stats()["p"]["last_error"] == "emit: TypeError: bus closed"


# -- stop -------------------------------------------------------------------------------


def test_stop_leaves_nothing_behind(app: App, backend: str) -> None:
    module, fragment = app
    codes = {f: f.__code__ for f in (module.send, module.Client.send, module.fetch_all, module.afetch)}
    profile_before, threading_before = sys.getprofile(), threading.getprofile()
    meta_path_before = list(sys.meta_path)
    names = ("send", "fetch_all", "afetch")
    with tracing(processor(fragment, co_names=names), backend=backend) as (engine, events):
        tool_id = engine.tool_id
        if engine.backend == "trampoline":
            assert all(f.__code__ is not code for f, code in codes.items())
        if engine.backend == "monitoring":
            assert sys.monitoring.get_tool(tool_id) == "hostapp"
        if engine.backend == "profile":
            assert sys.getprofile() is not None
    assert not engine.running
    assert all(f.__code__ is code for f, code in codes.items())
    assert sys.getprofile() is profile_before
    assert threading.getprofile() is threading_before
    assert sys.meta_path == meta_path_before
    if tool_id is not None:
        mon = sys.monitoring
        assert mon.get_tool(tool_id) is None
        mon.use_tool_id(tool_id, "checking")  # nothing of ours may be left on the id
        try:
            assert mon.get_events(tool_id) == 0
            assert all(mon.get_local_events(tool_id, code) == 0 for code in codes.values())
        finally:
            mon.free_tool_id(tool_id)
    engine.stop()  # idempotent
    module.send("after")
    assert len(events) == 0


def test_introspection_is_unchanged_while_tracing(app: App, backend: str) -> None:
    module, fragment = app
    functions = (module.send, module.fetch_all, module.afetch, module.Client.send)

    def describe(f: Any) -> tuple[Any, ...]:
        code = f.__code__
        return (
            inspect.signature(f), f.__name__, f.__qualname__, code.co_name, code.co_filename,
            code.co_firstlineno, inspect.getsource(f),
            inspect.isgeneratorfunction(f), inspect.iscoroutinefunction(f),
        )

    before = [describe(f) for f in functions]
    with tracing(processor(fragment, co_names=("send", "fetch_all", "afetch")), backend=backend):
        during = [describe(f) for f in functions]
        with pytest.raises(TypeError, match=r"send\(\) missing 1 required positional argument: 'url'"):
            module.send()
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            module.send("x", nope=1)
    assert during == before


# -- engine -----------------------------------------------------------------------------


def test_engine_arguments_are_checked(app: App) -> None:
    _, fragment = app
    contribution = Contribution(processor(fragment), "one")
    with pytest.raises(ValueError, match="tracing.backend"):
        TracingEngine([contribution], print, backend="settrace")
    unavailable = "trampoline" if PY312 else "monitoring"
    with pytest.raises(ValueError, match=f"'{unavailable}' is not available"):
        TracingEngine([contribution], print, backend=unavailable)
    with pytest.raises(ValueError, match="max_errors"):
        TracingEngine([contribution], print, max_errors=0)
    with pytest.raises(ValueError, match="two trace processors are named 'p'.*'one'.*'two'"):
        TracingEngine([contribution, Contribution(processor(fragment), "two")], print)
    engine = TracingEngine([contribution], print)
    engine.start()
    try:
        with pytest.raises(RuntimeError, match="start it once"):
            engine.start()
    finally:
        engine.stop()


def test_only_one_engine_on_the_profile_backend(app: App) -> None:
    _, fragment = app
    with tracing(processor(fragment), backend="profile"):
        with pytest.raises(RuntimeError, match="already uses the 'profile' backend"):
            TracingEngine([Contribution(processor(fragment), "x")], print, backend="profile").start()


@pytest.mark.skipif(not PY312, reason="sys.monitoring tool ids")
def test_monitoring_takes_the_next_free_tool_id(app: App) -> None:
    module, fragment = app
    mon = sys.monitoring
    taken = [tool for tool in (mon.PROFILER_ID, 3, 4) if mon.get_tool(tool) is None][:1]
    for tool in taken:
        mon.use_tool_id(tool, "someone else")
    try:
        with tracing(processor(fragment)) as (first, events):
            with tracing(processor(fragment, name="q")) as (second, _):
                module.send("x")
                ids = (first.tool_id, second.tool_id)
    finally:
        for tool in taken:
            mon.free_tool_id(tool)
    assert len(set(ids)) == 2 and not set(ids) & set(taken)
    assert all(mon.get_tool(tool) is None for tool in ids)
    assert by_type(events) == ["p_call", "p_return"]


@pytest.mark.skipif(PY312, reason="the trampoline backend is 3.11's")
def test_trampoline_with_another_profiler_installed(app: App) -> None:
    module, fragment = app
    seen: list[tuple[str, str]] = []

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if frame.f_code.co_name == "send":
            seen.append((event, frame.f_code.co_name))

    locals_seen: list[dict[str, Any]] = []
    proc = processor(fragment, process=lambda f, e, a, c: locals_seen.append(dict(f.f_locals)))
    with tracing(proc) as (_, events):
        sys.setprofile(profiler)
        try:
            module.send("x")
        finally:
            assert sys.getprofile() is profiler
            sys.setprofile(None)
    assert by_type(events) == ["p_call", "p_return"]
    arguments = {"url": "x", "timeout": 1.0, "retries": 0}
    assert locals_seen == [arguments, {**arguments, "status": 200}]
    assert ("call", "send") in seen and ("return", "send") in seen


@pytest.mark.skipif(PY312, reason="the trampoline backend is 3.11's")
def test_trampoline_under_cprofile_hands_processors_the_trampoline_frame(app: App) -> None:
    import cProfile

    module, fragment = app
    locals_seen: list[dict[str, Any]] = []
    proc = processor(fragment, process=lambda f, e, a, c: locals_seen.append(dict(f.f_locals)))
    with tracing(proc) as (_, events):
        profile = cProfile.Profile()
        profile.enable()
        try:
            module.send("x")
        finally:
            profile.disable()
    assert by_type(events) == ["p_call", "p_return"]
    assert locals_seen[0] == {"url": "x", "timeout": 1.0, "retries": 0}


def test_import_hostapp_does_not_import_the_tracing_package() -> None:
    code = "import hostapp, sys; print(sorted(m for m in sys.modules if m.startswith('hostapp.tracing')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_processor_whose_library_is_missing_is_not_applicable_not_an_error(backend: str) -> None:
    missing = TraceProcessor(
        name="nolib", co_names=("anything",), path_fragment="nolib/", call_type="c", return_type="r",
        requires=("hostapp_no_such_library_xyz",),
        build_context=lambda config: 1 / 0,  # never called: the processor is skipped first
    )
    with tracing(missing, backend=backend) as (engine, seen):
        pass
    stats = engine.stats()["nolib"]
    assert stats["applicable"] is False
    assert stats["not_applicable"] == "hostapp_no_such_library_xyz is not installed"
    assert stats["errors"] == 0 and stats["disabled"] is False and stats["last_error"] is None
    assert seen == []


def test_requires_must_be_a_list_of_module_names() -> None:
    with pytest.raises(ValueError, match="TraceProcessor.requires"):
        TraceProcessor(name="x", path_fragment="x/", call_type="c", return_type="r", requires="requests")


@pytest.mark.parametrize("queue_size", [100_000, 1])
def test_deferred_events_through_a_real_bus_are_the_same_events(app: App, backend: str, queue_size: int) -> None:
    """A processor without call/process hands raw items to the bus (EventBus.raw_emitter);
    the sink gets the same events the direct path makes - also when a full queue makes the
    emitting thread build them (queue_size=1, spill to dead letters is not involved)."""
    from hostapp import EventSink
    from hostapp.config import Config
    from hostapp.events import EventBus

    module, fragment = app
    got: list[Event] = []
    sink = Contribution(EventSink(name="keep", handle=got.extend), "test-plugin")
    config = Config.from_dict(
        {"events": {"sinks": {"keep": {}}, "queue_size": queue_size, "full_policy": "block",
                    "max_block_ms": 1000}},
        environ={},
    )
    bus = EventBus([sink], config, run_id="run-raw")
    bus.start()
    direct: list[Event] = []
    proc = processor(fragment, subtype="raw")
    engine = TracingEngine([Contribution(proc, "test-plugin")], bus.emit, backend=backend, run_id="run-raw",
                           bus=bus)
    engine.start()
    try:
        for i in range(5):
            module.send(f"u{i}")
    finally:
        engine.stop()
    bus.stop(10)
    with tracing(proc, backend=backend, run_id="run-raw") as (_, direct):
        module.send("u0")
    assert [e.type for e in got] == ["p_call", "p_return"] * 5
    assert len({e.id for e in got}) == 10
    for call, ret in zip(got[::2], got[1::2]):
        assert type(call) is Event and type(ret) is Event
        assert call.id == call.data["frame_id"] == ret.data["frame_id"]
        assert call.subtype == ret.subtype == "raw" and call.run_id == "run-raw" and call.source == "test-plugin"
        assert ret.data["duration_ns"] == ret.timestamp_ns - call.timestamp_ns >= 0
        assert call.data["timestamp_ns"] == call.timestamp_ns
        assert set(call.data) == set(direct[0].data)
        assert set(ret.data) == set(direct[1].data)
        assert call.data["call_site"]["file"] == __file__
    assert engine.stats()["p"]["events"] == 10
