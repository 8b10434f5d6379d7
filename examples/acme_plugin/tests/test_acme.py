"""Tests of the acme plugin, with the fixtures of hostapp's pytest plugin (no conftest needed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import acme_hostapp
import hostapp


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    """Each test starts from the plugin's default settings."""
    monkeypatch.setattr(acme_hostapp, "settings", dict(acme_hostapp.settings))


def event(type, subtype=None, **data):
    """Stands in for hostapp.events.Event: the fields the sink reads."""
    return SimpleNamespace(type=type, subtype=subtype, data=data, timestamp_ns=1)


def test_sink_is_collected_with_its_plugin_name(hostapp_pm, hostapp_register):
    hostapp_register(acme_hostapp, name="acme")
    [contribution] = hostapp_pm.collect("hostapp_event_sinks")
    assert contribution.plugin == "acme"
    assert contribution.spec.name == "acme"
    assert contribution.spec.event_types == ("monitoring_event", "outbound_http_*")


def test_sink_writes_one_json_line_per_event(hostapp_pm, hostapp_register, tmp_path):
    hostapp_register(acme_hostapp, name="acme")
    config = hostapp.Config.from_dict({"plugins": {"config": {"acme": {"service": "billing"}}}}, environ={})
    hostapp_pm.hook.hostapp_configure(config=config)
    [contribution] = hostapp_pm.collect("hostapp_event_sinks")
    sink = contribution.spec

    sink.open({"path": str(tmp_path / "audit" / "acme.jsonl")})
    sink.handle([event("monitoring_event", "tick", n=1), event("outbound_http_request", url="http://x")])
    sink.close()

    lines = (tmp_path / "audit" / "acme.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"service": "billing", "type": "monitoring_event", "subtype": "tick", "data": {"n": 1}, "timestamp_ns": 1},
        {"service": "billing", "type": "outbound_http_request", "subtype": None,
         "data": {"url": "http://x"}, "timestamp_ns": 1},
    ]


def test_a_bad_setting_is_reported_and_skipped(hostapp_pm, hostapp_register):
    hostapp_register(acme_hostapp, name="acme")
    config = hostapp.Config.from_dict({"plugins": {"config": {"acme": {"service": 42}}}}, environ={})
    hostapp_pm.hook.hostapp_configure(config=config)  # isolated: does not raise
    [error] = hostapp_pm.hook_errors
    assert (error.plugin, error.hook) == ("acme", "hostapp_configure")
    assert error.error == "ValueError: plugins.config.acme.service: expected a non-empty string, got 42"


def test_found_through_its_entry_point(hostapp_dist):
    hostapp_dist("acme-hostapp", "1.0.0", entry_points={"hostapp": {"acme": "acme_hostapp"}})
    pm = hostapp.PluginManager()
    pm.load(hostapp.Config.from_dict({"plugins": {"cache": False}}, environ={}), environ={})
    info = pm.infos["acme"]
    assert (info.state, info.source, info.distribution) == ("registered", "entrypoint", "acme-hostapp")
    assert info.hooks == ["hostapp_configure", "hostapp_event_sinks", "hostapp_startup"]
    assert (info.priority, info.tags) == (10, ("audit",))  # from hostapp_plugin_meta
    assert "acme" in [c.name for c in pm.collect("hostapp_event_sinks")]


@pytest.mark.hostapp(plugins=[("acme", acme_hostapp)], config={"plugins": {"config": {"acme": {"service": "billing"}}}})
def test_the_plugin_in_a_running_host(hostapp_host, hostapp_events, tmp_path):
    hostapp_host.emit("monitoring_event", "tick", n=1)
    started, tick = hostapp_events.wait_for("monitoring_event", n=2)
    assert (started.subtype, started.data) == ("started", {"plugin": "acme", "service": "billing"})
    hostapp_host.stop()  # the sink has written everything
    lines = (tmp_path / "acme-audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["subtype"] for line in lines] == ["started", "tick"]


def test_the_plugin_keeps_hostapps_contract():
    assert hostapp.testing.check_plugin(acme_hostapp) == {"event_sinks": ["acme"]}
