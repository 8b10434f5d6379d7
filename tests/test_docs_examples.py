"""Keep the documentation true: its examples run, and every key and hook is documented."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import tomllib
import types
import warnings
from pathlib import Path

import pytest

import hostapp
from hostapp import hookspecs
from hostapp.config import SCHEMA, ConfigWarning, load_config
from hostapp.errors import ConfigError
from hostapp.lifecycle import PluginInfo, Source

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE = ROOT / "examples" / "acme_plugin"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
LABEL = re.compile(r"^\*\*`([^`]+)`\*\*$")


@dataclasses.dataclass
class Block:
    page: str
    language: str
    text: str
    label: str | None  # the file shown, from a "**`path`**" line right before the block
    line: int


def blocks(page: str, language: str | None = None) -> list[Block]:
    text = (DOCS / page).read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        label = LABEL.match(before)
        out.append(
            Block(page, match[1], match[2], label[1] if label else None, text.count("\n", 0, match.start()) + 1)
        )
    return [b for b in out if language is None or b.language == language]


def labelled(page: str) -> dict[str, str]:
    return {b.label: b.text for b in blocks(page) if b.label}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env.update(extra)
    return env


# -- the example distribution --------------------------------------------------------------


def install_example(hostapp_dist) -> dict:
    """Install examples/acme_plugin as its pyproject.toml describes it, from its own files."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    src = EXAMPLE / "src"
    files = {p.relative_to(src).as_posix(): p.read_text(encoding="utf-8") for p in src.rglob("*.py")}
    hostapp_dist(project["name"], project["version"], entry_points=project["entry-points"], files=files)
    return project


def test_example_distribution_is_discovered_registered_and_collected(hostapp_dist, tmp_path):
    project = install_example(hostapp_dist)
    assert project["entry-points"] == {"hostapp": {"acme": "acme_hostapp"}}
    config = hostapp.Config.from_dict(
        {"plugins": {"cache": False, "config": {"acme": {"service": "billing"}}}}, environ={}
    )
    pm = hostapp.PluginManager()
    pm.load(config, environ={})

    info = pm.infos["acme"]
    assert info.state == "registered", info.error
    assert (info.source, info.distribution, info.version) == (Source.ENTRY_POINT, "acme-hostapp", "1.0.0")
    assert info.hooks == ["hostapp_configure", "hostapp_event_sinks", "hostapp_startup"]
    assert (info.priority, info.tags) == (10, ("audit",))  # from hostapp_plugin_meta
    assert info.description == "Audit trail of hostapp events, as JSON lines."

    sinks = {c.name: c for c in pm.collect("hostapp_event_sinks")}
    acme = sinks["acme"]
    assert (acme.plugin, acme.distribution, acme.version) == ("acme", "acme-hostapp", "1.0.0")
    assert acme.describe() == "plugin 'acme' (distribution 'acme-hostapp' 1.0.0)"
    assert list(sinks)[0] == "acme"  # priority 10: before the built-in sinks
    assert not pm.hook_errors

    pm.hook.hostapp_configure(config=config)
    sink = acme.spec
    sink.open({"path": str(tmp_path / "audit" / "acme.jsonl")})
    event = types.SimpleNamespace(type="monitoring_event", subtype="tick", data={"n": 1}, timestamp_ns=5)
    sink.handle([event])
    sink.close()
    [line] = (tmp_path / "audit" / "acme.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line) == {
        "service": "billing", "type": "monitoring_event", "subtype": "tick", "data": {"n": 1}, "timestamp_ns": 5,
    }

    emitted = []
    host = types.SimpleNamespace(emit=lambda type, subtype=None, /, **fields: emitted.append((type, subtype, fields)))
    asyncio.run(pm.ahook.hostapp_startup(host=host))
    assert emitted == [("monitoring_event", "started", {"plugin": "acme", "service": "billing"})]
    assert not pm.hook_errors


