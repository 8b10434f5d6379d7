"""The plugin author's kit: hostapp_host, hostapp_events, hostapp_trace, check_plugin, and a
suite that sees only the plugins it installs itself."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hostapp
from hostapp.errors import PluginContractError
from hostapp.testing import check_plugin, environment_plugin_locations

ROOT = Path(__file__).resolve().parents[1]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = 503 if "down" in self.path else 200
        body = b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Heartbeat:
    """A plugin: emits at startup, reads its settings in configure."""

    def __init__(self) -> None:
        self.every = None

    @hostapp.hookimpl
    def hostapp_configure(self, config):
        self.every = config.plugin_config("heartbeat").get("every", 1)

    @hostapp.hookimpl
    def hostapp_startup(self, host):
        host.emit("monitoring_event", "heartbeat", every=self.every)


@pytest.mark.hostapp(plugins=[("heartbeat", Heartbeat())], config={"plugins": {"config": {"heartbeat": {"every": 5}}}})
def test_hostapp_host_and_hostapp_events(hostapp_host, hostapp_events, tmp_path):
    assert hostapp_host.state == "running"
    assert hostapp_host.pm.infos["heartbeat"].state == "started"
    hostapp_host.emit("sending_event", "mail", to="x@example.org")
    [beat] = hostapp_events.wait_for("monitoring_event")
    assert (beat.subtype, beat.data) == ("heartbeat", {"every": 5})
    assert [e.type for e in hostapp_events.of_type("sending_*")] == ["sending_event"]  # delivered on reading
    assert len(hostapp_events) == 2
    assert hostapp_host.store.path == tmp_path / "hostapp.sqlite3"
    others = [i for i in hostapp_host.pm.infos.values() if not i.builtin and i.source.value == "entrypoint"]
    assert all(i.state == "filtered" for i in others)  # no entry points of the environment (autoload=False)
    with pytest.raises(AssertionError, match=r"1 event\(s\) of type 'never', got 0; captured types: "):
        hostapp_events.wait_for("never", timeout=0.05)


@pytest.mark.hostapp(tracing=True)
def test_http_calls_through_the_builtin_processors(hostapp_host, hostapp_events, server):
    urllib.request.urlopen(f"{server}/users/1").read()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{server}/down")
    calls = hostapp_events.http_calls
    assert [(c.data["method"], c.data["url"], c.data["status_code"]) for c in calls] == [
        ("GET", f"{server}/users/1", 200), ("GET", f"{server}/down", 503),
    ]
    assert all(isinstance(c.data["duration_ns"], int) for c in calls)


def test_hostapp_trace_runs_a_block_with_given_processors(hostapp_trace, tmp_path, monkeypatch):
    (tmp_path / "pricing.py").write_text("def quote(item, qty):\n    return {'item': item, 'total': qty * 3}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import pricing

    processor = hostapp.TraceProcessor(
        name="quotes", co_names=("quote",), path_fragment="pricing.py", call_type="quote_start",
        return_type="quote_end", process=lambda frame, event, arg, context: (
            {"item": frame.f_locals["item"]} if event == "call" else {"total": arg["total"]}
        ),
    )
    with hostapp_trace(processor) as events:
        pricing.quote("tea", 2)
        urllib.request.urlopen  # the built-in HTTP processors are not in the block (builtins=False)
    assert [(e.type, e.data.get("item"), e.data.get("total")) for e in events.of_type("quote_*")] == [
        ("quote_start", "tea", None), ("quote_end", None, 6),
    ]
    assert events.host.tracing_stats["quotes"]["events"] == 2
    assert set(events.host.tracing_stats) == {"quotes"}


# -- check_plugin ------------------------------------------------------------------------------


def test_check_plugin_passes_a_good_plugin_and_every_builtin():
    import hostapp_plugins.http.requests as requests_plugin
    import hostapp_plugins.sinks.sqlite as sqlite_plugin

    assert check_plugin(Heartbeat(), name="heartbeat") == {}
    assert check_plugin(sqlite_plugin) == {"event_sinks": ["sqlite"]}
    assert check_plugin(requests_plugin) == {"trace_processors": ["requests"]}


BAD_PLUGIN = """
import hostapp


