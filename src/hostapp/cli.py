"""The ``hostapp`` command (click + rich).

Exit statuses (``docs/cli.md``): 0 success; 1 a hostapp error (a plugin failed in strict
mode, a required hook is missing where one is needed); 2 a usage error or an invalid
configuration (one line on stderr naming the file and key).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from hostapp._version import __version__
from hostapp.errors import ConfigError, HostappError

if TYPE_CHECKING:
    from hostapp.config import Config
    from hostapp.manager import PluginManager

__all__ = ["cli", "main"]


class HostappCliError(click.ClickException):
    """A one-line error for the user, printed as ``hostapp: error: ...``.

    Args:
        message: the line to print.
        exit_code: 2 for configuration and usage errors, 1 otherwise.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"hostapp: error: {self.format_message()}", err=True)


def _warn(message: str) -> None:
    click.echo(f"hostapp: warning: {message}", err=True)


def _output_options(function: Any) -> Any:
    """``--json`` (one JSON document: an array) and ``--jsonl`` (one object per line), the
    output convention of every listing command; the choice arrives as ``fmt``
    (``"json"``, ``"jsonl"`` or ``None`` for a table)."""
    function = click.option("--jsonl", "fmt", flag_value="jsonl", help="One JSON object per line (streams).")(function)
    return click.option("--json", "fmt", flag_value="json", help="One JSON document: an array of objects.")(function)


def _print_json(rows: Any, fmt: str | None) -> bool:
    """Print ``rows`` as ``fmt`` asks (see :func:`_output_options`); ``False`` for a table.

    ``rows`` may be any iterable: with ``--jsonl`` each row is printed as it comes, and
    with ``--json`` the array is written element by element, so neither holds the rows
    in memory.
    """
    if fmt is None:
        return False
    import orjson

    out = click.get_binary_stream("stdout")

    def encode(row: Any, option: int) -> bytes:
        try:
            return orjson.dumps(row, default=repr, option=option)
        except TypeError:  # what orjson refuses (an int beyond 64 bits, a non-str key): the stdlib
            return json.dumps(row, default=repr, indent=2 if option else None).encode()

    if fmt == "jsonl":
        for row in rows:
            out.write(encode(row, 0) + b"\n")
        out.flush()
        return True
    first = True
    for row in rows:
        out.write((b"[\n  " if first else b",\n  ") + encode(row, orjson.OPT_INDENT_2).replace(b"\n", b"\n  "))
        first = False
    out.write(b"[]\n" if first else b"\n]\n")
    out.flush()
    return True


def _route_warnings() -> None:
    """Print hostapp's logged warnings (a plugin raising in an isolated hook, ...) to
    stderr as ``hostapp: warning: ...`` lines, never on stdout (``--json`` stays clean)."""
    import logging

    logger = logging.getLogger("hostapp")
    if not any(getattr(h, "_hostapp_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hostapp: %(levelname)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        handler._hostapp_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")


@dataclass
class _State:
    """What the group's options set up, shared by every subcommand (``ctx.obj``)."""

    config_path: str | None = None
    strict: bool = False
    no_cache: bool = False
    disable: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()
    no_builtins: bool = False
    _config: Config | None = None
    _pm: PluginManager | None = None
    warned: set[str] = field(default_factory=set)

    def config(self) -> Config:
        """The configuration, with this invocation's switches (``--disable``, ``--enable``,
        ``--no-builtins``) applied; unknown keys are warned about, and are an error
        (exit status 2) under ``--strict``."""
        if self._config is None:
            from hostapp.config import ConfigWarning, load_config

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConfigWarning)
                try:
                    config = load_config(self.config_path)
                except ConfigError as exc:
                    raise HostappCliError(str(exc), exit_code=2) from None
            config = self._switched(config)
            if config.warnings and (self.strict or config.strict):
                raise HostappCliError(f"{config.warnings[0]} (strict mode)", exit_code=2)
            for message in config.warnings:
                _warn(message)
            self._config = config
        return self._config

    def _switched(self, config: Config) -> Config:
        import dataclasses

        data, origins = dict(config.data), dict(config.origins)
        if self.disable:
            data["plugins.disable"] = [*data["plugins.disable"], *self.disable]
            origins["plugins.disable"] = "--disable / -p no:NAME"
        if self.enable:
            data["plugins.force"] = [*data["plugins.force"], *self.enable]
            origins["plugins.force"] = "--enable / -p NAME"
        if self.no_builtins:
            data["plugins.builtins"] = False
            origins["plugins.builtins"] = "--no-builtins"
        if data == config.data:
            return config
        return dataclasses.replace(config, data=data, origins=origins)

    def plugin_manager(self, *, strict: bool | None = None) -> PluginManager:
        """Load every plugin once per command, as a run would before it starts anything:
        discovery, filters, import, registration and ``hostapp_configure`` (a plugin
        failing there is failed and withdrawn: it contributes nothing).

        Args:
            strict: stop at the first plugin that fails (default: ``--strict`` or
                ``plugins.strict``); ``hostapp plugins`` loads them all and judges after.
        """
        if self._pm is None:
            import dataclasses

            from hostapp.errors import PluginLoadError
            from hostapp.manager import PluginManager

            config = self.config()
            options = config.discovery_options()
            if self.no_cache:
                options = dataclasses.replace(options, use_cache=False)
            pm = PluginManager()
            if strict is None:
                strict = self.strict or config.strict
            try:
                pm.load(config, options=options, strict=strict)
                failed = pm.configure(config)
            except PluginLoadError as exc:
                raise HostappCliError(str(exc), exit_code=1) from None
            except ConfigError as exc:
                raise HostappCliError(str(exc), exit_code=2) from None
            if strict and failed:
                info = failed[0]
                raise HostappCliError(
                    f"plugin {info.name!r} from {info.provenance} failed at configure: {info.error} (strict mode)",
                    exit_code=1,
                )
            self._pm = pm
        return self._pm


