"""``hostapp events``: one view for every kind, in time order, each event rendered by its
plugin; filters; ``events show``; run id prefixes; ``--follow``; why a listing is empty.

Real programs under ``hostapp run`` (requests against an HTTP server on 127.0.0.1, a huey
job, a custom event, a ``monitoring_event``), read back with the CLI as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

APP = '''
import http.server, threading, time, urllib.request

import requests
from huey import MemoryHuey

import hostapp


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if "slow" in self.path:
            time.sleep(0.15)
        body = b'{"ok": true}'
        self.send_response(503 if "down" in self.path else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_address[1]}"
huey = MemoryHuey(immediate=True)


@huey.task()
def charge(order, amount):
    return amount * 2


host = hostapp.get_host()
host.emit("monitoring_event", "tick", load=0.3)
requests.get(base + "/users/1")
requests.get(base + "/down")
urllib.request.urlopen(base + "/slow").read()
charge(42, amount=10)
host.emit("acme.audit", "login", user="quill")
# a Kolo-style processor's pair: a request and its response sharing frame_id
host.emit("outbound_http_request", "legacy", frame_id="frm_1", method="PUT", url=base + "/legacy")
host.emit("outbound_http_response", "legacy", frame_id="frm_1", status_code=204, headers={"X-Legacy": "yes"})
server.shutdown()
'''


def line(text: str) -> int:
    """The line of ``text`` in APP (the call sites the view shows)."""
    return next(n for n, source in enumerate(APP.splitlines(), start=1) if source.strip() == text)


DOWN = "/down -> 503 requests app.py:%d" % line('requests.get(base + "/down")')


def env_for(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HOSTAPP_", "PYTHON")) or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    env["COLUMNS"] = "250"
    return env


def hostapp(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostapp", *args], cwd=cwd, env=env_for(cwd),
                          capture_output=True, text=True, timeout=120)


def rows(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The table's rows, less the header; each without its time."""
    lines = result.stdout.splitlines()
    assert lines and lines[0].startswith("Time "), result.stdout + result.stderr
    return [" ".join(line.split()[2:]) for line in lines[1:]]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("events-view")
    (root / "app.py").write_text(APP)
    ran = hostapp(["run", "app.py"], root)
    assert ran.returncode == 0, ran.stderr
    return root


def test_one_view_for_every_kind_in_time_order(project):
    shown = rows(hostapp(["events", "--last"], project))
    assert shown[0] == "monitor tick load=0.3"
    http = [r for r in shown if r.startswith("HTTP")]
    assert [r.split(" -> ")[1].split()[0] for r in http] == ["200", "503", "200", "204"]
    assert http[1].startswith("HTTP") and "GET http://127.0.0.1:" in http[1] and http[1].endswith(DOWN)
    assert "PUT" in http[3] and "/legacy -> 204 legacy" in http[3]  # the pair is one row
    jobs = [r for r in shown if r.startswith("job")]
    assert jobs[0].endswith(f"huey enqueue charge(42, amount=10) on huey app.py:{line('charge(42, amount=10)')}")
    assert any(" huey run charge(42, amount=10) " in r for r in jobs)
    assert any(" huey complete " in r for r in jobs)
    assert "acme.audit login user=quill" in shown
    kinds = [r.split()[0] for r in shown]
    assert kinds.index("monitor") < kinds.index("HTTP") < kinds.index("job") < kinds.index("acme.audit")
    assert len(shown) == 10  # 4 calls, 4 job events, 2 events: no separate response row


def test_filters_select_the_right_rows(project):
    def only(*args: str) -> list[str]:
        return rows(hostapp(["events", "--last", *args], project))

    [failing] = only("--library", "requests", "--status", ">=400")
    assert failing.endswith(DOWN)
    assert only("--status", "5xx") == [failing]
    [slow] = only("--min-duration", "100ms")
    assert "/slow -> 200 urllib" in slow
    assert [r.split()[0] for r in only("--type", "background_job*")] == ["job"] * 4
    assert only("--url", "down") == [failing]
    assert len(only("--url", "*/users/?")) == 1
    assert only("--grep", "quill") == ["acme.audit login user=quill"]
    assert len(only("--since", "1h")) == 10
    empty = hostapp(["events", "--last", "--until", "1h"], project)
    assert empty.stdout == "" and "hostapp: note: no event of run " in empty.stderr


