"""``hostapp run`` and ``hostapp.trace()``: real programs run as subprocesses against a real
HTTP server on 127.0.0.1, events read back from the real SQLite store with the CLI.

The must-shows of the issue are here: every HTTP library from three threads (one already
running when tracing starts) giving exactly one request/response pair per call; a Kolo
processor dict loaded through ``tracing.kolo_processors``; output and exit status
byte-identical to ``python``; a processor that always raises, named in the summary.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ["default", "profile"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status = 404 if self.path.startswith("/missing") else 200
        body = f"path={self.path.split('?')[0]}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "sid=cookie-secret")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def env_for(cwd: Path, backend: str = "default", extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON")) or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    if backend != "default":
        env["HOSTAPP_TRACING__BACKEND"] = backend
    env.update(extra or {})
    return env


def hostapp(args: list[str], cwd: Path, *, env: dict[str, str] | None = None, input: bytes | None = None,
            ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "hostapp", *args], cwd=cwd, env=env or env_for(cwd), input=input,
        capture_output=True, timeout=180,
    )


def python(args: list[str], cwd: Path, *, env: dict[str, str] | None = None, input: bytes | None = None,
           ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env or env_for(cwd), input=input, capture_output=True, timeout=180,
    )


def json_lines(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


# -- every library, three threads --------------------------------------------------------

EARLY = '''
    # sitecustomize: starts a worker thread at interpreter start-up, before hostapp loads
    # (an APM agent's thread, say). It waits for work from the program.
    import queue, threading
    import builtins

    work = queue.Queue()
    builtins._early_work = work

    def early_worker():
        while True:
            job = work.get()
            if job is None:
                return
            job()

    threading.Thread(target=early_worker, name="early-worker", daemon=True).start()
'''

CLIENTS = '''
    import asyncio, sys, threading, urllib.request
    import builtins
    import httpx, requests

    BASE = sys.argv[1]
    SECRET = {"Authorization": "Bearer s3cr3t-value", "X-Api-Key": "k3y-value"}

    def url(lib, who, i):
        return f"{BASE}/{lib}/{who}/{i}?token=t0ken-value&i={i}"

    def calls(who, n):
        for i in range(n):
            req = urllib.request.Request(url("urllib", who, i), headers=SECRET)
            assert urllib.request.urlopen(req).status == 200
        with requests.Session() as s:
            for i in range(n):
                assert s.get(url("requests", who, i), headers=SECRET).status_code == 200
        with httpx.Client() as c:
            for i in range(n):
                assert c.get(url("httpx", who, i), headers=SECRET).status_code == 200

    async def async_calls(n):
        async with httpx.AsyncClient() as c:
            replies = await asyncio.gather(*(c.get(url("httpx-async", "main", i), headers=SECRET) for i in range(n)))
        assert [r.status_code for r in replies] == [200] * n

    done = threading.Event()
    builtins._early_work.put(lambda: (calls("early", 5), done.set()))
    worker = threading.Thread(target=calls, args=("worker", 5))
    worker.start()
    calls("main", 10)
    asyncio.run(async_calls(10))
    worker.join()
    assert done.wait(60)
    print("done")
'''


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_library_from_three_threads_gives_one_record_per_call(tmp_path: Path, server: str, backend: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(EARLY))
    (tmp_path / "clients.py").write_text(textwrap.dedent(CLIENTS))
    env = env_for(tmp_path, backend, {"PYTHONPATH": str(site)})
    result = hostapp(["run", "clients.py", server], tmp_path, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"done\n"

    shown = hostapp(["events", "--last", "--jsonl"], tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr.decode()
    events = json_lines(shown.stdout)
    assert len(events) == 70 and all(e["type"] == "outbound_http_request" for e in events)

    seen = Counter()
    threads: dict[str, set[int]] = {}
    for record in events:
        data = record["data"]
        path = data["url"].removeprefix(server).split("?")[0]
        lib, who, i = path.strip("/").split("/")
        seen[(lib, who, i)] += 1
        expected = "httpx" if lib == "httpx-async" else lib
        assert record["subtype"] == expected
        assert data["method"] == "GET"
        assert data["url"] == f"{server}{path}?token=[REDACTED]&i={i}"
        headers = {k.lower(): v for k, v in data["request"]["headers"].items()}  # httpx gives lower-case names
        assert headers["authorization"] == headers["x-api-key"] == "[REDACTED]"
        assert data["status_code"] == 200 and data["duration_ns"] > 0
        assert {k.lower(): v for k, v in data["response"]["headers"].items()}["set-cookie"] == "[REDACTED]"
        # the inner libraries are named on the record, not recorded again
        assert data.get("via", []) == {"urllib": ["http.client"], "requests": ["urllib3", "http.client"]}.get(lib, [])
        threads.setdefault(who, set()).add(record["thread_id"])
    assert all(n == 1 for n in seen.values())  # exactly one record per call
    by_lib = Counter(lib for lib, _, _ in seen)
    assert by_lib == {"urllib": 20, "requests": 20, "httpx": 20, "httpx-async": 10}
    assert {who for _, who, _ in seen} == {"main", "worker", "early"}
    assert len({next(iter(ids)) for ids in threads.values()}) == 3  # three different threads
    text = shown.stdout.decode()
    for secret in ("s3cr3t-value", "k3y-value", "t0ken-value", "cookie-secret"):
        assert secret not in text

    table = hostapp(["events", "--last", "--limit", "5"], tmp_path, env=env)
    assert table.returncode == 0
    out = table.stdout.decode()
    assert out.splitlines()[0].split() == ["Time", "Kind", "Duration", "Event"]
    assert all(" HTTP " in row and " -> " in row for row in out.splitlines()[1:])  # one row per call
    assert "clients.py:" in out


# -- a Kolo processor --------------------------------------------------------------------

KOLO_PROCESSOR = '''
    # written as in Kolo's plugin documentation
    def build_context(config):
        return {"seen": 0}

    def call(frame, event, arg, context):
        return frame.f_locals.get("n", 0) >= 0

    def process(frame, event, arg, context):
        context["seen"] += 1
        data = {"n": frame.f_locals["n"], "seen": context["seen"]}
        if event == "return":
            data["result"] = arg
        return data

    config = {
        "co_names": ("compute",),
        "path_fragment": "kolo_app",
        "call_type": "compute_start",
        "return_type": "compute_end",
        "subtype": "demo",
        "build_context": build_context,
        "call": call,
        "process": process,
    }
'''

KOLO_APP = '''
    def compute(n):
        return n * n

    print(sum(compute(n) for n in range(3)))
'''


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kolo_processor_dict_from_tracing_kolo_processors(tmp_path: Path, backend: str) -> None:
    (tmp_path / "kolo_proc.py").write_text(textwrap.dedent(KOLO_PROCESSOR))
    (tmp_path / "kolo_app.py").write_text(textwrap.dedent(KOLO_APP))
    (tmp_path / "hostapp.toml").write_text('[tracing]\nkolo_processors = ["kolo_proc:config"]\n')
    env = env_for(tmp_path, backend)
    result = hostapp(["run", "-q", "kolo_app.py"], tmp_path, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"5\n" and result.stderr == b""
    events = json_lines(hostapp(["events", "--last", "--all", "--jsonl"], tmp_path, env=env).stdout)
    mine = [e for e in events if e["subtype"] == "demo"]
    assert [e["type"] for e in mine] == ["compute_start", "compute_end"] * 3
    assert [e["data"]["n"] for e in mine] == [0, 0, 1, 1, 2, 2]
    assert [e["data"]["seen"] for e in mine] == [1, 2, 3, 4, 5, 6]  # one shared context
    assert [e["data"].get("result") for e in mine[1::2]] == [0, 1, 4]
    assert {e["source"] for e in mine} == {"kolo_proc:config"}
    assert mine[0]["data"]["frame_id"] == mine[1]["data"]["frame_id"]


# -- exactly like python -----------------------------------------------------------------

PROGRAMS = {
    "ok": '''
        import sys
        print("argv", sys.argv)
        print("path0 is the script dir", sys.path[0] == __import__("os").path.dirname(__file__))
        print("main", __name__, __spec__, type(__loader__).__name__)
        print("stdin", sys.stdin.read())
        print("to stderr", file=sys.stderr)
    ''',
    "raises": '''
        import json
        def parse(text):
            return json.loads(text)
        def main():
            try:
                parse("{oops")
            except ValueError as exc:
                raise RuntimeError("could not parse the input") from exc
        print("before")
        main()
    ''',
    "exit3": '''
        import sys
        print("leaving with 3")
        sys.stdout.flush()
        sys.exit(3)
    ''',
    "exit_message": '''
        raise SystemExit("a message, and status 1")
    ''',
}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_output_and_exit_status_are_byte_identical_to_python(tmp_path: Path, program: str) -> None:
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROGRAMS[program]))
    args = ["prog.py", "one", "two words"]
    expected = python(args, tmp_path, input=b"from stdin")
    got = hostapp(["run", "--quiet", *args], tmp_path, input=b"from stdin")
    assert (got.returncode, got.stdout, got.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert expected.returncode == {"ok": 0, "raises": 1, "exit3": 3, "exit_message": 1}[program]


def test_module_mode_is_like_python_dash_m(tmp_path: Path) -> None:
    pkg = tmp_path / "tool"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import sys\nprint(sys.argv, __name__, __package__, sys.path[0])\n")
    expected = python(["-m", "tool", "x"], tmp_path)
    got = hostapp(["run", "-q", "-m", "tool", "x"], tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (expected.returncode, expected.stdout, expected.stderr)


def test_errors_before_the_program_runs(tmp_path: Path) -> None:
    missing = hostapp(["run", "nope.py"], tmp_path)
    assert missing.returncode == 2
    assert b"can't open file" in missing.stderr and b"nope.py" in missing.stderr
    (tmp_path / "bad.py").write_text("def (\n")
    expected = python(["bad.py"], tmp_path)
    got = hostapp(["run", "-q", "bad.py"], tmp_path)
    assert (got.returncode, got.stderr) == (expected.returncode, expected.stderr) == (1, expected.stderr)
    no_target = hostapp(["run"], tmp_path)
    assert no_target.returncode == 2 and b"SCRIPT" in no_target.stderr
    (tmp_path / "hostapp.toml").write_text('[tracing]\nbackend = "fastest"\n')
    bad_config = hostapp(["run", "bad.py"], tmp_path)
    assert bad_config.returncode == 2
    assert len(bad_config.stderr.decode().strip().splitlines()) == 1
    assert b"tracing.backend" in bad_config.stderr


# -- a processor that always raises ------------------------------------------------------

BROKEN_PLUGIN = '''
    import hostapp

    def process(frame, event, arg, context):
        raise ZeroDivisionError("always")

    @hostapp.hookimpl
    def hostapp_trace_processors():
        return hostapp.TraceProcessor(
            name="always-fails", co_names=("work",), path_fragment="busy.py",
            call_type="work_start", return_type="work_end", process=process,
        )
'''

BUSY = '''
    def work(i):
        return i + 1

    total = 0
    for i in range(50):
        total += work(i)
    print(total)
'''


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_processor_that_always_raises_is_named_in_the_summary(tmp_path: Path, backend: str) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "broken.py").write_text(textwrap.dedent(BROKEN_PLUGIN))
    (tmp_path / "busy.py").write_text(textwrap.dedent(BUSY))
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    env = env_for(tmp_path, backend)
    expected = python(["busy.py"], tmp_path, env=env)
    summary_file = tmp_path / "summary.json"
    got = hostapp(["run", "--json-summary", str(summary_file), "busy.py"], tmp_path, env=env)
    assert got.returncode == expected.returncode == 0
    assert got.stdout == expected.stdout == b"1275\n"
    stderr = got.stderr.decode()
    assert stderr.startswith(expected.stderr.decode())  # the program's own stderr (none), then the summary
    assert "processor 'always-fails' (plugin 'broken')" in stderr
    assert "switched off" in stderr and "ZeroDivisionError: always" in stderr
    summary = json.loads(summary_file.read_text())
    stats = summary["processors"]["always-fails"]
    assert stats["disabled"] is True and stats["errors"] == 10 and stats["events"] == 0
    assert summary["exit_status"] == 0
    quiet = hostapp(["run", "-q", "busy.py"], tmp_path, env=env)
    assert (quiet.stdout, quiet.stderr) == (expected.stdout, expected.stderr)


# -- the run record, options ------------------------------------------------------------


def test_the_run_record_and_options(tmp_path: Path, server: str) -> None:
    (tmp_path / "one.py").write_text(textwrap.dedent('''
        import sys, requests
        requests.get(sys.argv[1] + "/ok")
        sys.exit(7)
    '''))
    db = tmp_path / "elsewhere" / "runs.sqlite3"
    result = hostapp(["run", "--db", str(db), "--no-processor", "requests", "one.py", server], tmp_path)
    assert result.returncode == 7
    assert b"exit status 7" in result.stderr
    runs = json_lines(hostapp(["runs", "--db", str(db), "--jsonl"], tmp_path).stdout)
    [run] = runs
    assert run["exit_status"] == 7
    assert run["cwd"] == str(tmp_path)
    assert run["python"].endswith(sys.version.split()[0])
    assert "one.py" in run["command"] and "--no-processor" in run["command"]
    assert run["ended_ns"] >= run["started_ns"]
    events = json_lines(hostapp(["events", "--db", str(db), "--last", "--jsonl"], tmp_path).stdout)
    # without the requests processor, urllib3 is the outermost library of the call
    assert [(e["type"], e["subtype"], e["data"].get("via")) for e in events] == [
        ("outbound_http_request", "urllib3", ["http.client"]),
    ]
    only = hostapp(["run", "--db", str(db), "-q", "--processor", "re:^url", "one.py", server], tmp_path)
    assert only.returncode == 7
    events = json_lines(hostapp(["events", "--db", str(db), "--last", "--jsonl"], tmp_path).stdout)
    assert [(e["subtype"], e["data"].get("via")) for e in events] == [("urllib3", None)]  # urllib matched too, unused


def test_trace_context_manager(tmp_path: Path, server: str) -> None:
    script = textwrap.dedent(f'''
        import urllib.request
        import hostapp

        def step(x):
            return x * 2

        with hostapp.trace(processors=[hostapp.TraceProcessor(
            name="steps", co_names=("step",), path_fragment="block.py",
            call_type="step_start", return_type="step_end",
        )]) as host:
            urllib.request.urlopen("{server}/ok").read()
            step(21)
        print(host.run_id, host.tracing_stats["steps"]["events"], host.tracing_stats["urllib"]["events"])
    ''')
    (tmp_path / "block.py").write_text(script)
    result = python(["block.py"], tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    run_id, steps, urllib_events = result.stdout.decode().split()
    assert (steps, urllib_events) == ("2", "1")
    events = json_lines(hostapp(["events", "--run", run_id, "--all", "--jsonl"], tmp_path).stdout)
    assert Counter(e["type"] for e in events) == {"step_start": 1, "step_end": 1, "outbound_http_request": 1}
    [run] = [r for r in json_lines(hostapp(["runs", "--jsonl"], tmp_path).stdout) if r["id"] == run_id]
    assert run["exit_status"] == 0


def test_the_demo_program(tmp_path: Path) -> None:
    """``make demo``: examples/outbound_http.py under hostapp run, then its calls."""
    example = Path(__file__).resolve().parent.parent / "examples" / "outbound_http.py"
    result = hostapp(["run", str(example)], tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"httpx async" in result.stdout
    assert b"events: 8 (outbound_http_request 8)" in result.stderr
    events = json_lines(hostapp(["events", "--last", "--jsonl"], tmp_path).stdout)
    calls = [(e["subtype"], e["data"]["method"], e["data"]["url"].split("/", 3)[-1])
             for e in events if e["type"] == "outbound_http_request"]
    assert calls[:5] == [
        ("urllib", "GET", "users/1"), ("urllib", "GET", "nowhere"),
        ("requests", "GET", "users/2?token=[REDACTED]"), ("requests", "POST", "orders"), ("httpx", "GET", "users/3"),
    ]
    assert sorted(calls[5:]) == [("httpx", "GET", f"users/{n}") for n in (4, 5, 6)]
    statuses = [e["data"]["status_code"] for e in events if e["type"] == "outbound_http_request"]
    assert statuses[:4] == [200, 404, 200, 201]
    assert "demo-secret-token" not in json.dumps(events)
    table = hostapp(["events", "--last"], tmp_path).stdout.decode()
    assert "outbound_http.py:" in table and "404" in table


def test_a_backend_this_python_lacks_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("print('never')\n")
    lacking = "monitoring" if sys.version_info < (3, 12) else "trampoline"
    (tmp_path / "hostapp.toml").write_text(f'[tracing]\nbackend = "{lacking}"\n')
    result = hostapp(["run", "prog.py"], tmp_path)
    assert result.returncode == 2, result.stderr.decode()
    [line] = result.stderr.decode().strip().splitlines()
    assert line.startswith("hostapp: error: ") and "tracing.backend" in line and lacking in line
    assert result.stdout == b""


# -- call sites users recognise -------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_program_installed_among_the_libraries_is_its_own_call_site(
    tmp_path: Path, server: str, backend: str,
) -> None:
    """``hostapp run -m prog``: prog lives in a library directory (as pip does in
    site-packages); the call site is prog's own line, not runpy's nor hostapp's launcher,
    and a library prog carries inside (``prog/_vendor/requests``) is still library code."""
    site = tmp_path / "site"
    package = site / "thirdparty"
    vendored = package / "_vendor" / "requests"
    vendored.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_vendor" / "__init__.py").write_text("")
    (vendored / "__init__.py").write_text(
        "import urllib.request\n\ndef get(url):\n    return urllib.request.urlopen(url).read()\n"
    )
    (package / "net.py").write_text(
        "from thirdparty._vendor import requests\n\ndef fetch(url):\n    return requests.get(url)\n"
    )
    (package / "__main__.py").write_text(
        "import sys\nfrom thirdparty import net\n\nnet.fetch(sys.argv[1] + '/ok')\nprint('fetched')\n"
    )
    (tmp_path / "hostapp.toml").write_text(f'[tracing]\nlibrary_paths = ["{site}"]\n')
    env = env_for(tmp_path, backend, {"PYTHONPATH": str(site)})
    result = hostapp(["run", "-m", "thirdparty", server], tmp_path, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"fetched\n"
    [call] = json_lines(hostapp(["events", "--last", "--jsonl"], tmp_path, env=env).stdout)
    assert call["data"]["call_site"] == {"file": str(package / "net.py"), "line": 4}
