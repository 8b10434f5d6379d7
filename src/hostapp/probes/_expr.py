"""Safe probe expressions: the ``value`` and ``condition`` of an instrument.

An expression is parsed with :mod:`ast` and checked against a small subset of Python
before anything runs (:func:`check`), then compiled **once**, when the spec is applied,
into a plain function of the call (:func:`compile_expression`); a probe firing calls
that function and never ``eval``-s a string (Diagnose ``eval``-s ``value`` on every
call).

The subset (:data:`ALLOWED_CALLS`, :func:`check`):

* names - the call's arguments by name (``self`` included), ``result`` (the return
  value), ``exc`` (the exception of a raise, ``None`` on a return), ``elapsed_ns`` (ns
  from the call to its end) and the names of the probe namespace (Diagnose's
  ``manager.global_namespace``: ``math``, ``time``, ``datetime``, ``mag`` and what the host
  adds);
* attribute access, except to names starting with ``__`` (dunders and mangled names);
* subscripts and slices; literals (numbers, strings, bytes, ``True``/``False``/``None``,
  tuples, lists, dicts, sets); f-strings;
* arithmetic (``+ - * / // % @``, ``**`` only with a literal exponent of at most 64),
  bitwise operators, comparisons (``in``, ``is`` included), ``and``/``or``/``not``,
  ``x if c else y``;
* calls only of a name in :data:`ALLOWED_CALLS`, a *function* of the namespace, or a
  function of the ``math`` module (``math.sqrt(x)``), with positional and keyword
  arguments (no ``*``/``**`` unpacking).

Everything else is refused: other calls (methods, ``__import__``, ``eval``), lambdas,
comprehensions, ``:=``, ``await``/``yield``, starred expressions. The refusal
(:class:`UnsafeExpression`) names the expression, the offending node and its column.

``probes.allow_unsafe = true`` skips the check (any Python expression; the builtins are
all there); the probe manager logs a warning about it every time it starts.
"""

from __future__ import annotations

import ast
import builtins
import datetime
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = [
    "ALLOWED_CALLS",
    "SPECIAL_NAMES",
    "UnsafeExpression",
    "check",
    "compile_expression",
    "default_namespace",
    "names_used",
]

#: The builtins an expression may call (``probes.allow_unsafe`` lifts the limit).
ALLOWED_CALLS: Final = frozenset({
    "abs", "all", "any", "bool", "float", "int", "len", "max", "min", "repr", "round", "sorted",
    "str", "sum", "tuple", "list", "dict", "set", "isinstance",
})

#: The names a probe provides besides the arguments: ``result`` (return side), ``exc``
#: (the raise of an ``end`` event, else ``None``) and ``elapsed_ns``.
SPECIAL_NAMES: Final = ("result", "exc", "elapsed_ns")

_MAX_POWER: Final = 64

_ALLOWED_NODES: Final[tuple[type, ...]] = (
    ast.Expression, ast.Name, ast.Load, ast.Attribute, ast.Subscript, ast.Slice, ast.Constant,
    ast.Tuple, ast.List, ast.Dict, ast.Set, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
    ast.IfExp, ast.Call, ast.keyword, ast.JoinedStr, ast.FormattedValue,
    # operators
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.MatMult,
    ast.LShift, ast.RShift, ast.BitOr, ast.BitXor, ast.BitAnd,
    ast.UAdd, ast.USub, ast.Not, ast.Invert, ast.And, ast.Or,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
)


def mag(obj: Any, base: int = 10) -> int:
    """The magnitude of ``obj`` (or of its length): ``int(log(size, base))``, ``-1`` for
    0 or what has no size (Diagnose's ``managers.mag``)."""
    try:
        size = len(obj)
    except TypeError:
        size = obj
    try:
        return int(math.log10(size) if base == 10 else math.log(size, base))
    except (TypeError, ValueError, OverflowError):
        return -1


def default_namespace() -> dict[str, Any]:
    """The names every probe expression can use besides the call's (Diagnose's
    ``InstrumentManager.global_namespace``): ``datetime``, ``math``, ``time``, ``mag``."""
    return {"datetime": datetime, "math": math, "time": time, "mag": mag}


class UnsafeExpression(ValueError):
    """An expression outside the safe subset, or one that does not parse.

    Attributes:
        expression: the expression text.
        node: the offending node, described (``"call of '__import__'"``), or ``None``
            for a syntax error.
        col: the column of that node (0-based), or ``None``.
        reason: why it is refused.
    """

    def __init__(self, expression: str, reason: str, node: str | None = None, col: int | None = None) -> None:
        self.expression = expression
        self.reason = reason
        self.node = node
        self.col = col
        where = f" at column {col}" if col is not None else ""
        what = f"{node}{where}: " if node else ""
        super().__init__(f"{expression!r}: {what}{reason}")


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return f"call of {func.id!r}"
        if isinstance(func, ast.Attribute):
            return f"call of method {func.attr!r}"
        return "call"
    if isinstance(node, ast.Attribute):
        return f"attribute {node.attr!r}"
    if isinstance(node, ast.Name):
        return f"name {node.id!r}"
    return f"{type(node).__name__} node"


