"""The event path's must-shows (one record per HTTP call, redaction as a host policy) as a
user sees them: real programs under ``hostapp run``, a real HTTP server on 127.0.0.1, the
real store, Kolo 3.6.1 installed."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

SECRETS = ("pass-secret", "auth-secret", "cookie-secret", "tok-secret", "key-secret", "pw-secret")

SERVER = '''
    import http.server, threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Set-Cookie", "sid=cookie-secret-2")
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = reply

    def start():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1]
'''

APP = '''
    import json, urllib.request
    import httpx, requests
    from localserver import start

    port = start()
    headers = {"Authorization": "Bearer auth-secret", "Cookie": "c=cookie-secret"}
    for i in range(10):
        requests.post(f"http://user:pass-secret@127.0.0.1:{port}/requests/{i}?token=tok-secret&i={i}",
                      json={"password": "pw-secret", "i": i}, headers=headers)
    with httpx.Client() as client:
        for i in range(10):
            client.post(f"http://127.0.0.1:{port}/httpx/{i}?token=tok-secret", json={"password": "pw-secret"},
                        headers=headers)
    for i in range(10):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/urllib/{i}?api_key=key-secret", data=json.dumps({"password": "pw-secret"}).encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        urllib.request.urlopen(request).read()
    print("done")
'''


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(cwd / ".cache")}
    return subprocess.run([sys.executable, "-m", "hostapp", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)


def test_kolo_compat_thirty_calls_thirty_records_no_secret(tmp_path: Path) -> None:
    assert importlib.metadata.version("kolo") == "3.6.1"  # in the test extra
    (tmp_path / "localserver.py").write_text(textwrap.dedent(SERVER))
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "hostapp.toml").write_text("[tracing]\nkolo_compat = true\n")
    result = run(["run", "app.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    # Kolo's HTTP processors select the same calls as the built-in ones: superseded, said so
    assert "superseded by built-in ones" in result.stderr
    for name in ("kolo.requests by requests", "kolo.httpx by httpx", "kolo.urllib by urllib"):
        assert name in result.stderr
    shown = run(["events", "--last", "--jsonl"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert Counter((e["type"], e["subtype"]) for e in events) == {
        ("outbound_http_request", "requests"): 10, ("outbound_http_request", "httpx"): 10,
        ("outbound_http_request", "urllib"): 10,
    }
    paths = Counter(e["data"]["url"].split("/", 3)[3].split("?")[0] for e in events)
    assert paths == {f"{lib}/{i}": 1 for lib in ("requests", "httpx", "urllib") for i in range(10)}
    for secret in SECRETS:
        assert secret not in shown.stdout, secret
    [sample] = [e for e in events if e["data"]["url"].endswith("/requests/3?token=[REDACTED]&i=3")]
    assert sample["data"]["url"].startswith("http://user:[REDACTED]@127.0.0.1:")
    assert json.loads(sample["data"]["request"]["body"]) == {"password": "[REDACTED]", "i": 3}
    assert sample["data"]["request"]["headers"]["Authorization"] == "[REDACTED]"
    assert sample["data"]["response"]["headers"]["Set-Cookie"] == "[REDACTED]"


CUSTOM = '''
    import hostapp

    def fetch(url):
        return 200

    @hostapp.hookimpl
    def hostapp_trace_processors():
        def process(frame, event, arg, context):
            if event == "call":
                return {"headers": {"Authorization": "Bearer x-secret"},
                        "url": "https://api.example.org/v1/?api_key=y-secret&page=2"}
            return {"status_code": arg}
        return hostapp.TraceProcessor(
            name="custom_http", co_names=("fetch",), path_fragment="custom_proc.py",
            call_type="outbound_http_request", return_type="outbound_http_response", process=process,
        )
'''


def test_a_custom_processors_http_events_are_stored_redacted(tmp_path: Path) -> None:
    (tmp_path / "custom_proc.py").write_text(textwrap.dedent(CUSTOM))
    (tmp_path / "main.py").write_text("from custom_proc import fetch\nprint(fetch('x'))\n")
    (tmp_path / "hostapp.toml").write_text('[plugins]\nmodules = ["custom_proc"]\n')
    result = run(["run", "main.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    shown = run(["events", "--last", "--jsonl", "--all"], tmp_path)
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    [request] = [e for e in events if e["type"] == "outbound_http_request"]
    assert request["data"]["headers"] == {"Authorization": "[REDACTED]"}
    assert request["data"]["url"] == "https://api.example.org/v1/?api_key=[REDACTED]&page=2"
    assert "secret" not in shown.stdout