def test_example_plugin_test_suite_passes(tmp_path):
    """The test file shown in writing-plugins.md passes, run the way the page says."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        env=clean_env(PYTHONPATH=str(EXAMPLE / "src"), XDG_CACHE_HOME=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^6 passed", result.stdout, re.M), result.stdout


def test_writing_plugins_shows_the_example_files_verbatim():
    shown = labelled("writing-plugins.md")
    for relative in ("pyproject.toml", "src/acme_hostapp/__init__.py", "tests/test_acme.py"):
        label = f"examples/acme_plugin/{relative}"
        assert label in shown, f"writing-plugins.md does not show {label}"
        assert shown[label] == (EXAMPLE / relative).read_text(encoding="utf-8"), f"{label} differs from the page"


def test_folder_plugins_of_the_pages_load(tmp_path):
    files = {**labelled("writing-plugins.md"), **labelled("cli.md")}
    for relative in ("plugins/printer.py", "plugins/printer.meta.json", "hostapp.toml", "plugins/hello.py"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[relative], encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        config = load_config(cwd=tmp_path, environ={})
    assert set(config["events.sinks"]) == {"sqlite", "printer"}
    pm = hostapp.PluginManager()
    pm.load(config, environ={"HOSTAPP_DISABLE_PLUGIN_AUTOLOAD": "1"})
    printer = pm.infos["printer"]
    assert (printer.state, printer.source, printer.priority, printer.tags) == ("registered", "folder", 5, ("debug",))
    assert pm.infos["hello"].state == "registered"
    sinks = [c.name for c in pm.collect("hostapp_event_sinks")]
    assert [name for name in sinks if not pm.infos[pm_plugin(pm, name)].builtin] == ["printer"]
    assert "sqlite" in sinks  # HOSTAPP_DISABLE_PLUGIN_AUTOLOAD keeps hostapp's built-ins
    assert [c.name for c in pm.collect("hostapp_cli_commands")] == ["hello"]
    assert not pm.hook_errors


def pm_plugin(pm, sink_name):
    return next(c.plugin for c in pm.collect("hostapp_event_sinks") if c.name == sink_name)


# -- every key, hook, spec field and JSON field is documented -----------------------------


def table_keys(page: str) -> set[str]:
    """The `names` in the first column of every Markdown table of ``page``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.M))


def headings(page: str) -> set[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return set(re.findall(r"^#+ `([^`]+)`$", text, re.M))


def test_every_config_key_is_in_configuration_md():
    documented = table_keys("configuration.md")
    missing = [key for key in SCHEMA if key not in documented]
    assert not missing, f"docs/configuration.md lacks a table row for {missing}"


def test_every_hookspec_is_in_hooks_md():
    documented = headings("hooks.md")
    names = hookspecs.REGISTRATION_HOOKS + hookspecs.CALL_HOOKS
    assert set(names) == {row["name"] for row in hostapp.PluginManager().hook_table()}
    missing = [name for name in names if name not in documented]
    assert not missing, f"docs/hooks.md lacks a section for {missing}"


@pytest.mark.parametrize(
    "spec_type",
    [hostapp.TraceProcessor, hostapp.EventSink, hostapp.DriverSpec, hostapp.BackgroundTask,
     hostapp.InstrumentType, hostapp.CliCommand, hostapp.EventRenderer, hostapp.Route, hostapp.Contribution,
     PluginInfo],
)
def test_every_spec_type_field_is_in_hooks_md(spec_type):
    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    section = text.split(f"### `{spec_type.__name__}`\n", 1)
    assert len(section) == 2, f"docs/hooks.md lacks a section for {spec_type.__name__}"
    body = section[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"`(\w+)`", body))
    missing = [f.name for f in dataclasses.fields(spec_type) if f.name not in documented]
    assert not missing, f"docs/hooks.md: {spec_type.__name__} lacks {missing}"


def test_cli_json_fields_are_in_cli_md():
    documented = table_keys("cli.md")
    row = PluginInfo(name="x", source=Source.EXPLICIT).to_dict()
    missing = [key for key in [*row, "provides", "hook_errors"] if key not in documented]
    assert not missing, f"docs/cli.md lacks plugins --json fields {missing}"

    @hostapp.hookimpl
    def hostapp_configure(config):
        pass

    pm = hostapp.PluginManager()
    pm.register(types.SimpleNamespace(hostapp_configure=hostapp_configure), name="p")
    row = {r["name"]: r for r in pm.hook_table()}["hostapp_configure"]
    missing = [key for key in row if key not in documented]
    assert not missing, f"docs/cli.md lacks hooks --json fields {missing}"
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = [key for key in row["implementations"][0] if f"`{key}`" not in text]
    assert not missing, f"docs/cli.md lacks hooks --json implementation fields {missing}"


# -- code blocks ------------------------------------------------------------------------------


PAGES = ["writing-plugins.md", "hooks.md", "configuration.md", "cli.md", "tracing.md", "run.md", "drivers.md",
         "serve.md", "host.md", "probes.md"]


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_compile(page):
    found = blocks(page, "python")
    if page in ("writing-plugins.md", "hooks.md"):
        assert found, f"no python blocks in {page}"
    for block in found:
        compile(block.text, f"docs/{page}:{block.line}", "exec")


@pytest.mark.parametrize("block", blocks("hooks.md", "python"), ids=lambda b: f"hooks.md:{b.line}")
def test_hook_examples_register_and_contribute(block):
    """Each example plugin of hooks.md registers cleanly; its registration hooks contribute."""
    module = types.ModuleType(f"hooks_md_{block.line}")
    exec(compile(block.text, f"docs/hooks.md:{block.line}", "exec"), module.__dict__)
    pm = hostapp.PluginManager()
    pm.register(module, name="example")
    pm.check_pending()  # every hook name exists and every argument is the hook's
    implemented = [hook.name for hook in pm.get_hookcallers(module)]
    assert implemented, "an example in hooks.md implements no hook"
    for name in implemented:
        if name in hookspecs.REGISTRATION_HOOKS:
            assert pm.collect(name), f"{name} example contributed nothing"
    assert not pm.hook_errors, [e.error for e in pm.hook_errors]