def parse(expression: str) -> ast.Expression:
    """``expression`` parsed in ``eval`` mode.

    Raises:
        UnsafeExpression: not a string, empty, or a syntax error.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise UnsafeExpression(str(expression), "expected a non-empty Python expression")
    try:
        return ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpression(expression, f"not a Python expression: {exc.msg}", col=exc.offset) from None


def check(expression: str, namespace: Mapping[str, Any] | None = None) -> ast.Expression:
    """Parse ``expression`` and check it is inside the safe subset (module docstring).

    Args:
        expression: the text of ``value`` or ``condition``.
        namespace: the probe namespace; its callables may be called (default:
            :func:`default_namespace`).

    Returns:
        the parsed tree.

    Raises:
        UnsafeExpression: naming the expression, the offending node and its column.
    """
    tree = parse(expression)
    names = default_namespace() if namespace is None else namespace
    found: list[tuple[int, int, str, str]] = []  # (priority, column, node, reason)
    for node in ast.walk(tree):
        col = getattr(node, "col_offset", 1 << 30)
        if not isinstance(node, _ALLOWED_NODES):
            found.append((3, col, _describe(node),
                          "not allowed in a probe expression (see the expression subset in docs/probes.md)"))
        elif isinstance(node, ast.Name) and node.id.startswith("__"):
            found.append((0, col, _describe(node), "names starting with '__' are not allowed"))
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            found.append((1, col, _describe(node), "attributes starting with '__' (dunders) are not allowed"))
        elif isinstance(node, ast.Call):
            func = node.func
            allowed = (isinstance(func, ast.Name) and (
                func.id in ALLOWED_CALLS or (func.id in names and callable(names[func.id]))
            )) or (  # math.sqrt(x): the functions of the math module (pure) are allowed
                isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math"
                and names.get("math") is math and not func.attr.startswith("_")
            )
            if not allowed:
                found.append((2, col, _describe(node),
                              "calls are allowed only to " + ", ".join(sorted(ALLOWED_CALLS))
                              + ", math.* and the functions of the probe namespace"))
            elif any(keyword.arg is None for keyword in node.keywords):
                found.append((2, col, _describe(node), "'**' unpacking is not allowed"))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exponent = node.right
            if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, (ast.USub, ast.UAdd)):
                exponent = exponent.operand
            if not (
                isinstance(exponent, ast.Constant) and isinstance(exponent.value, (int, float))
                and not isinstance(exponent.value, bool) and abs(exponent.value) <= _MAX_POWER
            ):
                found.append((2, col, "power", f"'**' needs a literal exponent of at most {_MAX_POWER}"))
    if found:
        _, col, node_text, reason = min(found)
        raise UnsafeExpression(expression, reason, node=node_text, col=col)
    return tree


def names_used(tree: ast.AST) -> set[str]:
    """The names an expression reads."""
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


class _Rewrite(ast.NodeTransformer):
    """Turns argument names into ``__l[key]`` (f_locals by name, or a tuple by index)."""

    def __init__(self, keys: Mapping[str, Any]) -> None:
        self.keys = keys

    def visit_Name(self, node: ast.Name) -> ast.AST:
        key = self.keys.get(node.id)
        if key is None:
            return node
        return ast.copy_location(
            ast.Subscript(value=ast.Name("__l", ast.Load()), slice=ast.Constant(key), ctx=ast.Load()), node,
        )


_SAFE_BUILTINS: Final = {name: getattr(builtins, name) for name in ALLOWED_CALLS} | {
    "True": True, "False": False, "None": None,
}


def compile_expression(
    expression: str,
    *,
    arguments: Mapping[str, Any],
    namespace: Mapping[str, Any],
    unsafe: bool = False,
    where: str = "",
) -> Callable[[Any, Any, Any, int], Any]:
    """Compile ``expression`` into ``fn(l, result, exc, elapsed_ns) -> value``.

    Args:
        expression: the text (checked with :func:`check` unless ``unsafe``).
        arguments: the call's argument names -> the key each is read with from ``l``
            (the name itself when ``l`` is the frame's ``f_locals``; the index when
            ``l`` is the tuple of arguments a trampoline passes).
        namespace: the probe namespace (the compiled function's globals).
        unsafe: ``probes.allow_unsafe``: no subset check, every builtin available.
        where: the target, for the error message (``"pkg.mod.f(a, b)"``).

    Raises:
        UnsafeExpression: outside the subset, or a name that is neither an argument, a
            special name, a namespace name nor an allowed builtin (checked here, once,
            instead of failing at every call).
    """
    tree = parse(expression) if unsafe else check(expression, namespace)
    known = set(arguments) | set(SPECIAL_NAMES) | set(namespace)
    if not unsafe:
        known |= set(_SAFE_BUILTINS)
        for name in sorted(names_used(tree)):
            if name not in known:
                shown = f" of {where}" if where else ""
                raise UnsafeExpression(
                    expression,
                    f"{name!r} is not an argument{shown}, nor result/exc/elapsed_ns, nor a name of the probe namespace",
                    node=f"name {name!r}",
                )
    body = _Rewrite(arguments).visit(tree).body
    params = [ast.arg("__l"), *(ast.arg(name) for name in SPECIAL_NAMES)]
    lam = ast.Expression(
        ast.Lambda(
            args=ast.arguments(posonlyargs=[], args=params, kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=body,
        )
    )
    ast.fix_missing_locations(lam)
    glob: dict[str, Any] = dict(namespace)
    glob["__builtins__"] = builtins.__dict__ if unsafe else dict(_SAFE_BUILTINS)
    code = compile(lam, f"<probe expression {expression!r}>", "eval")
    return eval(code, glob)  # noqa: S307 - a checked, compiled lambda; the call is the fire


def constant_value(tree: ast.Expression) -> tuple[bool, Any]:
    """``(True, value)`` when the expression is a literal number/string/None, else ``(False, None)``."""
    body = tree.body
    if isinstance(body, ast.Constant):
        return True, body.value
    if isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.USub) and isinstance(body.operand, ast.Constant):
        value = body.operand.value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, -value
    return False, None


def bare_name(tree: ast.Expression) -> str | None:
    """The name when the expression is a bare name (``items``), else ``None``."""
    body = tree.body
    return body.id if isinstance(body, ast.Name) else None