@hostapp.hookimpl
def hostapp_configure(cfg):  # the hook's argument is "config"
    pass


def hostapp_startup(host):  # never called: not marked
    pass


@hostapp.hookimpl
def hostapp_event_sinks():
    return {"name": "audit"}  # a dict, not a hostapp.EventSink
"""

CLASHING_PLUGIN = """
import hostapp


def hostapp_nothing():
    pass


@hostapp.hookimpl
def hostapp_event_sinks():
    return hostapp.EventSink(name="sqlite", handle=print)  # hostapp's own store sink's name
"""


def test_check_plugin_lists_every_broken_promise(hostapp_dist, monkeypatch):
    hostapp_dist("bad-hostapp", entry_points={"hostapp": {"bad": "bad_plugin", "gone": "bad_plugin_missing:x"}},
                 files={"bad_plugin.py": BAD_PLUGIN, "clash_plugin.py": CLASHING_PLUGIN})
    import bad_plugin
    import clash_plugin

    with pytest.raises(PluginContractError) as error:
        check_plugin(bad_plugin)
    message = str(error.value)
    assert message.startswith("plugin 'bad' does not keep hostapp's contract:\n")
    assert "hostapp_startup is named like a hook but is not marked @hostapp.hookimpl" in message
    assert "Argument(s) {'cfg'} are declared in the hookimpl but can not be found in the hookspec" in message
    assert "entry point gone = bad_plugin_missing:x (bad-hostapp): ModuleNotFoundError" in message
    with pytest.raises(PluginContractError) as error:
        check_plugin(clash_plugin)
    message = str(error.value)
    assert "event sink 'sqlite' is contributed by plugin 'clash_plugin' and by plugin 'sinks.sqlite'" in message
    assert "hostapp_nothing" not in message  # not a hook name: an ordinary function


def test_check_plugin_reports_a_registration_hook_returning_the_wrong_type(hostapp_dist):
    hostapp_dist("dicty-hostapp", files={"dicty_plugin.py": BAD_PLUGIN.replace("def hostapp_configure(cfg)", "def hostapp_configure(config)").replace("def hostapp_startup", "def startup")})
    import dicty_plugin

    with pytest.raises(PluginContractError, match=r"hostapp_event_sinks: PluginContractError: .*returned dict"):
        check_plugin(dicty_plugin)


# -- the suite sees only the plugins it installs ------------------------------------------------

NOISY_PLUGIN = """
import hostapp

@hostapp.hookimpl
def hostapp_event_sinks():
    return hostapp.EventSink(name="noisy", handle=lambda events: None)

@hostapp.hookimpl
def hostapp_startup(host):
    host.emit("monitoring_event", "noisy", note="a third-party plugin of the environment")
"""


def test_environment_plugin_locations(hostapp_dist):
    dist_info = hostapp_dist("noisy-hostapp", entry_points={"hostapp": {"noisy": "noisy_plugin"}},
                             files={"noisy_plugin.py": NOISY_PLUGIN})
    assert str(dist_info) in environment_plugin_locations()
    assert str(dist_info) not in environment_plugin_locations(keep=["Noisy_Hostapp"])
    assert not [p for p in environment_plugin_locations() if "hostapp-0" in Path(p).name]  # hostapp's own


def test_the_suite_passes_with_a_third_party_plugin_installed(tmp_path):
    """A plugin installed in the environment (here: on PYTHONPATH) adds a sink that is on
    and an event at every start; the suite's conftest keeps it out."""
    from hostapp.testing._distfactory import install_distribution

    site = tmp_path / "site"
    install_distribution(site, "noisy-hostapp", "1.0", entry_points={"hostapp": {"noisy": "noisy_plugin"}},
                         files={"noisy_plugin.py": NOISY_PLUGIN})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTEST_"))}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"))
    tests = ["tests/test_cli_store.py", "tests/test_cli.py::test_plugin_folder_with_four_plugins"]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    seen = subprocess.run([sys.executable, "-m", "hostapp", "plugins", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert '"noisy"' in seen.stdout  # outside the suite, the plugin is there
