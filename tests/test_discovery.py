"""The filtering discovery adapter: sources, precedence, filters, metadata and loading.

Everything here is real: plugin folders and installed distributions are written into
``tmp_path``; a plugin's import appends its name to a marker file, so "never imported"
is asserted by the marker's content.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import pytest

from hostapp.testing._distfactory import install_distribution
from hostapp.discovery import (
    DiscoveryOptions,
    compile_pattern,
    discover,
    load_object,
)
from hostapp.errors import ConfigError
from hostapp.lifecycle import PluginInfo, PluginState, Source

# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _forget_plugin_modules(tmp_path: Path):
    """Drop the plugin modules a test imported from its tmp_path, so tests stay independent."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if name.startswith("hostapp_folder_plugins.") or module_file.startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """The file every test plugin appends its name to when imported."""
    return tmp_path / "imported.txt"


def imported(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def plugin_source(marker: Path, name: str, body: str = "") -> str:
    """Source of a plugin module that records its import in ``marker``."""
    return f"with open({str(marker)!r}, 'a') as _fh:\n    _fh.write({name!r} + '\\n')\n{body}"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty site directory at the front of sys.path."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    importlib.invalidate_caches()
    return path


@pytest.fixture
def options(tmp_path: Path):
    """``options(**kw)`` -> DiscoveryOptions with a per-test cache directory."""

    def make(**kw) -> DiscoveryOptions:
        kw.setdefault("cache_dir", tmp_path / "cache")
        if kw.get("autoload") is False:
            kw.setdefault("builtins", False)  # no entry points at all
        return DiscoveryOptions(**kw)

    return make


def install(site: Path, dist: str, eps: dict[str, str], files: dict[str, str], version: str = "1.0") -> Path:
    path = install_distribution(site, dist, version, {"hostapp": eps}, files)
    importlib.invalidate_caches()
    return path


def by_name(infos: list[PluginInfo], name: str) -> list[PluginInfo]:
    return [i for i in infos if i.name == name]


def one(infos: list[PluginInfo], name: str) -> PluginInfo:
    found = by_name(infos, name)
    assert len(found) == 1, found
    return found[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def folder(tmp_path: Path, marker: Path) -> Path:
    """A plugin folder: module ``alpha`` (stable), ``exp_beta`` (experimental), package ``pkgplug``."""
    root = tmp_path / "plugins"
    write(root / "alpha.py", plugin_source(marker, "alpha", "VALUE = 'alpha'\n"))
    write(root / "alpha.meta.json", json.dumps({"tags": ["stable"], "priority": 3, "description": "A"}))
    write(root / "exp_beta.py", plugin_source(marker, "exp_beta"))
    write(root / "exp_beta.meta.json", json.dumps({"tags": ["experimental"]}))
    write(root / "pkgplug" / "__init__.py", plugin_source(marker, "pkgplug", "from .helper import HELPED\n"))
    write(root / "pkgplug" / "helper.py", "HELPED = 'yes'\n")
    write(root / "pkgplug" / "meta.json", json.dumps({"tags": ["stable", "pkg"], "description": "P"}))
    # not plugins:
    write(root / "_private.py", plugin_source(marker, "_private"))
    write(root / ".hidden.py", plugin_source(marker, ".hidden"))
    write(root / "not-an-identifier.py", plugin_source(marker, "bad"))
    write(root / "notes.txt", "not a plugin\n")
    (root / "datadir").mkdir()
    write(root / "__pycache__" / "x.py", "")
    return root


# -- sources --------------------------------------------------------------------------------


def test_explicit_source_is_kept_and_never_filtered(options) -> None:
    obj = object()
    infos = discover(
        options(autoload=False, disable=("*",), enable=()),
        explicit=[("mine", obj)],
        environ={"HOSTAPP_PLUGINS": "", "HOSTAPP_DISABLE_PLUGINS": "*"},
    )
    info = one(infos, "mine")
    assert info.source is Source.EXPLICIT
    assert info.state is PluginState.DISCOVERED
    assert info.obj is obj
    assert load_object(info) is obj


def test_explicit_value_describes_the_object(options) -> None:
    infos = discover(options(autoload=False), explicit=[("mod", json), ("fn", json.dumps)], environ={})
    assert one(infos, "mod").value == "json"
    assert one(infos, "fn").value == "json:dumps"


def test_config_modules_are_discovered_not_imported(site: Path, marker: Path, options) -> None:
    write(site / "cfgmod_one.py", plugin_source(marker, "cfgmod_one", "class Thing:\n    sub = 'deep'\n"))
    infos = discover(options(autoload=False, modules=("cfgmod_one", "cfgmod_one:Thing.sub")), environ={})
    plain, attr = one(infos, "cfgmod_one"), one(infos, "cfgmod_one:Thing.sub")
    assert (plain.source, plain.value, plain.location) == (Source.CONFIG, "cfgmod_one", None)
    assert attr.value == "cfgmod_one:Thing.sub"
    assert imported(marker) == []
    assert load_object(plain) is sys.modules["cfgmod_one"]
    assert load_object(attr) == "deep"
    assert imported(marker) == ["cfgmod_one"]


def test_config_module_with_invalid_value_fails_at_discover(options) -> None:
    info = one(discover(options(autoload=False, modules=("not a module",)), environ={}), "not a module")
    assert info.state is PluginState.FAILED
    assert info.stage == "discover"
    assert "plugins.modules" in info.error


def test_folder_source_modules_and_packages(folder: Path, marker: Path, options) -> None:
    infos = discover(options(autoload=False, paths=(folder,)), environ={})
    assert [i.name for i in infos] == ["alpha", "exp_beta", "pkgplug"]
    alpha, pkg = one(infos, "alpha"), one(infos, "pkgplug")
    assert alpha.source is Source.FOLDER and alpha.state is PluginState.DISCOVERED
    assert alpha.location == str(folder / "alpha.py")
    assert pkg.location == str(folder / "pkgplug")
    assert (alpha.tags, alpha.priority, alpha.description) == (("stable",), 3, "A")
    assert (pkg.tags, pkg.priority, pkg.description) == (("stable", "pkg"), 0, "P")
    assert imported(marker) == []


def test_folder_plugins_in_order_and_missing_folder_skipped(tmp_path: Path, marker: Path, options) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write(first / "zed.py", "")
    write(second / "aaa.py", "")
    infos = discover(options(autoload=False, paths=(tmp_path / "missing", first, second)), environ={})
    assert [i.name for i in infos] == ["zed", "aaa"]


def test_folder_meta_malformed_marks_candidate_failed(tmp_path: Path, options) -> None:
    root = tmp_path / "plugins"
    write(root / "good.py", "")
    write(root / "badjson.py", "")
    write(root / "badjson.meta.json", "{not json")
    write(root / "badtags.py", "")
    write(root / "badtags.meta.json", json.dumps({"tags": "stable"}))
    write(root / "badprio.py", "")
    write(root / "badprio.meta.json", json.dumps({"priority": "high"}))
    write(root / "badpkg" / "__init__.py", "")
    write(root / "badpkg" / "meta.json", json.dumps(["a list"]))
    infos = discover(options(autoload=False, paths=(root,)), environ={})
    assert one(infos, "good").state is PluginState.DISCOVERED
    for name, file in [
        ("badjson", "badjson.meta.json"),
        ("badtags", "badtags.meta.json"),
        ("badprio", "badprio.meta.json"),
        ("badpkg", os.path.join("badpkg", "meta.json")),
    ]:
        info = one(infos, name)
        assert info.state is PluginState.FAILED, name
        assert info.stage == "discover"
        assert str(root / file) in info.error


def test_entry_point_source(site: Path, marker: Path, options) -> None:
    dist_info = install(site, "Acme.Plugins", {"acme": "acme_ep:plugin"}, {"acme_ep.py": plugin_source(marker, "acme_ep", "plugin = 'P'\n")}, "1.2")
    infos = discover(options(), environ={})
    info = one([i for i in infos if i.state is not PluginState.SHADOWED], "acme")  # (a later "acme" is shadowed)
    assert info.source is Source.ENTRY_POINT
    assert (info.distribution, info.version, info.value) == ("Acme.Plugins", "1.2", "acme_ep:plugin")
    assert info.location == str(dist_info)
    assert info.builtin is False
    assert imported(marker) == []
    assert load_object(info) == "P"
    assert imported(marker) == ["acme_ep"]
    builtins = [i for i in infos if i.distribution == "hostapp"]
    assert builtins and all(i.builtin for i in builtins)


def _states(infos: list[PluginInfo]) -> dict[str, tuple[str, str | None]]:
    return {i.name: (i.state.value, i.rule) for i in infos if i.source is Source.ENTRY_POINT}


@pytest.mark.parametrize("value", ["1", "true", "yes", "YES"])
def test_autoload_disabled_by_environment_keeps_the_builtins(site: Path, options, value: str) -> None:
    """As pytest's PYTEST_DISABLE_PLUGIN_AUTOLOAD: third-party entry points are left out
    (listed, with the variable as the rule), hostapp's own plugins stay."""
    install(site, "acme-auto", {"acme_auto": "acme_auto"}, {})
    states = _states(discover(options(), environ={"HOSTAPP_DISABLE_PLUGIN_AUTOLOAD": value}))
    assert states["acme_auto"] == ("filtered", "HOSTAPP_DISABLE_PLUGIN_AUTOLOAD")
    assert states["sinks.sqlite"] == ("discovered", None)
    assert states["http.requests"] == ("discovered", None)


