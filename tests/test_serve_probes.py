"""The probes section of ``hostapp serve``'s API (``/api/probes``) and of its web view.

A real ``hostapp serve`` subprocess on 127.0.0.1 (``--port 0``), a real program under
``hostapp run`` in another process sharing the project's SQLite store, the real CLI for
comparison, ``requests`` as the client. Every wait is bounded; the programs end by
themselves within a minute whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from hostapp.store import Store

from test_docs_examples import blocks, labelled
from test_serve import clean_env, serving, wait_for

#: The probed program: calls app.work.work(i) every 10 ms; once the file "phase2" exists,
#: 50 more calls with i from 100000 up, then one call of app.work.other(), then it ends.
#: Its life is bounded (60 s) whatever the test does.
PROG = textwrap.dedent('''
    import os, time
    from app.work import other, work

    deadline = time.monotonic() + 60
    i = 0
    while not os.path.exists("phase2") and time.monotonic() < deadline:
        work(i)
        i += 1
        time.sleep(0.01)
    for j in range(100000, 100050):
        work(j)
    other()
    print("calls", i, flush=True)
''')

WORK = textwrap.dedent('''
    def work(i):
        return i * 3


    def other():
        return None
''')

CONFIG = textwrap.dedent('''
    [events]
    flush_interval_ms = 20
    [probes]
    poll_interval = 0.1
''')

STORE = Path(".hostapp") / "hostapp.sqlite3"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "work.py").write_text(WORK)
    (tmp_path / "prog.py").write_text(PROG)
    (tmp_path / "hostapp.toml").write_text(CONFIG)
    return tmp_path


def auth(served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.token}"}


def delete(served, path: str, **kwargs) -> requests.Response:
    return requests.delete(served.url.rstrip("/") + path, timeout=30, **kwargs)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostapp", *args], cwd=cwd, env=clean_env(cwd),
                          capture_output=True, text=True, timeout=120)


def stored_specs(cwd: Path) -> dict:
    with Store(cwd / STORE) as store:
        return store.probe_specs()


def record_of(row: dict, pid: int) -> dict | None:
    """The ``applied`` record of process ``pid`` in a row of ``GET /api/probes``."""
    return next((r for r in row["applied"].values() if r.get("pid") == pid), None)


def test_a_probe_added_through_the_api_fires_in_another_process_and_is_removed(project):
    with serving(project) as served:
        program = subprocess.Popen([sys.executable, "-m", "hostapp", "run", "prog.py"], cwd=project,
                                   env=clean_env(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            added = served.post("/api/probes", headers=auth(served), json={
                "target": "app.work.work", "type": "event", "value": "i", "name": "work-calls", "id": "p-work",
            })
            assert added.status_code == 201, added.text
            assert added.headers["Location"] == "/api/probes/p-work"
            assert added.json()["instrument"] == {"type": "event", "name": "work-calls", "value": "i",
                                                  "event": "return", "custom": {}, "condition": None}
            counted = served.post("/api/probes", headers=auth(served), json={
                "target": "app.work.work", "instrument": {"type": "incr", "event": "call"}, "lifespan": 5,
                "id": "p-count",
            })  # Diagnose's format
            assert counted.status_code == 201, counted.text

            # Both are applied in the program's process (its own run), and fire there.
            def active():
                row = served.get("/api/probes/p-count").json()
                record = record_of(row, program.pid)
                return (row, record) if record and record["state"] == "active" and record["fires"] > 0 else None

            row, record = wait_for(active, "p-count active and firing in the program", timeout=30)
            assert record["values"]["kind"] == "counter" and record["values"]["total"] >= 1
            assert row["fires"] >= record["fires"] and row["lifespan"] == 5 and row["expires_in_s"] > 0
            run_id = record["run_id"]
            assert run_id != served.get("/api").json()["run_id"]  # not the server's own run

            # Its events reach the store: read them back through the events API.
            def probe_events():
                page = served.get(f"/api/runs/{run_id}/events", params={"type": "probe", "limit": 1000}).json()
                return page["events"] if len(page["events"]) >= 3 else None

            events = wait_for(probe_events, "probe events of the program's run", timeout=30)
            assert {e["subtype"] for e in events} == {"work-calls"}
            assert all(e["data"]["probe"] == "p-work" and e["data"]["target"] == "app.work.work" for e in events)
            values = [e["data"]["value"] for e in events]
            assert values == sorted(values) and all(isinstance(v, int) for v in values)

            listed = served.get("/api/probes").json()
            assert [r["id"] for r in listed] == ["p-count", "p-work"]

            # Remove it. A probe added after the removal and applied in the program proves the
            # program has reconciled past the removal (both are one read of the specs there).
            removed = delete(served, "/api/probes/p-work", headers=auth(served))
            assert (removed.status_code, removed.json()) == (200, {"removed": 1})
            assert served.get("/api/probes/p-work").status_code == 404
            assert served.post("/api/probes", headers=auth(served), json={
                "target": "app.work.other", "type": "incr", "id": "p-other"}).status_code == 201

            def control_applied():
                record = record_of(served.get("/api/probes/p-other").json(), program.pid)
                return record if record and record["state"] == "active" else None

            wait_for(control_applied, "p-other applied in the program", timeout=30)
            (project / "phase2").write_text("")
            out, err = program.communicate(timeout=60)
            assert program.returncode == 0, err
            assert out.startswith("calls ")
            after = [e for e in served.get(f"/api/runs/{run_id}/events",
                                           params={"type": "probe", "limit": 1000}).json()["events"]]
            assert after and not [e for e in after if e["data"]["value"] >= 100000]  # none after the removal
            other = record_of(served.get("/api/probes/p-other").json(), program.pid)
            assert other["state"] == "ended" and other["values"] == {"kind": "counter", "total": 1}

            cleared = delete(served, "/api/probes", headers=auth(served))
            assert (cleared.status_code, cleared.json()) == (200, {"removed": 2})
            assert served.get("/api/probes").json() == [] and stored_specs(project) == {}
        finally:
            if program.poll() is None:
                program.kill()
                program.communicate()


def test_an_unsafe_expression_is_refused_with_the_clis_reason_and_nothing_is_stored(project):
    cli_out = cli(project, "probes", "add", "app.work.work", "--type", "log", "--value", "__import__('os').getcwd()",
                  "--id", "p-unsafe")
    assert cli_out.returncode == 2 and stored_specs(project) == {}
    cli_reason = cli_out.stderr.removeprefix("hostapp: error: ").rstrip("\n")
    assert "instrument.value" in cli_reason and "'__import__'" in cli_reason
    with serving(project) as served:
        for body in (
            {"target": "app.work.work", "type": "log", "value": "__import__('os').getcwd()", "id": "p-unsafe"},
            {"id": "p-unsafe", "target": "app.work.work",
             "instrument": {"type": "log", "value": "__import__('os').getcwd()"}},
        ):
            refused = served.post("/api/probes", headers=auth(served), json=body)
            assert refused.status_code == 422
            assert refused.json() == {"error": cli_reason}
        condition = served.post("/api/probes", headers=auth(served), json={
            "target": "app.work.work", "type": "incr", "condition": "i.__class__", "id": "p-dunder"})
        assert condition.status_code == 422
        assert condition.json()["error"] == (
            "probe spec 'p-dunder' (app.work.work): instrument.condition 'i.__class__': attribute '__class__' "
            "at column 0: attributes starting with '__' (dunders) are not allowed")
        for body, status, reason in (
            ({"target": "app.work.work", "type": "gauge", "id": "p-type"}, 422,
             "probe spec 'p-type' (app.work.work): instrument.type 'gauge' is unknown (known: event, hist, incr, log)"),
            ({"target": "work", "type": "incr", "id": "p-target"}, 422,
             "probe spec 'p-target': target: expected a dotted path module.function, got 'work'"),
            ({"target": "app.work.work", "tpye": "incr", "id": "p-key"}, 422,
             "probe spec 'p-key': unknown key(s) ['tpye']; expected the fields of 'hostapp probes add'"),
            ({"target": "app.work.work", "type": "incr", "event": "later", "id": "p-event"}, 422,
             "probe spec 'p-event': instrument.event: expected call, return or end, got 'later'"),
            (["app.work.work"], 422, "probe spec: expected a JSON object, got list"),
        ):
            reply = served.post("/api/probes", headers=auth(served), json=body)
            assert reply.status_code == status, reply.text
            assert reply.json()["error"].startswith(reason)
        not_json = served.post("/api/probes", headers=auth(served), data=b"target=app.work.work")
        assert not_json.status_code == 400 and not_json.json()["error"].startswith("the body is not JSON: ")
        empty = served.post("/api/probes", headers=auth(served), data=b"")
        assert empty.status_code == 400 and "the body is empty" in empty.json()["error"]
        huge = served.post("/api/probes", headers=auth(served), json={"target": "app.work.work", "type": "incr",
                                                                       "name": "x" * 70_000})
        assert huge.status_code == 413 and huge.json()["error"].startswith("the body is larger than 65536 bytes")
        assert served.get("/api/probes").json() == []
    assert stored_specs(project) == {}


def test_changes_need_the_token_and_listing_matches_the_cli(project):
    with serving(project) as served:
        spec = {"target": "app.work.work", "type": "hist", "value": "i", "event": "call", "no_lifespan": True,
                "id": "p-hist", "custom": {"window_s": 30}}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Hostapp-Token": "wrong"}):
            refused = served.post("/api/probes", headers=headers, json=spec)
            assert refused.status_code == 401, refused.text
            assert refused.headers["WWW-Authenticate"] == 'Bearer realm="hostapp"'
            assert "needs the token in a header" in refused.json()["error"]
        assert stored_specs(project) == {}
        added = served.post("/api/probes", headers={"X-Hostapp-Token": served.token}, json=spec)
        assert added.status_code == 201, added.text
        assert added.json()["lifespan"] is None
        replaced = served.post("/api/probes", headers=auth(served), json={**spec, "value": "i * 2"})
        assert replaced.status_code == 200 and replaced.json()["instrument"]["value"] == "i * 2"
        for method, path in (("DELETE", "/api/probes/p-hist"), ("DELETE", "/api/probes")):
            assert requests.request(method, served.url.rstrip("/") + path, timeout=10).status_code == 401
        assert list(stored_specs(project)) == ["p-hist"]
        missing = delete(served, "/api/probes/p-nope", headers=auth(served))
        assert (missing.status_code, missing.json()) == (
            404, {"error": "no probe spec 'p-nope'; GET /api/probes lists them"})

        # The server's own host applies the spec too: pending, its process never imports app.work.
        def server_record():
            rows = served.get("/api/probes").json()
            return rows if rows and record_of(rows[0], served.proc.pid) else None

        api_rows = wait_for(server_record, "the server's own applied record", timeout=30)
        assert record_of(api_rows[0], served.proc.pid)["state"] == "pending"
        cli_rows = json.loads(cli(project, "probes", "list", "--json").stdout)
        for rows in (api_rows, cli_rows):
            for row in rows:
                row.pop("expires_in_s")
                for record in row["applied"].values():
                    record.pop("updated_at")
        assert api_rows == cli_rows
        assert served.get("/api/probes/p-hist").json()["instrument"]["custom"] == {"window_s": 30}

        # The web view lists it, read-only.
        page = served.get("/plugins").text
        section = page[page.index('<h2 id="probes">'):]
        assert "<code>p-hist</code>" in section and "hist of i * 2 at call" in section and ">never<" in section
        assert "pending" in section and "<form" not in section and "<button" not in section


# -- the web API session of docs/probes.md, replayed with curl ------------------------------------

#: What differs from one run to the next in the page's answers: times, process keys
#: (host:pid:run_id), hosts and pids.
_VARYING = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00"), "TIME"),
    (re.compile(r'"[^"]+:\d+:[0-9a-f]{32}"'), '"PROCESS"'),
    (re.compile(r'"host":"[^"]*","pid":\d+'), '"host":HOST,"pid":PID'),
)


def _normal(text: str) -> str:
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return text


def _matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is what the page shows, ``...`` standing for anything."""
    pattern = ".*".join(re.escape(part) for part in _normal(expected).split("..."))
    return re.fullmatch(pattern, _normal(actual), re.S) is not None


