"""``hostapp serve``: plugin routes (LUNA's and opa-stack's, ported), the management API,
request monitoring, the security model and the orderly shutdown.

Every server is real: ``hostapp serve`` runs as a subprocess on 127.0.0.1 with a port the
kernel picks (``--port 0``, read from its first line), or uvicorn serves
``hostapp.asgi.create_app`` in a thread of the test; the client is ``requests``. Plugins
are real modules in a plugin folder, the store a real SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import hostapp
from hostapp.errors import DuplicateNameError
from hostapp.serve.routes import check_routes
from hostapp.store import Store
from hostapp.types import Contribution, Route

ROOT = Path(__file__).resolve().parents[1]

# -- plugins ------------------------------------------------------------------------------------

#: LUNA's BackgroundPluginExample, ported: a background job and a tornado-style handler class
#: (one method per verb) on /teapot answering 418.
LUNA_PLUGIN = textwrap.dedent('''
    """LUNA's BackgroundPluginExample: a background job, and a route on /teapot."""
    from starlette.endpoints import HTTPEndpoint
    from starlette.responses import PlainTextResponse

    import hostapp


    class HandlerExample(HTTPEndpoint):
        async def get(self, request):
            return PlainTextResponse("I'm a teapot", status_code=418)


    class BackgroundPluginExample:
        def __init__(self):
            self.beats = 0

        def run(self, host, stop_event):
            self.beats += 1
            host.emit("monitoring_event", "background_example", beats=self.beats)


    example = BackgroundPluginExample()


    @hostapp.hookimpl
    def hostapp_background_tasks():
        return hostapp.BackgroundTask(name="background_example", run=example.run, interval=0.2)


    @hostapp.hookimpl
    def hostapp_routes():
        return hostapp.Route("/teapot", HandlerExample, methods=("GET",))


    @hostapp.hookimpl
    def hostapp_shutdown(host):
        host.emit("monitoring_event", "background_example_stopping")
''')

#: A LUNA-style monitoring plugin: every monitoring_event to a JSON-lines file.
MONITOR_SINK = textwrap.dedent('''
    import json, os
    import hostapp

    def handle(events):
        with open(os.environ["MONITOR_OUT"], "a") as out:
            for event in events:
                out.write(json.dumps({"subtype": event.subtype, **event.data}) + "\\n")

    @hostapp.hookimpl
    def hostapp_event_sinks():
        return hostapp.EventSink(name="monitor", handle=handle, event_types=("monitoring_event",))
