"""docs/probes.md is true: its files, Python blocks, console sessions and config run."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import warnings

import pytest
from test_docs_examples import blocks, labelled
from test_probes_cli import env, hostapp, until

from hostapp.config import ConfigWarning, load_config
from hostapp.probes import default_registry

PAGE = "probes.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    files = labelled(PAGE)
    for relative in ("shop/cart.py", "serve.py", "plugins/maximum.py"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[relative], encoding="utf-8")
    (tmp_path / "shop" / "__init__.py").write_text("", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n == "shop" or n.startswith("shop.")]:
        del sys.modules[name]
    yield tmp_path
    default_registry().stop_all()
    for name in [n for n in sys.modules if n == "shop" or n.startswith("shop.")]:
        del sys.modules[name]


def test_the_python_blocks_run_in_order(project, capsys):
    found = [b for b in blocks(PAGE, "python") if b.label is None]
    namespace: dict = {}
    ran = 0
    for block in found:
        if "def test_overdraw" in block.text:  # the fixture example: a test, compiled only
            compile(block.text, f"docs/{PAGE}:{block.line}", "exec")
            continue
        exec(compile(block.text, f"docs/{PAGE}:{block.line}", "exec"), namespace)
        ran += 1
    assert ran == 4
    out = capsys.readouterr().out.splitlines()
    assert out == ["{'kind': 'counter', 'total': 9}", "9", "1"]


def test_the_complete_example_as_the_page_shows_it(project):
    port = free_port()
    serve = project / "serve.py"
    serve.write_text(serve.read_text(encoding="utf-8").replace("8765", str(port)), encoding="utf-8")
    (project / "hostapp.toml").write_text('[plugins]\npaths = ["plugins"]\n', encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "hostapp", "run", "serve.py"], cwd=project, env=env(project),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def get(path: str) -> str:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read().decode()
        except (urllib.error.URLError, ConnectionError) as exc:
            return f"error: {exc}"

    try:
        until("the server answers", lambda: not get("/add?n=1").startswith("error"), timeout=60)
        added = hostapp(project, "probes", "add", "shop.cart.Cart.add", "--type", "hist", "--value", "len(items)",
                        "--event", "call", "--lifespan", "10", "--id", "p-sizes")
        assert added.stdout.strip() == "p-sizes: hist of len(items) at call on shop.cart.Cart.add, expires in 10m 00s"
        until("applied", lambda: any(r["state"] == "active" for row in json.loads(
            hostapp(project, "probes", "list", "--json").stdout) for r in row["applied"].values()))
        for n in range(1, 10):
            assert get(f"/add?n={n}").strip() == str(5 * n)  # checkout: the letters of item0..item8
        until("9 fires recorded", lambda: "active, 9 fire(s), 0 error(s)" in hostapp(
            project, "probes", "show", "p-sizes").stdout, timeout=30)
        shown = hostapp(project, "probes", "show", "p-sizes").stdout
        assert "histogram over 60 s: count 9, min 1, max 9, mean 5, p50" in shown
        listing = hostapp(project, "probes", "list").stdout
        assert re.search(r"│ p-sizes │ shop\.cart\.Cart\.add │ hist of len\(items\) at call │ in 9m", listing)

        hostapp(project, "probes", "add", "shop.cart.checkout", "--type", "event", "--value", "coupon",
                "--event", "end", "--condition", "exc is not None", "--name", "bad-coupons")
        until("both applied", lambda: sum(1 for row in json.loads(hostapp(project, "probes", "list", "--json").stdout)
                                          for r in row["applied"].values() if r["state"] == "active") == 2)
        get("/add?n=2")  # a good coupon: no event
        get("/add?n=2&coupon=BROKEN")

        def probe_events():
            out = hostapp(project, "events", "--type", "probe", "--jsonl").stdout
            return [json.loads(line) for line in out.splitlines()]

        [event] = until("the bad-coupon event", probe_events, timeout=30)
        assert (event["subtype"], event["data"]["value"], event["data"]["event"]) == ("bad-coupons", "BROKEN", "end")

        maximum = hostapp(project, "probes", "add", "shop.cart.Cart.add", "--type", "max")
        spec_id = maximum.stdout.split(":")[0]
        until("the plugin type applied", lambda: "active" in hostapp(project, "probes", "show", spec_id).stdout)
        get("/add?n=4")
        until("its snapshot", lambda: '"largest": 4' in hostapp(project, "probes", "show", spec_id).stdout
              or "'largest': 4" in hostapp(project, "probes", "show", spec_id).stdout, timeout=30)
    finally:
        server.terminate()
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def test_the_refused_expressions_print_what_the_page_says(project):
    page = [b.text for b in blocks(PAGE, "console") if "hostapp: error:" in b.text]
    page += [b.text for b in blocks("cli.md", "console") if "hostapp: error: probe spec" in b.text]
    assert len(page) == 2
    for session in page:
        command, expected = session.strip().splitlines()
        argv = shlex.split(command.removeprefix("$ "))
        result = hostapp(project, *argv[1:], check=False)
        assert result.returncode == 2
        assert re.sub(r"p-[0-9a-f]{8}", "p-ID", result.stderr.strip()) == re.sub(r"p-[0-9a-f]{8}", "p-ID", expected)
    assert json.loads(hostapp(project, "probes", "list", "--json").stdout) == []


def test_the_redis_configuration_is_valid(tmp_path):
    [block] = [b for b in blocks(PAGE, "toml") if "component:probes" in b.text]
    (tmp_path / "hostapp.toml").write_text(block.text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        config = load_config(cwd=tmp_path, environ={})
    assert config["probes.store"] == "component:probes"
    assert config["components"]["probes"]["driver"] == "redis"
