"""The plugin manager: ordering, isolate/required, the async relay, collecting specs."""

from __future__ import annotations

import asyncio
import logging
import random

import pluggy
import pytest

import hostapp
from hostapp.errors import DuplicateNameError, MissingHookError
from hostapp.lifecycle import PluginInfo, PluginState, Source
from hostapp.manager import PluginManager

hookimpl = hostapp.hookimpl


class AppSpecs:
    """A host application's own hookspecs, as an application would declare them."""

    @hostapp.hookspec
    def app_plain(self, x):
        """Not isolated: pluggy's own semantics."""

    @hostapp.hookspec(isolate=True)
    def app_isolated(self, x):
        """Isolated."""

    @hostapp.hookspec(firstresult=True, isolate=True)
    def app_first(self, x):
        """firstresult."""

    @hostapp.hookspec(required=True)
    def app_required(self):
        """Exactly what a host refuses to start without."""


class Plugin:
    """A plugin object whose attributes are the given (already marked) hook functions."""

    def __init__(self, name: str, **hooks) -> None:
        self.__name__ = name
        self.__dict__.update(hooks)


plugin = Plugin


def info(name: str, obj: object, priority: int = 0) -> PluginInfo:
    return PluginInfo(name=name, source=Source.EXPLICIT, priority=priority, obj=obj, state=PluginState.IMPORTED)


@pytest.fixture
def pm() -> PluginManager:
    manager = PluginManager()
    manager.add_hookspecs(AppSpecs)
    return manager


def returning(value):
    @hookimpl(specname="app_plain")
    def impl(x):
        return value

    return impl


def test_call_order_is_priority_then_name_whatever_the_registration_order(pm):
    plugins = [info(n, plugin(n, app_plain=returning(n)), p) for n, p in
               [("b", 0), ("a", 0), ("low", -5), ("high", 10), ("c", 0)]]
    random.Random(4).shuffle(plugins)
    pm.register_plugins(plugins)
    assert pm.hook.app_plain(x=1) == ["high", "a", "b", "c", "low"]


def test_tryfirst_and_trylast_still_apply_over_priority(pm):
    @hookimpl(specname="app_plain", trylast=True)
    def last(x):
        return "last"

    @hookimpl(specname="app_plain", tryfirst=True)
    def first(x):
        return "first"

    pm.register_plugins([
        info("p-last", plugin("p-last", app_plain=last), priority=100),
        info("p-mid", plugin("p-mid", app_plain=returning("mid"))),
        info("p-first", plugin("p-first", app_plain=first), priority=-100),
    ])
    assert pm.hook.app_plain(x=0) == ["first", "mid", "last"]


def test_implementation_order_matches_plain_pluggy_for_any_mix():
    """Our linear insertion gives exactly pluggy's order (wrappers, tryfirst, trylast)."""
    rng = random.Random(1234)
    for _ in range(30):
        ours, theirs = PluginManager(hookspecs=False), pluggy.PluginManager("hostapp")
        ours.add_hookspecs(AppSpecs)
        theirs.add_hookspecs(AppSpecs)
        for i in range(rng.randint(1, 25)):
            kind = rng.choice(["plain", "tryfirst", "trylast", "wrapper", "wrapper-first", "hookwrapper"])
            opts = {
                "plain": {}, "tryfirst": {"tryfirst": True}, "trylast": {"trylast": True},
                "wrapper": {"wrapper": True}, "wrapper-first": {"wrapper": True, "tryfirst": True},
                "hookwrapper": {"hookwrapper": True, "trylast": rng.random() < 0.5},
            }[kind]

            if "wrapper" in opts or "hookwrapper" in opts:
                def impl(x):
                    yield
            else:
                def impl(x):
                    return None
            marked = hookimpl(specname="app_plain", **opts)(impl)
            name = f"p{i}"
            ours.register(plugin(name, app_plain=marked), name=name)
            theirs.register(plugin(name, app_plain=marked), name=name)
        assert [i.plugin_name for i in ours.hook.app_plain.get_hookimpls()] == [
            i.plugin_name for i in theirs.hook.app_plain.get_hookimpls()
        ]


def test_registry_keeps_pluggy_semantics(pm):
    module = plugin("m", app_plain=returning(1))
    pm.register(module, name="one")
    with pytest.raises(ValueError, match="already registered under a different name"):
        pm.register(module, name="two")
    pm.unregister(name="one")
    assert pm.register(module, name="two") == "two"
    pm.set_blocked("blocked")
    assert pm.register(plugin("b", app_plain=returning(2)), name="blocked") is None
    assert pm.is_blocked("blocked")
    assert pm.get_plugins() == {module}