class _HostappGroup(click.Group):
    """The ``hostapp`` group: built-in commands plus those plugins contribute.

    Running a plugin's command loads the plugins as every command does. *Listing* the
    commands (``hostapp --help``) imports only installed distributions' plugins, with the
    default configuration: no plugin folder or module that the working directory's
    configuration names runs for a listing (:func:`_listing_plugin_manager`).
    """

    def _plugin_commands(self, ctx: click.Context, *, listing: bool = False) -> dict[str, click.Command]:
        state: _State = ctx.ensure_object(_State)
        slot = "hostapp.listed_commands" if listing else "hostapp.plugin_commands"
        cached = ctx.meta.get(slot)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        commands: dict[str, click.Command] = {}
        try:
            pm = _listing_plugin_manager() if listing else state.plugin_manager()
        except HostappCliError:
            ctx.meta[slot] = commands
            raise
        for contribution in pm.collect("hostapp_cli_commands", on_conflict="report"):
            spec = contribution.spec
            if spec.name in self.commands:
                _warn(
                    f"{contribution.describe()} adds command {spec.name!r}, "
                    "which is a built-in command; skipped"
                )
                continue
            command = spec.command
            command.name = spec.name
            if spec.summary and not command.short_help:
                command.short_help = spec.summary
            commands[spec.name] = command
        ctx.meta[slot] = commands
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        try:
            names.update(self._plugin_commands(ctx, listing=True))
        except HostappCliError:
            pass
        return sorted(names)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing of the commands, taking the plugins' from the listing (click's
        own would load every plugin through :meth:`get_command`)."""
        try:
            listed = self._plugin_commands(ctx, listing=True)
        except HostappCliError:
            listed = {}
        commands = [
            (name, command) for name in self.list_commands(ctx)
            if (command := self.commands.get(name) or listed.get(name)) is not None and not command.hidden
        ]
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self._plugin_commands(ctx).get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise HostappCliError(str(exc), exit_code=2) from None
        except HostappError as exc:
            raise HostappCliError(str(exc), exit_code=1) from None


def _listing_plugin_manager() -> PluginManager:
    """The plugins ``hostapp --help`` lists commands of: installed distributions' entry
    points only, with the default configuration (the environment's ``HOSTAPP_*`` filters
    apply; ``plugins.paths`` and ``plugins.modules`` of the working directory's
    configuration do not)."""
    import dataclasses

    from hostapp.config import Config
    from hostapp.manager import PluginManager

    config = Config.from_dict({}, source="<defaults>", environ={
        k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or "__" not in k
    })
    options = dataclasses.replace(config.discovery_options(), paths=(), modules=())
    pm = PluginManager()
    try:
        pm.load(config, options=options)
    except ConfigError as exc:
        raise HostappCliError(str(exc), exit_code=2) from None
    return pm




def _environment_help() -> str:
    """The ``Environment:`` section of ``hostapp --help`` (from :data:`hostapp.config.ENVIRONMENT`)."""
    from hostapp.config import ENVIRONMENT

    rows = [*ENVIRONMENT.items(), ("HOSTAPP_<SECTION>__<KEY>", "Override one configuration key ('hostapp config' lists them).")]
    import textwrap

    width = max(len(name) for name, _ in rows) + 2
    lines = []
    for name, text in rows:  # wrapped here: click leaves a \b paragraph as it is
        wrapped = textwrap.wrap(text, width=max(30, 78 - width - 2))
        lines.append(f"  {name.ljust(width)}{wrapped[0]}")
        lines += [" " * (width + 2) + more for more in wrapped[1:]]
    return "\b\nEnvironment:\n" + "\n".join(lines)


def _plugin_switch(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """``-p no:NAME`` (as pytest's) disables NAME, ``-p NAME`` enables it."""
    state = ctx.ensure_object(_State)
    for value in values:
        if value.startswith("no:"):
            state.disable += (value[3:],)
        else:
            state.enable += (value,)
    return values


@click.group(
    cls=_HostappGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_environment_help(),
)
@click.version_option(__version__, "--version", "-V", prog_name="hostapp")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Configuration file (default: hostapp.toml, else [tool.hostapp] in pyproject.toml; env HOSTAPP_CONFIG).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Any plugin failure is fatal, and so are unknown keys (for plugin development; env HOSTAPP_STRICT=1).",
)
@click.option("-p", "plugin_switches", multiple=True, metavar="[no:]NAME", callback=_plugin_switch,
              expose_value=False, help="pytest's switch: -p no:NAME disables plugin NAME, -p NAME enables it (repeatable).")
@click.option("--disable", multiple=True, metavar="NAME",
              help="Plugin NAME (a name or pattern) does not load, for this command (repeatable).")
@click.option("--enable", multiple=True, metavar="NAME",
              help="Plugin NAME loads even where a filter or autoload = false leaves it out (repeatable).")
@click.option("--no-builtins", is_flag=True, help="Without hostapp's built-in plugins (the sqlite store sink, the HTTP processors...).")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, strict: bool, disable: tuple[str, ...], enable: tuple[str, ...],
    no_builtins: bool,
) -> None:
    """hostapp: a plugin host for Python applications, built on pluggy."""
    _route_warnings()
    state = ctx.ensure_object(_State)
    state.config_path = config_path
    state.strict = strict
    state.disable += disable
    state.enable += enable
    state.no_builtins = no_builtins


@cli.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Also list hostapp's built-in plugins and shadowed candidates.")
@click.option("--hook", "hook_name", metavar="NAME", help="Only plugins implementing hook NAME.")
@_output_options
@click.option("--no-cache", is_flag=True, help="Bypass the entry-point index cache (env HOSTAPP_NO_CACHE=1).")
@click.pass_obj
def plugins_command(state: _State, show_all: bool, hook_name: str | None, fmt: str | None, no_cache: bool) -> None:
    """List every plugin candidate: state, source, distribution, priority, tags, hooks.

    Runs what a run does before it starts anything: discovery, filters, import,
    registration and hostapp_configure (a plugin failing there contributes nothing), then
    checks the sink and component settings. Filtered plugins show the rule that removed
    them, failed ones the stage and error. Exit status 0 even when plugins failed; with
    --strict, 1. A setting a run would refuse exits 2.
    """
    from hostapp.checks import check

    state.no_cache = no_cache
    pm = state.plugin_manager(strict=False)
    if hook_name is not None and getattr(getattr(pm.hook, hook_name, None), "spec", None) is None:
        raise HostappCliError(f"no hook named {hook_name!r}; see 'hostapp hooks'", exit_code=2)
    problems = check(pm, state.config())
    rows = pm.plugin_rows(show_all=show_all, hook=hook_name)
    missing = pm.missing_required()
    if not _print_json(rows, fmt):
        _print_plugins(rows)
    for name in missing:
        _warn(f"required hook {name!r} has no implementation")
    _judge(state, pm, problems)


def _judge(state: _State, pm: PluginManager, problems: list[Any]) -> None:
    """Print the problems :func:`hostapp.checks.check` found and end as a run would:
    exit 2 for a setting a run refuses (and, under --strict, for a warning); under
    --strict exit 1 when a plugin failed."""
    from hostapp.lifecycle import PluginState

    strict = state.strict or state.config().strict
    for problem in problems:
        if problem.level == "warning" and not strict:
            _warn(problem.message)
    errors = [p for p in problems if p.level == "error" or strict]
    if errors:
        for problem in errors[1:]:
            click.echo(f"hostapp: error: {problem.message}", err=True)
        suffix = " (strict mode)" if errors[0].level == "warning" else ""
        raise HostappCliError(errors[0].message + suffix, exit_code=2)
    failed = [info for info in pm.infos.values() if info.state is PluginState.FAILED]
    if strict and failed:
        raise HostappCliError(
            f"{len(failed)} plugin(s) failed: " + "; ".join(f"{i.name!r} at {i.stage}: {i.error}" for i in failed)
            + " (strict mode)", exit_code=1,
        )


