"""The ``HOSTAPP_*`` switches read from the environment, parsed strictly.

A switch that exists to keep something out (``HOSTAPP_DISABLE_PLUGIN_AUTOLOAD``) must not
let it in because its value was misspelt, so every flag accepts exactly ``1``/``0``,
``true``/``false``, ``yes``/``no``, ``on``/``off`` (any case) or an empty value (off), and
anything else is a :class:`~hostapp.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["FLAGS", "env_flag", "parse_flag"]

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})

#: The on/off switches (``HOSTAPP_STRICT`` also sets ``plugins.strict``).
FLAGS: Final = ("HOSTAPP_STRICT", "HOSTAPP_DISABLE_PLUGIN_AUTOLOAD", "HOSTAPP_NO_CACHE")


def parse_flag(value: str, var: str) -> bool:
    """The on/off value of switch ``var`` set to ``value``.

    Raises:
        ConfigError: ``value`` is none of the accepted spellings (the message names ``var``).
    """
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    from hostapp.errors import ConfigError  # only to raise: discovery imports this module

    raise ConfigError(var, f"expected a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def env_flag(environ: Mapping[str, str], var: str) -> bool:
    """Switch ``var`` of ``environ``: off when unset, else :func:`parse_flag`.

    Raises:
        ConfigError: an unknown value.
    """
    value = environ.get(var)
    return False if value is None else parse_flag(value, var)
