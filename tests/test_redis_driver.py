"""The built-in ``redis`` driver against a real ``redis-server`` on 127.0.0.1, started here.

Without ``redis-server`` on PATH the tests are skipped, unless ``CI`` is set: then they
fail (``.ci/run`` installs Debian's redis-server when it is missing).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time

import pytest

from hostapp.errors import ComponentError
from hostapp.host import Host


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A ``redis-server`` subprocess on 127.0.0.1: no persistence, killed after the test."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within 20 s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        message = "redis-server is not on PATH (apt-get install redis-server; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message + " and CI is set")
        pytest.skip(message)
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def config_for(tmp_path, options, load="auto"):
    return {
        "plugins": {"autoload": False, "builtins": False, "modules": ["hostapp_plugins.drivers.redis"]},
        "store": {"path": str(tmp_path / "store.sqlite3")},
        "tracing": {"enabled": False},
        "components": {"cache": {"driver": "redis", "load": load, "options": options}},
    }


def test_set_and_get_through_host_component(redis_server, tmp_path):
    with Host(config_for(tmp_path, {"url": redis_server.url})) as host:
        cache = host.component("cache")
        assert cache.set("greeting", "hello") is True
        assert cache.get("greeting") == b"hello"
        assert cache.client.incr("n") == 1
        record = host.components["cache"]
        assert record.state == "available" and record.plugin == "hostapp_plugins.drivers.redis"
        assert record.health["ok"] and record.health["detail"]["redis_version"]
        redis_server.stop()  # the server goes away while the host runs
        health = host.components.health("cache")["cache"]
        assert health["ok"] is False and health["error"].startswith("ConnectionError")
    assert host.components["cache"].state == "closed"


def test_separate_options_and_async_host(redis_server, tmp_path):
    async def main():
        config = config_for(tmp_path, {"host": "127.0.0.1", "port": redis_server.port, "db": 3})
        async with Host(config) as host:
            cache = host.component("cache")
            cache.set("k", "v")
            assert cache.client.connection_pool.connection_kwargs["db"] == 3
            health = await host.components.ahealth("cache")
            return cache.get("k"), health["cache"]["ok"]

    assert asyncio.run(main()) == (b"v", True)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_server_stopped_auto_is_unavailable_and_the_host_runs(redis_server, tmp_path, mode):
    redis_server.stop()
    config = config_for(tmp_path, {"url": redis_server.url, "socket_timeout": 2})

    def check(host):
        assert host.state == "running"
        record = host.components["cache"]
        assert record.state == "unavailable" and record.stage == "connect"
        assert record.error.startswith("ConnectionError: ") and str(redis_server.port) in record.error
        with pytest.raises(ComponentError, match=r"component 'cache' \(driver 'redis'\): it is unavailable: ConnectionError"):
            host.component("cache")
        host.emit("monitoring_event", "still-running")

    if mode == "sync":
        with Host(config) as host:
            check(host)
    else:
        async def main():
            async with Host(config) as host:
                check(host)
        asyncio.run(main())


def test_server_stopped_yes_refuses_to_start(redis_server, tmp_path):
    redis_server.stop()
    host = Host(config_for(tmp_path, {"url": redis_server.url}, load="yes"))
    with pytest.raises(ComponentError) as info:
        host.start()
    message = str(info.value)
    assert message.startswith("component 'cache' (driver 'redis', plugin 'hostapp_plugins.drivers.redis') is unavailable: ConnectionError")
    assert message.endswith('(load = "yes")') and "\n" not in message


def test_bad_redis_options_make_the_component_unavailable(tmp_path):
    components = {
        "both": {"driver": "redis", "options": {"url": "redis://127.0.0.1", "port": 1}},
        "typo": {"driver": "redis", "options": {"hots": "x"}},
        "port": {"driver": "redis", "options": {"port": "6379"}},
        "url": {"driver": "redis", "options": {"url": "http://nope"}},
    }
    config = config_for(tmp_path, {})
    config["components"] = components
    with Host(config) as host:
        errors = {name: record.error for name, record in host.components.items()}
    assert errors["both"] == "TypeError: redis driver: give url or port, not both"
    assert errors["typo"].startswith("TypeError: redis driver: unknown option(s) ['hots']")
    assert errors["port"] == "ValueError: redis driver: port must be an integer, got '6379'"
    assert errors["url"].startswith("ValueError: ") and "redis://" in errors["url"]
