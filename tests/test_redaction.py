"""The redaction policy of the event path (hostapp.events.redaction), rule by rule."""

from __future__ import annotations

import json

import pytest

from hostapp import Config
from hostapp.events import Event
from hostapp.events.redaction import REDACTED, RedactionPolicy


def redact(data: dict, policy: RedactionPolicy | None = None, type: str = "outbound_http_request") -> dict:
    event = Event.create(type, "custom", data=data)
    return (policy or RedactionPolicy()).redact_event(event).data


def test_secret_keys_at_any_depth_and_any_case():
    out = redact({"headers": {"authorization": "Bearer a", "X-API-KEY": "k", "Accept": "*/*"},
                  "extra": {"nested": [{"Password": "p", "ok": 1}]}, "token": 12345})
    assert out == {"headers": {"authorization": REDACTED, "X-API-KEY": REDACTED, "Accept": "*/*"},
                   "extra": {"nested": [{"Password": REDACTED, "ok": 1}]}, "token": REDACTED}


def test_urls_userinfo_and_query_everywhere():
    out = redact({
        "url": "https://user:pw@h/p?Token=1&a=%20b&password=&x#frag",
        "alone": "see https://ghp_abc@github.com/x for it",
        "error": {"type": "E", "message": "Max retries exceeded with url: /x?api_key=zz (Caused by ...)"},
        "response": {"headers": {"Location": "https://h/next?secret=s", "Host": "tok@h:8000"}},
    })
    assert out["url"] == f"https://user:{REDACTED}@h/p?Token={REDACTED}&a=%20b&password={REDACTED}&x#frag"
    assert out["alone"] == f"see https://{REDACTED}@github.com/x for it"
    assert out["error"]["message"] == f"Max retries exceeded with url: /x?api_key={REDACTED} (Caused by ...)"
    assert out["response"]["headers"] == {"Location": f"https://h/next?secret={REDACTED}", "Host": f"{REDACTED}@h:8000"}


def test_json_and_form_bodies():
    out = redact({"request": {"headers": {}, "body": json.dumps({"user": "a", "client_secret": "s", "l": [{"token": 1}]})},
                  "response": {"headers": {}, "body": "a=1&password=hunter2&b=2"}})
    assert json.loads(out["request"]["body"]) == {"user": "a", "client_secret": REDACTED, "l": [{"token": REDACTED}]}
    assert out["response"]["body"] == f"a=1&password={REDACTED}&b=2"
    cut = '{"password": "p'  # cut at max_body_bytes: not JSON any more, kept as it is
    assert redact({"body": cut})["body"] == cut


def test_header_pairs_and_the_original_is_never_changed():
    data = {"headers": [["Cookie", "c=1"], ("Accept", "x")], "request": {"headers": {"Cookie": "c"}}}
    out = redact(data)
    assert out["headers"] == [["Cookie", REDACTED], ("Accept", "x")]
    assert data["headers"][0] == ["Cookie", "c=1"] and data["request"]["headers"] == {"Cookie": "c"}


def test_nothing_to_redact_gives_the_same_event_and_other_types_are_left_alone():
    policy = RedactionPolicy()
    clean = Event.create("outbound_http_request", data={"url": "https://h/p?page=2", "request": {"headers": {"Accept": "*/*"}}})
    assert policy.redact_event(clean) is clean
    assert not policy.applies(Event.create("monitoring_event", data={"token": "t"}))


def test_names_learned_on_one_event_still_redact_the_next():
    """The fast path for header dicts whose names were seen before must not miss a secret
    that arrives in a value later."""
    policy = RedactionPolicy()
    first = {"url": "http://h/", "request": {"headers": {"X-Next": "/p", "Accept": "*/*"}, "body": None}}
    assert redact(first, policy) == first
    second = {"url": "http://h/", "request": {"headers": {"X-Next": "/p?token=abc", "Accept": "*/*"}, "body": None}}
    assert redact(second, policy)["request"]["headers"]["X-Next"] == f"/p?token={REDACTED}"
    third = {"url": "http://h/", "request": {"headers": {"X-Next": "/p", "Accept": "*/*", "Cookie": "c"}, "body": None}}
    assert redact(third, policy)["request"]["headers"] == {"X-Next": "/p", "Accept": "*/*", "Cookie": REDACTED}
    assert redact(third, policy)["request"]["headers"]["Cookie"] == REDACTED  # now from the fast path


def test_the_configuration_replaces_the_lists_and_processors_only_add():
    config = Config.from_dict({"tracing": {"redact_headers": ["X-Auth"], "redact_params": ["sig"]}}, environ={})
    policy = RedactionPolicy.from_config(config).extended(["X-Goog-Api-Key"])
    out = redact({"headers": {"X-Auth": "a", "Authorization": "kept", "x-goog-api-key": "g"},
                  "url": "https://h/?sig=1&token=kept"}, policy)
    assert out == {"headers": {"X-Auth": REDACTED, "Authorization": "kept", "x-goog-api-key": REDACTED},
                   "url": f"https://h/?sig={REDACTED}&token=kept"}
    assert "sig" in " ".join(policy.explain())


@pytest.mark.parametrize("value", [1 << 70, b"raw", 2.5])
def test_non_string_values_of_secret_keys(value):
    assert redact({"password": value})["password"] == REDACTED