def config_blocks() -> list[Block]:
    found = []
    for page in ("configuration.md", "writing-plugins.md", "cli.md", "drivers.md"):
        for block in blocks(page, "toml"):
            if "[project]" in block.text or "[build-system]" in block.text:
                continue  # a distribution's pyproject.toml, not a hostapp configuration
            found.append(block)
    return found


@pytest.mark.parametrize("block", config_blocks(), ids=lambda b: f"{b.page}:{b.line}")
def test_configuration_examples_are_valid(block, tmp_path):
    (tmp_path / "plugins").mkdir()
    name = "pyproject.toml" if "[tool.hostapp" in block.text else "hostapp.toml"
    (tmp_path / name).write_text(block.text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)  # no unknown key in the docs
        config = load_config(cwd=tmp_path, environ={})
    assert config.source != "<defaults>"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[plugins\nenable = 1\n", "hostapp.toml:1: invalid TOML: Expected ']' at the end of a table declaration"),
        ("[plugins]\nenable = 5\n", "hostapp.toml: plugins.enable: expected a list of strings, got an integer"),
        ("[plugins]\nstrict = 'yes'\n", "hostapp.toml: plugins.strict: expected true or false, got a string"),
        ("[plugins]\npaths = ['nowhere']\n", "hostapp.toml: plugins.paths: plugin folder 'nowhere' does not exist"),
        ("[host]\nshutdown_timeout = -1\n", "hostapp.toml: host.shutdown_timeout: must be >= 0, got -1"),
        ("[events]\nfull_policy = 'sometimes'\n",
         "hostapp.toml: events.full_policy: expected one of block, spill, drop; got 'sometimes'"),
        ("plugins = 3\n", "hostapp.toml: plugins: expected a table, got an integer"),
        ("[plugins.meta.x]\npriority = 'high'\n", "hostapp.toml: plugins.meta.x.priority: invalid value 'high'"),
        ("[plugins.meta.x]\ncolour = 'red'\n",
         "hostapp.toml: plugins.meta.x.colour: unknown key; expected tags, priority, description or requires"),
    ],
)
def test_documented_config_errors_are_the_real_ones(tmp_path, toml, message):
    (tmp_path / "hostapp.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_config(cwd=tmp_path, environ={})
    assert str(excinfo.value) == message
    assert f"hostapp: error: {message}\n" in (DOCS / "configuration.md").read_text(encoding="utf-8")


def test_application_hookspec_example_runs(tmp_path):
    shown = labelled("writing-plugins.md")
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("", encoding="utf-8")
    for relative in ("myapp/hookspecs.py", "myapp/main.py"):
        (tmp_path / relative).write_text(shown[relative], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "myapp.main"],
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dict ['GET / -> 200']\n"


def test_call_order_example_prints_what_the_page_says(capsys):
    found = blocks("writing-plugins.md")
    [index] = [i for i, b in enumerate(found) if b.language == "python" and "trylast beats its priority" in b.text]
    exec(compile(found[index].text, f"docs/writing-plugins.md:{found[index].line}", "exec"), {})
    assert capsys.readouterr().out == found[index + 1].text


def slugs(page: str) -> set[str]:
    """GitHub's heading anchors of ``page``."""
    text = FENCE.sub("", (DOCS / page).read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


@pytest.mark.parametrize("page", PAGES)
def test_links_between_pages_resolve(page):
    text = FENCE.sub("", (DOCS / page).read_text(encoding="utf-8"))
    for target, anchor in re.findall(r"\]\(([\w./-]*?)(?:#([\w-]+))?\)", text):
        if target.startswith(("http:", "https:")):
            continue
        linked = (DOCS / target) if target else (DOCS / page)
        assert linked.exists(), f"{page}: link to missing {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in slugs(linked.relative_to(DOCS).as_posix()), f"{page}: no #{anchor} in {target or page}"


def printed_columns(args: list[str], cwd: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "hostapp", *args],
        cwd=cwd,
        env=clean_env(XDG_CACHE_HOME=str(cwd / "cache")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in header.strip("┃").split("┃")]


def test_cli_md_names_the_printed_columns(tmp_path):
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| ([^|`]+?) \| ", text.split("The columns:", 1)[1].split("\n\n", 2)[1], re.M)
    assert documented[1:] == printed_columns(["plugins", "--all"], tmp_path)  # [0] is the header "column"
    hooks_header = printed_columns(["hooks"], tmp_path)
    assert all(f"┃ {name}" in text for name in hooks_header), hooks_header
