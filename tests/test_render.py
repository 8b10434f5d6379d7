"""Event renderers: lookup by type, the generic fallback, and a broken renderer never hiding an event."""

from __future__ import annotations

import logging

import pytest

import hostapp
from hostapp.events import Event
from hostapp.render import Renderers, generic_summary


def contribution(renderer: hostapp.EventRenderer, plugin: str = "p") -> hostapp.Contribution:
    return hostapp.Contribution(renderer, plugin)


def charge(amount: int = 5) -> Event:
    return Event.create("charge_end", "stripe", data={"amount": amount, "duration_ns": 2_000_000})


def test_a_plugin_renders_its_own_event_type_and_others_are_generic():
    renderer = hostapp.EventRenderer(
        name="charge", event_types=("charge_end",),
        summary=lambda e: f"charged {e.data['amount']}",
        fields=lambda e: [("amount", e.data["amount"])], shape="span", label="payment",
    )
    renderers = Renderers([contribution(renderer)])
    assert renderers.summary(charge()) == "charged 5"
    assert renderers.fields(charge()) == [("amount", 5)]
    assert renderers.shape(charge()) == "span"
    assert renderers.label(charge()) == "payment"
    other = Event.create("monitoring_event", "heartbeat", data={"service": "billing", "n": [1, 2]})
    assert renderers.summary(other) == 'heartbeat service=billing n=[1,2]'
    assert renderers.fields(other) == [("subtype", "heartbeat"), ("source", None), ("service", "billing"), ("n", [1, 2])]
    assert renderers.shape(other) == "mark"
    assert renderers.label(other) == "monitoring_event"


def test_an_exact_type_beats_a_glob_and_plugin_order_breaks_ties():
    glob = hostapp.EventRenderer(name="all", event_types=("charge*",), summary=lambda e: "glob")
    exact = hostapp.EventRenderer(name="exact", event_types=("charge_end",), summary=lambda e: "exact")
    second = hostapp.EventRenderer(name="second", event_types=("charge_end",), summary=lambda e: "second")
    renderers = Renderers([contribution(glob, "a"), contribution(exact, "b"), contribution(second, "c")])
    assert renderers.summary(charge()) == "exact"
    assert renderers.summary(Event.create("charge_start")) == "glob"


def test_a_renderer_that_raises_is_reported_once_and_the_event_still_shows(caplog: pytest.LogCaptureFixture):
    broken = hostapp.EventRenderer(
        name="broken", event_types=("charge_end",), summary=lambda e: e.data["missing"],
        fields=lambda e: 1 / 0,
    )
    renderers = Renderers([contribution(broken)])
    with caplog.at_level(logging.WARNING, logger="hostapp.render"):
        assert renderers.summary(charge()) == generic_summary(charge())
        assert renderers.summary(charge()) == generic_summary(charge())
        assert ("amount", 5) in renderers.fields(charge())
    assert len([r for r in caplog.records if "summary()" in r.getMessage()]) == 1
    assert renderers.errors["broken"] == "ZeroDivisionError: division by zero"


def test_a_long_summary_is_cut():
    event = Event.create("blob", data={"text": "x" * 2000})
    line = Renderers().summary(event)
    assert len(line) == 400 and line.endswith("...")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event_types": ()}, "event_types"),
        ({"event_types": "charge_end"}, "event_types"),
        ({"summary": "not callable"}, "summary"),
        ({"shape": "bar"}, "shape"),
    ],
)
def test_a_malformed_renderer_is_refused(kwargs: dict, message: str):
    fields = {"name": "r", "event_types": ("t",), "summary": str, **kwargs}
    with pytest.raises(ValueError, match=message):
        hostapp.EventRenderer(**fields)


def test_renderers_are_collected_from_plugins():
    @hostapp.hookimpl
    def hostapp_event_renderers():
        return hostapp.EventRenderer(name="charge", event_types=("charge_end",), summary=lambda e: "c")

    pm = hostapp.PluginManager()
    import types

    pm.register(types.SimpleNamespace(hostapp_event_renderers=hostapp_event_renderers), name="pay")
    renderers = Renderers(pm.collect("hostapp_event_renderers"))
    assert renderers.summary(charge()) == "c"


def test_the_built_in_http_renderer_shows_a_call_record_and_a_kolo_pair():
    from hostapp_plugins.renderers import http as http_renderers

    pm = hostapp.PluginManager()
    pm.register(http_renderers, name="renderers.http")
    renderers = Renderers(pm.collect("hostapp_event_renderers"))
    call = Event.create("outbound_http_request", "requests", data={
        "method": "GET", "url": "https://api.example.org/v1/items?token=[REDACTED]", "status_code": 200,
        "duration_ns": 1_200_000, "via": ["urllib3", "http.client"], "redirects": 1, "span_id": "00f067aa0ba902b7",
    })
    assert renderers.summary(call) == "GET https://api.example.org/v1/items?token=[REDACTED] -> 200  requests (1 redirect)"
    assert renderers.shape(call) == "span" and renderers.label(call) == "HTTP"
    fields = dict(renderers.fields(call))
    assert fields["status"] == 200 and fields["via"] == ["urllib3", "http.client"] and fields["library"] == "requests"
    failed = Event.create("outbound_http_request", "httpx", data={
        "method": "POST", "url": "http://127.0.0.1:1/", "status_code": None,
        "error": {"type": "httpx.ConnectError", "message": "refused"},
    })
    assert renderers.summary(failed) == "POST http://127.0.0.1:1/ -> ConnectError  httpx"
    kolo_request = Event.create("outbound_http_request", "urllib", data={"method": "GET", "url": "http://x/", "frame_id": "f"})
    assert renderers.summary(kolo_request).endswith("-> …  urllib")
