"""Probe specs in Redis (probes.store = "component:NAME") against a real redis-server on
127.0.0.1: two processes with separate SQLite stores (two "machines") apply one spec."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from test_probes_cli import PROG, env, hostapp, until
from test_redis_driver import redis_server  # noqa: F401 - the fixture

import redis


def test_specs_in_redis_are_applied_by_every_process(redis_server, tmp_path):  # noqa: F811
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROG), encoding="utf-8")
    (tmp_path / "hostapp.toml").write_text(textwrap.dedent(f'''
        [components.specs]
        driver = "redis"
        load = "yes"
        options = {{ url = "{redis_server.url}" }}

        [probes]
        store = "component:specs"
        poll_interval = 0.2
    '''), encoding="utf-8")
    added = hostapp(tmp_path, "probes", "add", "__main__.work", "--type", "incr", "--value", "i", "--event", "call")
    spec_id = added.stdout.split(":", 1)[0]
    client = redis.Redis.from_url(redis_server.url)
    stored = json.loads(client.hget("hostapp:probes:specs", spec_id))
    assert stored["target"] == "__main__.work" and stored["instrument"]["type"] == "incr"
    assert int(client.get("hostapp:probes:marker")) == 1

    runs = [
        subprocess.Popen([sys.executable, "-m", "hostapp", "run", "--quiet", "--db", f"machine{n}.sqlite3", "prog.py"],
                         cwd=tmp_path, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in (1, 2)
    ]
    try:
        def both_active():
            rows = json.loads(hostapp(tmp_path, "probes", "list", "--json").stdout)
            states = [r["state"] for row in rows for r in row["applied"].values()]
            return states.count("active") == 2

        until("both processes applied the Redis spec", both_active)
        (tmp_path / "go").touch()
        outputs = [run.communicate(timeout=120) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    assert [run.returncode for run in runs] == [3, 3]
    assert all(out == "total 59700\n" for out, _ in outputs), outputs
    [row] = json.loads(hostapp(tmp_path, "probes", "list", "--json").stdout)
    assert sorted(r["pid"] for r in row["applied"].values()) == sorted(run.pid for run in runs)
    for record in row["applied"].values():
        assert record["state"] == "ended" and record["values"] == {"kind": "counter", "total": 19900}
    assert client.hlen(f"hostapp:probes:applied:{spec_id}") == 2
    shown = hostapp(tmp_path, "probes", "show", spec_id).stdout
    assert shown.count("counter 19900") == 2
    assert hostapp(tmp_path, "probes", "clear").stdout.strip() == "removed 1 probe spec(s)"
    assert client.hlen("hostapp:probes:specs") == 0 and not client.exists(f"hostapp:probes:applied:{spec_id}")
