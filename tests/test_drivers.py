"""Drivers and components: load auto/yes/no, every failure path from sync and async code,
``host.component()``, close order, health, the store's reports and the configuration."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import hostapp
from hostapp.config import Config, load_config
from hostapp.errors import ComponentError, ConfigError
from hostapp.host import Host
from hostapp.lifecycle import PluginState
from hostapp.store import Store

hookimpl = hostapp.hookimpl


def make_component(log, *, fail=None, value=None, is_async=False, health=None):
    """A component class whose method ``fail`` ("connect", "validate", "close", "health")
    raises (``value=None``) or returns ``value``; every call is appended to ``log``."""

    def method(name):
        def outcome(component):
            log.append(f"{name}:{component.name}")
            if name == fail:
                if value is None:
                    raise ConnectionError(f"{name} failed for {component.name}")
                return value
            return health if name == "health" else None

        if is_async:
            async def call(self):
                await asyncio.sleep(0)
                return outcome(self)
        else:
            def call(self):
                return outcome(self)
        return call

    class Component:
        def __init__(self, options):
            self.name = options.name
            self.options = dict(options)
            log.append(f"factory:{self.name}")

        connect = method("connect")
        validate = method("validate")
        close = method("close")

    if health is not None or fail == "health":
        Component.health = method("health")
    return Component


class DriverPlugin:
    """Contributes one driver per (name, factory) pair."""

    def __init__(self, **factories):
        self.factories = factories

    @hookimpl
    def hostapp_drivers(self):
        return [hostapp.DriverSpec(name=name, factory=f) for name, f in self.factories.items()]


def config_for(tmp_path, components, **extra):
    return {
        "plugins": {"autoload": False, "builtins": False},
        "store": {"path": str(tmp_path / "store.sqlite3")},
        "events": {"sinks": {}},
        "tracing": {"enabled": False},
        "components": components,
        **extra,
    }


def run_host(mode, config, plugins, body=None):
    """Start and stop a host with ``with Host()`` (mode "sync") or ``async with Host()``
    ("async"); ``body(host)`` runs while it is up. Returns the host."""
    if mode == "sync":
        with Host(config, plugins) as host:
            if body:
                body(host)
        return host

    async def main():
        async with Host(config, plugins) as host:
            if body:
                body(host)
        return host

    return asyncio.run(main())


def start_fails(mode, config, plugins):
    """The exception ``Host.start()`` / ``astart()`` raises, and the host."""
    host = Host(config, plugins)
    with pytest.raises(hostapp.HostappError) as info:
        if mode == "sync":
            host.start()
        else:
            asyncio.run(host.astart())
    assert host.state == "failed"
    return info.value, host


MODES = ["sync", "async"]
FLAVOURS = ["def", "async def"]


# -- load = "auto": the host goes on -----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    ("fail", "value", "error"),
    [
        ("connect", None, "ConnectionError: connect failed for x"),
        ("connect", False, "connect() returned False"),
        ("validate", None, "ConnectionError: validate failed for x"),
        ("validate", False, "validate() returned False"),
    ],
)
def test_auto_component_that_fails_is_unavailable_and_the_host_runs(tmp_path, mode, flavour, fail, value, error):
    log = []
    factory = make_component(log, fail=fail, value=value, is_async=flavour == "async def")
    plugin = ("acme", DriverPlugin(flaky=factory, good=make_component(log)))
    config = config_for(tmp_path, {"x": {"driver": "flaky"}, "ok": {"driver": "good"}})
    seen = {}

    def body(host):
        seen["state"] = host.state
        seen["ok"] = host.component("ok")
        with pytest.raises(ComponentError) as info:
            host.component("x")
        seen["message"] = str(info.value)

    host = run_host(mode, config, [plugin], body)
    assert seen["state"] == "running"
    assert seen["ok"].name == "ok"
    assert seen["message"] == f"component 'x' (driver 'flaky'): it is unavailable: {error}"
    record = host.components["x"]
    assert (record.state, record.error, record.stage, record.plugin) == ("unavailable", error, fail, "acme")
    assert record.instance is None
    # the half-built component was closed; the driver's plugin is not marked failed
    assert "close:x" in log and log.index("close:x") < log.index("factory:ok")
    assert host.pm.infos["acme"].state is PluginState.STOPPED
    with Store(tmp_path / "store.sqlite3") as store:
        reports = {r.name: r for r in store.reports("component", host.run_id)}
    assert reports["x"].state == "unavailable" and reports["x"].data["error"] == error
    assert reports["ok"].state == "closed"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_factory_that_raises_on_bad_options_is_unavailable(tmp_path, mode, flavour):
    class Strict:
        def __init__(self, options):
            raise TypeError(f"unknown option(s) {sorted(options)}")

        def connect(self):
            pass

    async def async_factory(options):
        return Strict(options)

    factory = Strict if flavour == "def" else async_factory
    config = config_for(tmp_path, {"x": {"driver": "strict", "options": {"colour": "red"}}})
    host = run_host(mode, config, [("acme", DriverPlugin(strict=factory))])
    record = host.components["x"]
    assert (record.state, record.stage, record.error) == ("unavailable", "factory", "TypeError: unknown option(s) ['colour']")
    assert "TypeError" in record.traceback


# -- load = "yes": the host does not start -----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(("fail", "value"), [("connect", None), ("connect", False), ("validate", None)])
def test_required_component_that_fails_stops_the_start(tmp_path, mode, flavour, fail, value):
    log = []
    factory = make_component(log, fail=fail, value=value, is_async=flavour == "async def")
    plugin = ("acme", DriverPlugin(flaky=factory, good=make_component(log)))
    config = config_for(tmp_path, {"first": {"driver": "good"}, "x": {"driver": "flaky", "load": "yes"},
                                   "never": {"driver": "good"}})
    error, host = start_fails(mode, config, [plugin])
    assert isinstance(error, ComponentError) and error.component == "x"
    message = str(error)
    assert "\n" not in message
    assert message.startswith("component 'x' (driver 'flaky', plugin 'acme') is unavailable: ")
    assert message.endswith('(load = "yes")')
    # built before it: closed again; after it: never built
    assert "close:first" in log and "factory:never" not in log
    assert host.components["first"].state == "closed"


# -- load = "no", unknown drivers, host.component ------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_load_no_is_never_built(tmp_path, mode):
    log = []
    config = config_for(tmp_path, {"off": {"driver": "good", "load": "no"}})
    messages = []

    def body(host):
        with pytest.raises(ComponentError) as info:
            host.component("off")
        messages.append(str(info.value))
        with pytest.raises(ComponentError) as missing:
            host.component("nope")
        messages.append(str(missing.value))

    host = run_host(mode, config, [("acme", DriverPlugin(good=make_component(log)))], body)
    assert log == []
    assert host.components["off"].state == "disabled"
    assert messages[0] == "component 'off' (driver 'good'): it is disabled (load = \"no\")"
    assert messages[1].startswith("no component 'nope' is configured") and "configured components: off" in messages[1]


@pytest.mark.parametrize("mode", MODES)
def test_unknown_driver_is_a_config_error_naming_the_drivers_that_exist(tmp_path, mode):
    config = config_for(tmp_path, {"cache": {"driver": "memcache"}})
    plugins = [("acme", DriverPlugin(redisish=make_component([]), sqliteish=make_component([])))]
    error, _ = start_fails(mode, config, plugins)
    assert isinstance(error, ConfigError)
    assert str(error) == (
        "<dict>: components.cache.driver: unknown driver 'memcache' for component 'cache'; "
        "the drivers that exist: redisish, sqliteish"
    )


def test_component_before_start_and_after_stop(tmp_path):
    log = []
    host = Host(config_for(tmp_path, {"c": {"driver": "good"}}), [("acme", DriverPlugin(good=make_component(log)))])
    with pytest.raises(ComponentError, match="has not built it yet"):
        host.component("c")
    with host:
        assert host.component("c").options == {}
    with pytest.raises(ComponentError, match="closed when the host stopped"):
        host.component("c")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_components_close_in_reverse_order_and_close_errors_are_recorded(tmp_path, mode, flavour):
    log = []
    is_async = flavour == "async def"
    plugin = ("acme", DriverPlugin(good=make_component(log, is_async=is_async),
                                   sticky=make_component(log, fail="close", is_async=is_async)))
    config = config_for(tmp_path, {"a": {"driver": "good"}, "b": {"driver": "sticky"}, "c": {"driver": "good"}})
    host = run_host(mode, config, [plugin])
    assert [entry for entry in log if entry.startswith("close")] == ["close:c", "close:b", "close:a"]
    b = host.components["b"]
    assert (b.state, b.stage, b.error) == ("closed", "close", "ConnectionError: close failed for b")
    assert host.state == "stopped"


# -- health ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_health_is_checked_at_start_and_on_demand(tmp_path, mode, flavour):
    log = []
    is_async = flavour == "async def"
    plugin = ("acme", DriverPlugin(
        good=make_component(log, is_async=is_async, health={"rows": 3}),
        sick=make_component(log, is_async=is_async, fail="health"),
        meh=make_component(log, is_async=is_async, fail="health", value=False),
        plain=make_component(log),
    ))
    config = config_for(tmp_path, {"good": {"driver": "good"}, "sick": {"driver": "sick"},
                                   "meh": {"driver": "meh"}, "plain": {"driver": "plain"}})
    results = {}

    def body(host):
        results.update(host.components.health())

    async def abody(host):
        results.update(await host.components.ahealth())

    if mode == "sync":
        host = run_host(mode, config, [plugin], body)
    else:
        async def main():
            async with Host(config, [plugin]) as h:
                await abody(h)
                with pytest.raises(hostapp.HostappError, match="ahealth"):
                    h.components.health()
            return h
        host = asyncio.run(main())
    assert results["good"]["ok"] is True and results["good"]["detail"] == {"rows": 3}
    assert (results["sick"]["ok"], results["sick"]["error"]) == (False, "ConnectionError: health failed for sick")
    assert results["meh"]["ok"] is False and results["meh"]["error"] == "health() returned False"
    assert results["plain"] is None
    assert log.count("health:good") == 2  # at start, and on demand
    # an unhealthy component is still available (health is a report, not a gate)
    assert host.components["sick"].state == "closed" and host.components["sick"].error is None


# -- configuration -----------------------------------------------------------------------------


def write_toml(tmp_path, text):
    (tmp_path / "hostapp.toml").write_text(textwrap.dedent(text))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('driver = "sqlite"\nretries = 3', "hostapp.toml: components.db.retries: unknown key; expected driver, load, options or timeout"),
        ('load = "yes"', "hostapp.toml: components.db.driver: required: the name of a driver (a string), got nothing"),
        ("driver = 5", "hostapp.toml: components.db.driver: required: the name of a driver (a string), got an integer"),
        ('driver = "sqlite"\nload = "maybe"', "hostapp.toml: components.db.load: expected one of auto, yes, no; got 'maybe'"),
        ('driver = "sqlite"\nload = true', "hostapp.toml: components.db.load: expected one of auto, yes, no; got True"),
        ('driver = "sqlite"\noptions = "path=x"', "hostapp.toml: components.db.options: expected a table, got a string"),
    ],
)
def test_bad_component_tables_are_config_errors(tmp_path, table, message):
    write_toml(tmp_path, f"[components.db]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={})
    assert str(info.value) == message


def test_component_tables_defaults_and_environment(tmp_path):
    write_toml(tmp_path, '''
        [components.db]
        driver = "sqlite"
        options = { path = "var/db.sqlite3" }
        [components.cache]
        driver = "redis"
        load = "yes"
    ''')
    config = load_config(cwd=tmp_path, environ={})
    assert config["components"] == {
        "db": {"driver": "sqlite", "load": "auto", "options": {"path": "var/db.sqlite3"}},
        "cache": {"driver": "redis", "load": "yes", "options": {}},
    }
    assert not config.warnings
    env = load_config(cwd=tmp_path, environ={"HOSTAPP_COMPONENTS__CACHE__LOAD": "no"})
    assert env["components"]["cache"]["load"] == "no"
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path, environ={"HOSTAPP_COMPONENTS__CACHE__LOAD": "sometimes"})
    assert str(info.value) == "HOSTAPP_COMPONENTS__CACHE__LOAD: components.cache.load: expected one of auto, yes, no; got 'sometimes'"
    with pytest.raises(ConfigError, match=r"no component 'queue' is configured \(\[components.queue\]\)"):
        load_config(cwd=tmp_path, environ={"HOSTAPP_COMPONENTS__QUEUE__LOAD": "no"})
    assert Config.default()["components"] == {}


# -- the built-in sqlite driver ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sqlite_driver_relative_path_wal_execute_health_close(tmp_path, mode):
    (tmp_path / "conf").mkdir()
    write_toml(tmp_path / "conf", f'''
        [plugins]
        autoload = false
        builtins = false
        modules = ["hostapp_plugins.drivers.sqlite"]
        [store]
        path = "{tmp_path / 'store.sqlite3'}"
        [tracing]
        enabled = false
        [components.db]
        driver = "sqlite"
        load = "yes"
        options = {{ path = "var/app.sqlite3", timeout = 2 }}
    ''')
    config = load_config(tmp_path / "conf" / "hostapp.toml", environ={})
    seen = {}

    def body(host):
        db = host.component("db")
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (?)", (42,))
        seen["rows"] = db.execute("SELECT x FROM t")
        seen["health"] = host.components["db"].health  # checked at start
        seen["db"] = db

    host = run_host(mode, config, [], body)
    path = tmp_path / "conf" / "var" / "app.sqlite3"
    assert seen["rows"] == [(42,)]
    assert seen["health"]["ok"] and seen["health"]["detail"] == {"journal_mode": "wal", "path": str(path)}
    assert seen["db"].connection is None and host.components["db"].plugin == "hostapp_plugins.drivers.sqlite"
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("SELECT x FROM t").fetchall() == [(42,)]


def test_sqlite_driver_bad_options(tmp_path):
    components = {
        "nopath": {"driver": "sqlite"},
        "typo": {"driver": "sqlite", "options": {"pth": "x.db"}},
        "slow": {"driver": "sqlite", "options": {"path": "x.db", "timeout": "long"}},
        "dir": {"driver": "sqlite", "options": {"path": str(tmp_path)}},
    }
    config = config_for(tmp_path, components, plugins={"autoload": False, "builtins": False, "modules": ["hostapp_plugins.drivers.sqlite"]})
    with Host(config) as host:
        errors = {name: record.error for name, record in host.components.items()}
    assert errors == {
        "nopath": "ValueError: sqlite driver: option 'path' is required (the database file)",
        "typo": "TypeError: sqlite driver: unknown option(s) ['pth']; expected path, timeout",
        "slow": "ValueError: sqlite driver: option 'timeout' must be a number of seconds >= 0, got 'long'",
        "dir": "OperationalError: unable to open database file",
    }


def test_redis_driver_without_the_redis_package_says_what_to_install(tmp_path):
    """The redis package blocked (``sys.modules["redis"] = None``, as when it is not
    installed): the component is unavailable and the message names the extra."""
    script = textwrap.dedent(f'''
        import sys
        sys.modules["redis"] = None
        from hostapp.host import Host
        config = {{
            "plugins": {{"autoload": False, "builtins": False, "modules": ["hostapp_plugins.drivers.redis"]}},
            "store": {{"path": {str(tmp_path / "s.sqlite3")!r}}}, "tracing": {{"enabled": False}},
            "components": {{"cache": {{"driver": "redis"}}}},
        }}
        with Host(config) as host:
            print(host.components["cache"].state, "|", host.components["cache"].error)
    ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "unavailable | ModuleNotFoundError: the redis driver needs the 'redis' package: "
        "install hostapp[redis] (pip install 'hostapp[redis]')"
    )


def test_driver_spec_validates_its_fields():
    with pytest.raises(ValueError, match=r"DriverSpec.name: expected a non-empty string"):
        hostapp.DriverSpec(name="", factory=dict)
    with pytest.raises(ValueError, match=r"DriverSpec.factory: expected a callable, got str"):
        hostapp.DriverSpec(name="x", factory="module:Class")
    spec = hostapp.DriverSpec(name="x", factory=dict, description="a dict")
    assert (spec.name, spec.factory, spec.description) == ("x", dict, "a dict")