''')

#: An opa-stack plugin module with its own router, mounted unchanged under /opa.
OPA_ROUTER = textwrap.dedent('''
    """opa-stack style: the plugin module has a router of its own."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route, Router

    import hostapp


    async def item(request):
        return JSONResponse({"item": request.path_params["item_id"], "root_path": request.scope["root_path"]})


    def items(request):  # a sync endpoint, run in the threadpool
        return JSONResponse({"items": [1, 2, 3]})


    router = Router(routes=[Route("/items", items), Route("/items/{item_id:int}", item)])


    @hostapp.hookimpl
    def hostapp_routes():
        return hostapp.Route("/opa", router)
''')

KETTLE = textwrap.dedent('''
    from starlette.responses import PlainTextResponse
    import hostapp

    def kettle(request):
        return PlainTextResponse("boiling")

    @hostapp.hookimpl
    def hostapp_routes():
        return hostapp.Route("/teapot", kettle, name="kettle")
''')

#: A driver whose component's health() follows a file: present means down.
FLAGGED_DRIVER = textwrap.dedent('''
    import os, pathlib
    import hostapp

    class Flagged:
        def __init__(self, options):
            self.flag = pathlib.Path(options["flag"])
        def connect(self):
            return True
        def health(self):
            if self.flag.exists():
                raise ConnectionError("the flag says down")
            return {"ok": True}

    @hostapp.hookimpl
    def hostapp_drivers():
        return hostapp.DriverSpec(name="flagged", factory=Flagged)
''')


def write_project(tmp_path: Path, plugins: dict[str, str], extra_toml: str = "") -> Path:
    (tmp_path / "plugins").mkdir(exist_ok=True)
    for name, source in plugins.items():
        (tmp_path / "plugins" / f"{name}.py").write_text(source)
    (tmp_path / "hostapp.toml").write_text(textwrap.dedent('''
        [plugins]
        paths = ["plugins"]
        [events]
        flush_interval_ms = 20
        [events.sinks.sqlite]
        [events.sinks.monitor]
    ''') + textwrap.dedent(extra_toml))
    return tmp_path


def clean_env(cwd: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_")}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    env["MONITOR_OUT"] = str(cwd / "monitor.jsonl")
    env.update(extra)
    return env


class Served:
    """A ``hostapp serve`` subprocess: its URL, its token (when generated), its output."""

    def __init__(self, proc: subprocess.Popen[str], url: str, token: str | None, lines: list[str]) -> None:
        self.proc = proc
        self.url = url
        self.token = token
        self.lines = lines

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url.rstrip("/") + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url.rstrip("/") + path, timeout=30, **kwargs)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"hostapp serve did not stop within 30 s of signal {sig}")
        return self.proc.returncode, "".join(self.lines) + (err or "")


@contextlib.contextmanager
def serving(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``hostapp serve --port 0`` in ``cwd`` until the block ends (SIGTERM)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostapp", "serve", "--port", "0", *args],
        cwd=cwd, env=env or clean_env(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    url = token = None
    deadline = time.monotonic() + 30
    while url is None or (token is None and not any("token from" in line for line in lines)):
        line = proc.stderr.readline()
        if not line:
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"hostapp serve exited {proc.returncode}: {''.join(lines)}{err}")
        lines.append(line)
        if match := re.match(r"hostapp serve: (http://\S+) ", line):
            url = match.group(1)
        if match := re.search(r"for changes\): (\S+)$", line):
            token = match.group(1)
        assert time.monotonic() < deadline, lines
    served = Served(proc, url, token, lines)
    try:
        yield served
    finally:
        served.stop()


def wait_for(check, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def monitor_lines(cwd: Path) -> list[dict]:
    path = cwd / "monitor.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- the Route spec and the conflict rules ---------------------------------------------------------


async def async_endpoint(request):
    return None


def sync_endpoint(request):
    return None


async def asgi_app(scope, receive, send):
    return None


def test_route_spec_takes_starlette_shapes():
    from starlette.endpoints import HTTPEndpoint
    from starlette.routing import Router

    class Verbs(HTTPEndpoint):
        pass

    assert Route("/a", async_endpoint).kind == "route"
    assert Route("/a", sync_endpoint, methods=["get", "post"]).methods == ("GET", "POST")
    assert Route("/a", Verbs).kind == "route"
    assert Route("/a", asgi_app).kind == "mount"
    assert Route("/a", Router(routes=[])).kind == "mount"
    assert Route("/items/{item_id:int}", sync_endpoint).name == "/items/{item_id:int}"
    assert Route("/a", sync_endpoint, name="a").name == "a"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "teapot", "endpoint": sync_endpoint}, "Route.path: expected a path starting with '/'"),
        ({"path": "/a b", "endpoint": sync_endpoint}, "Route.path: expected a path without spaces"),
        ({"path": "/a", "endpoint": lambda a, b: None}, "Route.endpoint: expected a function taking a Request"),
        ({"path": "/a", "endpoint": sync_endpoint, "methods": ("FETCH",)}, "Route.methods: expected HTTP methods"),
        ({"path": "/a/", "endpoint": asgi_app}, "a mounted app's path must not end with '/'"),
        ({"path": "/a", "endpoint": "not callable"}, "Route.endpoint: expected a callable"),
    ],
)
def test_route_spec_refuses_what_cannot_be_served(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Route(**kwargs)


def contributed(plugin: str, route: Route) -> Contribution[Route]:
    return Contribution(route, plugin, f"{plugin}-dist", "1.0")


def test_one_path_two_plugins_is_refused_naming_both():
    routes = [contributed("teapot", Route("/teapot", sync_endpoint)),
              contributed("kettle", Route("/teapot", async_endpoint, name="kettle"))]
    with pytest.raises(DuplicateNameError) as caught:
        check_routes(routes)
    message = str(caught.value)
    assert "path '/teapot' is claimed by plugin 'teapot' (distribution 'teapot-dist' 1.0)" in message
    assert "plugin 'kettle' (distribution 'kettle-dist' 1.0) (route 'kettle')" in message
    kept, problems = check_routes(routes, on_conflict="report")
    assert [c.plugin for c in kept] == ["teapot"] and len(problems) == 1


def test_same_shape_mount_overlap_and_reserved_paths_are_refused():
    kept, problems = check_routes(
        [
            contributed("a", Route("/items/{id}", sync_endpoint)),
            contributed("a", Route("/items/{id}", sync_endpoint, methods=("POST",), name="items-post")),
            contributed("b", Route("/items/{item_id:int}", sync_endpoint, name="b-items")),
            contributed("c", Route("/opa", asgi_app)),
            contributed("d", Route("/opa/extra", sync_endpoint)),
            contributed("e", Route("/api/mine", sync_endpoint)),
            contributed("f", Route("/", sync_endpoint)),
            contributed("g", Route("/-/x", sync_endpoint)),
        ],
        on_conflict="report",
    )
    assert [(c.plugin, c.spec.name) for c in kept] == [("a", "/items/{id}"), ("a", "items-post"), ("c", "/opa")]
    assert "path '/items/{item_id:int}' is claimed by plugin 'a'" in problems[0]
    assert "overlaps the app plugin 'c' (distribution 'c-dist' 1.0) mounts at '/opa'" in problems[1]
    assert "under hostapp's own path '/api' (the management API)" in problems[2]
    assert "under hostapp's own path '/' (the web view)" in problems[3]
    assert "under hostapp's own path '/-'" in problems[4]


def test_hostapp_routes_lists_and_checks(tmp_path):
    write_project(tmp_path, {"luna": LUNA_PLUGIN, "opa": OPA_ROUTER})
    env = clean_env(tmp_path)
    out = subprocess.run([sys.executable, "-m", "hostapp", "routes", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {row["path"]: row for row in json.loads(out.stdout)}
    assert rows["/teapot"]["kind"] == "route" and rows["/teapot"]["methods"] == ["GET"]
    assert rows["/teapot"]["plugin"] == "luna"
    assert rows["/teapot"]["endpoint"].endswith(":HandlerExample")
    assert rows["/opa"]["kind"] == "mount" and rows["/opa"]["methods"] == []
    hooks = subprocess.run([sys.executable, "-m", "hostapp", "hooks", "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    (row,) = [r for r in json.loads(hooks.stdout) if r["name"] == "hostapp_routes"]
    assert row["kind"] == "registration" and row["spec_type"] == "Route"
    assert sorted(i["plugin"] for i in row["implementations"]) == ["luna", "opa"]
    table = subprocess.run([sys.executable, "-m", "hostapp", "routes"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert "/teapot" in table.stdout and "HandlerExample" in table.stdout

    (tmp_path / "plugins" / "kettle.py").write_text(KETTLE)
    clash = subprocess.run([sys.executable, "-m", "hostapp", "routes"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert clash.returncode == 1
    assert "hostapp: warning: refused: path '/teapot' is claimed by plugin 'kettle'" in clash.stderr \
        or "hostapp: warning: refused: path '/teapot' is claimed by plugin 'luna'" in clash.stderr
    assert "kettle" in clash.stderr and "luna" in clash.stderr


# -- hostapp serve: the LUNA and opa-stack plugins, monitoring, health ------------------------------


def test_luna_background_plugin_with_a_route_is_served(tmp_path):
    """Must show: the route answers, the background task runs, /-/health is 200, a request
    emits a monitoring_event that reaches a plugin sink."""
    write_project(tmp_path, {"luna": LUNA_PLUGIN, "monitor": MONITOR_SINK, "opa": OPA_ROUTER})
    with serving(tmp_path) as served:
        reply = served.get("/teapot", headers={"X-Request-ID": "req-teapot-1"})
        assert (reply.status_code, reply.text) == (418, "I'm a teapot")
        assert reply.headers["X-Request-ID"] == "req-teapot-1"

        tasks = wait_for(lambda: [t for t in served.get("/api/tasks").json() if t["runs"] >= 2], "two task runs")
        assert tasks[0]["name"] == "background_example" and tasks[0]["plugin"] == "luna"

        health = served.get("/-/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["tasks"] == {"background_example": "waiting", "probes": "running"}  # + the built-in probe poller

        request = wait_for(
            lambda: [m for m in monitor_lines(tmp_path) if m.get("request_id") == "req-teapot-1"],
            "the monitoring_event of GET /teapot in the plugin's sink",
        )
        assert request[0] | {"duration_ns": 0, "client": None} == {
            "subtype": "http_request", "request_id": "req-teapot-1", "method": "GET", "path": "/teapot",
            "route": "/teapot", "plugin": "luna", "status_code": 418, "duration_ns": 0, "client": None,
        }
        assert request[0]["duration_ns"] > 0 and request[0]["client"] == "127.0.0.1"
        assert any(m["subtype"] == "background_example" for m in monitor_lines(tmp_path))

        items = served.get("/opa/items")
        assert (items.status_code, items.json()) == (200, {"items": [1, 2, 3]})
        item = served.get("/opa/items/7").json()
        assert item == {"item": 7, "root_path": "/opa"}
        assert served.get("/opa/items/seven").status_code == 404
        opa = wait_for(lambda: [m for m in monitor_lines(tmp_path) if m.get("path") == "/opa/items/7"], "opa event")
        assert (opa[0]["plugin"], opa[0]["route"]) == ("opa", "/opa/items/{item_id:int}")
        code, output = served.stop()
    assert code == 143, output
    assert any(m["subtype"] == "background_example_stopping" for m in monitor_lines(tmp_path))


def test_the_api_lists_plugins_hooks_routes_runs_sinks_tasks_components(tmp_path):
    write_project(tmp_path, {"luna": LUNA_PLUGIN, "monitor": MONITOR_SINK, "flagged": FLAGGED_DRIVER}, f'''
        [components.gauge]
        driver = "flagged"
        load = "yes"
        options = {{ flag = "{tmp_path / 'down'}" }}
    ''')
    with serving(tmp_path) as served:
        index = served.get("/api").json()
        assert "/api/runs/{run_id}/events" in index["endpoints"] and index["state"] == "running"
        plugins = {row["name"]: row for row in served.get("/api/plugins").json()}
        assert plugins["luna"]["state"] == "started"
        assert plugins["luna"]["provides"] == {"background_tasks": ["background_example"], "routes": ["/teapot"]}
        assert plugins["sinks.sqlite"]["builtin"] is True
        assert "sinks.sqlite" not in {row["name"] for row in served.get("/api/plugins?all=0").json()}
        hooks = {row["name"]: row for row in served.get("/api/hooks").json()}
        assert [i["plugin"] for i in hooks["hostapp_routes"]["implementations"]] == ["luna"]
        routes = served.get("/api/routes").json()
        assert [r["path"] for r in routes["routes"]] == ["/teapot"] and routes["refused"] == []
        runs = served.get("/api/runs").json()
        assert runs[0]["live"] is True and runs[0]["command"].startswith("hostapp serve")
        run = served.get(f"/api/runs/{runs[0]['id']}").json()
        assert run["id"] == runs[0]["id"] and run["ended_ns"] is None
        assert served.get("/api/runs/nope").status_code == 404
        assert served.get("/api/runs/nope").json() == {"error": "no run 'nope'"}
        sinks = {row["name"]: row for row in served.get("/api/sinks").json()}
        assert sinks["monitor"]["enabled"] and sinks["monitor"]["counters"]["state"] == "running"
        assert sinks["jsonl"]["enabled"] is False and sinks["jsonl"]["counters"] is None
        (component,) = served.get("/api/components").json()
        assert (component["name"], component["state"], component["load"]) == ("gauge", "available", "yes")
        assert served.get("/-/health").status_code == 200
        (tmp_path / "down").write_text("")
        down = served.get("/-/health")
        assert down.status_code == 503
        assert down.json()["down"] == ["gauge"]
        assert "the flag says down" in down.json()["components"]["gauge"]["health"]["error"]
        assert served.get("/api/nowhere").status_code == 404


# -- security ----------------------------------------------------------------------------------------


def test_a_change_without_the_token_is_401_and_with_it_works(tmp_path):
    write_project(tmp_path, {"luna": LUNA_PLUGIN, "monitor": MONITOR_SINK})
    with serving(tmp_path) as served:
        assert served.token and len(served.token) >= 32
        refused = served.post("/api/sinks/monitor/redeliver")
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="hostapp"'
        assert "needs the token in a header" in refused.json()["error"]
        assert served.post("/api/sinks/monitor/redeliver", headers={"Authorization": "Bearer wrong"}).status_code == 401
        # a token in the query string does not count for a change (a form or a link could carry it)
        assert served.post(f"/api/sinks/monitor/redeliver?token={served.token}").status_code == 401
        done = served.post("/api/sinks/monitor/redeliver", headers={"Authorization": f"Bearer {served.token}"})
        assert done.status_code == 200 and done.json()["monitor"]["failed"] == 0
        other = served.post("/api/sinks/monitor/redeliver", headers={"X-Hostapp-Token": served.token})
        assert other.status_code == 200
        assert served.post("/teapot", headers={"X-Hostapp-Token": served.token}).status_code == 405
        assert served.post("/teapot").status_code == 401  # plugin routes too
        rebound = served.get("/api/runs", headers={"Host": "attacker.example:8765"})
        assert rebound.status_code == 403 and "not a loopback name" in rebound.json()["error"]
        assert served.get("/api/runs", headers={"Host": "localhost"}).status_code == 200
        refused_paths = wait_for(
            lambda: {m["path"] for m in monitor_lines(tmp_path) if m.get("status_code") == 401} >= {"/teapot"}
            and {m["path"] for m in monitor_lines(tmp_path) if m.get("status_code") == 401}, "the 401s monitored")
        assert refused_paths == {"/api/sinks/monitor/redeliver", "/teapot"}


def test_a_non_loopback_bind_without_a_token_refuses_to_start(tmp_path):
    write_project(tmp_path, {"luna": LUNA_PLUGIN})
    out = subprocess.run([sys.executable, "-m", "hostapp", "serve", "--host", "0.0.0.0", "--port", "0"],
                         cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith(
        "hostapp: error: --host: 0.0.0.0 is not a loopback address, so every request needs a token: "
        "set HOSTAPP_SERVE_TOKEN")
    assert not (tmp_path / ".hostapp").exists()  # refused before the host started


def test_the_token_from_the_environment_is_not_printed(tmp_path):
    write_project(tmp_path, {"luna": LUNA_PLUGIN})
    with serving(tmp_path, env=clean_env(tmp_path, HOSTAPP_SERVE_TOKEN="s3cret-token-from-env")) as served:
        assert served.token is None
        assert served.post("/api/sinks/sqlite/redeliver", headers={"Authorization": "Bearer s3cret-token-from-env"}
                           ).status_code == 200
        code, output = served.stop()
    assert "s3cret-token-from-env" not in output and "token from HOSTAPP_SERVE_TOKEN" in output


@contextlib.contextmanager
def uvicorn_serving(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread of this process."""
    import uvicorn

    from hostapp.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn to start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def host_config(tmp_path: Path) -> dict:
    return {
        "plugins": {"autoload": False, "modules": ["hostapp_plugins.sinks.sqlite"]},
        "store": {"path": str(tmp_path / "store.sqlite3")},
        "events": {"flush_interval_ms": 20},
        "tracing": {"enabled": False},
    }


