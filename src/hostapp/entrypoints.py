"""``hostapp entrypoints``: the ``[project.entry-points.hostapp]`` table of a source tree, found
at build time (plux's ``plux entrypoints``, localstack-plugin-loader's ``load_entry_points``).

:func:`scan` reads every ``.py`` file under the source roots with :mod:`ast` — nothing is
imported — and finds the plugins in them:

* a module with ``@hostapp.hookimpl`` (or ``@hookimpl``) functions at module level is a
  plugin: value ``"pkg.mod"``;
* a class with ``@hookimpl`` methods is a plugin: value ``"pkg.mod:Class"`` (hostapp
  instantiates it with no arguments, so a class whose ``__init__`` needs some is not one:
  something else builds it).

:func:`table` merges what was found with the table already in ``pyproject.toml``: an entry
whose value is still there keeps its name (so names can be edited by hand and stay); a
new plugin gets the name of its module within its top-level package (``sinks.sqlite`` for
``hostapp_plugins/sinks/sqlite.py``; the package's own name for its ``__init__``; and
``.Class`` added for a class); an entry whose module is gone from the tree is dropped;
entries naming modules outside the tree, or modules in it that hold no hook
implementation (a Kolo processor dict, ...), are kept as they are, in their order, the new
ones after them. :func:`rewrite` puts the table into the file's text, touching nothing
else; running it twice changes nothing, and a table that already holds those entries (in
any order or quoting) is left as it is.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Found", "render", "rewrite", "scan", "source_roots", "table"]

HEADER = "[project.entry-points.hostapp]"
_SKIP_DIRS = frozenset({"tests", "test", "build", "dist", "node_modules", "__pycache__", "site-packages"})


@dataclass(frozen=True, slots=True)
class Found:
    """One plugin found in the source tree.

    Attributes:
        value: the entry-point value, ``"pkg.mod"`` or ``"pkg.mod:Class"``.
        name: the name a new entry point gets.
        path: the file, relative to the project directory.
        hooks: the hook implementations it has (function names), sorted.
    """

    value: str
    name: str
    path: str
    hooks: tuple[str, ...]


def source_roots(project: Path) -> list[Path]:
    """Where the importable packages are: ``src/`` when the project has one, else the
    project directory itself."""
    src = project / "src"
    return [src] if src.is_dir() else [project]


def _modules(root: Path) -> Iterator[tuple[str, Path]]:
    """``(dotted module name, file)`` for every module under ``root`` that is importable
    from it (packages need ``__init__.py``), skipping tests, build output, hidden and
    virtual-environment directories."""
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith((".", "_")) and d not in _SKIP_DIRS and d.isidentifier()
            and (here / d / "__init__.py").is_file() and not (here / d / "pyvenv.cfg").exists()
        )
        relative = here.relative_to(root).parts
        for name in sorted(files):
            if not name.endswith(".py") or not name[:-3].isidentifier():
                continue
            if not relative and name in ("setup.py", "conftest.py", "noxfile.py"):
                continue
            parts = [*relative] if name == "__init__.py" else [*relative, name[:-3]]
            if parts:
                yield ".".join(parts), here / name


def _is_hookimpl(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute):
        return target.attr == "hookimpl"
    return isinstance(target, ast.Name) and target.id == "hookimpl"


def _impls(body: Iterable[ast.stmt]) -> list[str]:
    return sorted(
        node.name for node in body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(map(_is_hookimpl, node.decorator_list))
    )


def _needs_arguments(cls: ast.ClassDef) -> bool:
    """Whether the class's own ``__init__`` has a parameter without a default (beyond self)."""
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            positional = [*args.posonlyargs, *args.args][1:]
            missing = len(positional) - len(args.defaults)
            kw_missing = sum(1 for d in args.kw_defaults if d is None)
            return missing > 0 or kw_missing > 0
    return False


def _new_name(module: str, cls: str | None = None) -> str:
    parts = module.split(".")
    name = ".".join(parts[1:]) or parts[0]
    return f"{name}.{cls}" if cls else name