def test_json_is_the_same_events_and_show_prints_one_whole(project):
    events = [json.loads(line) for line in hostapp(["events", "--last", "--jsonl"], project).stdout.splitlines()]
    assert events == json.loads(hostapp(["events", "--last", "--json"], project).stdout)
    legacy = next(e for e in events if e["subtype"] == "legacy")
    assert legacy["data"]["status_code"] == 204 and legacy["data"]["response"]["headers"] == {"X-Legacy": "yes"}
    failing = next(e for e in events if e["data"].get("status_code") == 503)
    shown = hostapp(["events", "show", failing["id"][:14]], project)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for piece in ("outbound_http_request", "requests", "Request", "Response", "GET http", "/down", "503",
                  "Content-Type: application/json", '{"ok": true}', "urllib3, http.client", DOWN.rsplit(" ", 1)[1]):
        assert piece in text, piece
    pair = hostapp(["events", "show", legacy["id"]], project)
    assert "204" in pair.stdout and "X-Legacy: yes" in pair.stdout  # the response joined to its request
    assert json.loads(hostapp(["events", "show", legacy["id"], "--json"], project).stdout)[0]["data"]["status_code"] == 204
    missing = hostapp(["events", "show", "ffff"], project)
    assert missing.returncode == 2 and "no event with an id starting 'ffff'" in missing.stderr


def test_run_ids_by_unique_prefix_and_the_one_before(project):
    (project / "again.py").write_text("import hostapp\nhostapp.get_host().emit('monitoring_event', 'again')\n")
    assert hostapp(["run", "-q", "again.py"], project).returncode == 0
    runs = json.loads(hostapp(["runs", "--json"], project).stdout)
    newest, before = runs[0]["id"], runs[1]["id"]
    assert rows(hostapp(["events", "--last"], project)) == ["monitor again"]
    assert rows(hostapp(["events", "-n", "2"], project)) == rows(hostapp(["events", "--run", before[:12]], project))
    common = os.path.commonprefix([newest, before])
    ambiguous = hostapp(["events", "--run", common], project)
    assert ambiguous.returncode == 2 and f"run id prefix {common!r} is ambiguous" in ambiguous.stderr
    unknown = hostapp(["events", "--run", "zz"], project)
    assert unknown.returncode == 2 and "no run with an id starting 'zz'" in unknown.stderr
    assert hostapp(["events", "-n", "9"], project).stderr.strip() == "hostapp: note: only 2 run(s) recorded; -n 9 names none"


def test_a_cut_listing_says_so_and_limit_0_shows_all(project, tmp_path):
    (tmp_path / "many.py").write_text(
        "import hostapp\nhost = hostapp.get_host()\nfor i in range(120):\n    host.emit('monitoring_event', 'n', i=i)\n"
    )
    assert hostapp(["run", "-q", "many.py"], tmp_path).returncode == 0
    default = hostapp(["events", "--last"], tmp_path)
    shown = rows(default)
    assert len(shown) == 50 and shown[-1] == "monitor n i=119"  # the newest 50, oldest first
    assert default.stderr.strip() == "hostapp: note: showing the newest 50 of 120 events; --limit N for more (0 = all)"
    assert len(rows(hostapp(["events", "--last", "--limit", "0"], tmp_path))) == 120
    assert len(hostapp(["events", "--last", "--jsonl"], tmp_path).stdout.splitlines()) == 120
    unknown = hostapp(["events", "--last", "--type", "monitoring_evnt"], tmp_path)
    assert unknown.stderr.strip().endswith("no event of type 'monitoring_evnt' in run "
                                           f"{json.loads(hostapp(['runs', '--json'], tmp_path).stdout)[0]['id']}; "
                                           "its types: monitoring_event")


SLOW_APP = '''
import os, pathlib, time
import hostapp

host = hostapp.get_host()
go = pathlib.Path(os.environ["GO_FILE"])
pathlib.Path(os.environ["STARTED_FILE"]).write_text("started")
for _ in range(600):  # at most 60 s
    if go.exists():
        break
    time.sleep(0.1)
for i in range(5):
    host.emit("monitoring_event", "live", i=i)
    time.sleep(0.1)
'''


def test_follow_a_live_run_and_an_empty_live_run_says_why(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_APP)
    env = env_for(tmp_path)
    env.update(GO_FILE=str(tmp_path / "go"), STARTED_FILE=str(tmp_path / "started"))
    program = subprocess.Popen([sys.executable, "-m", "hostapp", "run", "-q", "slow.py"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists() and time.monotonic() < deadline and program.poll() is None:
            time.sleep(0.05)
        assert (tmp_path / "started").exists(), program.stderr.read().decode() if program.poll() is not None else ""
        waiting = hostapp(["events", "--last"], tmp_path)
        assert waiting.returncode == 0 and waiting.stdout == ""
        assert "is still running" in waiting.stderr and "--follow" in waiting.stderr
        follower = subprocess.Popen([sys.executable, "-m", "hostapp", "events", "--follow", "--jsonl"], cwd=tmp_path,
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        (tmp_path / "go").write_text("go")
        out, err = follower.communicate(timeout=90)  # it ends by itself when the run ends
        assert follower.returncode == 0, err
        assert [json.loads(line)["data"]["i"] for line in out.splitlines()] == [0, 1, 2, 3, 4]
    finally:
        program.wait(timeout=60)
        if follower_alive := locals().get("follower"):
            if follower_alive.poll() is None:
                follower_alive.kill()