def _console() -> Any:
    """A rich console; when stdout is not a terminal (a pipe, a file) and ``COLUMNS`` is
    unset, 160 columns instead of rich's 80, so piped tables keep whole lines."""
    import os

    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=160)
    return console


def _print_plugins(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    console = _console()
    if not rows:
        console.print("No plugins found. ('hostapp plugins --all' also lists the built-in ones.)")
        return
    from hostapp.hookspecs import REGISTRATION_HOOKS

    table = Table(show_lines=False, header_style="bold")
    for column in ("Name", "State", "Source", "Distribution"):
        table.add_column(column, no_wrap=True)
    table.add_column("Prio", justify="right", no_wrap=True)
    table.add_column("Tags", overflow="fold")
    table.add_column("Provides / detail", overflow="fold", ratio=1, min_width=20)
    colours = {"registered": "green", "started": "green", "failed": "red", "filtered": "yellow",
               "not_applicable": "yellow"}
    for row in rows:
        if row["distribution"]:
            dist = f"{row['distribution']} {row['version']}"
        else:
            dist = ""
        if row["state"] == "failed":
            detail = f"{row['stage']}: {row['error']}"
        elif row["state"] == "filtered":
            detail = f"filtered by {row['rule']}"
        elif row["state"] == "not_applicable":
            detail = f"not applicable: {row['rule']}"
        elif row["state"] == "shadowed":
            detail = f"shadowed by {row['shadowed_by']}"
        else:
            parts = [f"{k}: {', '.join(v)}" for k, v in row["provides"].items()]
            parts += [h.removeprefix("hostapp_") for h in row["hooks"] if h not in REGISTRATION_HOOKS]
            detail = "; ".join(parts) or (row["location"] or "")
        for err in row["hook_errors"]:
            detail += f"\n[red]{err['hook']}: {err['error']}[/red]"
        state = row["state"]
        table.add_row(
            row["name"],
            f"[{colours.get(state, 'white')}]{state}[/]",
            row["source"],
            dist,
            str(row["priority"]),
            ", ".join(row["tags"]),
            detail,
        )
    console.print(table)


@cli.command("config")
@_output_options
@click.option("--no-plugins", is_flag=True, help="Only the configuration: load no plugin, check no sink.")
@click.pass_obj
def config_command(state: _State, fmt: str | None, no_plugins: bool) -> None:
    """Show the effective configuration: every key's value and where it comes from.

    The origin is the file and line (hostapp.toml:12), the environment variable, the
    command-line switch, or "default". The sinks that would run are listed with the
    settings the event bus would give them. Loads the plugins and runs hostapp_configure
    (as 'hostapp plugins' does) to check the sink and component settings: unknown keys
    and names are warnings (errors under --strict); a setting a run would refuse exits 2.
    """
    config = state.config()
    rows = [{"key": key, "value": value, "origin": config.origin(key)} for key, value in _config_rows(config)]
    problems: list[Any] = []
    pm = None
    if not no_plugins:
        from hostapp.checks import check, sink_settings

        pm = state.plugin_manager(strict=False)
        problems = check(pm, config)
        for contribution in pm.collect("hostapp_event_sinks", on_conflict="report"):
            try:
                rows += [{"key": k, "value": v, "origin": o} for k, v, o in sink_settings(contribution, config)]
            except ConfigError:
                pass  # reported by check()
    if not _print_json(rows, fmt):
        from rich.table import Table
        from rich.markup import escape

        table = Table(header_style="bold", title=f"configuration: {config.source}")
        for column in ("Key", "Value", "Origin"):
            table.add_column(column, overflow="fold", no_wrap=column == "Key")
        for row in rows:
            value = "not set" if row["value"] is None else json.dumps(row["value"], default=repr)
            origin = row["origin"]
            table.add_row(row["key"], escape(value), origin if origin != "default" else "[dim]default[/]")
        _console().print(table)
    if pm is not None:
        _judge(state, pm, problems)


def _config_rows(config: Config) -> list[tuple[str, Any]]:
    """Every key of the schema by dotted name; a table of tables as one row per key
    inside it (``events.sinks.acme.path``), or per table when it is empty."""
    from hostapp.config import SCHEMA

    out: list[tuple[str, Any]] = []
    for key, spec in SCHEMA.items():
        value = config.get(key)
        if spec.type != "tables" or not value:
            out.append((key, value))
            continue
        for name, table in value.items():
            if not table:
                out.append((f"{key}.{name}", {}))
            for item, item_value in table.items():
                out.append((f"{key}.{name}.{item}", item_value))
    return out


@cli.command("entrypoints")
@click.option("--project", "project_dir", metavar="DIR", default=".", show_default=True,
              help="The project directory, where pyproject.toml is.")
@click.option("--source", "sources", metavar="DIR", multiple=True,
              help="A source root to scan (repeatable; default: src/ when there is one, else the project directory).")
@click.option("--write", is_flag=True, help="Write the table into pyproject.toml (idempotent).")
@click.option("--check", is_flag=True, help="Exit 1 with a diff when pyproject.toml's table is out of date (for CI).")
def entrypoints_command(project_dir: str, sources: tuple[str, ...], write: bool, check: bool) -> None:
    """Find the plugins of a source tree and print its [project.entry-points.hostapp] table.

    Build-time discovery (plux's 'plux entrypoints'): every module with @hostapp.hookimpl
    functions, and every class with @hookimpl methods, is read with ast (nothing is
    imported). Names already in the table are kept; new plugins are named after their
    module. --write puts the table into pyproject.toml, --check exits 1 with a diff when
    it is out of date. Loads no plugin.
    """
    import difflib
    import tomllib
    from pathlib import Path

    from hostapp.entrypoints import rewrite, scan, source_roots, table

    if write and check:
        raise HostappCliError("--write and --check cannot be used together", exit_code=2)
    project = Path(project_dir)
    pyproject = project / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
        current = tomllib.loads(text).get("project", {}).get("entry-points", {}).get("hostapp", {})
    except FileNotFoundError:
        raise HostappCliError(f"{pyproject}: not found (--project names the directory of pyproject.toml)", 2) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HostappCliError(f"{pyproject}: {exc}", exit_code=2) from None
    roots = [project / s for s in sources] if sources else source_roots(project)
    try:
        entries = table(scan(project, roots), current, roots)
    except (SyntaxError, ValueError) as exc:
        raise HostappCliError(f"hostapp entrypoints: {exc}", exit_code=1) from None
    updated = text if entries == current else rewrite(text, entries)
    if current and updated != text and tomllib.loads(updated).get("project", {}).get("entry-points", {}).get(
        "hostapp"
    ) != entries:
        raise HostappCliError(
            f"{pyproject}: write the table as a [project.entry-points.hostapp] section so that "
            "'hostapp entrypoints' can keep it", exit_code=2,
        )
    if check:
        if updated != text:
            click.echo("".join(difflib.unified_diff(
                text.splitlines(keepends=True), updated.splitlines(keepends=True),
                fromfile=f"{pyproject}", tofile=f"{pyproject} (hostapp entrypoints)",
            )), nl=False)
            raise HostappCliError(
                f"{pyproject}: [project.entry-points.hostapp] is out of date; run 'hostapp entrypoints --write'",
            )
        click.echo(f"{pyproject}: [project.entry-points.hostapp] is up to date ({len(entries)} entry points)")
        return
    if write:
        if updated == text:
            click.echo(f"{pyproject}: up to date ({len(entries)} entry points)")
        else:
            pyproject.write_text(updated, encoding="utf-8")
            click.echo(f"{pyproject}: {len(entries)} entry points written")
        return
    from hostapp.entrypoints import render

    click.echo(render(entries), nl=False)


@cli.command("hooks")
@_output_options
@click.pass_obj
def hooks_command(state: _State, fmt: str | None) -> None:
    """List every hookspec with its implementations in call order."""
    pm = state.plugin_manager()
    rows = pm.hook_table()
    if _print_json(rows, fmt):
        return
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("Hook", no_wrap=True)
    for column in ("Kind", "Options", "Implementations (call order)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        options = [k for k in ("firstresult", "historic", "required", "isolate") if row[k]]
        impls = []
        for impl in row["implementations"]:
            flags = [k for k in ("tryfirst", "trylast", "wrapper", "async") if impl[k]]
            impls.append(impl["plugin"] + (f" ({', '.join(flags)})" if flags else ""))
        kind = row["kind"] + (f" -> {row['spec_type']}" if row["spec_type"] else "")
        table.add_row(row["name"], kind, ", ".join(options), "\n".join(impls) or "-")
    _console().print(table)


@cli.command("routes")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def routes_command(state: _State, as_json: bool) -> None:
    """List the HTTP routes plugins contribute (hostapp_routes), as 'hostapp serve' mounts them.

    Exit status 1 when some would be refused (a path claimed twice, a path under hostapp's
    own); each is named on stderr.
    """
    from hostapp.serve.routes import collect_routes, route_rows

    kept, problems = collect_routes(state.plugin_manager(), on_conflict="report")
    rows = route_rows(kept)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("No routes. (Plugins add them with the hostapp_routes hook; see docs/serve.md.)")
    else:
        from rich.table import Table

        table = Table(header_style="bold")
        for column in ("Path", "Methods", "Kind", "Name", "Plugin", "Endpoint"):
            table.add_column(column, overflow="fold", no_wrap=column in ("Path", "Kind"))
        for row in rows:
            table.add_row(row["path"], ", ".join(row["methods"]) or "*", row["kind"], row["name"],
                          row["plugin"], row["endpoint"])
        _console().print(table)
    for problem in problems:
        _warn(f"refused: {problem}")
    if problems:
        raise SystemExit(1)


# -- the store: runs, events, dead letters, sinks -------------------------------------------

_db_option = click.option(
    "--db",
    "db_path",
    metavar="PATH",
    help="The SQLite store (default: store.path, .hostapp/hostapp.sqlite3).",
)


def _open_store(state: _State, db_path: str | None, *, must_exist: bool = True) -> Any:
    """Open the store, or ``None`` when it does not exist yet (a note goes to stderr)."""
    from pathlib import Path

    from hostapp.store import Store, resolve_store_path

    path = Path(db_path) if db_path else resolve_store_path(state.config())
    if must_exist and not path.exists():
        _warn(f"no store at {path} yet; events are stored by a running host ('hostapp run', 'with Host(...)')")
        return None
    return Store(path)


def _note_crashed(store: Any, run_id: str | None) -> None:
    """A warning on stderr when run ``run_id`` crashed (never recorded as ended, its process gone)."""
    run = store.run(run_id) if run_id else None
    if run is not None and run.state == "crashed":
        _warn(f"run {run.id} crashed: it was never recorded as ended and its process {run.pid} is gone")


def _when(ns: int | None) -> str:
    from hostapp.timeline import when

    return when(ns)


@cli.command("runs")
@_db_option
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Most recent runs to show (0 = all).")
@_output_options
@click.pass_obj
def runs_command(state: _State, db_path: str | None, limit: int, fmt: str | None) -> None:
    """List the recorded runs, newest first: id, start, duration, exit status, events, command."""
    store = _open_store(state, db_path)
    if store is None:
        if fmt == "json":
            click.echo("[]")
        return
    with store:
        runs = store.runs(limit or None)
        rows = []
        for run in runs:
            row = run.to_dict()
            row["events"] = store.count_events(run_id=run.id)
            rows.append(row)
    if _print_json(rows, fmt):
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for column in ("Run", "Started", "Duration", "Exit", "Events", "Command"):
        table.add_column(column, overflow="fold", no_wrap=column in ("Run", "Started"))
    for run, row in zip(runs, rows):
        duration = "" if row["ended_ns"] is None else f"{(row['ended_ns'] - row['started_ns']) / 1e9:.2f} s"
        exit_status = run.status_text()
        if exit_status == "crashed":
            exit_status = "[red]crashed[/]"
        table.add_row(row["id"], _when(row["started_ns"]), duration, exit_status, str(row["events"]), row["command"] or "")
    _console().print(table)


@cli.group("events", invoke_without_command=True)
@_db_option
@click.option("--run", "run_id", metavar="ID", help="Only this run's events (its id, or a unique prefix of it).")
@click.option("--last", is_flag=True, help="Only the most recent run's events.")
@click.option("-n", "nth", type=click.IntRange(min=1), metavar="N", help="Only the Nth most recent run's (-n 1 is --last).")
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Only these event types (names or globs; repeatable).")
@click.option("--library", "libraries", multiple=True, metavar="LIB",
              help="Only these libraries, the event's subtype: requests, httpx, huey... (repeatable).")
@click.option("--subtype", "subtypes", multiple=True, metavar="SUBTYPE", hidden=True)
@click.option("--status", metavar="SPEC", help="HTTP status: 404, 5xx, >=400, <300, 200-299.")
@click.option("--url", metavar="TEXT", help="The URL contains TEXT, or matches it whole as a glob (with * ? [).")
@click.option("--min-duration", metavar="DURATION", help="At least this long: 100ms, 1.5s, 250us.")
@click.option("--since", metavar="WHEN", help="Since a duration ago (30s, 15m, 2h, 7d) or an ISO 8601 time.")
@click.option("--until", metavar="WHEN", help="Before a duration ago or an ISO 8601 time.")
@click.option("--grep", metavar="TEXT", help="TEXT appears in the event's subtype or data (as JSON).")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="The newest N (default: 50 in a table, all with --json/--jsonl; 0 = all).")
@_output_options
@click.option("--follow", "-f", is_flag=True,
              help="Then go on showing the run's events as they arrive, until it ends (Ctrl-C stops).")
@click.option("--dead-letters", is_flag=True, help="List the dead letters (events a sink could not take) instead.")
@click.option("--all", "show_all", is_flag=True, hidden=True)
@click.pass_context
def events_command(
    ctx: click.Context,
    db_path: str | None,
    run_id: str | None,
    last: bool,
    nth: int | None,
    types: tuple[str, ...],
    libraries: tuple[str, ...],
    subtypes: tuple[str, ...],
    status: str | None,
    url: str | None,
    min_duration: str | None,
    since: str | None,
    until: str | None,
    grep: str | None,
    limit: int | None,
    fmt: str | None,
    follow: bool,
    dead_letters: bool,
    show_all: bool,
) -> None:
    """Show stored events in time order: every kind, one row per HTTP call.

    Each event is drawn by its plugin's renderer (hostapp_event_renderers): an HTTP call
    as one row (method, URL, status, library), jobs, probe events, monitoring events and
    plugin-defined types alike. Rows are printed as they are read. Without --run/--last/-n,
    every run's events. 'hostapp events show ID' prints one whole; 'hostapp events
    redeliver' sends the dead letters to their sinks again.
    """
    from hostapp import timeline

    if ctx.invoked_subcommand is not None:
        ctx.meta["hostapp.db"] = db_path
        return
    state: _State = ctx.obj
    if sum(bool(x) for x in (run_id, last, nth)) > 1:
        raise HostappCliError("use one of --run, --last and -n", exit_code=2)
    if follow and fmt == "json":
        raise HostappCliError("--follow streams: use --jsonl with it", exit_code=2)
    def parsed(option: str, parse: Any, text: str | None) -> Any:
        try:
            return parse(text) if text else None
        except ValueError as exc:
            raise HostappCliError(f"{option} {exc}", exit_code=2) from None

    query = timeline.Query(
        types=list(types), libraries=[*libraries, *subtypes], url=url, grep=grep,
        since_ns=parsed("--since", timeline.parse_when_ns, since),
        until_ns=parsed("--until", timeline.parse_when_ns, until),
        min_duration_ns=parsed("--min-duration", timeline.parse_duration_ns, min_duration),
    )
    query.status_min, query.status_max = parsed("--status", timeline.parse_status, status) or (None, None)
    store = _open_store(state, db_path)
    if store is None:
        if fmt == "json":
            click.echo("[]")
        return
    with store:
        if dead_letters:
            _print_dead_letters(store, limit, fmt)
            return
        run = _chosen_run(store, run_id, 1 if last else nth, follow)
        if run is False:
            return
        if run is not None:
            _note_crashed(store, run.id)
        query.run_id = run.id if run is not None else None
        effective = limit if limit is not None else (None if fmt else 50)
        events, cut = timeline.select(store, query, effective or None)
        renderers = _renderers(state)
        shown = _print_events(events, renderers, fmt)
        if cut:
            total = "" if query.in_python else f" of {store.count_events(**query.store_filters())}"
            _note(f"showing the newest {effective}{total} events; --limit N for more (0 = all)")
        if follow:
            last_seen = shown[-1] if shown else None
            live_run = run

            def ended() -> bool:
                current = store.run(live_run.id) if live_run is not None else None
                return current is None or current.ended_ns is not None or not current.is_live

            try:
                more = _print_events(
                    timeline.follow(store, query, store.cursor(last_seen) if last_seen else None, until=ended),
                    renderers, fmt, header=not shown,
                )
            except KeyboardInterrupt:
                more = []
            shown = shown + more
        if not shown:
            _note(timeline.why_empty(store, query, run))


def _note(message: str) -> None:
    click.echo(f"hostapp: note: {message}", err=True)


def _chosen_run(store: Any, run_id: str | None, nth: int | None, follow: bool) -> Any:
    """The run ``--run`` (a unique id prefix), ``--last`` / ``-n N`` or ``--follow`` (the
    last run) names; ``None`` for every run; ``False`` when there is no run at all."""
    from hostapp.timeline import resolve_run

    if run_id:
        try:
            return resolve_run(store, run_id)
        except LookupError as exc:
            raise HostappCliError(str(exc), exit_code=2) from None
    if nth is None and not follow:
        return None
    runs = store.runs(nth or 1)
    if len(runs) < (nth or 1):
        _note("no runs recorded yet" if not runs else f"only {len(runs)} run(s) recorded; -n {nth} names none")
        return False
    return runs[-1]


def _renderers(state: _State) -> Any:
    from hostapp.render import Renderers

    return Renderers(state.plugin_manager().collect("hostapp_event_renderers", on_conflict="report"))


def _print_events(events: Any, renderers: Any, fmt: str | None, *, header: bool = True) -> list[Any]:
    """Print ``events`` as they come (a table's rows, or JSON); return the last one in a
    list (what ``--follow`` goes on from), or ``[]`` when there was none."""
    last: list[Any] = []

    def counted() -> Iterator[Any]:
        for event in events:
            last[:] = [event]
            yield event

    if fmt is not None:
        _print_json((e.to_dict() for e in counted()), fmt)
        return last
    import os
    import shutil

    from hostapp.timeline import KIND_WIDTH, row

    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 160))
    cwd = os.getcwd()
    for event in counted():
        if header:
            click.echo(f"{'Time':<23}  {'Kind':<{KIND_WIDTH}} {'Duration':>9}  Event")
            header = False
        click.echo(row(event, renderers, width, cwd=cwd))
    return last


