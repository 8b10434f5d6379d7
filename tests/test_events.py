"""The event model and the event bus: routing, batching, retries, dead letters, policies.

Real sinks (plain functions and objects), real threads, real SQLite files in tmp_path.
No timing assertions that can flake: waits poll for a condition with a generous limit,
and the only time comparisons are lower bounds (a wait lasted *at least* its delay).

``HOSTAPP_TEST_EVENTS`` sets the size of the must-show run (default 200,000; the issue's
1,000,000 is ``HOSTAPP_TEST_EVENTS=1000000``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostapp.config import Config
from hostapp.errors import ConfigError, HostappError
from hostapp.events import (
    DeadLetter,
    Event,
    EventBus,
    PermanentError,
    RetryAfter,
    SinkConfig,
    SinkError,
    id_timestamp_ns,
    new_id,
    redeliver,
)
from hostapp.store import Store
from hostapp.types import Contribution, EventSink
from hostapp_plugins.sinks import sqlite as sqlite_sink

# -- helpers -----------------------------------------------------------------------------


def make_config(tmp_path: Path, sinks: dict[str, dict[str, Any]], **events: Any) -> Config:
    """A configuration enabling exactly ``sinks`` (the default sqlite sink off unless given)."""
    tables = {"sqlite": {"enabled": False}, **sinks}
    return Config.from_dict({"events": {"sinks": tables, **events}}, root=tmp_path, environ={})


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def assert_adds_up(stats: dict[str, Any]) -> None:
    """The documented identity of the counters."""
    assert stats["accepted"] == (
        stats["delivered"] + stats["dead_lettered"] + stats["dropped"] + stats["discarded"]
        + stats["queue_depth"] + stats["spill_depth"] + stats["in_flight"]
    ), stats


class Recorder:
    """A sink recording every batch; optionally failing or waiting on a gate."""

    def __init__(
        self,
        name: str = "rec",
        *,
        event_types: tuple[str, ...] = ("*",),
        fail: Callable[[int, list[Event]], Exception | None] | None = None,
        gate: threading.Event | None = None,
        **options: Any,
    ) -> None:
        self.name = name
        self.event_types = event_types
        self.fail = fail
        self.gate = gate
        self.options = options
        self.calls = 0
        self.batches: list[list[Event]] = []
        self.call_times: list[float] = []
        self.threads: set[int] = set()
        self.opened_with: dict[str, Any] | None = None
        self.closed = False

    def open(self, config: dict[str, Any]) -> None:
        self.opened_with = config

    def handle(self, events: list[Event]) -> None:
        self.calls += 1
        self.call_times.append(time.monotonic())
        self.threads.add(threading.get_ident())
        if self.gate is not None:
            self.gate.wait()
        if self.fail is not None:
            error = self.fail(self.calls, events)
            if error is not None:
                raise error
        self.batches.append(list(events))

    def close(self) -> None:
        self.closed = True

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]

    def contribution(self) -> Contribution[EventSink]:
        spec = EventSink(
            name=self.name, handle=self.handle, event_types=self.event_types,
            open=self.open, close=self.close, **self.options,
        )
        return Contribution(spec, plugin=f"test-{self.name}")


def emit_numbered(bus: EventBus, n: int, type: str = "monitoring_event", start: int = 0) -> list[Event]:
    events = [Event.create(type, data={"i": i}) for i in range(start, start + n)]
    for event in events:
        bus.emit(event)
    return events


# -- Event -------------------------------------------------------------------------------


def test_event_create_fills_identity_time_process_and_thread():
    before = time.time_ns()
    event = Event.create("monitoring_event", "heartbeat", data={"ok": True}, run_id="r1", source="acme")
    after = time.time_ns()
    assert type(event) is Event
    assert event.type == "monitoring_event" and event.subtype == "heartbeat"
    assert event.data == {"ok": True} and event.run_id == "r1" and event.source == "acme"
    assert before <= event.timestamp_ns <= after
    assert event.pid == os.getpid() and event.thread_id == threading.get_ident()
    assert len(event.id) == 32 and int(event.id, 16) >= 0
    assert id_timestamp_ns(event.id) == event.timestamp_ns
    assert Event.create("x").data == {}


def test_events_are_frozen_comparable_and_hashable_by_id():
    event = Event.create("t", data={"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.type = "other"  # type: ignore[misc]
    assert Event.from_dict(event.to_dict()) == event
    assert hash(event) == hash(event.id)
    assert len({event, Event.from_dict(event.to_dict())}) == 1


def test_ids_are_unique_and_time_ordered_across_threads():
    per_thread: list[list[Event]] = [[] for _ in range(4)]

    def make(out: list[Event]) -> None:
        out.extend(Event.create("t") for _ in range(20_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [e.id for out in per_thread for e in out]
    assert len(set(ids)) == len(ids)
    for out in per_thread:  # within a thread, creation order is id order
        assert [e.id for e in out] == sorted(e.id for e in out)
    everything = sorted((e for out in per_thread for e in out), key=lambda e: e.id)
    assert [e.timestamp_ns for e in everything] == sorted(e.timestamp_ns for e in everything)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_makes_different_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, (new_id() + str(Event.create("t").pid)).encode())
        os._exit(0)
    os.close(write)
    text = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    child_id, child_pid = text[:32], int(text[32:])
    assert child_id[-8:] != new_id()[-8:]  # a new random node
    assert child_pid == pid


def test_event_validation_and_from_dict_errors():
    with pytest.raises(ValueError, match="Event.type"):
        Event("x" * 32, "", None, {}, 0, None, 0, 0, None)
    with pytest.raises(ValueError, match="Event.data"):
        Event("x" * 32, "t", None, [], 0, None, 0, 0, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="missing required key"):
        Event.from_dict({"type": "t"})
    minimal = Event.from_dict({"id": "a" * 32, "type": "t", "timestamp_ns": 5})
    assert (minimal.data, minimal.pid, minimal.subtype) == ({}, 0, None)


# -- routing and batching ----------------------------------------------------------------


def test_routing_exact_glob_and_wildcard(tmp_path):
    exact = Recorder("exact", event_types=("monitoring_event",))
    glob = Recorder("glob", event_types=("background_job*", "sending_?vent"))
    every = Recorder("every")
    config = make_config(tmp_path, {"exact": {}, "glob": {}, "every": {}})
    bus = EventBus([exact.contribution(), glob.contribution(), every.contribution()], config)
    bus.start()
    for kind in ("monitoring_event", "sending_event", "background_job_start", "other", "monitoring_event"):
        bus.publish(kind)
    stats = bus.stop(10)
    assert [e.type for e in exact.events] == ["monitoring_event", "monitoring_event"]
    assert [e.type for e in glob.events] == ["sending_event", "background_job_start"]
    assert len(every.events) == 5
    assert stats["glob"]["accepted"] == 2 and stats["every"]["accepted"] == 5
    assert exact.closed and every.closed
    assert exact.threads.isdisjoint(every.threads)  # a worker thread per sink


def test_a_sink_is_on_when_its_plugin_is_on(tmp_path, caplog):
    """A table holds a sink's settings; enabled = false turns it off; an opt_in sink
    needs a table."""
    on, off, untabled = Recorder("on"), Recorder("off"), Recorder("untabled")
    opt_in, opt_in_tabled = Recorder("opt-in"), Recorder("opt-in-tabled")
    config = make_config(tmp_path, {"on": {}, "off": {"enabled": False}, "ghost": {}, "opt-in-tabled": {}})
    contributions = [on.contribution(), off.contribution(), untabled.contribution()]
    for recorder in (opt_in, opt_in_tabled):
        contribution = recorder.contribution()
        contributions.append(dataclasses.replace(contribution, spec=dataclasses.replace(contribution.spec, opt_in=True)))
    bus = EventBus(contributions, config)
    assert bus.sinks == ["on", "untabled", "opt-in-tabled"]
    assert "[events.sinks.ghost] is configured but no plugin contributes" in caplog.text
    bus.start()
    bus.publish("t")
    bus.stop(10)
    assert len(on.events) == len(untabled.events) == len(opt_in_tabled.events) == 1
    assert not off.events and not opt_in.events


def test_open_gets_the_table_with_context(tmp_path):
    sink = Recorder("rec")
    config = make_config(tmp_path, {"rec": {"colour": "blue", "batch_size": 7}})
    store = Store(tmp_path / "s.sqlite3")
    bus = EventBus([sink.contribution()], config, store=store)
    bus.start()
    bus.stop(10)
    table = sink.opened_with
    assert isinstance(table, SinkConfig)
    assert table == {"colour": "blue", "batch_size": 7}
    assert table.name == "rec" and table.config is config and table.store is store


def test_batches_by_size_then_by_time(tmp_path):
    sink = Recorder("rec")
    config = make_config(tmp_path, {"rec": {}}, batch_size=100, flush_interval_ms=50)
    bus = EventBus([sink.contribution()], config)
    emit_numbered(bus, 250)  # before start: they wait in the queue
    bus.start()
    wait_until(lambda: len(sink.events) == 250)  # no stop(): the interval flushes the rest
    assert [len(b) for b in sink.batches] == [100, 100, 50]
    assert [e.data["i"] for e in sink.events] == list(range(250))
    bus.publish("late")
    wait_until(lambda: len(sink.events) == 251)
    stats = bus.stop(10)
    assert stats["rec"]["delivered"] == 251 and stats["rec"]["accepted"] == 251


def test_sink_own_batch_size_and_table_override(tmp_path):
    by_spec = Recorder("spec", batch_size=10)
    by_table = Recorder("table", batch_size=10)
    config = make_config(tmp_path, {"spec": {}, "table": {"batch_size": 25}}, batch_size=1000)
    bus = EventBus([by_spec.contribution(), by_table.contribution()], config)
    emit_numbered(bus, 50)
    bus.start()
    bus.stop(10)
    assert max(len(b) for b in by_spec.batches) == 10
    assert max(len(b) for b in by_table.batches) == 25


def test_invalid_bus_key_in_a_sink_table_is_a_config_error(tmp_path):
    """Checked when the configuration is read, like the events.* key of the same name."""
    with pytest.raises(ConfigError, match=r"events\.sinks\.rec\.batch_size: must be >= 1"):
        make_config(tmp_path, {"rec": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="events.sinks.rec.full_policy"):
        make_config(tmp_path, {"rec": {"full_policy": "explode"}})
    with pytest.raises(ConfigError, match="events.sinks.rec.flush_interval_ms: expected a finite number, got nan"):
        make_config(tmp_path, {"rec": {"flush_interval_ms": float("nan")}})
    with pytest.raises(ConfigError, match="events.sinks.rec.enabled: expected true or false, got a string"):
        make_config(tmp_path, {"rec": {"enabled": "no"}})


def test_async_sink_runs_on_its_worker_loop(tmp_path):
    seen: list[Event] = []
    loops: list[Any] = []

    async def open_(config: dict[str, Any]) -> None:
        loops.append(asyncio.get_running_loop())

    async def handle(events: list[Event]) -> None:
        await asyncio.sleep(0)
        loops.append(asyncio.get_running_loop())
        seen.extend(events)

    async def close() -> None:
        loops.append(asyncio.get_running_loop())

    spec = EventSink(name="aio", handle=handle, open=open_, close=close)
    bus = EventBus([Contribution(spec, "aio")], make_config(tmp_path, {"aio": {}}))
    bus.start()
    emit_numbered(bus, 30)
    stats = bus.stop(10)
    assert len(seen) == 30 and stats["aio"]["delivered"] == 30
    assert len({id(loop) for loop in loops}) == 1  # one loop, owned by the worker
    assert loops[0].is_closed()


def test_emit_and_stop_from_async_code(tmp_path):
    sink = Recorder("rec")
    bus = EventBus([sink.contribution()], make_config(tmp_path, {"rec": {}}))

    async def main() -> dict[str, Any]:
        await bus.astart()
        for i in range(10):
            bus.publish("t", data={"i": i})
        return await bus.astop(10)

    assert asyncio.run(main())["rec"]["delivered"] == 10


# -- retries and dead letters ------------------------------------------------------------


def test_failed_batch_is_retried_then_delivered(tmp_path):
    sink = Recorder("rec", fail=lambda call, _: RuntimeError("flaky") if call <= 3 else None)
    errors: list[SinkError] = []
    config = make_config(tmp_path, {"rec": {}}, retry_backoff_ms=1)
    bus = EventBus([sink.contribution()], config, on_error=errors.append)
    emit_numbered(bus, 5)
    bus.start()
    stats = bus.stop(10)["rec"]
    assert len(sink.events) == 5
    assert (stats["failed"], stats["retried"], stats["delivered"], stats["dead_lettered"]) == (3, 3, 5, 0)
    assert [e.stage for e in errors] == ["handle"] * 3
    assert errors[0].error == "RuntimeError: flaky" and errors[0].plugin == "test-rec"


def test_backoff_doubles_with_jitter_and_retry_after_is_honoured(tmp_path):
    sink = Recorder("rec", fail=lambda call, _: RetryAfter(0.3) if call == 1 else (
        RuntimeError("again") if call in (2, 3) else None))
    config = make_config(tmp_path, {"rec": {"retry_backoff_ms": 50}})
    bus = EventBus([sink.contribution()], config)
    bus.publish("t")
    bus.start()
    bus.stop(10)
    gaps = [b - a for a, b in itertools.pairwise(sink.call_times)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.3  # Retry-After: the delay asked for, at least
    assert gaps[1] >= 0.05  # retry 2: 50 ms x 2, with jitter in [50, 100] ms
    assert gaps[2] >= 0.1  # retry 3: 50 ms x 4, with jitter in [100, 200] ms


def test_backoff_delays_are_capped_and_jittered(tmp_path):
    config = make_config(tmp_path, {"rec": {"retry_backoff_ms": 100, "retry_max_backoff_ms": 1000}})
    worker = EventBus([Recorder().contribution()], config)._workers[0]
    error = RuntimeError("x")
    for attempt, full in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (30, 1.0)]:
        delays = [worker._backoff(attempt, error) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays), attempt
        assert len(set(delays)) > 1  # jitter
    assert worker._backoff(9, RetryAfter(42)) == 42  # honoured, not capped


def test_exhausted_retries_become_dead_letters_in_the_store(tmp_path):
    healthy = threading.Event()
    sink = Recorder("rec", fail=lambda call, _: None if healthy.is_set() else OSError("down"))
    store = Store(tmp_path / "s.sqlite3")
    config = make_config(tmp_path, {"rec": {"max_retries": 2, "retry_backoff_ms": 1}}, batch_size=10)
    bus = EventBus([sink.contribution()], config, store=store)
    sent = emit_numbered(bus, 25)
    bus.start()
    wait_until(lambda: bus.stats()["rec"]["dead_lettered"] == 25)
    stats = bus.stats()["rec"]
    assert (stats["failed"], stats["retried"], stats["delivered"]) == (9, 6, 0)  # 3 batches x 3 calls
    assert_adds_up(stats)
    letters = store.dead_letters(sink="rec")
    assert [d.event for d in letters] == sent
    assert {d.attempts for d in letters} == {3} and {d.error for d in letters} == {"OSError: down"}
    assert bus.dead_letters("rec") == letters

    healthy.set()
    result = bus.redeliver("rec")
    assert result == {"rec": {"redelivered": 25, "failed": 0, "error": None}}
    assert [e.data["i"] for e in sink.events] == list(range(25))
    assert store.dead_letters() == []
    stats = bus.stop(10)["rec"]
    assert stats["redelivered"] == 25 and stats["dead_lettered"] == 25  # history is kept
    assert_adds_up(stats)


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_a_sink_raising_a_base_exception_keeps_its_batch_and_its_worker(tmp_path, error):
    """handle() raising SystemExit/KeyboardInterrupt is a failed batch like any other: it is
    retried, then kept as dead letters; the worker goes on with the next batches."""
    sink = Recorder("rec", fail=lambda call, _: error if call <= 2 else None)
    store = Store(tmp_path / "s.sqlite3")
    config = make_config(tmp_path, {"rec": {"max_retries": 1, "retry_backoff_ms": 1}}, batch_size=5)
    bus = EventBus([sink.contribution()], config, store=store)
    sent = emit_numbered(bus, 10)
    bus.start()
    stats = bus.stop(10)["rec"]
    assert stats["state"] == "closed" and sink.closed
    assert (stats["failed"], stats["dead_lettered"], stats["delivered"]) == (2, 5, 5)
    assert_adds_up(stats)
    assert [d.event for d in store.dead_letters(sink="rec")] == sent[:5]
    assert sink.events == sent[5:]


def test_redeliver_command_function_after_the_run(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    failing = Recorder("rec", fail=lambda *_: PermanentError("400 Bad Request"))
    config = make_config(tmp_path, {"rec": {}})
    bus = EventBus([failing.contribution()], config, store=store)
    sent = emit_numbered(bus, 12)
    bus.start()
    stats = bus.stop(10)["rec"]
    assert (stats["failed"], stats["retried"], stats["dead_lettered"]) == (1, 0, 12)  # no retries
    assert store.dead_letter_counts() == {"rec": 12}
    store.add_dead_letters("gone", sent[:2], "x")

    fixed = Recorder("rec")  # the sink is fixed; a later `hostapp events redeliver`
    result = redeliver(store, [fixed.contribution()], config)
    assert result["rec"] == {"redelivered": 12, "failed": 0, "error": None}
    assert "not installed, or is off" in result["gone"]["error"]
    assert fixed.events == sent
    assert store.dead_letter_counts() == {"gone": 2}


def test_redelivery_that_fails_again_keeps_the_letters(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    store.add_dead_letters("rec", [Event.create("t") for _ in range(3)], "old", attempts=2)
    sink = Recorder("rec", fail=lambda *_: OSError("still down"))
    config = make_config(tmp_path, {"rec": {"max_retries": 1, "retry_backoff_ms": 1}})
    result = redeliver(store, [sink.contribution()], config, "rec")
    assert result["rec"]["failed"] == 3 and result["rec"]["error"] == "OSError: still down"
    letters = store.dead_letters()
    assert [(d.attempts, d.error) for d in letters] == [(4, "OSError: still down")] * 3


def test_without_a_store_dead_letters_stay_in_memory(tmp_path, caplog):
    healthy = threading.Event()
    sink = Recorder("rec", fail=lambda *_: None if healthy.is_set() else OSError("down"))
    config = make_config(tmp_path, {"rec": {"max_retries": 0}})
    bus = EventBus([sink.contribution()], config, store=None)
    sent = emit_numbered(bus, 4)
    bus.start()
    wait_until(lambda: bus.stats()["rec"]["dead_lettered"] == 4)
    letters = bus.dead_letters()
    assert all(isinstance(d, DeadLetter) for d in letters)
    assert [d.event for d in letters] == sent
    assert "kept as dead letters" in caplog.text
    healthy.set()
    assert bus.redeliver()["rec"]["redelivered"] == 4
    assert bus.dead_letters() == [] and sink.events == sent
    bus.stop(10)


def test_a_sink_that_fails_to_open_keeps_its_events_as_dead_letters(tmp_path):
    def broken_open(config: dict[str, Any]) -> None:
        raise ConnectionRefusedError("no server")

    spec = EventSink(name="broken", handle=lambda events: None, open=broken_open)
    ok = Recorder("ok")
    errors: list[SinkError] = []
    store = Store(tmp_path / "s.sqlite3")
    config = make_config(tmp_path, {"broken": {}, "ok": {}})
    bus = EventBus([Contribution(spec, "acme"), ok.contribution()], config, store=store, on_error=errors.append)
    bus.start()
    emit_numbered(bus, 5)
    stats = bus.stop(10)
    assert stats["broken"]["state"] == "failed"
    assert "open failed: ConnectionRefusedError: no server" in stats["broken"]["error"]
    assert stats["broken"]["dead_lettered"] == 5 and stats["ok"]["delivered"] == 5
    assert [(e.sink, e.stage) for e in errors] == [("broken", "open")]
    assert len(store.dead_letters(sink="broken")) == 5
    assert_adds_up(stats["broken"])


# -- queue policies ----------------------------------------------------------------------


def test_drop_policy_counts_every_dropped_event(tmp_path):
    sink = Recorder("rec")
    config = make_config(tmp_path, {"rec": {}}, queue_size=10, full_policy="drop")
    bus = EventBus([sink.contribution()], config)
    emit_numbered(bus, 100)  # no worker yet: the queue holds 10
    stats = bus.stats()["rec"]
    assert (stats["accepted"], stats["queue_depth"], stats["dropped"]) == (100, 10, 90)
    bus.start()
    stats = bus.stop(10)["rec"]
    assert (stats["delivered"], stats["dropped"]) == (10, 90)
    assert [e.data["i"] for e in sink.events] == list(range(10))


def test_block_policy_waits_for_room(tmp_path):
    sink = Recorder("rec")
    config = make_config(tmp_path, {"rec": {}}, queue_size=10, max_block_ms=60_000)
    bus = EventBus([sink.contribution()], config)
    emit_numbered(bus, 10)
    done = threading.Event()

    def emitter() -> None:
        emit_numbered(bus, 5, start=10)  # blocks: the queue is full and no worker runs
        done.set()

    thread = threading.Thread(target=emitter)
    thread.start()
    wait_until(lambda: bus.stats()["rec"]["blocked"] == 1)
    assert not done.is_set()
    bus.start()  # the worker takes a batch: room
    thread.join(30)
    stats = bus.stop(10)["rec"]
    assert (stats["delivered"], stats["dropped"], stats["spilled"]) == (15, 0, 0)
    assert sorted(e.data["i"] for e in sink.events) == list(range(15))


def test_block_policy_gives_up_after_max_block_then_drops_without_a_store(tmp_path):
    sink = Recorder("rec")
    config = make_config(tmp_path, {"rec": {}}, queue_size=10, max_block_ms=50)
    bus = EventBus([sink.contribution()], config)
    emit_numbered(bus, 10)
    started = time.monotonic()
    bus.publish("overflow")
    assert time.monotonic() - started >= 0.05
    emit_numbered(bus, 20)  # stalled: no more waiting until the worker takes events
    stats = bus.stats()["rec"]
    assert (stats["blocked"], stats["dropped"], stats["accepted"]) == (1, 21, 31)
    bus.start()
    stats = bus.stop(10)["rec"]
    assert stats["delivered"] == 10
    assert_adds_up(stats)


def test_block_policy_falls_back_to_spill_with_a_store(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    sink = Recorder("rec")
    config = make_config(tmp_path, {"rec": {}}, queue_size=10, max_block_ms=1)
    bus = EventBus([sink.contribution()], config, store=store)
    emit_numbered(bus, 30)
    stats = bus.stats()["rec"]
    assert (stats["spilled"], stats["spill_depth"], stats["dropped"]) == (20, 20, 0)
    bus.start()
    stats = bus.stop(10)["rec"]
    assert stats["delivered"] == 30 and stats["spill_depth"] == 0
    assert sorted(e.data["i"] for e in sink.events) == list(range(30))


def test_spill_policy_writes_to_the_store_and_delivers_later(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    sink = Recorder("rec")
    config = make_config(tmp_path, {"rec": {}}, queue_size=10, full_policy="spill", batch_size=500)
    bus = EventBus([sink.contribution()], config, store=store)
    emit_numbered(bus, 2510)
    stats = bus.stats()["rec"]
    # 10 queued; the spill buffer is written in chunks of max(batch_size, 1000)
    assert (stats["queue_depth"], stats["spilled"], stats["spill_depth"]) == (10, 2500, 2500)
    assert store.spill_count(owner=bus.owner, sink="rec") == 2000
    assert_adds_up(stats)
    bus.start()
    stats = bus.stop(10)["rec"]
    assert (stats["delivered"], stats["dropped"], stats["spill_depth"]) == (2510, 0, 0)
    assert store.spill_count() == 0
    # spilled events go first whenever less than a full batch is queued, oldest first
    assert [e.data["i"] for e in sink.events] == list(range(10, 2510)) + list(range(10))


def test_spill_without_a_store_drops(tmp_path, caplog):
    sink = Recorder("rec")
    config = make_config(tmp_path, {"rec": {}}, queue_size=5, full_policy="spill")
    bus = EventBus([sink.contribution()], config, store=None)
    assert "full_policy = spill but the bus has no store" in caplog.text
    emit_numbered(bus, 8)
    assert bus.stats()["rec"]["dropped"] == 3
    bus.stop(1)


def test_spilled_events_of_an_ended_process_become_dead_letters(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    orphans = [Event.create("t", data={"i": i}) for i in range(3)]
    store.add_spill("999999999-deadbeef", "rec", orphans)  # no such pid
    bus = EventBus([Recorder("rec").contribution()], make_config(tmp_path, {"rec": {}}), store=store)
    bus.start()
    bus.stop(10)
    assert store.spill_count() == 0
    letters = store.dead_letters(sink="rec")
    assert [d.event for d in letters] == orphans
    assert "ended before delivering them" in letters[0].error


# -- stop --------------------------------------------------------------------------------


def test_stop_is_idempotent_and_later_emits_are_counted_as_dropped(tmp_path):
    sink = Recorder("rec")
    bus = EventBus([sink.contribution()], make_config(tmp_path, {"rec": {}}))
    bus.start()
    emit_numbered(bus, 3)
    first = bus.stop(10)
    assert bus.stop(10) == first
    bus.publish("late")
    stats = bus.stats()["rec"]
    assert (stats["delivered"], stats["dropped"], stats["accepted"]) == (3, 1, 4)
    assert stats["state"] == "closed" and sink.closed
    with pytest.raises(HostappError, match="stopped"):
        bus.start()


def test_stop_before_start_dead_letters_the_queue(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    bus = EventBus([Recorder("rec").contribution()], make_config(tmp_path, {"rec": {}}), store=store)
    emit_numbered(bus, 4)
    stats = bus.stop(1)["rec"]
    assert stats["dead_lettered"] == 4
    assert store.dead_letters()[0].error == "the event bus was stopped before it started"


def test_stop_timeout_cuts_retries_short_and_dead_letters_the_rest(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    sink = Recorder("rec", fail=lambda *_: OSError("down"))
    config = make_config(tmp_path, {"rec": {"retry_backoff_ms": 60_000}}, batch_size=10)
    bus = EventBus([sink.contribution()], config, store=store)
    bus.start()
    emit_numbered(bus, 35)
    wait_until(lambda: sink.calls >= 1)
    started = time.monotonic()
    stats = bus.stop(1.0)["rec"]
    assert time.monotonic() - started < 30  # not the 60 s backoff
    assert (stats["delivered"], stats["dead_lettered"], stats["in_flight"]) == (0, 35, 0)
    assert stats["accepted"] == 35 and stats["state"] == "closed"
    assert len(store.dead_letters()) == 35


def test_a_sink_stuck_in_handle_does_not_hold_up_stop(tmp_path):
    gate = threading.Event()
    stuck = Recorder("stuck", gate=gate)
    ok = Recorder("ok")
    config = make_config(tmp_path, {"stuck": {}, "ok": {}}, batch_size=5)
    store = Store(tmp_path / "s.sqlite3")
    bus = EventBus([stuck.contribution(), ok.contribution()], config, store=store)
    bus.start()
    emit_numbered(bus, 12)
    wait_until(lambda: stuck.calls == 1 and len(ok.events) == 12)
    stats = bus.stop(0.5)
    assert stats["stuck"]["state"] == "stuck" and "did not return" in stats["stuck"]["error"]
    # the batch handle() holds is kept too: nothing accepted is lost
    assert (stats["stuck"]["in_flight"], stats["stuck"]["dead_lettered"]) == (0, 12)
    assert_adds_up(stats["stuck"])
    assert len(store.dead_letters(sink="stuck")) == 12
    assert stats["ok"]["delivered"] == 12
    gate.set()  # let the daemon thread finish: its late return is not counted again
    wait_until(lambda: stuck.batches)
    time.sleep(0.05)
    later = bus.stats()["stuck"]
    assert {k: v for k, v in later.items() if k != "state"} == {k: v for k, v in stats["stuck"].items() if k != "state"}


# -- counters under load, and the issue's must-show --------------------------------------


def test_counters_add_up_in_every_snapshot_while_running(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    slow = Recorder("slow", fail=lambda call, _: OSError("odd") if call % 3 == 0 else None)
    config = make_config(
        tmp_path, {"slow": {"retry_backoff_ms": 1, "max_retries": 1}},
        queue_size=500, full_policy="spill", batch_size=50,
    )
    bus = EventBus([slow.contribution()], config, store=store)
    bus.start()
    stop = threading.Event()
    snapshots: list[dict[str, Any]] = []

    def watch() -> None:
        while not stop.is_set():
            snapshots.append(bus.stats()["slow"])
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    emit_numbered(bus, 20_000)
    final = bus.stop(30)["slow"]
    stop.set()
    watcher.join()
    assert len(snapshots) > 10
    for snapshot in snapshots:
        assert_adds_up(snapshot)
    assert final["accepted"] == 20_000 == final["delivered"] + final["dead_lettered"] + final["dropped"]


MUST_SHOW_EVENTS = int(os.environ.get("HOSTAPP_TEST_EVENTS", "200000"))


def test_must_show_four_threads_three_sinks_nothing_lost(tmp_path):
    """4 threads emit MUST_SHOW_EVENTS events; sinks: sqlite, one raising on every other
    batch, one sleeping 200 ms per batch. All events reach SQLite; the failing sink's
    counters add up exactly; the sqlite sink finishes before the slow one."""
    n, threads = MUST_SHOW_EVENTS, 4
    lock = threading.Lock()
    failing_calls = [0]
    failing_delivered: list[int] = []

    def failing(events: list[Event]) -> None:
        with lock:
            failing_calls[0] += 1
            if failing_calls[0] % 2:
                raise RuntimeError("every other batch fails")
            failing_delivered.append(len(events))

    def slow(events: list[Event]) -> None:
        time.sleep(0.2)

    store = Store(tmp_path / ".hostapp" / "hostapp.sqlite3")
    config = make_config(
        tmp_path,
        {
            "sqlite": {},
            "failing": {"retry_backoff_ms": 1, "batch_size": 5000},
            "slow": {"batch_size": 2000, "full_policy": "spill"},
        },
    )
    sinks = [
        Contribution(sqlite_sink.hostapp_event_sinks(), "sinks.sqlite"),
        Contribution(EventSink(name="failing", handle=failing), "test"),
        Contribution(EventSink(name="slow", handle=slow), "test"),
    ]
    bus = EventBus(sinks, config, store=store, run_id="must-show")
    bus.start()

    def emitter(k: int) -> None:
        create, emit = Event.create, bus.emit
        for i in range(k, n, threads):
            emit(create("monitoring_event", data={"i": i}, run_id="must-show"))

    workers = [threading.Thread(target=emitter, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stats = bus.stop(600)

    # every event is in SQLite, exactly once
    con = sqlite3.connect(store.path)
    count, distinct, low, high = con.execute(
        "SELECT count(*), count(DISTINCT json_extract(data, '$.i')), "
        "min(json_extract(data, '$.i')), max(json_extract(data, '$.i')) "
        "FROM events WHERE run_id = 'must-show'"
    ).fetchone()
    con.close()
    assert (count, distinct, low, high) == (n, n, 0, n - 1)
    sq = stats["sqlite"]
    assert (sq["accepted"], sq["delivered"], sq["dead_lettered"], sq["dropped"]) == (n, n, 0, 0)

    # the failing sink: delivered after retries or dead-lettered, and it all adds up
    fl = stats["failing"]
    assert fl["accepted"] == n == fl["delivered"] + fl["dead_lettered"] + fl["dropped"]
    assert fl["delivered"] == sum(failing_delivered)
    assert fl["failed"] == failing_calls[0] - len(failing_delivered) > 0
    dead_batches = fl["failed"] - fl["retried"]  # each dead-lettered batch ends with a failure
    assert dead_batches >= 0 and (dead_batches == 0) == (fl["dead_lettered"] == 0)
    assert len(store.dead_letters(sink="failing")) == fl["dead_lettered"]
    for s in stats.values():
        assert_adds_up(s)
        assert s["queue_depth"] == s["spill_depth"] == s["in_flight"] == 0

    # the slow sink got everything too, and it did not hold up the sqlite sink
    sl = stats["slow"]
    assert sl["delivered"] == n
    assert sq["last_delivered_ns"] < sl["last_delivered_ns"]