def test_isolated_hook_reports_and_skips_the_raising_plugin(pm, caplog):
    @hookimpl(specname="app_isolated")
    def broken(x):
        raise RuntimeError("boom")

    @hookimpl(specname="app_isolated")
    def good(x):
        return x * 2

    pm.register_plugins([info("broken", plugin("broken", app_isolated=broken), 1),
                         info("good", plugin("good", app_isolated=good))])
    with caplog.at_level(logging.WARNING, logger="hostapp"):
        assert pm.hook.app_isolated(x=21) == [42]
    [error] = pm.hook_errors
    assert (error.hook, error.plugin, error.error) == ("app_isolated", "broken", "RuntimeError: boom")
    assert "Traceback" in error.traceback
    assert "plugin 'broken'" in caplog.text and "boom" in caplog.text


def test_error_listener_sees_each_isolated_error(pm):
    seen = []
    pm.error_listeners.append(seen.append)

    @hookimpl(specname="app_isolated")
    def broken(x):
        raise KeyError(x)

    pm.register_plugins([info("broken", plugin("broken", app_isolated=broken))])
    pm.hook.app_isolated(x="k")
    assert [(e.plugin, e.error) for e in seen] == [("broken", "KeyError: 'k'")]


def test_isolation_applies_to_impls_registered_before_the_spec():
    pm = PluginManager(hookspecs=False)

    @hookimpl(specname="app_isolated")
    def broken(x):
        raise RuntimeError("early")

    pm.register(plugin("early", app_isolated=broken), name="early")
    pm.add_hookspecs(AppSpecs)
    assert pm.hook.app_isolated(x=1) == []
    assert pm.hook_errors[0].plugin == "early"


def test_plain_hook_keeps_pluggy_error_semantics(pm):
    @hookimpl(specname="app_plain")
    def broken(x):
        raise RuntimeError("not isolated")

    pm.register_plugins([info("broken", plugin("broken", app_plain=broken))])
    with pytest.raises(RuntimeError, match="not isolated"):
        pm.hook.app_plain(x=1)
    assert not pm.hook_errors


def test_required_hooks(pm):
    assert pm.missing_required() == ["app_required"]
    with pytest.raises(MissingHookError, match="app_required"):
        pm.check_required()

    @hookimpl(specname="app_required")
    def provided():
        return "ok"

    pm.register_plugins([info("provider", plugin("provider", app_required=provided))])
    assert pm.missing_required() == []
    pm.check_required()


def test_hostapp_hookspecs_are_all_documented_and_registered(hostapp_pm):
    from hostapp import hookspecs

    names = set(hookspecs.REGISTRATION_HOOKS) | set(hookspecs.CALL_HOOKS)
    table = {row["name"]: row for row in hostapp_pm.hook_table()}
    assert set(table) == names
    for name in names:
        spec = getattr(hookspecs, name)
        doc = spec.__doc__
        assert "Example::" in doc and ("Returns:" in doc), name
        assert table[name]["isolate"], name
    assert {n for n in names if table[n]["kind"] == "registration"} == set(hookspecs.REGISTRATION_HOOKS)


# -- the async relay ---------------------------------------------------------------------


def test_ahook_mixes_sync_and_async_in_pluggy_order(pm):
    calls = []

    @hookimpl(specname="app_isolated")
    async def slow(x):
        await asyncio.sleep(0)
        calls.append("async")
        return "async"

    @hookimpl(specname="app_isolated")
    def sync(x):
        calls.append("sync")
        return "sync"

    pm.register_plugins([info("a-async", plugin("a", app_isolated=slow), 5), info("b-sync", plugin("b", app_isolated=sync))])
    assert asyncio.run(pm.ahook.app_isolated(x=1)) == ["async", "sync"]
    assert calls == ["async", "sync"]


def test_ahook_firstresult_is_first_non_none_awaited_value(pm):
    @hookimpl(specname="app_first")
    async def none(x):
        return None

    @hookimpl(specname="app_first")
    async def value(x):
        return f"value-{x}"

    @hookimpl(specname="app_first")
    def never(x):
        raise AssertionError("must not be called after a result")

    pm.register_plugins([info("a", plugin("a", app_first=none), 3), info("b", plugin("b", app_first=value), 2),
                         info("c", plugin("c", app_first=never), 1)])
    assert asyncio.run(pm.ahook.app_first(x=7)) == "value-7"


def test_ahook_isolates_async_raises(pm):
    @hookimpl(specname="app_isolated")
    async def broken(x):
        await asyncio.sleep(0)
        raise ValueError("async boom")

    @hookimpl(specname="app_isolated")
    async def good(x):
        return x

    pm.register_plugins([info("broken", plugin("broken", app_isolated=broken), 1), info("good", plugin("good", app_isolated=good))])
    assert asyncio.run(pm.ahook.app_isolated(x=3)) == [3]
    assert [(e.plugin, e.error) for e in pm.hook_errors] == [("broken", "ValueError: async boom")]