@events_command.command("show")
@click.argument("event_id")
@_output_options
@click.pass_context
def show_command(ctx: click.Context, event_id: str, fmt: str | None) -> None:
    """Print one event whole: an HTTP call with its request and response side by side
    (headers, bodies) and the calls made inside it; any other event with every field.

    EVENT_ID is the event's id or a unique prefix of it (--jsonl prints ids).
    """
    from hostapp.events.calls import RESPONSE, join_calls

    state: _State = ctx.obj
    store = _open_store(state, ctx.parent.meta.get("hostapp.db") if ctx.parent else None)
    if store is None:
        return
    with store:
        found = store.find_events(event_id, limit=2)
        if not found:
            raise HostappCliError(f"no event with an id starting {event_id!r}", exit_code=2)
        if len(found) > 1 and found[0].id != event_id:
            raise HostappCliError(f"event id prefix {event_id!r} is ambiguous: {found[0].id}, {found[1].id}, ...", 2)
        event = found[0]
        frame = event.data.get("frame_id")
        if event.type == "outbound_http_request" and frame is not None and "status_code" not in event.data:
            later = store.iter_events(run_id=event.run_id, types=[RESPONSE], since_ns=event.timestamp_ns)
            event = next(join_calls([event, *(e for e in later if e.data.get("frame_id") == frame)]))
        children = []
        span = event.data.get("span_id")
        if span and isinstance(event.data.get("duration_ns"), int):
            window = store.iter_events(run_id=event.run_id, since_ns=event.timestamp_ns,
                                       until_ns=event.timestamp_ns + event.data["duration_ns"] + 1)
            children = [e for e in window if e.id != event.id and e.data.get("parent_span_id") == span]
        if _print_json([event.to_dict()], fmt):
            return
        _print_event_details(event, _renderers(state), children)


