"""The event instrument never makes the probed thread wait for a sink (refused, hung, slow)."""

from __future__ import annotations

import importlib
import sys
import threading
import time

import hostapp
from hostapp.probes import default_registry
from hostapp.probes.manager import ProbeManager

CALLS = 20_000


def test_a_hot_probed_function_runs_on_while_the_sinks_refuse_hang_and_crawl(tmp_path, monkeypatch):
    (tmp_path / "hot.py").write_text("def work(i):\n    return i + 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop("hot", None)
    import hot

    hang = threading.Event()
    delivered = {"slow": 0}

    def refuse(batch):
        raise ConnectionRefusedError("refused")

    def hung(batch):
        hang.wait(60)

    def slow(batch):
        time.sleep(0.05)
        delivered["slow"] += len(batch)

    class Sinks:
        @hostapp.hookimpl
        def hostapp_event_sinks(self):
            return [
                hostapp.EventSink(name="refused", handle=refuse, event_types=("probe",), max_retries=0),
                hostapp.EventSink(name="hung", handle=hung, event_types=("probe",)),
                hostapp.EventSink(name="slow", handle=slow, event_types=("probe",)),
            ]

    config = {
        "store": {"path": str(tmp_path / "store.sqlite3")},
        "plugins": {"autoload": False, "cache": False, "disable": ["tasks.probes"]},
        "events": {"queue_size": 50, "max_block_ms": 100, "batch_size": 10,
                   "sinks": {"refused": {}, "hung": {}, "slow": {}, "sqlite": {"enabled": False}}},
        "probes": {"event_buffer": 200},
        "host": {"shutdown_timeout": 5},
        "tracing": {"enabled": False},
    }
    from hostapp_plugins.instruments import event as event_plugin

    host = hostapp.Host(config, [("sinks", Sinks()), ("instruments.event", event_plugin)])
    host.start()
    try:
        manager = ProbeManager(host=host, types={"event": event_plugin.hostapp_instrument_types()})
        manager.specs = {"hot": {"target": "hot.work", "instrument": {"type": "event", "name": "hot", "value": "i",
                                 "event": "return", "custom": {}}, "lifespan": 10, "applied": {}}}
        manager.apply()
        assert manager.records()["hot"]["state"] == "active", manager.records()

        finished = threading.Event()

        def loop():
            for i in range(CALLS):
                hot.work(i)
            finished.set()

        thread = threading.Thread(target=loop)
        thread.start()
        thread.join(120)  # liveness, not a timing: a thread that waited on the hung sink never ends
        assert finished.is_set(), "the probed thread is stuck behind a sink"
        att = default_registry().probes["hot.work"].attachments[manager._instrument_name("hot")]
        assert att.fires == CALLS and att.errors == 0
        assert att.snapshot()["dropped"] > 0  # the buffer filled while the bus stalled: counted, not waited for
        hang.set()  # the hung sink answers again; closing exports what is left
        manager.close()
        counts = att.snapshot()
        assert counts["pending"] == 0
        assert counts["exported"] + counts["dropped"] + counts["failed"] == CALLS
    finally:
        hang.set()
        host.stop()
    stats = host.stats
    assert stats["refused"]["dead_lettered"] > 0 or stats["refused"]["failed"] > 0
    assert delivered["slow"] > 0