def test_ahook_does_not_isolate_plain_hooks(pm):
    @hookimpl(specname="app_plain")
    async def broken(x):
        raise ValueError("plain")

    pm.register_plugins([info("broken", plugin("broken", app_plain=broken))])
    with pytest.raises(ValueError, match="plain"):
        asyncio.run(pm.ahook.app_plain(x=1))


def test_ahook_runs_new_and_old_style_wrappers(pm):
    events = []

    @hookimpl(specname="app_plain", wrapper=True)
    def new_style(x):
        events.append("new-before")
        result = yield
        events.append(("new-after", list(result)))
        return result + ["wrapped"]

    @hookimpl(specname="app_plain", hookwrapper=True)
    def old_style(x):
        events.append("old-before")
        outcome = yield
        events.append(("old-after", outcome.get_result()))

    @hookimpl(specname="app_plain")
    async def impl(x):
        return x

    pm.register_plugins([info("new", plugin("new", app_plain=new_style)), info("old", plugin("old", app_plain=old_style)),
                         info("impl", plugin("impl", app_plain=impl))])
    sync_order = [i.plugin_name for i in reversed(pm.hook.app_plain.get_hookimpls())]
    assert asyncio.run(pm.ahook.app_plain(x=5)) == [5, "wrapped"]
    # wrappers ran outermost-first, exactly as pluggy orders them
    before = [e for e in events if isinstance(e, str)]
    assert before == [f"{n}-before" for n in sync_order if n in ("new", "old")]


def test_ahook_missing_argument_is_a_hook_call_error(pm):
    pm.register_plugins([info("p", plugin("p", app_plain=returning(1)))])
    with pytest.raises(pluggy.HookCallError, match="'x'"):
        asyncio.run(pm.ahook.app_plain())


def test_ahook_unknown_hook(pm):
    with pytest.raises(AttributeError, match="no hook named 'nope'"):
        pm.ahook.nope


# -- collecting registration hooks -------------------------------------------------------


def sink(name):
    return hostapp.EventSink(name=name, handle=lambda events: None)


def test_collect_flattens_and_tags_each_spec(pm):
    @hookimpl
    def hostapp_event_sinks():
        yield sink("one")
        yield sink("two")

    @hookimpl(specname="hostapp_event_sinks")
    def single():
        return sink("three")

    @hookimpl(specname="hostapp_event_sinks")
    def nothing():
        return None

    gen_info = info("gen", plugin("gen", hostapp_event_sinks=hostapp_event_sinks), priority=1)
    gen_info.distribution, gen_info.version = "gen-dist", "2.0"
    pm.register_plugins([gen_info, info("single", plugin("single", hostapp_event_sinks=single)),
                         info("nothing", plugin("nothing", hostapp_event_sinks=nothing))])
    got = [(c.name, c.plugin, c.distribution, c.version) for c in pm.collect("hostapp_event_sinks")]
    assert got == [("one", "gen", "gen-dist", "2.0"), ("two", "gen", "gen-dist", "2.0"), ("three", "single", None, None)]


def test_collect_duplicate_names_name_both_plugins_and_distributions(pm):
    @hookimpl(specname="hostapp_event_sinks")
    def first():
        return sink("audit")

    @hookimpl(specname="hostapp_event_sinks")
    def second():
        return [sink("audit")]

    a = info("a", plugin("a", hostapp_event_sinks=first), 1)
    a.distribution, a.version = "a-dist", "1.0"
    b = info("b", plugin("b", hostapp_event_sinks=second))
    b.distribution, b.version = "b-dist", "2.0"
    pm.register_plugins([a, b])
    with pytest.raises(DuplicateNameError) as excinfo:
        pm.collect("hostapp_event_sinks")
    message = str(excinfo.value)
    assert "event sink 'audit'" in message
    assert "plugin 'a' (distribution 'a-dist' 1.0)" in message
    assert "plugin 'b' (distribution 'b-dist' 2.0)" in message
    kept = pm.collect("hostapp_event_sinks", on_conflict="report")
    assert [(c.name, c.plugin) for c in kept] == [("audit", "a")]
    assert pm.hook_errors[-1].plugin == "b" and "DuplicateNameError" in pm.hook_errors[-1].error