def _print_event_details(event: Any, renderers: Any, children: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from hostapp import timeline

    console = _console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in timeline.details(event, renderers, children):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            text = "\n".join(value) if name == "nested" else ", ".join(value)
        else:
            text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=repr)
        grid.add_row(escape(str(name)), escape(str(text)))
    console.print(grid)
    request, response = event.data.get("request"), event.data.get("response")
    if isinstance(request, dict) or isinstance(response, dict) or "error" in event.data:
        sides = Table(header_style="bold", show_lines=True, expand=True)
        sides.add_column("Request", overflow="fold", ratio=1)
        sides.add_column("Response", overflow="fold", ratio=1)
        sides.add_row(escape(_side(request, event.data.get("method"), event.data.get("url"))),
                      escape(_side(response, event.data.get("status_code"), None, event.data.get("error"))))
        console.print(sides)


def _side(part: Any, first: Any, second: Any, error: Any = None) -> str:
    """One side of an HTTP call: its first line, headers and body."""
    lines = [" ".join(str(x) for x in (first, second) if x is not None)]
    if isinstance(error, dict):
        lines.append(f"raised {error.get('type')}: {error.get('message')}")
    if not isinstance(part, dict):
        return "\n".join(lines + ([] if error else ["(nothing recorded)"]))
    for name, value in (part.get("headers") or {}).items():
        lines.append(f"{name}: {value}")
    body, size = part.get("body"), part.get("body_size")
    lines.append("")
    if body is None:
        lines.append("(no body)" if not size else f"(body not recorded, {size} bytes)")
    else:
        lines.append(str(body) + ("\n… (cut)" if part.get("body_truncated") else ""))
    return "\n".join(lines)