def scan(project: Path, roots: Sequence[Path] | None = None) -> list[Found]:
    """Every plugin in the source tree, in module order.

    Args:
        project: the project directory (where ``pyproject.toml`` is).
        roots: the source roots (default :func:`source_roots`).

    Raises:
        SyntaxError: a file does not parse (the message names it).
    """
    out = []
    for root in roots if roots is not None else source_roots(project):
        for module, path in _modules(root):
            tree = ast.parse(path.read_bytes(), str(path))
            shown = os.path.relpath(path, project)
            hooks = _impls(tree.body)
            if hooks:
                out.append(Found(module, _new_name(module), shown, tuple(hooks)))
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and not _needs_arguments(node):
                    methods = _impls(node.body)
                    if methods:
                        out.append(Found(f"{module}:{node.name}", _new_name(module, node.name), shown, tuple(methods)))
    return out


def _module_exists(value: str, roots: Sequence[Path]) -> bool | None:
    """Whether the module an entry-point value names is in the tree: ``True`` / ``False``,
    or ``None`` when its top-level package is not in the tree at all (an outside module)."""
    module = value.split(":", 1)[0].split("[", 1)[0].strip()
    parts = module.split(".")
    for root in roots:
        top = root / parts[0]
        if top.is_dir() or (root / f"{parts[0]}.py").is_file():
            base = root.joinpath(*parts)
            return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()
    return None


def table(found: Sequence[Found], current: Mapping[str, str], roots: Sequence[Path]) -> dict[str, str]:
    """The entry points to write: ``name -> value``, the current ones first in their order,
    then the new ones by name (see the module docstring for how ``found`` and the
    ``current`` table are merged).

    Raises:
        ValueError: two plugins would get the same name (the message names both values and
            says to name one by hand in the table).
    """
    values = {f.value for f in found}
    kept = {
        name: value for name, value in current.items()
        if value.split("[", 1)[0].strip() in values or _module_exists(value, roots) is not False
    }
    taken = {v.split("[", 1)[0].strip() for v in kept.values()}
    new: dict[str, str] = {}
    for plugin in found:
        if plugin.value in taken:
            continue
        clash = kept.get(plugin.name) or new.get(plugin.name)
        if clash is not None:
            raise ValueError(
                f"entry point {plugin.name!r} would name both {clash!r} and {plugin.value!r}; "
                f"add one of them to {HEADER} under a name of your choice"
            )
        new[plugin.name] = plugin.value
    return {**kept, **dict(sorted(new.items()))}


def render(entries: Mapping[str, str]) -> str:
    """The TOML table, one ``name = "value"`` line per entry (a name holding dots is quoted)."""
    lines = [HEADER, *(f"{_key(name)} = {_quote(value)}" for name, value in entries.items())]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    """A TOML key: bare when it can be (``acme``), quoted otherwise (``"sinks.sqlite"``)."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _quote(name)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_HEADER_LINE = re.compile(r"^\s*\[\s*project\s*\.\s*entry-points\s*\.\s*(\"hostapp\"|'hostapp'|hostapp)\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")


_ENTRY_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


def _line_key(line: str) -> str | None:
    found = _ENTRY_KEY.match(line)
    if found is None:
        return None
    key = found.group(1)
    if key.startswith('"'):
        return key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return key.strip("'")


def rewrite(text: str, entries: Mapping[str, str]) -> str:
    """``pyproject.toml``'s text with its ``[project.entry-points.hostapp]`` table holding
    ``entries`` (the table is added at the end when there is none). The lines of the
    entries it keeps stay as they are, comments included; those of dropped entries go;
    new ones are added after the last entry. Nothing else in the file changes."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _HEADER_LINE.match(line)), None)
    if start is None:
        if not entries:
            return text
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + render(entries)
    end = next((i for i in range(start + 1, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines))
    while end > start + 1 and not lines[end - 1].strip():  # the blank lines before the next table stay
        end -= 1
    body, seen = [], set()
    for line in lines[start + 1:end]:
        key = _line_key(line)
        if key is None or key in entries:
            body.append(line if line.endswith("\n") else line + "\n")
            seen.add(key)
    added = [f"{_key(name)} = {_quote(value)}\n" for name, value in entries.items() if name not in seen]
    last = max((n for n, line in enumerate(body) if _line_key(line) is not None), default=len(body) - 1)
    body[last + 1:last + 1] = added
    return "".join([*lines[:start + 1], *body, *lines[end:]])
