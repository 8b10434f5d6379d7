"""hostapp probes from another process, against programs run by `hostapp run`.

Every test runs the real CLI as a subprocess against a real SQLite store in a temporary
directory; the programs serve on / talk to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

SERVER = '''
import http.server, sys, threading
from app.views import handle

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/quit":
            self.send_response(200); self.end_headers()
            threading.Thread(target=server.shutdown).start()
            return
        body = handle(self.path, list(range(len(self.path)))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
timer = threading.Timer(float(sys.argv[1]), server.shutdown)  # a bounded life, whatever happens
timer.daemon = True
timer.start()
server.serve_forever()
print("served", flush=True)
'''

VIEWS = '''
def handle(path, items):
    return f"{path}: {len(items)} items"
'''

PROG = '''
import os, sys, time

def work(i):
    return i * 3

deadline = time.monotonic() + 60
while not os.path.exists("go") and time.monotonic() < deadline:
    time.sleep(0.02)
total = 0
for i in range(200):
    total += work(i)
print("total", total)
print("done", file=sys.stderr)
sys.exit(3)
'''


def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_")}
    out["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    out["PYTHONPATH"] = str(tmp_path)
    return out


def hostapp(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "hostapp", *args], cwd=tmp_path, env=env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def probes(tmp_path: Path) -> list[dict]:
    return json.loads(hostapp(tmp_path, "probes", "list", "--json").stdout)


def until(what, check, timeout=60.0, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)


@pytest.fixture
def app(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "app" / "views.py").write_text(textwrap.dedent(VIEWS), encoding="utf-8")
    (tmp_path / "server.py").write_text(textwrap.dedent(SERVER), encoding="utf-8")
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROG), encoding="utf-8")
    return tmp_path


def test_a_probe_added_from_another_process_is_live_and_then_expires(app):
    server = subprocess.Popen([sys.executable, "-m", "hostapp", "run", "server.py", "120"], cwd=app, env=env(app),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    try:
        port = int(server.stdout.readline())
        sent = []

        def client():
            for i in range(6000):  # bounded: 6000 requests or 120 s
                if stop.is_set():
                    return
                urllib.request.urlopen(f"http://127.0.0.1:{port}/item/{i % 9}", timeout=10).read()
                sent.append(i)
                stop.wait(0.01)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        until("the server answers", lambda: sent)
        added = hostapp(app, "probes", "add", "app.views.handle", "--type", "event", "--value", "path",
                        "--event", "return", "--lifespan", "0.1", "--name", "views")
        spec_id = added.stdout.split(":", 1)[0]
        assert added.stdout.startswith("p-") and "event of path at return on app.views.handle" in added.stdout
        t0 = time.monotonic()

        def events():
            out = hostapp(app, "events", "--type", "probe", "--jsonl").stdout
            return [json.loads(line) for line in out.splitlines()]

        first = until("probe events in the store", events, timeout=30)
        print(f"add -> first stored probe event: {time.monotonic() - t0:.2f} s")
        event = first[0]
        assert (event["type"], event["subtype"], event["source"]) == ("probe", "views", "instruments.event")
        assert event["data"]["probe"] == spec_id and event["data"]["value"].startswith("/item/")
        assert event["data"]["elapsed_ns"] > 0

        def expired():
            [row] = probes(app)
            records = list(row["applied"].values())
            if row["status"] == "expired" and records and records[0]["state"] == "expired" \
                    and not records[0]["instrumented"]:
                return row
            return None

        row = until("the probe expired in the server", expired, timeout=60)
        record = next(iter(row["applied"].values()))
        assert record["pid"] == server.pid or record["run_id"]  # hostapp run is the server's process
        assert record["fires"] > 0 and record["errors"] == 0
        text = hostapp(app, "probes", "list").stdout
        assert spec_id in text and "expired" in text
        stored = len(events())
        time.sleep(0.5)
        assert len(events()) == stored  # no more events after the expiry
    finally:
        stop.set()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/quit", timeout=10).read()
        except Exception:
            server.kill()
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "served" in out


@pytest.mark.parametrize(
    ("value", "node"),
    [("__import__('os').system('x')", "name '__import__'"), ("items.__class__", "attribute '__class__'")],
)
def test_an_unsafe_expression_exits_2_and_stores_nothing(app, value, node):
    result = hostapp(app, "probes", "add", "app.views.handle", "--type", "incr", "--value", value, check=False)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.startswith("hostapp: error: probe spec 'p-") and "(app.views.handle)" in message
    assert f"instrument.value {value!r}" in message and node in message
    assert probes(app) == []


def test_an_instrument_raising_on_every_call_changes_nothing_in_the_program(app):
    (app / "go").touch()
    plain = subprocess.run([sys.executable, "prog.py"], cwd=app, env=env(app), capture_output=True, text=True,
                           timeout=120)
    (app / "go").unlink()
    assert plain.returncode == 3
    hostapp(app, "probes", "add", "__main__.work", "--type", "incr", "--value", "str(i)", "--event", "call",
            "--name", "bad")
    run = subprocess.Popen([sys.executable, "-m", "hostapp", "run", "--quiet", "prog.py"], cwd=app, env=env(app),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until("the probe applied in the program",
              lambda: any(r["state"] == "active" for row in probes(app) for r in row["applied"].values()))
        (app / "go").touch()
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert (out, err, run.returncode) == (plain.stdout, plain.stderr, plain.returncode)
    [row] = probes(app)
    [record] = row["applied"].values()
    assert record["state"] == "off" and record["errors"] == 10 and record["fires"] == 10
    assert record["last_error"].startswith("TypeError: unsupported operand")
    assert "switched off after 10 errors" in record["err"]
    listing = hostapp(app, "probes", "list").stdout
    assert "off" in listing and "switched off after 10 errors" in listing


def test_show_prints_the_counter_and_histogram_live_and_after_the_end(app):
    counter = hostapp(app, "probes", "add", "__main__.work", "--type", "incr", "--event", "call").stdout.split(":")[0]
    hist = hostapp(app, "probes", "add", "__main__.work", "--type", "hist", "--value", "i", "--event", "call").stdout.split(":")[0]
    run = subprocess.Popen([sys.executable, "-m", "hostapp", "run", "--quiet", "prog.py"], cwd=app, env=env(app),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until("both applied", lambda: sum(1 for row in probes(app) for r in row["applied"].values()
                                          if r["state"] == "active") == 2)
        (app / "go").touch()
        run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    shown = hostapp(app, "probes", "show", counter).stdout
    assert "ended, 200 fire(s), 0 error(s)" in shown and "counter 200" in shown
    shown = hostapp(app, "probes", "show", hist).stdout
    assert "histogram over 60 s: count 200, min 0, max 199, mean 99.5" in shown
    data = json.loads(hostapp(app, "probes", "show", hist, "--json").stdout)
    [record] = data["applied"].values()
    assert record["values"]["count"] == 200 and abs(record["values"]["p50"] - 99.5) <= 2


def test_rm_clear_and_errors(app):
    first = hostapp(app, "probes", "add", "app.views.handle", "--type", "incr").stdout.split(":")[0]
    hostapp(app, "probes", "add", "app.views.handle", "--type", "hist", "--event", "end")
    assert len(probes(app)) == 2
    assert hostapp(app, "probes", "rm", first).stdout.strip() == "removed 1 probe spec(s)"
    missing = hostapp(app, "probes", "rm", "p-nothing", check=False)
    assert missing.returncode == 1 and "no probe spec 'p-nothing'" in missing.stderr
    assert hostapp(app, "probes", "clear").stdout.strip() == "removed 1 probe spec(s)"
    assert probes(app) == []
    shown = hostapp(app, "probes", "show", "p-x", check=False)
    assert shown.returncode == 1 and "no probe spec 'p-x'" in shown.stderr
    bad = hostapp(app, "probes", "add", "app.views.handle", "--type", "incr", "--value", "result",
                  "--event", "call", check=False)
    assert bad.returncode == 0  # names are checked in the target's process, where the arguments are known
    bad = hostapp(app, "probes", "add", "nodots", "--type", "incr", check=False)
    assert bad.returncode == 2 and "target: expected a dotted path" in bad.stderr
    (app / "hostapp.toml").write_text('[probes]\nstore = "mongo"\n', encoding="utf-8")
    bad = hostapp(app, "probes", "list", check=False)
    assert bad.returncode == 2 and "probes.store: expected \"sqlite\" or \"component:NAME\"" in bad.stderr