def _print_dead_letters(store: Any, limit: int | None, fmt: str | None) -> None:
    letters = store.dead_letters(limit=limit or None)
    if _print_json((letter.to_dict() for letter in letters), fmt):
        return
    if not letters:
        click.echo("No dead letters.")
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for column in ("Id", "Sink", "Event", "Attempts", "Error", "Since"):
        table.add_column(column, overflow="fold", no_wrap=column in ("Id", "Since"))
    for letter in letters:
        table.add_row(str(letter.id), letter.sink, f"{letter.event.type} {letter.event.id}",
                      str(letter.attempts), letter.error, _when(letter.created_ns))
    _console().print(table)


@events_command.command("redeliver")
@click.option("--sink", metavar="NAME", help="Only this sink's dead letters.")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds for each sink's redelivery.")
@_output_options
@click.pass_context
def redeliver_command(ctx: click.Context, sink: str | None, timeout: float, fmt: str | None) -> None:
    """Send the dead letters to their sinks again; delivered ones are deleted.

    Exit status 1 when some could not be delivered (they stay dead letters).
    """
    from hostapp.events import redeliver

    state: _State = ctx.obj
    store = _open_store(state, ctx.parent.meta.get("hostapp.db") if ctx.parent else None)
    if store is None:
        return
    pm = state.plugin_manager()
    sinks = pm.collect("hostapp_event_sinks", on_conflict="report")
    with store:
        results = redeliver(store, sinks, state.config(), sink, timeout=timeout)
    if _print_json([{"sink": name, **result} for name, result in sorted(results.items())], fmt):
        pass
    elif not results:
        click.echo("No dead letters to redeliver.")
    else:
        for name, result in sorted(results.items()):
            line = f"{name}: {result.get('redelivered', 0)} redelivered, {result.get('failed', 0)} still failing"
            if result.get("error"):
                line += f" ({result['error']})"
            click.echo(line)
    if any(r.get("failed") or r.get("error") for r in results.values()):
        ctx.exit(1)


@cli.command("sinks")
@_db_option
@_output_options
@click.pass_obj
def sinks_command(state: _State, db_path: str | None, fmt: str | None) -> None:
    """List the event sinks: who provides them, whether they are enabled, what they accept,
    their counters in the last run and their pending dead letters."""
    from hostapp.events.worker import sink_table

    pm = state.plugin_manager()
    config = state.config()
    tables = config.get("events.sinks") or {}
    last_counters: dict[str, Any] = {}
    pending: dict[str, int] = {}
    last_run_id = None
    store = _open_store(state, db_path)
    if store is not None:
        with store:
            latest = store.last_run()
            if latest is not None:
                last_run_id = latest.id
                last_counters = (latest.summary or {}).get("sinks", {})
            pending = store.dead_letter_counts()
    rows = []
    for contribution in pm.collect("hostapp_event_sinks", on_conflict="report"):
        spec = contribution.spec
        rows.append({
            "name": spec.name,
            "plugin": contribution.plugin,
            "distribution": contribution.distribution,
            "version": contribution.version,
            "enabled": sink_table(spec, tables) is not None,
            "event_types": list(spec.event_types),
            "description": spec.description,
            "last_run": last_run_id,
            "counters": last_counters.get(spec.name),
            "dead_letters": pending.get(spec.name, 0),
        })
    if _print_json(rows, fmt):
        return
    from rich.table import Table

    counter_names = ("accepted", "delivered", "retried", "failed", "dead_lettered", "dropped")
    table = Table(header_style="bold", title=f"last run: {last_run_id}" if last_run_id else None)
    for column in ("Sink", "Enabled", "Plugin", "Accepts", *counter_names, "Dead letters"):
        table.add_column(column, no_wrap=column in ("Sink", "Plugin"))
    for row in rows:
        counters = row["counters"] or {}
        table.add_row(
            row["name"], "yes" if row["enabled"] else "no", row["plugin"], ", ".join(row["event_types"]),
            *(str(counters.get(k, "")) for k in counter_names), str(row["dead_letters"]),
        )
    _console().print(table)