class Teapot:
    """A plugin object with one route."""

    @hostapp.hookimpl
    def hostapp_routes(self):
        from starlette.responses import PlainTextResponse

        return hostapp.Route("/teapot", lambda request: PlainTextResponse("short and stout", status_code=418))


def test_a_public_app_needs_the_token_for_every_request(tmp_path):
    """create_app(bind="0.0.0.0"): the app behaves as on a public address (the test server
    itself listens on 127.0.0.1 only)."""
    from hostapp.asgi import create_app

    host = hostapp.Host(host_config(tmp_path), plugins=[("teapot", Teapot())])
    with pytest.raises(hostapp.ConfigError, match="bind '0.0.0.0' is not loopback; pass token="):
        create_app(host, bind="0.0.0.0")
    app = create_app(host, bind="0.0.0.0", token="tok-123")
    with uvicorn_serving(app) as url:
        assert requests.get(f"{url}/api/runs", timeout=10).status_code == 401
        assert requests.get(f"{url}/teapot", timeout=10).status_code == 401
        assert requests.get(f"{url}/api/runs?token=tok-123", timeout=10).status_code == 200
        assert requests.get(f"{url}/api/runs", headers={"Authorization": "Bearer tok-123"}, timeout=10).status_code == 200
        # no Host-header check on a public bind
        assert requests.get(f"{url}/teapot", headers={"Host": "shop.example", "X-Hostapp-Token": "tok-123"},
                            timeout=10).status_code == 418
        page = requests.get(f"{url}/?token=tok-123", timeout=10)
        assert page.status_code == 200 and "/plugins?token=tok-123" in page.text  # links carry it along
    assert host.state == "stopped"  # the app's lifespan started the new host and stopped it