def test_autoload_option_builtins_and_force(site: Path, options) -> None:
    install(site, "acme-auto", {"acme_auto": "acme_auto"}, {})
    states = _states(discover(options(autoload=False, builtins=True), environ={}))
    assert states["acme_auto"] == ("filtered", "plugins.autoload = false")
    assert states["sinks.sqlite"] == ("discovered", None)
    states = _states(discover(options(builtins=False), environ={}))
    assert states["acme_auto"] == ("discovered", None)
    assert states["sinks.sqlite"] == ("filtered", "plugins.builtins = false (hostapp --no-builtins)")
    # force (hostapp --enable NAME, pytest's -p NAME): loads whatever autoload and the filters say
    forced = options(builtins=False, force=("acme_auto", "sinks.sqlite"), disable=("acme_*",))
    states = _states(discover(forced, environ={"HOSTAPP_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    assert states["acme_auto"] == ("discovered", None)
    assert states["sinks.sqlite"] == ("discovered", None)
    assert states["sinks.jsonl"][0] == "filtered"
    infos = discover(options(), environ={"HOSTAPP_DISABLE_PLUGIN_AUTOLOAD": "0"})
    assert one(infos, "acme_auto").source is Source.ENTRY_POINT
    assert not discover(options(autoload=False, builtins=False), environ={})  # nothing read at all


# -- precedence and shadowing ---------------------------------------------------------------


def test_precedence_explicit_config_folder_entrypoint(tmp_path: Path, site: Path, marker: Path, options) -> None:
    root = tmp_path / "plugins"
    write(root / "dup.py", plugin_source(marker, "folder-dup"))
    write(root / "fold.py", plugin_source(marker, "folder-fold"))
    write(site / "dup.py", plugin_source(marker, "config-dup"))
    dist_info = install(
        site,
        "dup-dist",
        {"dup": "dup_ep", "fold": "dup_ep", "ep_only": "dup_ep"},
        {"dup_ep.py": plugin_source(marker, "ep")},
    )
    explicit_obj = object()
    infos = discover(options(paths=(root,), modules=("dup",)), explicit=[("dup", explicit_obj)], environ={})

    dups = by_name(infos, "dup")
    assert [i.source for i in dups] == [Source.EXPLICIT, Source.CONFIG, Source.FOLDER, Source.ENTRY_POINT]
    assert dups[0].state is PluginState.DISCOVERED
    assert all(i.state is PluginState.SHADOWED for i in dups[1:])
    assert all(i.shadowed_by.startswith("explicit") for i in dups[1:])

    folds = by_name(infos, "fold")
    assert [i.state for i in folds] == [PluginState.DISCOVERED, PluginState.SHADOWED]
    assert folds[1].shadowed_by == f"folder {root / 'fold.py'}"
    assert one(infos, "ep_only").location == str(dist_info)
    assert imported(marker) == []


def test_config_shadows_folder(tmp_path: Path, options) -> None:
    root = tmp_path / "plugins"
    write(root / "shared.py", "")
    infos = discover(options(autoload=False, paths=(root,), modules=("shared",)), environ={})
    cfg, fold = by_name(infos, "shared")
    assert (cfg.source, cfg.state) == (Source.CONFIG, PluginState.DISCOVERED)
    assert (fold.state, fold.shadowed_by) == (PluginState.SHADOWED, "config shared")


def test_same_entry_point_name_first_distribution_on_path_wins(tmp_path: Path, monkeypatch, options) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first_info = install_distribution(first, "first-dist", "1.0", {"hostapp": {"same": "first_mod"}})
    install_distribution(second, "second-dist", "2.0", {"hostapp": {"same": "second_mod"}})
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    importlib.invalidate_caches()
    winner, loser = by_name(discover(options(), environ={}), "same")
    assert (winner.distribution, winner.state) == ("first-dist", PluginState.DISCOVERED)
    assert (loser.distribution, loser.state) == ("second-dist", PluginState.SHADOWED)
    assert loser.shadowed_by == f"entrypoint {first_info}"


def test_shadowing_is_decided_before_filters(tmp_path: Path, site: Path, options) -> None:
    root = tmp_path / "plugins"
    write(root / "clash.py", "")
    install(site, "clash-dist", {"clash": "clash_mod"}, {})
    folder_one, ep_one = by_name(discover(options(paths=(root,), disable_locations=(f"{root}/*",)), environ={}), "clash")
    assert folder_one.state is PluginState.FILTERED
    assert ep_one.state is PluginState.SHADOWED  # not promoted because the winner was filtered


def test_shadowed_malformed_meta_is_reported_as_shadowed(tmp_path: Path, options) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write(first / "twin.py", "")
    write(second / "twin.py", "")
    write(second / "twin.meta.json", "{")
    winner, loser = by_name(discover(options(autoload=False, paths=(first, second)), environ={}), "twin")
    assert winner.state is PluginState.DISCOVERED
    assert (loser.state, loser.error) == (PluginState.SHADOWED, None)


# -- filters --------------------------------------------------------------------------------


FILTER_CASES = [
    # (options, environ, {name: expected rule or None})
    pytest.param({}, {"HOSTAPP_DISABLE_PLUGINS": "nothing, alpha"}, {"alpha": "HOSTAPP_DISABLE_PLUGINS: 'alpha'", "pkgplug": None}, id="env-disable"),
    pytest.param({}, {"HOSTAPP_PLUGINS": "alpha,pkg*"}, {"alpha": None, "pkgplug": None, "exp_beta": "HOSTAPP_PLUGINS: not listed"}, id="env-only"),
    pytest.param({}, {"HOSTAPP_PLUGINS": ""}, {"alpha": "HOSTAPP_PLUGINS: empty (no discovered plugins)", "pkgplug": "HOSTAPP_PLUGINS: empty (no discovered plugins)"}, id="env-only-empty"),
    pytest.param({"disable": ("re:^exp_",)}, {}, {"exp_beta": "plugins.disable: 're:^exp_'", "alpha": None}, id="disable-regex"),
    pytest.param({"disable": ("pkg*", "alp?a")}, {}, {"alpha": "plugins.disable: 'alp?a'", "pkgplug": "plugins.disable: 'pkg*'", "exp_beta": None}, id="disable-glob"),
    pytest.param({"enable": ("alpha",)}, {}, {"alpha": None, "pkgplug": "plugins.enable: no pattern matches"}, id="enable"),
    pytest.param({"enable": ()}, {}, {"alpha": "plugins.enable: no pattern matches"}, id="enable-empty"),
    pytest.param({"disable_locations": ("*/pkgplug",)}, {}, {"pkgplug": "plugins.disable_locations: '*/pkgplug'", "alpha": None}, id="disable-locations"),
    pytest.param({"enable_locations": ("re:alpha\\.py$",)}, {}, {"alpha": None, "exp_beta": "plugins.enable_locations: no pattern matches"}, id="enable-locations"),
    pytest.param({"deny_tags": ("experimental",)}, {}, {"exp_beta": "plugins.deny_tags: 'experimental'", "alpha": None}, id="deny-tags"),
    pytest.param({"allow_tags": ("stable",)}, {}, {"alpha": None, "pkgplug": None, "exp_beta": "plugins.allow_tags: none of ['stable']"}, id="allow-tags"),
    pytest.param({"allow_tags": ("re:^sta",), "deny_tags": ("pkg",)}, {}, {"alpha": None, "pkgplug": "plugins.deny_tags: 'pkg'"}, id="deny-before-allow"),
    pytest.param(
        {"disable": ("alpha",), "enable": ("nothing",)},
        {"HOSTAPP_DISABLE_PLUGINS": "alpha"},
        {"alpha": "HOSTAPP_DISABLE_PLUGINS: 'alpha'", "pkgplug": "plugins.enable: no pattern matches"},
        id="first-rule-wins",
    ),
    pytest.param(
        {"disable_locations": ("*",)},
        {"HOSTAPP_PLUGINS": "alpha"},
        {"alpha": "plugins.disable_locations: '*'", "pkgplug": "HOSTAPP_PLUGINS: not listed"},
        id="rule-order",
    ),
]


@pytest.mark.parametrize(("opts", "environ", "expected"), FILTER_CASES)
def test_filter_rules(folder: Path, marker: Path, options, opts, environ, expected) -> None:
    infos = discover(options(autoload=False, paths=(folder,), **opts), environ=environ)
    for name, rule in expected.items():
        info = one(infos, name)
        assert info.rule == rule, name
        assert info.state is (PluginState.DISCOVERED if rule is None else PluginState.FILTERED)
    assert imported(marker) == []


def test_filters_apply_to_entry_points_and_config_modules(site: Path, options) -> None:
    dist_info = install(site, "legacy-dist", {"old_ep": "old_mod"}, {})
    infos = discover(
        options(modules=("cfg_mod",), disable_locations=("cfg_*", f"*{os.sep}{dist_info.name}")),
        environ={},
    )
    assert one(infos, "cfg_mod").rule == "plugins.disable_locations: 'cfg_*'"
    assert one(infos, "old_ep").rule == f"plugins.disable_locations: '*{os.sep}{dist_info.name}'"


def test_plugins_meta_overrides_before_filtering(folder: Path, options) -> None:
    meta = {"exp_beta": {"tags": ["stable"], "priority": 7, "description": "promoted"}, "alpha": {"priority": -1}}
    infos = discover(options(autoload=False, paths=(folder,), meta=meta, allow_tags=("stable",)), environ={})
    beta, alpha = one(infos, "exp_beta"), one(infos, "alpha")
    assert (beta.state, beta.tags, beta.priority, beta.description) == (PluginState.DISCOVERED, ("stable",), 7, "promoted")
    assert (alpha.tags, alpha.priority, alpha.description) == (("stable",), -1, "A")


def test_plugins_meta_applies_to_explicit_and_entry_points(site: Path, options) -> None:
    install(site, "meta-dist", {"meta_ep": "meta_mod"}, {})
    meta = {"meta_ep": {"tags": ["x"]}, "mine": {"priority": 9}}
    infos = discover(options(meta=meta, deny_tags=("x",)), explicit=[("mine", object())], environ={})
    assert one(infos, "meta_ep").rule == "plugins.deny_tags: 'x'"
    assert one(infos, "mine").priority == 9


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"a": {"tags": "x"}}, "plugins.meta.a.tags"),
        ({"a": {"priority": True}}, "plugins.meta.a.priority"),
        ({"a": {"description": 3}}, "plugins.meta.a.description"),
        ({"a": 3}, "plugins.meta.a"),
    ],
)
def test_plugins_meta_wrong_types_raise_config_error(options, meta, key) -> None:
    with pytest.raises(ConfigError) as err:
        discover(options(autoload=False, meta=meta), environ={})
    assert err.value.key == key