@cli.command("components")
@_db_option
@click.option("--dry-run", is_flag=True, help="Build, check and close every component now, whatever the store holds.")
@_output_options
@click.pass_obj
def components_command(state: _State, db_path: str | None, dry_run: bool, fmt: str | None) -> None:
    """Show the components ([components.NAME]): driver, load, state, error and health.

    From the store: what a running host last reported (or, when none runs, the last run
    that had components). When the store has no report, or with --dry-run: a dry build
    (each component built, connected, validated, checked and closed now). Exit status 0
    even when components are unavailable; 2 for a configuration error.
    """
    from hostapp.drivers import component_rows

    from pathlib import Path

    from hostapp.store import Store, resolve_store_path

    config = state.config()
    path = Path(db_path) if db_path else resolve_store_path(config)
    if dry_run or not path.exists():
        rows, title = component_rows(config, state.plugin_manager, None)
    else:
        with Store(path) as store:
            rows, title = component_rows(config, state.plugin_manager, store)
    if _print_json(rows, fmt):
        return
    from rich.table import Table

    if not rows:
        click.echo("No components configured ([components.NAME] in the configuration).")
        return
    table = Table(header_style="bold", title=title)
    for column in ("Component", "Driver", "Load", "State", "Error", "Health"):
        table.add_column(column, overflow="fold", no_wrap=column in ("Component", "Load", "State"))
    colours = {"available": "green", "unavailable": "red", "closed": "white", "disabled": "yellow"}
    for row in rows:
        health = row.get("health") or {}
        shown = "" if not health else ("ok" if health.get("ok") else f"failing: {health.get('error')}")
        if health.get("ok") and health.get("detail") is not None:
            shown += f" {json.dumps(health['detail'], default=repr)}"
        error = " ".join((row.get("error") or "").split())
        table.add_row(row["name"], row["driver"], row["load"],
                      f"[{colours.get(row['state'], 'white')}]{row['state']}[/]", error, shown)
    _console().print(table)


@cli.command("tasks")
@_db_option
@click.option("--dry-run", is_flag=True, help="List the tasks the plugins contribute; do not read the store.")
@_output_options
@click.pass_obj
def tasks_command(state: _State, db_path: str | None, dry_run: bool, fmt: str | None) -> None:
    """List the background tasks: state, runs, failures, restarts and the last error.

    From the live run's reports in the store (a host running now), else from the last run
    that reported tasks; with none, or with --dry-run, the tasks the plugins contribute,
    "not started".
    """
    from hostapp.tasks import dry_task_rows, stored_task_rows

    run, live, rows = None, False, []
    store = None if dry_run else _open_store(state, db_path)
    if store is not None:
        with store:
            run, live, rows = stored_task_rows(store)
    if not rows:
        rows = dry_task_rows(state.plugin_manager().collect("hostapp_background_tasks", on_conflict="report"))
    if _print_json(rows, fmt):
        return
    from rich.table import Table

    if run is None:
        title = "not started (a dry listing of the contributed tasks)"
    elif live:
        title = f"run {run.id} (live, pid {run.pid})"
    elif run.ended_ns is None:
        title = f"run {run.id} (crashed: not ended and its process is gone; started {_when(run.started_ns)})"
    else:
        title = f"run {run.id} (ended {_when(run.ended_ns)})"
    table = Table(header_style="bold", title=title)
    for column in ("Task", "Plugin", "Kind", "Restart", "Interval", "Stop timeout", "State", "Runs",
                   "Failures", "Restarts", "Skipped", "Last error"):
        table.add_column(column, no_wrap=column in ("Task", "Plugin", "State"), overflow="fold")
    for row in rows:
        interval = row.get("interval")
        table.add_row(
            row["name"], str(row.get("plugin", "")), str(row.get("kind", "")), str(row.get("restart", "")),
            "" if interval is None else f"{interval:g} s", f"{row.get('stop_timeout', 0):g} s", row["state"],
            *(str(row.get(k, "")) for k in ("runs", "failures", "restarts", "skipped")),
            row.get("last_error") or "",
        )
    _console().print(table)


def _host_config(state: _State, config_path: str | None, db_path: str | None) -> Config:
    """The configuration of a command that runs a host: its own ``--config`` (as the
    group's), ``--db`` as ``store.path``, ``--strict`` as ``plugins.strict``."""
    import dataclasses
    import os

    if config_path:
        state.config_path = config_path
    config = state.config()
    data = dict(config.data)
    origins = dict(config.origins)
    if db_path:
        data["store.path"] = os.path.abspath(db_path)
        origins["store.path"] = "--db"
    if state.strict:
        data["plugins.strict"] = True
    return dataclasses.replace(config, data=data, origins=origins)


@cli.command("serve")
@click.option("--host", "bind", metavar="ADDRESS", default=None,
              help="Address to listen on (default: serve.host, 127.0.0.1). Not loopback: HOSTAPP_SERVE_TOKEN is required.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default: serve.port, 8765; 0 picks a free one).")
@click.option("--config", "serve_config", metavar="PATH", help="Configuration file (as 'hostapp --config').")
@_db_option
@click.option("--open", "open_run", metavar="RUN",
              help="Open this run's page in the web browser at start (a run id, or 'last').")
@click.pass_obj
def serve_command(state: _State, bind: str | None, port: int | None, serve_config: str | None,
                  db_path: str | None, open_run: str | None) -> None:
    """Run the host as a service: plugins' routes, the management API and the web view.

    Starts a Host (components, sinks, background tasks, tracing) and serves it with
    uvicorn until SIGINT or SIGTERM, then stops the server and the host in order. Needs
    the serve extra: pip install 'hostapp[serve]'. Every change (POST, PUT, DELETE) needs
    the token (HOSTAPP_SERVE_TOKEN, or one generated and printed at start).
    """
    from hostapp.serve import MissingExtraError, require_extra
    from hostapp.serve.server import serve

    try:
        require_extra()
    except MissingExtraError as exc:
        raise HostappCliError(str(exc), exit_code=2) from None
    config = _host_config(state, serve_config, db_path)
    if open_run == "last":  # the newest run before this one starts its own
        store = _open_store(state, db_path)
        latest = store.last_run() if store is not None else None
        if store is not None:
            store.close()
        if latest is None:
            raise HostappCliError("--open last: no runs recorded yet", exit_code=2)
        open_run = latest.id
    try:
        serve(config, host=bind or config["serve.host"], port=config["serve.port"] if port is None else port,
              command=["hostapp", *sys.argv[1:]], open_path=f"runs/{open_run}" if open_run else None)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


class _RunCommand(click.Command):
    """``hostapp run``: python's command line. hostapp's options come before the target;
    everything after ``SCRIPT`` or ``-m MODULE`` is the program's, untouched (``-h``,
    ``--``, ``-q`` and ``--db`` included), as with ``python``, ``kolo run`` and
    ``opentelemetry-instrument``."""

    #: hostapp run's options that take a value (``--db PATH``, ``--db=PATH``).
    VALUE_OPTIONS = frozenset({"--config", "--db", "--processor", "--no-processor", "--json-summary"})
    #: its flags, and the short ones that may be combined (``-qm pip``, as python's ``-qm``).
    FLAGS = frozenset({"--quiet", "--help"})
    SHORT_FLAGS = frozenset("qh")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        own, target = split_run_args(args, self.VALUE_OPTIONS, self.FLAGS, self.SHORT_FLAGS)
        return super().parse_args(ctx, [*own, *target])