def test_collect_skips_a_plugin_that_breaks_the_contract(pm):
    @hookimpl(specname="hostapp_event_sinks")
    def wrong_type():
        return [sink("ok-but-skipped"), {"name": "not a spec"}]

    @hookimpl(specname="hostapp_event_sinks")
    def raises_midway():
        yield sink("partial")
        raise RuntimeError("generator broke")

    @hookimpl(specname="hostapp_event_sinks")
    def good():
        return sink("good")

    pm.register_plugins([info("wrong", plugin("wrong", hostapp_event_sinks=wrong_type), 3),
                         info("midway", plugin("midway", hostapp_event_sinks=raises_midway), 2),
                         info("good", plugin("good", hostapp_event_sinks=good))])
    assert [c.name for c in pm.collect("hostapp_event_sinks")] == ["good"]
    errors = {e.plugin: e.error for e in pm.hook_errors}
    assert "returned dict from hostapp_event_sinks; expected hostapp.EventSink" in errors["wrong"]
    assert errors["midway"] == "RuntimeError: generator broke"


def test_collect_and_acollect_await_async_registration_hooks(pm):
    @hookimpl(specname="hostapp_event_sinks")
    async def async_sinks():
        return [sink("async-one")]

    @hookimpl(specname="hostapp_event_sinks")
    async def async_generator():
        yield sink("async-two")

    pm.register_plugins([info("a", plugin("a", hostapp_event_sinks=async_sinks)),
                         info("b", plugin("b", hostapp_event_sinks=async_generator))])
    assert [c.name for c in asyncio.run(pm.acollect("hostapp_event_sinks"))] == ["async-one", "async-two"]
    assert [c.name for c in pm.collect("hostapp_event_sinks")] == ["async-one", "async-two"]
    assert not pm.hook_errors


def test_collect_rejects_a_call_hook(pm):
    with pytest.raises(ValueError, match="not a registration hook"):
        pm.collect("hostapp_startup")


# -- plugin shapes and the test fixtures -------------------------------------------------


class ClassPlugin:
    def __init__(self):
        self.started = True

    @hookimpl(specname="app_plain")
    def app_plain(self, x):
        return ("class", self.started)


@hookimpl
def app_isolated(x):
    return "function plugin"


def test_class_instance_and_function_plugins(pm):
    from hostapp.manager import _as_plugin

    pm.register_plugins([info("cls", _as_plugin(ClassPlugin)), info("fn", _as_plugin(app_isolated))])
    assert pm.hook.app_plain(x=1) == [("class", True)]
    assert pm.hook.app_isolated(x=1) == ["function plugin"]
    assert pm.infos["fn"].hooks == ["app_isolated"]
    assert pm.infos["cls"].hooks == ["app_plain"]


def test_register_fixture_registers_for_one_test(hostapp_pm, hostapp_register):
    @hookimpl
    def hostapp_event_sinks():
        return sink("from-test")

    registered = hostapp_register(hostapp_event_sinks, name="test-plugin")
    assert registered.state is PluginState.REGISTERED
    assert [c.plugin for c in hostapp_pm.collect("hostapp_event_sinks")] == ["test-plugin"]


def test_register_fixture_rejects_unknown_hooks(hostapp_register):
    @hookimpl
    def hostapp_not_a_hook():
        return None

    from hostapp.errors import PluginLoadError

    with pytest.raises(PluginLoadError, match="unknown hook.s. hostapp_not_a_hook"):
        hostapp_register(hostapp_not_a_hook, name="bad")


def test_state_listener_sees_transitions(hostapp_pm):
    seen = []

    class Listener:
        @hookimpl
        def hostapp_plugin_state(self, info):
            seen.append((info.name, info.state.value))

    hostapp_pm.register_plugins([info("listener", Listener())])
    hostapp_pm.register_plugins([info("later", plugin("later"))])
    hostapp_pm.set_state(hostapp_pm.infos["later"], PluginState.STARTED)
    assert ("later", "registered") in seen and ("later", "started") in seen


def test_a_misspelt_hostapp_hook_fails_the_plugin_at_register(hostapp_pm):
    @hookimpl
    def hostapp_configur(config):
        return None

    @hookimpl(optionalhook=True)
    def hostapp_maybe_later():
        return None

    bad = info("typo", plugin("typo", hostapp_configur=hostapp_configur))
    optional = info("optional", plugin("optional", hostapp_maybe_later=hostapp_maybe_later))
    hostapp_pm.register_plugins([bad, optional])
    assert bad.state is PluginState.FAILED and bad.stage == "register"
    assert "unknown hook(s) hostapp_configur" in bad.error
    assert not hostapp_pm.is_registered(bad.obj)
    assert optional.state is PluginState.REGISTERED


def test_load_twice_is_refused(tmp_path):
    from hostapp.discovery import DiscoveryOptions
    from hostapp.errors import HostappError

    pm = PluginManager()
    options = DiscoveryOptions(autoload=False, use_cache=False)
    pm.load(options=options, explicit=[("x", plugin("x"))])
    with pytest.raises(HostappError, match="already called"):
        pm.load(options=options)
