"""Signals, crashes, a damaged store, unsafe plugin paths, secrets in sink URLs.

Every test runs the real ``hostapp`` command as a subprocess against a real SQLite store
(docs/reliability.md). Waits poll for a file or a condition with a generous limit; no test
asserts on time.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostapp.store import Store


def env_for(cwd: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON"))}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    env.update(extra)
    return env


def hostapp(args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "hostapp", *args], cwd=cwd, env=env_for(cwd, **extra),
                          capture_output=True, timeout=120)


def start_hostapp(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "hostapp", *args], cwd=cwd, env=env_for(cwd),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.02)


def runs(cwd: Path) -> list[dict[str, Any]]:
    done = hostapp(["runs", "--json"], cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


EMITTER = '''
    import os, sys, time
    import hostapp

    host = hostapp.get_host()
    for i in range(500):
        host.emit("monitoring_event", "signal-test", i=i)
    open("ready", "w").close()
    print("emitted", flush=True)
    time.sleep(60)
    print("never")
'''


# -- SIGTERM, SIGHUP, kill -9 -------------------------------------------------------------


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_flushes_records_the_signal_and_ends_as_python_would(tmp_path, name):
    signum = getattr(signal, name)
    (tmp_path / "prog.py").write_text(textwrap.dedent(EMITTER))
    plain = subprocess.Popen([sys.executable, "-c", "import time; open('py-ready', 'w').close(); time.sleep(60)"],
                             cwd=tmp_path, env=env_for(tmp_path))
    wait_for(tmp_path / "py-ready")
    plain.send_signal(signum)
    assert plain.wait(60) == -signum  # what python does: the process ends by the signal

    proc = start_hostapp(["run", "prog.py"], tmp_path)
    wait_for(tmp_path / "ready")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signum, err.decode()
    assert out == b"emitted\n"
    assert f"ended by {name}" in err.decode()
    [run] = runs(tmp_path)
    assert (run["state"], run["exit_status"], run["summary"]["signal"]) == ("ended", -signum, name)
    with Store(tmp_path / ".hostapp" / "hostapp.sqlite3") as store:
        assert store.count_events(run_id=run["id"], type="monitoring_event") == 500
    table = hostapp(["runs"], tmp_path).stdout.decode()
    assert name in table


def test_a_program_handling_sigterm_itself_gets_it_as_under_python(tmp_path):
    (tmp_path / "prog.py").write_text(textwrap.dedent('''
        import signal, sys, time
        def bye(signum, frame):
            print("handled", signum, flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, bye)
        open("ready", "w").close()
        time.sleep(60)
    '''))
    proc = start_hostapp(["run", "-q", "prog.py"], tmp_path)
    wait_for(tmp_path / "ready")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (7, f"handled {signal.SIGTERM.value}\n".encode()), err.decode()
    [run] = runs(tmp_path)
    assert (run["state"], run["exit_status"]) == ("ended", 7)


def test_kill_9_leaves_a_run_shown_as_crashed(tmp_path):
    (tmp_path / "prog.py").write_text(textwrap.dedent(EMITTER))
    proc = start_hostapp(["run", "prog.py"], tmp_path)
    wait_for(tmp_path / "ready")
    proc.kill()
    proc.communicate(timeout=60)
    [run] = runs(tmp_path)
    assert run["state"] == "crashed" and run["ended_ns"] is None
    assert "crashed" in hostapp(["runs"], tmp_path).stdout.decode()
    events = hostapp(["events", "--last", "--all"], tmp_path)
    assert f"run {run['id']} crashed" in events.stderr.decode()


# -- Ctrl-C during the exit flush ---------------------------------------------------------

SLOW_SINK = '''
    import os, time
    import hostapp

    def handle(events):
        open("flushing", "w").close()
        while not os.path.exists("release"):
            time.sleep(0.01)

    @hostapp.hookimpl
    def hostapp_event_sinks():
        return hostapp.EventSink(name="slow", handle=handle)
'''


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_during_the_exit_flush_keeps_the_status_and_the_run_record(tmp_path, presses):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "slowsink.py").write_text(textwrap.dedent(SLOW_SINK))
    (tmp_path / "hostapp.toml").write_text(textwrap.dedent('''
        [plugins]
        paths = ["plugins"]
        [host]
        shutdown_timeout = 30
        [events.sinks.sqlite]
        [events.sinks.slow]
        batch_size = 1
    '''))
    (tmp_path / "prog.py").write_text(textwrap.dedent('''
        import sys
        import hostapp
        host = hostapp.get_host()
        for i in range(5):
            host.emit("monitoring_event", "flush-test", i=i)
        print("done")
        sys.exit(5)
    '''))
    proc = start_hostapp(["run", "prog.py"], tmp_path)
    wait_for(tmp_path / "flushing")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)  # ordering only: the second press comes after the first was seen
    if presses == 2:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
    (tmp_path / "release").touch()
    out, err = proc.communicate(timeout=60)
    stderr = err.decode()
    assert (proc.returncode, out) == (5, b"done\n"), stderr
    assert "Ctrl-C again to skip" in stderr and "Aborted" not in stderr
    [run] = runs(tmp_path)
    assert (run["state"], run["exit_status"]) == ("ended", 5)
    slow = run["summary"]["sinks"]["slow"]
    assert slow["accepted"] == 5 and slow["accepted"] == slow["delivered"] + slow["dead_lettered"]
    if presses == 2:
        assert run["summary"]["flush_skipped"] is True and slow["dead_lettered"] > 0
        assert "the exit flush was skipped" in stderr
    else:
        assert slow["delivered"] == 5


# -- the store defends itself -------------------------------------------------------------


def test_a_new_store_is_owner_only(tmp_path):
    (tmp_path / "prog.py").write_text("print('x')\n")
    assert hostapp(["run", "-q", "prog.py"], tmp_path).returncode == 0
    folder = tmp_path / ".hostapp"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.glob("hostapp.sqlite3*"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), [
        (f.name, oct(f.stat().st_mode)) for f in files
    ]


def test_a_store_others_can_read_is_narrowed_when_opened(tmp_path):
    path = tmp_path / "s.sqlite3"
    Store(path).close()
    os.chmod(path, 0o644)
    Store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def damaged_store(tmp_path: Path) -> Path:
    (tmp_path / "prog.py").write_text(textwrap.dedent('''
        import hostapp
        host = hostapp.get_host()
        for i in range(3000):
            host.emit("monitoring_event", "x", payload="y" * 200, i=i)
    '''))
    assert hostapp(["run", "-q", "prog.py"], tmp_path).returncode == 0
    path = tmp_path / ".hostapp" / "hostapp.sqlite3"
    size = path.stat().st_size
    with open(path, "r+b") as f:  # a run of pages in the middle overwritten
        f.seek(size // 2)
        f.write(b"\xff" * 16384)
    return path


def test_a_damaged_store_gives_one_line_never_a_traceback(tmp_path):
    path = damaged_store(tmp_path)
    before = path.read_bytes()
    failed = 0
    for args in (["events", "--all"], ["runs"], ["events", "--dead-letters"], ["sinks"]):
        done = hostapp(args, tmp_path)
        stderr = done.stderr.decode()
        if done.returncode == 0:
            continue  # this command did not need a damaged page
        failed += 1
        assert "Traceback" not in stderr, (args, stderr)
        [line] = stderr.strip().splitlines()
        assert line.startswith(f"hostapp: error: {path}: ") and "hostapp store check" in line, (args, line)
    assert failed, "the damage was not met"
    assert path.read_bytes() == before  # never written to
    check = hostapp(["store", "check"], tmp_path)
    assert check.returncode == 1 and "problem:" in check.stdout.decode()
    moved = hostapp(["store", "check", "--move-aside", "--json"], tmp_path)
    report = json.loads(moved.stdout)
    assert report["ok"] is False and report["moved_to"] and not path.exists()
    assert hostapp(["run", "-q", "prog.py"], tmp_path).returncode == 0  # a new store is made
    assert hostapp(["store", "check"], tmp_path).returncode == 0


def test_a_foreign_file_at_store_path_is_refused_and_untouched(tmp_path):
    (tmp_path / "prog.py").write_text("print('never')\n")
    foreign = tmp_path / "app.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE customers (name TEXT)")
    con.commit()
    con.close()
    before = foreign.read_bytes()
    done = hostapp(["run", "--db", str(foreign), "prog.py"], tmp_path)
    assert done.returncode == 2 and done.stdout == b""
    [line] = done.stderr.decode().strip().splitlines()
    assert line.startswith("hostapp: error: --db: store.path: ") and "not a hostapp store" in line
    assert foreign.read_bytes() == before
    (tmp_path / "notes.txt").write_text("not a database at all\n" * 200)
    done = hostapp(["runs", "--db", "notes.txt"], tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr.decode()
    assert "file is not a database" in done.stderr.decode()


# -- plugin paths are safe ----------------------------------------------------------------

LOUD = '''
    import pathlib
    pathlib.Path("plugin-ran").touch()
    import hostapp

    @hostapp.hookimpl
    def hostapp_startup(host):
        pass
'''


def test_a_world_writable_plugin_folder_is_refused(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "loud.py").write_text(textwrap.dedent(LOUD))
    os.chmod(plugins, 0o777)
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    listing = json.loads(hostapp(["plugins", "--json"], tmp_path).stdout)
    [row] = [r for r in listing if r["name"] == "loud"]
    assert row["state"] == "failed" and row["stage"] == "discover"
    assert "writable by every user (mode 0777): refused" in row["error"]
    assert not (tmp_path / "plugin-ran").exists()
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\nallow_insecure = true\n')
    listing = json.loads(hostapp(["plugins", "--json"], tmp_path).stdout)
    assert [r["state"] for r in listing if r["name"] == "loud"] == ["registered"]
    os.chmod(plugins, 0o755)
    (plugins / "loud.py").chmod(0o666)
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    listing = json.loads(hostapp(["plugins", "--json"], tmp_path).stdout)
    [row] = [r for r in listing if r["name"] == "loud"]
    assert row["state"] == "failed" and "plugin file" in row["error"]


def test_help_and_version_run_no_plugin_code_from_the_working_directory(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "loud.py").write_text(textwrap.dedent(LOUD))
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\nmodules = ["loudmod"]\n')
    (tmp_path / "loudmod.py").write_text(textwrap.dedent(LOUD))
    for args in (["--help"], ["--version"], ["-h"]):
        done = hostapp(args, tmp_path)
        assert done.returncode == 0, done.stderr
        assert not (tmp_path / "plugin-ran").exists(), args
    assert b"run " in hostapp(["--help"], tmp_path).stdout  # the built-in commands are listed


def test_a_program_inside_a_plugin_folder_is_refused(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "prog.py").write_text("print('the body')\n")
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n')
    done = hostapp(["run", "plugins/prog.py"], tmp_path)
    assert done.returncode == 2 and done.stdout == b""
    assert "is in plugin folder" in done.stderr.decode() and "plugins.paths" in done.stderr.decode()


# -- secrets in a sink's URL, the summary's dead letters ----------------------------------


class Refusing(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def refusing_server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_webhook_url_secret_never_shows_and_the_summary_counts_dead_letters(tmp_path, refusing_server):
    url = f"{refusing_server}/hook?token=s3cr3t-token&x=1"
    (tmp_path / "hostapp.toml").write_text(f'[events.sinks.sqlite]\n[events.sinks.webhook]\nurl = "{url}"\n')
    (tmp_path / "prog.py").write_text(textwrap.dedent('''
        import hostapp
        host = hostapp.get_host()
        for i in range(300):
            host.emit("monitoring_event", "hook", i=i)
    '''))
    done = hostapp(["run", "prog.py"], tmp_path)
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert "sink 'webhook': 300 event(s) kept as dead letters, 0 dropped" in stderr
    assert "s3cr3t-token" not in stderr and "token=[REDACTED]" in stderr
    out = hostapp(["events", "--dead-letters", "--json"], tmp_path).stdout.decode()
    letters = json.loads(out)
    assert [letter["sink"] for letter in letters] == ["webhook"] * 300
    assert "s3cr3t-token" not in out and all("403" in letter["error"] for letter in letters)


# -- memory stays bounded -----------------------------------------------------------------


def test_the_store_prepares_a_bounded_set_of_statements_whatever_the_batch_sizes(tmp_path):
    """Batches of every size from 1 to 1,500 rows (as partial batches come, by time) are
    written by statements of power-of-two sizes: at most ~11 of each kind are ever prepared,
    so neither the store's statement texts nor SQLite's prepared statements grow with the
    number of calls a program makes."""
    from hostapp.events import Event

    with Store(tmp_path / "s.sqlite3") as store:
        total = 0
        for size in range(1, 1501, 7):
            store.add_events([Event.create("monitoring_event", "m", data={"i": i}) for i in range(size)])
            total += size
        assert store.count_events() == total
        assert len(store._statements) <= 11


def test_a_component_whose_driver_plugin_failed_is_unavailable_not_a_config_error(tmp_path):
    """With no plugin failing, an unknown driver is a configuration error (a typo); when the
    plugin that would contribute it failed, the component is unavailable and the run goes on."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "dbdriver.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp_path / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n[components.db]\ndriver = "mydb"\n')
    (tmp_path / "prog.py").write_text("print('ran')\n")
    done = hostapp(["run", "prog.py"], tmp_path)
    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (0, b"ran\n"), stderr
    assert "no plugin contributes driver 'mydb'; plugins that failed: dbdriver (import: RuntimeError" in stderr
    (tmp_path / "plugins" / "dbdriver.py").unlink()
    done = hostapp(["run", "prog.py"], tmp_path)
    assert done.returncode == 2 and "unknown driver 'mydb'" in done.stderr.decode()