def test_filtered_malformed_meta_is_reported_as_filtered(tmp_path: Path, options) -> None:
    root = tmp_path / "plugins"
    write(root / "broken.py", "")
    write(root / "broken.meta.json", "[")
    info = one(discover(options(autoload=False, paths=(root,), disable=("broken",)), environ={}), "broken")
    assert (info.state, info.rule, info.error) == (PluginState.FILTERED, "plugins.disable: 'broken'", None)


# -- patterns -------------------------------------------------------------------------------


def test_compile_pattern_glob_is_whole_string_and_case_sensitive() -> None:
    match = compile_pattern("sinks.*", source="hostapp.toml", key="plugins.enable")
    assert match("sinks.jsonl")
    assert not match("my.sinks.jsonl")
    assert not match("Sinks.jsonl")
    assert compile_pattern("a?c", source="s", key="k")("abc")
    assert compile_pattern("[ab]x", source="s", key="k")("bx")


def test_compile_pattern_regex_searches() -> None:
    match = compile_pattern("re:jso?n", source="hostapp.toml", key="plugins.enable")
    assert match("sinks.jsonl")
    assert match("jsn")
    assert not match("sinks.logging")
    assert compile_pattern("re:^exp_", source="s", key="k")("exp_x")
    assert not compile_pattern("re:^exp_", source="s", key="k")("my_exp_x")


