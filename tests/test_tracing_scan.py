"""The tracer's module scan never evaluates what a module's namespace holds: a lazy proxy
(celery's ``celery.local.Proxy`` evaluates itself when asked for its ``__class__``) stays
unevaluated, and the module's selected functions are traced."""

from __future__ import annotations

import logging

import pytest

import hostapp

LAZY_MODULE = '''
class Proxy:
    """As celery.local.Proxy: every attribute, __class__ included, evaluates the target."""

    def __init__(self, factory):
        object.__setattr__(self, "_factory", factory)

    def _evaluate(self):
        return object.__getattribute__(self, "_factory")()

    @property
    def __class__(self):
        return type(self._evaluate())

    def __getattr__(self, name):
        return getattr(self._evaluate(), name)


def _import_missing():
    import hostapp_no_such_module_for_the_proxy  # noqa: F401 - raises ImportError


current_app = Proxy(_import_missing)


def send(message):
    return f"sent {message}"
'''


@pytest.mark.parametrize("backend", ["auto", "profile"])
def test_a_lazy_proxy_in_a_scanned_module_is_not_evaluated(tmp_path, monkeypatch, caplog, hostapp_trace, backend):
    (tmp_path / "lazy_mod.py").write_text(LAZY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazy_mod

    processor = hostapp.TraceProcessor(
        name="send", co_names=("send",), path_fragment="lazy_mod.py", call_type="send_call", return_type="send_return",
    )
    with caplog.at_level(logging.WARNING, logger="hostapp"):
        with hostapp_trace(processor, config={"tracing": {"backend": backend}}) as events:
            assert lazy_mod.send("x") == "sent x"
    assert [e.type for e in events.of_type("send_*")] == ["send_call", "send_return"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    with pytest.raises(ImportError):
        type(lazy_mod.current_app).__name__ and lazy_mod.current_app.__class__  # evaluating it does raise
