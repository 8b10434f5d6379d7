"""The ``hostapp`` command (click + rich).

Exit statuses (``docs/cli.md``): 0 success; 1 a hostapp error (a plugin failed in strict
mode, a required hook is missing where one is needed); 2 a usage error or an invalid
configuration (one line on stderr naming the file and key).
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
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
    _config: Config | None = None
    _pm: PluginManager | None = None
    warned: set[str] = field(default_factory=set)

    def config(self) -> Config:
        if self._config is None:
            from hostapp.config import ConfigWarning, load_config

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConfigWarning)
                try:
                    self._config = load_config(self.config_path)
                except ConfigError as exc:
                    raise HostappCliError(str(exc), exit_code=2) from None
            for message in self._config.warnings:
                _warn(message)
        return self._config

    def plugin_manager(self) -> PluginManager:
        """Load every plugin once per command (discovery, filters, registration)."""
        if self._pm is None:
            import dataclasses

            from hostapp.errors import PluginLoadError
            from hostapp.manager import PluginManager

            config = self.config()
            options = config.discovery_options()
            if self.no_cache:
                options = dataclasses.replace(options, use_cache=False)
            pm = PluginManager()
            try:
                pm.load(config, options=options, strict=self.strict or config.strict)
            except PluginLoadError as exc:
                raise HostappCliError(str(exc), exit_code=1) from None
            except ConfigError as exc:
                raise HostappCliError(str(exc), exit_code=2) from None
            self._pm = pm
        return self._pm


class _HostappGroup(click.Group):
    """The ``hostapp`` group: built-in commands plus those plugins contribute."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        state: _State = ctx.ensure_object(_State)
        cached = ctx.meta.get("hostapp.plugin_commands")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        commands: dict[str, click.Command] = {}
        try:
            pm = state.plugin_manager()
        except HostappCliError:
            ctx.meta["hostapp.plugin_commands"] = commands
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
        ctx.meta["hostapp.plugin_commands"] = commands
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        try:
            names.update(self._plugin_commands(ctx))
        except HostappCliError:
            pass
        return sorted(names)

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


@click.group(cls=_HostappGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    help="Any plugin failure is fatal (for plugin development; env HOSTAPP_STRICT=1).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, strict: bool) -> None:
    """hostapp: a plugin host for Python applications, built on pluggy."""
    _route_warnings()
    state = ctx.ensure_object(_State)
    state.config_path = config_path
    state.strict = strict


@cli.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Also list hostapp's built-in plugins and shadowed candidates.")
@click.option("--hook", "hook_name", metavar="NAME", help="Only plugins implementing hook NAME.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.option("--no-cache", is_flag=True, help="Bypass the entry-point index cache (env HOSTAPP_NO_CACHE=1).")
@click.pass_obj
def plugins_command(state: _State, show_all: bool, hook_name: str | None, as_json: bool, no_cache: bool) -> None:
    """List every plugin candidate: state, source, distribution, priority, tags, hooks.

    Filtered plugins show the rule that removed them, failed ones the stage and error.
    Exit status 0 even when plugins failed, unless --strict.
    """
    from hostapp.lifecycle import PluginState

    state.no_cache = no_cache
    pm = state.plugin_manager()
    if hook_name is not None and getattr(getattr(pm.hook, hook_name, None), "spec", None) is None:
        raise HostappCliError(f"no hook named {hook_name!r}; see 'hostapp hooks'", exit_code=2)
    provides = _contributions(pm)
    errors: dict[str, list[dict[str, Any]]] = {}
    for record in pm.hook_errors:
        errors.setdefault(record.plugin, []).append({"hook": record.hook, "error": record.error})
    rows = []
    for info in pm.candidates:
        if not show_all and (info.builtin or info.state is PluginState.SHADOWED):
            continue
        if hook_name is not None and hook_name not in info.hooks:
            continue
        row = info.to_dict()
        row["provides"] = provides.get(info.name, {})
        row["hook_errors"] = errors.get(info.name, [])
        rows.append(row)
    missing = pm.missing_required()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_plugins(rows)
    for name in missing:
        _warn(f"required hook {name!r} has no implementation")


def _contributions(pm: PluginManager) -> dict[str, dict[str, list[str]]]:
    """What each plugin contributes through the registration hooks, by hook."""
    from hostapp.hookspecs import REGISTRATION_HOOKS

    out: dict[str, dict[str, list[str]]] = {}
    for hook_name in REGISTRATION_HOOKS:
        for contribution in pm.collect(hook_name, on_conflict="report"):
            short = hook_name.removeprefix("hostapp_")
            out.setdefault(contribution.plugin, {}).setdefault(short, []).append(contribution.name)
    return out


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
    colours = {"registered": "green", "started": "green", "failed": "red", "filtered": "yellow"}
    for row in rows:
        if row["distribution"]:
            dist = f"{row['distribution']} {row['version']}"
        else:
            dist = ""
        if row["state"] == "failed":
            detail = f"{row['stage']}: {row['error']}"
        elif row["state"] == "filtered":
            detail = f"filtered by {row['rule']}"
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


@cli.command("hooks")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def hooks_command(state: _State, as_json: bool) -> None:
    """List every hookspec with its implementations in call order."""
    pm = state.plugin_manager()
    rows = pm.hook_table()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hostapp`` console script."""
    cli.main(args=argv, prog_name="hostapp")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