def session(page: str, needle: str) -> list[tuple[str, str]]:
    """The ``$ command`` lines of the console block of ``page`` holding ``needle``, each
    with the output the page shows under it."""
    [block] = [b for b in blocks(page, "console") if needle in b.text]
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return [(command, "\n".join(out)) for command, out in steps]


def test_the_web_api_session_of_probes_md(tmp_path):
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("CI"):
            pytest.fail("curl is not installed and CI is set (.ci/run installs it)")
        pytest.skip("curl is not installed (apt-get install curl)")
    files = labelled("probes.md")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "cart.py").write_text(files["shop/cart.py"])
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        shop_port = probe_port.getsockname()[1]
    (tmp_path / "serve.py").write_text(files["serve.py"].replace("8765", str(shop_port)))
    (tmp_path / "hostapp.toml").write_text(CONFIG)
    shop = subprocess.Popen([sys.executable, "-m", "hostapp", "run", "serve.py"], cwd=tmp_path,
                            env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    token = "the-docs-token"
    try:
        def shop_answers():
            try:
                return requests.get(f"http://127.0.0.1:{shop_port}/add?n=1", timeout=5).ok
            except requests.ConnectionError:
                return False

        wait_for(shop_answers, "the shop answers", timeout=60)
        with serving(tmp_path, env=clean_env(tmp_path, HOSTAPP_SERVE_TOKEN=token)) as served:
            serve_port = served.url.rstrip("/").rsplit(":", 1)[1]
            steps = session("probes.md", "/api/probes")
            assert len(steps) == 6
            for command, expected in steps:
                line = command.replace("8765", str(shop_port)).replace("8766", serve_port)
                read_only = line.startswith("curl -s http://")  # a GET: asked again until the page's answer

                def run(line=line):
                    out = subprocess.run(["bash", "-c", line], env=clean_env(tmp_path, TOKEN=token), cwd=tmp_path,
                                         capture_output=True, text=True, timeout=30)
                    assert out.returncode == 0, out.stderr
                    return out.stdout.rstrip("\n")

                actual = run()
                if read_only:
                    actual = wait_for(lambda run=run: (lambda a: a if _matches(expected, a) else None)(run()),
                                      f"{command!r} to answer as the page shows", timeout=30)
                assert _matches(expected, actual), (command, expected, actual)
    finally:
        shop.terminate()
        try:
            shop.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            shop.kill()
            shop.communicate()