def test_compile_pattern_bad_regex_raises_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        compile_pattern("re:(unclosed", source="hostapp.toml", key="plugins.disable")
    assert err.value.key == "plugins.disable"
    assert err.value.source == "hostapp.toml"
    assert "plugins.disable" in str(err.value) and "(unclosed" in str(err.value)


@pytest.mark.parametrize(
    "setting", ["enable", "disable", "enable_locations", "disable_locations", "allow_tags", "deny_tags"]
)
def test_discover_bad_regex_names_the_key(options, setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        discover(options(autoload=False, **{setting: ("re:[",)}), environ={})
    assert err.value.key == f"plugins.{setting}"
    assert str(err.value).startswith(f"hostapp.toml: plugins.{setting}:")


def test_discover_config_source_is_named(options) -> None:
    with pytest.raises(ConfigError, match=r"^pyproject.toml: plugins.disable:"):
        discover(options(autoload=False, disable=("re:*",), config_source="pyproject.toml"), environ={})


@pytest.mark.parametrize("var", ["HOSTAPP_PLUGINS", "HOSTAPP_DISABLE_PLUGINS"])
def test_discover_bad_regex_in_environment(options, var: str) -> None:
    with pytest.raises(ConfigError) as err:
        discover(options(autoload=False), environ={var: "ok, re:("})
    assert err.value.source == var
    assert str(err.value).startswith(f"{var}: invalid regular expression")


# -- load_object ----------------------------------------------------------------------------


def test_load_folder_module_and_package_with_relative_import(folder: Path, marker: Path, options) -> None:
    path_before = list(sys.path)
    infos = discover(options(autoload=False, paths=(folder,)), environ={})
    alpha = load_object(one(infos, "alpha"))
    pkg = load_object(one(infos, "pkgplug"))
    assert alpha.VALUE == "alpha"
    assert alpha.__name__ == "hostapp_folder_plugins.alpha"
    assert pkg.HELPED == "yes"
    assert sys.modules["hostapp_folder_plugins.pkgplug.helper"].HELPED == "yes"
    assert sys.path == path_before
    assert load_object(one(infos, "alpha")) is alpha  # imported once, then reused
    assert imported(marker) == ["alpha", "pkgplug"]


def test_load_same_named_folder_plugins_from_two_folders(tmp_path: Path, options) -> None:
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    write(one_dir / "same.py", "WHERE = 'one'\n")
    write(two_dir / "same.py", "WHERE = 'two'\n")
    first = load_object(one(discover(options(autoload=False, paths=(one_dir,)), environ={}), "same"))
    second = load_object(one(discover(options(autoload=False, paths=(two_dir,)), environ={}), "same"))
    assert (first.WHERE, second.WHERE) == ("one", "two")
    assert first.__name__ != second.__name__


def test_load_folder_plugin_broken_import_names_plugin(tmp_path: Path, options) -> None:
    root = tmp_path / "plugins"
    write(root / "needs_dep.py", "import hostapp_no_such_dependency\n")
    info = one(discover(options(autoload=False, paths=(root,)), environ={}), "needs_dep")
    with pytest.raises(ModuleNotFoundError) as err:
        load_object(info)
    message = str(err.value)
    assert "plugin 'needs_dep'" in message
    assert f"folder plugin {root / 'needs_dep.py'}" in message
    assert "hostapp_no_such_dependency" in message
    assert "hostapp_folder_plugins.needs_dep" not in sys.modules


def test_load_entry_point_broken_import_names_distribution(site: Path, options) -> None:
    install(site, "broken-dist", {"broken_ep": "broken_mod:plugin"}, {"broken_mod.py": "import hostapp_missing_dep\n"}, "0.3")
    info = one(discover(options(), environ={}), "broken_ep")
    with pytest.raises(ImportError) as err:
        load_object(info)
    assert "plugin 'broken_ep'" in str(err.value)
    assert "distribution 'broken-dist' 0.3" in str(err.value)


def test_load_missing_attribute_names_plugin(site: Path, options) -> None:
    write(site / "attr_mod.py", "class A:\n    pass\n")
    info = one(discover(options(autoload=False, modules=("attr_mod:A.missing",)), environ={}), "attr_mod:A.missing")
    with pytest.raises(AttributeError) as err:
        load_object(info)
    assert "plugin 'attr_mod:A.missing'" in str(err.value)
    assert "config plugins.modules 'attr_mod:A.missing'" in str(err.value)
    assert "'attr_mod:A' has no attribute 'missing'" in str(err.value)


def test_load_missing_module_names_plugin(options) -> None:
    info = one(discover(options(autoload=False, modules=("hostapp_absent_module",)), environ={}), "hostapp_absent_module")
    with pytest.raises(ModuleNotFoundError, match="plugin 'hostapp_absent_module'"):
        load_object(info)


def test_load_other_exceptions_pass_through_with_a_note(tmp_path: Path, options) -> None:
    root = tmp_path / "plugins"
    write(root / "raiser.py", "raise RuntimeError('boom at import')\n")
    info = one(discover(options(autoload=False, paths=(root,)), environ={}), "raiser")
    with pytest.raises(RuntimeError, match="boom at import") as err:
        load_object(info)
    assert any("plugin 'raiser'" in note for note in err.value.__notes__)


def test_failed_load_can_be_recorded_on_the_info(tmp_path: Path, options) -> None:
    root = tmp_path / "plugins"
    write(root / "needs_dep2.py", "import hostapp_no_such_dependency\n")
    info = one(discover(options(autoload=False, paths=(root,)), environ={}), "needs_dep2")
    try:
        load_object(info)
    except ImportError as exc:
        info.fail("import", exc)
    assert info.state is PluginState.FAILED
    assert info.error.startswith("ModuleNotFoundError: plugin 'needs_dep2' (folder plugin ")


# -- environment and cache switches ---------------------------------------------------------


def test_no_cache_env_writes_nothing(site: Path, tmp_path: Path, options) -> None:
    install(site, "nocache-dist", {"nocache_ep": "m"}, {})
    infos = discover(options(), environ={"HOSTAPP_NO_CACHE": "1"})
    assert one(infos, "nocache_ep").source is Source.ENTRY_POINT
    assert not (tmp_path / "cache").exists()
    discover(options(use_cache=False), environ={})
    assert not (tmp_path / "cache").exists()
    discover(options(), environ={})
    assert list((tmp_path / "cache").glob("ep-*.idx"))


def test_discover_uses_os_environ_by_default(folder: Path, options, monkeypatch) -> None:
    monkeypatch.setenv("HOSTAPP_DISABLE_PLUGINS", "alpha")
    infos = discover(options(autoload=False, paths=(folder,)))
    assert one(infos, "alpha").rule == "HOSTAPP_DISABLE_PLUGINS: 'alpha'"


def test_tag_filter_rule_for_tags_declared_after_import(options) -> None:
    from hostapp.discovery import tag_filter_rule

    opts = options(deny_tags=("re:^exp",), allow_tags=("stable", "beta"))
    assert tag_filter_rule(("stable",), opts) is None
    assert tag_filter_rule(("stable", "experimental"), opts) == "plugins.deny_tags: 're:^exp'"
    assert tag_filter_rule((), opts) == "plugins.allow_tags: none of ['stable', 'beta']"
    assert tag_filter_rule(("anything",), options()) is None
    with pytest.raises(ConfigError):
        tag_filter_rule(("x",), options(deny_tags=("re:(",)))


# -- the fast paths agree with the plain ones ---------------------------------------------


def test_fast_entry_point_records_equal_entrypoint_candidates(tmp_path: Path, site: Path) -> None:
    """discover() builds PluginInfo straight from the index's columns; it must equal the public path."""
    from hostapp.discovery import EntryPointIndex
    from hostapp.discovery.sources import _entrypoint_infos, entrypoint_candidates

    install(site, "Acme.Plugins", {"acme": "acme_ep:plugin", "acme2": "acme_ep"}, {}, "1.2")
    install(site, "HostApp", {"fake_builtin": "m"}, {})  # normalizes to "hostapp": builtin
    install(site, "host-app", {"not_builtin": "m"}, {})
    idx = EntryPointIndex(("hostapp",), cache_dir=tmp_path / "cache")
    fast = _entrypoint_infos(idx._read_segments())
    plain = entrypoint_candidates(idx.read())
    assert [i.to_dict() for i in fast] == [i.to_dict() for i in plain]
    assert [(i.obj, i.hooks) for i in fast] == [(None, [])] * len(plain)
    assert {i.name: i.builtin for i in fast if i.name in ("fake_builtin", "not_builtin")} == {
        "fake_builtin": True,
        "not_builtin": False,
    }


def test_discover_result_is_the_same_cold_warm_and_uncached(site: Path, folder: Path, options) -> None:
    install(site, "acme-one", {"one": "m1", "alpha": "shadowed_by_folder"}, {})
    install(site, "acme-two", {"two": "m2"}, {})
    opts = options(paths=(folder,), disable=("two",), meta={"one": {"tags": ("x",), "priority": 4}})
    runs = [discover(opts, environ={}), discover(opts, environ={}), discover(options(paths=(folder,), use_cache=False, disable=("two",), meta={"one": {"tags": ("x",), "priority": 4}}), environ={})]
    dicts = [[i.to_dict() for i in run] for run in runs]
    assert dicts[0] == dicts[1] == dicts[2]
    assert one(runs[0], "two").state is PluginState.FILTERED
    assert (one(runs[0], "one").tags, one(runs[0], "one").priority) == (("x",), 4)
    assert [i.state for i in by_name(runs[0], "alpha")] == [PluginState.DISCOVERED, PluginState.SHADOWED]