def test_create_app_mounted_into_a_starlette_app_with_its_lifespan(tmp_path):
    """docs/host.md: the host starts in the user's lifespan; the mounted app's plugin routes
    are mounted at the first request, its links are under the mount path."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from hostapp.asgi import create_app

    host = hostapp.Host(host_config(tmp_path), plugins=[("teapot", Teapot())])
    hostapp_app = create_app(host)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with host:
            yield

    shop = Starlette(routes=[Mount("/hostapp", app=hostapp_app)], lifespan=lifespan)
    with uvicorn_serving(shop) as url:
        reply = requests.get(f"{url}/hostapp/teapot", timeout=10)
        assert (reply.status_code, reply.text) == (418, "short and stout")
        assert requests.get(f"{url}/hostapp/api/routes", timeout=10).json()["routes"][0]["plugin"] == "teapot"
        page = requests.get(f"{url}/hostapp/plugins", timeout=10)
        assert 'href="/hostapp/-/static/hostapp.css"' in page.text and "/teapot" in page.text
        assert requests.get(f"{url}/hostapp/-/static/hostapp.js", timeout=10).status_code == 200
    with Store(tmp_path / "store.sqlite3") as store:
        events = store.events(run_id=host.run_id, type="monitoring_event")
    assert {e.data["path"] for e in events} >= {"/hostapp/teapot", "/hostapp/api/routes"}


# -- orderly start and stop ----------------------------------------------------------------------


def test_sigint_and_sigterm_stop_the_server_then_the_host(tmp_path):
    write_project(tmp_path, {"luna": LUNA_PLUGIN, "monitor": MONITOR_SINK})
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        with serving(tmp_path) as served:
            assert served.get("/teapot").status_code == 418
            code, output = served.stop(sig)
        assert code == status, output
        assert "Traceback" not in output
    with Store(tmp_path / ".hostapp" / "hostapp.sqlite3") as store:
        runs = store.runs(2)
        assert all(run.ended_ns is not None for run in runs)
        for run in runs:  # hostapp_shutdown ran after the server stopped, and its event was stored
            stopping = store.events(run_id=run.id, type="monitoring_event", subtype="background_example_stopping")
            served = store.events(run_id=run.id, type="monitoring_event", subtype="http_request")
            assert len(stopping) == 1 and served
            assert stopping[0].timestamp_ns > max(e.timestamp_ns for e in served)


def test_conflicting_routes_stop_the_start_naming_both_plugins(tmp_path):
    write_project(tmp_path, {"luna": LUNA_PLUGIN, "kettle": KETTLE})
    out = subprocess.run([sys.executable, "-m", "hostapp", "serve", "--port", "0"], cwd=tmp_path,
                         env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert re.search(r"hostapp: error: path '/teapot' is claimed by plugin '(luna|kettle)' \(route '[^']+'\) and "
                     r"by plugin '(luna|kettle)'", out.stderr), out.stderr
    with Store(tmp_path / ".hostapp" / "hostapp.sqlite3") as store:
        assert store.last_run().ended_ns is not None  # the host was stopped again


def test_a_port_in_use_is_one_line(tmp_path):
    from hostapp.serve.server import bind_socket

    write_project(tmp_path, {})
    sock = bind_socket("127.0.0.1", 0)
    try:
        port = str(sock.getsockname()[1])
        out = subprocess.run([sys.executable, "-m", "hostapp", "serve", "--port", port], cwd=tmp_path,
                             env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    finally:
        sock.close()
    assert out.returncode == 1
    assert out.stderr == f"hostapp: error: hostapp serve: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_without_the_serve_extra_the_command_names_it(tmp_path):
    code = "import sys; sys.modules['starlette'] = None; from hostapp.cli import main; main(['serve'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr == (
        "hostapp: error: hostapp serve needs the 'serve' extra (Starlette and uvicorn): "
        "pip install 'hostapp[serve]' (missing module: starlette)\n"
    )


# -- a run's events: filters and cursor pagination ---------------------------------------------------


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory) -> tuple[Path, str]:
    """``examples/outbound_http.py`` run under ``hostapp run``: the project and the run id."""
    cwd = tmp_path_factory.mktemp("demo")
    (cwd / "hostapp.toml").write_text("[events]\nflush_interval_ms = 20\n")
    out = subprocess.run([sys.executable, "-m", "hostapp", "run", str(ROOT / "examples" / "outbound_http.py")],
                         cwd=cwd, env=clean_env(cwd), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with Store(cwd / ".hostapp" / "hostapp.sqlite3") as store:
        return cwd, store.last_run().id


def test_events_api_pages_with_a_cursor_through_every_event(demo_project):
    cwd, run_id = demo_project
    with Store(cwd / ".hostapp" / "hostapp.sqlite3") as store:
        stored = [e.id for e in store.events(run_id=run_id)]
    with serving(cwd) as served:
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 3, **({"after": cursor} if cursor else {})}
            page = served.get(f"/api/runs/{run_id}/events", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            assert len(body["events"]) <= 3
            seen.extend(e["id"] for e in body["events"])
            pages += 1
            cursor = body["next"]
            if cursor is None:
                break
            assert pages < 100
        newest = served.get(f"/api/runs/{run_id}/events", params={"order": "desc", "limit": 1}).json()
    assert seen == stored and pages == -(-len(stored) // 3)
    assert newest["events"][0]["id"] == stored[-1]


def test_events_api_filters(demo_project):
    cwd, run_id = demo_project
    url = f"/api/runs/{run_id}/events"
    with serving(cwd) as served:
        def events(**params):
            reply = served.get(url, params={"limit": 1000, **params})
            assert reply.status_code == 200, reply.text
            return reply.json()["events"]

        calls = events(type="outbound_http_*")
        assert calls and all(e["type"].startswith("outbound_http_") for e in calls)
        assert {e["subtype"] for e in events(type="outbound_http_request", library="requests")} == {"requests"}
        assert {e["subtype"] for e in events(library=["requests", "httpx"])} == {"requests", "httpx"}
        client_errors = events(status="4xx")
        assert client_errors and all(400 <= e["data"]["status_code"] <= 499 for e in client_errors)
        assert all("/nowhere" in e["data"]["url"] for e in client_errors)
        assert events(status="404") == client_errors and events(status="400-499") == client_errors
        assert events(status="5xx") == []
        users = events(url="/users/")
        assert users and all("/users/" in e["data"]["url"] for e in users)
        slow = events(min_duration_ms="2")
        assert all(e["data"]["duration_ns"] >= 2_000_000 for e in slow)
        middle = calls[len(calls) // 2]["timestamp_ns"]
        later = events(since=str(middle))
        assert later and all(e["timestamp_ns"] >= middle for e in later)
        assert all(e["timestamp_ns"] < middle for e in events(until=str(middle)))
        one = served.get(f"{url}/{calls[0]['id']}").json()
        assert one["id"] == calls[0]["id"] and one["fields"] and one["summary"]
        for params, message in (
            ({"limit": "0"}, "limit: expected an integer from 1 to 1000, got '0'"),
            ({"status": "teapot"}, "status: expected a code (404), a class (4xx) or a range (400-499), got 'teapot'"),
            ({"since": "yesterday"}, "since: expected ns since the epoch or an ISO 8601 time, got 'yesterday'"),
            ({"order": "sideways"}, "order: expected 'asc' or 'desc', got 'sideways'"),
            ({"after": "not-a-cursor"}, "after: not a hostapp event cursor: 'not-a-cursor'"),
        ):
            reply = served.get(url, params=params)
            assert (reply.status_code, reply.json()["error"].split(" (use")[0]) == (400, message)
        assert served.get(f"{url}/{'0' * 32}").status_code == 404


def test_open_names_the_run_page(demo_project):
    cwd, _ = demo_project
    with Store(cwd / ".hostapp" / "hostapp.sqlite3") as store:
        run_id = store.last_run().id  # the newest before this serve's own run
    with serving(cwd, "--open", "last") as served:
        assert served.proc.stderr.readline() == f"hostapp serve: opening {served.url}runs/{run_id}\n"
        assert served.get(f"/runs/{run_id}").status_code == 200


# -- the examples of docs/serve.md, served ----------------------------------------------------------


def test_the_plugins_of_serve_md_are_served(tmp_path):
    """The teapot folder plugin, the migrated LUNA plugin and the opa-stack router of
    docs/serve.md, as written there, in one plugin folder."""
    from test_docs_examples import blocks

    found = {}
    for block in blocks("serve.md", "python"):
        if block.label == "plugins/teapot.py":
            found["teapot"] = block.text
        elif "class HandlerExample(HTTPEndpoint)" in block.text:
            found["luna"] = block.text
        elif "router = Router(" in block.text:
            found["opa"] = block.text
    assert sorted(found) == ["luna", "opa", "teapot"]
    found["luna"] = found["luna"].replace('Route("/teapot"', 'Route("/luna-teapot"')  # both claim /teapot
    write_project(tmp_path, found)
    with serving(tmp_path) as served:
        assert served.get("/teapot").status_code == 418
        assert served.get("/luna-teapot").text == "I'm a teapot"
        assert served.post("/brew/oolong", headers={"X-Hostapp-Token": served.token}).json() == {"brewing": "oolong"}
        assert served.get("/opa/items/7").json() == {"item": 7}
        tasks = wait_for(lambda: [t for t in served.get("/api/tasks").json() if t["runs"]], "the LUNA task")
        assert tasks[0]["name"] == "background_example"


# -- the waterfall's layout ------------------------------------------------------------------------


def test_the_timeline_pairs_calls_drops_nested_ones_and_keeps_the_rest_as_marks():
    from hostapp.events.record import Event
    from hostapp.render import Renderers
    from hostapp.serve.timeline import build_timeline, status_class

    def at(ms, type, subtype=None, **data):
        event = Event.create(type, subtype, data=data, run_id="r")
        return Event(event.id, type, subtype, data, 1_000_000_000 + ms * 1_000_000, "r", 1, 7, None)

    events = [
        at(0, "outbound_http_request", "requests", frame_id="a", method="GET", url="http://x/1",
           thread={"name": "MainThread"}),
        at(1, "outbound_http_request", "urllib3", frame_id="b", nested_in="a", method="GET", url="http://x/1"),
        at(5, "outbound_http_response", "urllib3", frame_id="b", status_code=200, duration_ns=4_000_000),
        at(6, "outbound_http_response", "requests", frame_id="a", status_code=503, duration_ns=6_000_000),
        at(8, "outbound_http_request", "httpx", method="POST", url="http://x/2", status_code=201,
           duration_ns=2_000_000, thread_name="worker-1", call_site={"file": "/app/a.py", "line": 3}),
        at(9, "probe_fired", None, value=42),
        at(10, "background_job", "celery", frame_id="j", name="send_mail"),
        at(12, "outbound_http_request", "httpx", method="GET", url="http://x/3",
           error={"type": "httpx.ConnectTimeout", "message": "timed out"}, duration_ns=1_000_000),
    ]
    timeline = build_timeline(events, Renderers(), now_ns=1_000_000_000 + 20 * 1_000_000, cwd="/app")
    lanes = {lane.thread: lane for lane in timeline.lanes}
    assert list(lanes) == ["MainThread", "worker-1", "thread 7"]
    main = lanes["MainThread"].bars
    assert [(b.label, b.status, b.status_text, b.duration_ns) for b in main] == [
        ("GET http://x/1", "s5xx", "503", 6_000_000)]
    (post,) = lanes["worker-1"].bars
    assert (post.label, post.status, post.site, post.kind) == ("POST http://x/2", "s2xx", "a.py:3", "httpx")
    other = lanes["thread 7"]
    assert [(b.label, b.status, b.duration_ns) for b in other.bars] == [
        ("celery frame_id=j name=send_mail", "open", None), ("GET http://x/3", "err", 1_000_000)]
    assert [m.event.type for m in other.marks] == ["probe_fired"]
    assert timeline.end_ns == 1_000_000_000 + 20 * 1_000_000  # the open job runs to now
    assert timeline.percent(1_000_000_000 + 10 * 1_000_000) == 50.0
    assert [text for _, text in timeline.ticks()][:3] == ["0", "5.0 ms", "10.0 ms"]
    assert status_class({"state": "FAILURE"}) == ("err", "FAILURE")
    assert status_class({"status_code": 302}) == ("s3xx", "302")


RECORD_APP = textwrap.dedent('''
    """Emits two HTTP call records of the one-record-per-call shape (an outer call and one
    made inside it) and a call that raised."""
    from hostapp import Host

    def call(span, parent, url, **extra):
        return dict(
            method="POST", url=url, status_code=extra.pop("status_code", 201), duration_ns=extra.pop("duration_ns", 9_000_000),
            call_site={"file": "shop/checkout.py", "line": 42}, thread_name="MainThread",
            request={"headers": {"Authorization": "[REDACTED]", "Content-Type": "application/json"},
                     "body": '{"sku": "A-1"}', "body_size": 70000, "body_truncated": True},
            response={"headers": {"Content-Type": "application/json"}, "body": '{"ok": true}',
                      "body_size": 12, "body_truncated": False},
            via=["urllib3", "http.client"], trace_id="ab" * 16, span_id=span, parent_span_id=parent, **extra,
        )

    with Host(command=["shop"]) as host:
        host.emit("outbound_http_request", "requests", **call("1" * 16, None, "https://pay.example/charge"))
        host.emit("outbound_http_request", "httpx", **call("2" * 16, "1" * 16, "https://fraud.example/score",
                                                             duration_ns=2_000_000, status_code=200))
        failed = call("3" * 16, None, "https://pay.example/refund", status_code=None)
        failed.update(response=None, error={"type": "requests.ConnectionError", "message": "refused"})
        host.emit("outbound_http_request", "requests", **failed)
''')


def test_a_call_record_is_shown_whole(tmp_path):
    (tmp_path / "hostapp.toml").write_text("[events]\nflush_interval_ms = 20\n")
    (tmp_path / "app.py").write_text(RECORD_APP)
    out = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with Store(tmp_path / ".hostapp" / "hostapp.sqlite3") as store:
        run_id = store.last_run().id
        outer, inner, failed = store.events(run_id=run_id, type="outbound_http_request")
    with serving(tmp_path) as served:
        waterfall = served.get(f"/runs/{run_id}").text
        assert waterfall.count('class="bar ') == 3
        assert 'class="bar s2xx"' in waterfall and 'class="bar err"' in waterfall
        page = served.get(f"/runs/{run_id}/events/{outer.id}").text
        request_side, response_side = page.split('<section class="side request">')[1].split(
            '<section class="side response">')
        assert '<td class="redacted">[REDACTED]</td>' in request_side
        assert "truncated: 14 of 70000 bytes shown" in request_side and "{&quot;sku&quot;: &quot;A-1&quot;}" in request_side
        assert "12 bytes" in response_side and "{&quot;ok&quot;: true}" in response_side
        assert "urllib3 → http.client" in page and "shop/checkout.py:42" in page
        assert f'/runs/{run_id}/events/{inner.id}"' in page.split("Calls made inside this one")[1]
        refused = served.get(f"/runs/{run_id}/events/{failed.id}").text
        assert "no response: the call raised" in refused and "ConnectionError" in refused
        assert served.get(f"/runs/{run_id}/events/{'0' * 32}").status_code == 404
        assert "no event" in served.get(f"/runs/{run_id}/events/{'0' * 32}").text


JOBS_APP = textwrap.dedent('''
    """Two huey jobs, run in place (immediate mode), one of them failing."""
    import huey

    h = huey.MemoryHuey("shop-jobs", immediate=True)

    @h.task()
    def send_receipt(order):
        return f"sent {order}"

    @h.task()
    def charge(order):
        raise RuntimeError("card declined")

    send_receipt(7)
    charge(8)
''')


def test_background_jobs_are_bars_of_the_waterfall(tmp_path):
    (tmp_path / "hostapp.toml").write_text("[events]\nflush_interval_ms = 20\n")
    (tmp_path / "jobs_app.py").write_text(JOBS_APP)
    out = subprocess.run([sys.executable, "-m", "hostapp", "run", "-q", "jobs_app.py"], cwd=tmp_path,
                         env=clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with Store(tmp_path / ".hostapp" / "hostapp.sqlite3") as store:
        run_id = store.last_run().id
        jobs = store.count_events(run_id=run_id, types=["background_job*"])
    assert jobs >= 4  # enqueue and execution, start and end, of each job
    with serving(tmp_path) as served:
        page = served.get(f"/runs/{run_id}").text
    bars = re.findall(r'class="bar (\w+)"', page)
    assert bars and "open" not in bars  # every job's start met its end
    assert "err" in bars  # the failed charge
    assert "send_receipt" in page and "charge" in page