def split_run_args(
    args: list[str], value_options: frozenset[str], flags: frozenset[str], short_flags: frozenset[str],
) -> tuple[list[str], list[str]]:
    """Split ``hostapp run``'s arguments into hostapp's and the target's.

    Args:
        args: what follows ``run`` on the command line.
        value_options / flags / short_flags: hostapp run's options.

    Returns:
        ``(own, target)``: ``own`` for click to parse; ``target`` is ``["-m", MODULE,
        "--", *ARGS]`` or ``["--", SCRIPT, *ARGS]`` (empty when no target was given), so
        click hands ``ARGS`` over as they are. An unknown option before the target is
        left in ``own`` for click to report.
    """
    own: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return own, ["--", *args[i + 1:]]
        if arg == "-" or not arg.startswith("-"):
            return own, ["--", *args[i:]]
        if arg.startswith("--"):
            name = arg.split("=", 1)[0]
            own.append(arg)
            if name in value_options and "=" not in arg and i + 1 < len(args):
                own.append(args[i + 1])
                i += 1
            i += 1
            continue
        # short options, possibly combined: -q, -h, -m MODULE, -mMODULE, -qm MODULE
        for j, letter in enumerate(arg[1:], start=1):
            if letter == "m":
                module = arg[j + 1:]
                if not module:
                    if i + 1 >= len(args):
                        own.append("-m")  # click reports the missing value
                        return own, []
                    module, i = args[i + 1], i + 1
                return own, ["-m", module, "--", *args[i + 1:]]
            own.append(f"-{letter}")
            if letter not in short_flags:
                break  # unknown: click reports it
        i += 1
    return own, []


@cli.command("run", cls=_RunCommand)
@click.option("--config", "run_config", metavar="PATH", help="Configuration file (as 'hostapp --config').")
@_db_option
@click.option("-m", "module", metavar="MODULE", help="Run a library module as a script (as 'python -m').")
@click.option("--processor", "only", multiple=True, metavar="NAME",
              help="Only this trace processor (repeatable; a glob or re: pattern).")
@click.option("--no-processor", "disable", multiple=True, metavar="NAME",
              help="Not this trace processor (repeatable; a glob or re: pattern).")
@click.option("--json-summary", metavar="FILE", help="Also write the run summary as JSON to FILE.")
@click.option("--quiet", "-q", is_flag=True, help="No summary on stderr.")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
@click.pass_obj
def run_command(
    state: _State,
    run_config: str | None,
    db_path: str | None,
    module: str | None,
    only: tuple[str, ...],
    disable: tuple[str, ...],
    json_summary: str | None,
    quiet: bool,
    argv: tuple[str, ...],
) -> None:
    """Run a Python program under the host, exactly as 'python SCRIPT' / 'python -m MODULE'.

    The trace processors (the built-in HTTP and job processors, and any plugin's) select
    what is recorded; the events go to the configured sinks (by default the SQLite store,
    .hostapp/hostapp.sqlite3). The program's arguments, stdin, stdout, stderr and exit
    status are its own; every argument after SCRIPT or -m MODULE is the program's
    (hostapp's options go before it). At the end a summary goes to stderr (unless
    --quiet); then see the calls with 'hostapp events --last'.
    """
    import dataclasses
    import os

    from hostapp.run import prepare, run_program

    if module is None and not argv:
        raise HostappCliError("hostapp run: expected SCRIPT or -m MODULE (see 'hostapp run --help')", exit_code=2)
    config = _host_config(state, run_config, db_path)
    data = dict(config.data)
    if only:
        data["tracing.processors"] = [*(data["tracing.processors"] or []), *only]
    if disable:
        data["tracing.disable"] = [*data["tracing.disable"], *disable]
    config = dataclasses.replace(config, data=data)
    try:
        if module is not None:
            target = prepare(module, argv, module=True)
        else:
            target = prepare(argv[0], argv[1:])
    except SyntaxError as exc:  # printed as python prints it, status 1
        exc.__traceback__ = None
        sys.excepthook(type(exc), exc, None)
        raise SystemExit(1) from None
    except ImportError as exc:
        raise HostappCliError(f"hostapp run: {exc}", exit_code=1) from None
    except OSError as exc:
        path = os.path.abspath(argv[0]) if argv else module
        reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc)
        raise HostappCliError(f"hostapp run: can't open file {path!r}: {reason}", exit_code=2) from None
    command = ["hostapp", "run", *sys.argv[2:]] if sys.argv[1:2] == ["run"] else ["hostapp", "run", *(
        ["-m", module] if module else []), *argv]
    run_program(target, config=config, command=command, quiet=quiet, json_summary=json_summary,
                see=_see_command(state.config_path, db_path))


def _see_command(config_path: str | None, db_path: str | None) -> str:
    """``hostapp [--config C] events [--db D] --last``: the summary's hint, repeating the
    options that chose the configuration and the store, so that following it reads the
    store the run wrote (``HOSTAPP_CONFIG`` stays in the environment, so it is not repeated)."""
    import shlex

    words = ["hostapp"]
    if config_path and config_path != os.environ.get("HOSTAPP_CONFIG"):
        words += ["--config", config_path]
    words.append("events")
    if db_path:
        words += ["--db", db_path]
    return shlex.join([*words, "--last"])


@cli.group("store")
def store_group() -> None:
    """The store file: check it, set a damaged one aside."""


@store_group.command("check")
@_db_option
@click.option("--move-aside", is_flag=True,
              help="If the check finds the file damaged or foreign, rename it (NAME.damaged-DATE) so a new store is made.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def store_check_command(state: _State, db_path: str | None, move_aside: bool, as_json: bool) -> None:
    """Check the store: integrity, schema version, tables, counts, file modes (read-only).

    Exit status 0 when the store is sound, 1 when it is damaged, foreign or missing.
    """
    from pathlib import Path

    from hostapp.store import resolve_store_path
    from hostapp.storecheck import check_store
    from hostapp.storecheck import move_aside as set_aside

    path = Path(db_path) if db_path else resolve_store_path(state.config())
    report = check_store(path)
    moved: list[Path] = []
    if move_aside and report.exists and not report.ok:
        moved = set_aside(path)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "moved_to": [str(p) for p in moved]}, indent=2))
    else:
        click.echo(f"store: {report.path}")
        if report.exists:
            click.echo(f"integrity: {(report.integrity or '-').splitlines()[0]}")
            click.echo(f"schema version: {report.schema_version} (this hostapp: {report.supported_version})")
            if report.counts:
                click.echo("rows: " + ", ".join(f"{table} {n}" for table, n in report.counts.items()))
            if report.modes:
                click.echo(f"modes: file {report.modes['file']}, directory {report.modes['directory']}")
        for note in report.notes:
            click.echo(f"note: {note}")
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        for target in moved:
            click.echo(f"moved aside: {target}")
        click.echo("ok" if report.ok else ("moved aside; the next host makes a new store" if moved else "damaged"))
    if not report.ok:
        raise SystemExit(1)


def _add_probes_group() -> None:
    from hostapp._cli_probes import probes_group  # the probes commands, lent the helpers above

    cli.add_command(probes_group(error=HostappCliError, console=_console, warn=_warn))


_add_probes_group()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hostapp`` console script."""
    cli.main(args=argv, prog_name="hostapp")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
