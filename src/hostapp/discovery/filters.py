"""Filters applied to plugin candidates before anything is imported.

A :class:`FilterChain` is built once per :func:`hostapp.discovery.discover` call from the
config (:class:`~hostapp.discovery.DiscoveryOptions`) and the environment; it compiles every
pattern up front, so a bad regular expression is reported even when no plugin would reach
it. :meth:`FilterChain.check` returns the first rule that removes a candidate, as the
human-readable text stored in :attr:`PluginInfo.rule <hostapp.lifecycle.PluginInfo.rule>`.

Rules, in the order they are tried:

==============================  ==========  =====================================================
setting                         matched on  rule text when it removes a plugin
==============================  ==========  =====================================================
``HOSTAPP_DISABLE_PLUGINS``     name        ``HOSTAPP_DISABLE_PLUGINS: 'foo'``
``HOSTAPP_PLUGINS``             name        ``HOSTAPP_PLUGINS: not listed``
``plugins.disable``             name        ``plugins.disable: 're:^exp_'``
``plugins.enable``              name        ``plugins.enable: no pattern matches``
``plugins.disable_locations``   location    ``plugins.disable_locations: '*/legacy/*'``
``plugins.enable_locations``    location    ``plugins.enable_locations: no pattern matches``
``plugins.deny_tags``           tags        ``plugins.deny_tags: 'experimental'``
``plugins.allow_tags``          tags        ``plugins.allow_tags: none of ['stable']``
==============================  ==========  =====================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hostapp.errors import ConfigError
    from hostapp.lifecycle import PluginInfo

__all__ = ["ENV_DISABLE", "ENV_ONLY", "FilterChain", "Matcher", "compile_pattern", "split_env_list"]

#: A compiled pattern: called with a name, location or tag, returns whether it matches.
Matcher = Callable[[str], bool]

ENV_DISABLE = "HOSTAPP_DISABLE_PLUGINS"
ENV_ONLY = "HOSTAPP_PLUGINS"


def compile_pattern(pattern: str, *, source: str, key: str | None) -> Matcher:
    """Compile one name/location/tag pattern into a predicate.

    Args:
        pattern: a glob (``"sinks.*"``, matched with :func:`fnmatch.fnmatchcase`: the whole
            string, case-sensitive) or ``"re:REGEX"`` (matched with :func:`re.search`:
            anywhere, so anchor it with ``^``/``$`` as needed).
        source: the config file or environment variable the pattern came from, for errors.
        key: the dotted config key (``"plugins.disable"``), or ``None`` for an environment
            variable.

    Returns:
        a callable ``(str) -> bool``.

    Raises:
        ConfigError: the pattern is not a string, or ``REGEX`` does not compile; the
            message names ``source``, ``key`` and the pattern.
    """
    if not isinstance(pattern, str):
        from hostapp.errors import ConfigError  # the errors module is imported only to raise

        raise ConfigError(source, f"expected a pattern string, got {type(pattern).__name__}", key=key)
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:])
        except re.error as exc:
            from hostapp.errors import ConfigError

            raise ConfigError(source, f"invalid regular expression {pattern!r}: {exc}", key=key) from None
        return lambda text: regex.search(text) is not None
    import fnmatch

    glob = re.compile(fnmatch.translate(pattern))
    return lambda text: glob.match(text) is not None


def split_env_list(value: str) -> tuple[str, ...]:
    """Split a comma-separated environment value into stripped, non-empty patterns."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


class _Rule:
    """One compiled setting: ``kind`` is ``"deny"`` (any match removes) or ``"only"`` (no match removes)."""

    __slots__ = ("setting", "kind", "subject", "patterns", "matchers")

    def __init__(
        self, setting: str, kind: str, subject: str, patterns: tuple[str, ...], matchers: tuple[Matcher, ...]
    ) -> None:
        self.setting = setting
        self.kind = kind
        self.subject = subject  # "name", "location" or "tags"
        self.patterns = patterns
        self.matchers = matchers

    def __repr__(self) -> str:
        return f"_Rule({self.setting!r}, {self.kind!r}, {self.subject!r}, {self.patterns!r})"

    def check(self, info: PluginInfo) -> str | None:
        """The rule text if this rule removes ``info``, else ``None``."""
        if self.subject == "name":
            return self.judge((info.name,))
        if self.subject == "location":
            return self.judge((info.location or info.value or "",))
        return self.judge(info.tags)

    def judge(self, values: Iterable[str]) -> str | None:
        """The rule text if this rule removes something with ``values``, else ``None``."""
        values = tuple(values)
        if self.kind == "deny":
            for pattern, matches in zip(self.patterns, self.matchers):
                if any(matches(v) for v in values):
                    return f"{self.setting}: {pattern!r}"
            return None
        if any(matches(v) for matches in self.matchers for v in values):
            return None
        if self.setting == ENV_ONLY:
            return f"{ENV_ONLY}: not listed" if self.patterns else f"{ENV_ONLY}: empty (no discovered plugins)"
        if self.subject == "tags":
            return f"{self.setting}: none of {list(self.patterns)!r}"
        return f"{self.setting}: no pattern matches"


class FilterChain:
    """Every filter rule, compiled once, applied in the documented order.

    Args:
        enable / disable / enable_locations / disable_locations / allow_tags / deny_tags:
            the config pattern lists (``None`` for an "only" list means "no restriction";
            an empty tuple means "nothing passes").
        environ: the environment, read for ``HOSTAPP_DISABLE_PLUGINS`` and ``HOSTAPP_PLUGINS``.
        config_source: the config file named in errors (``"hostapp.toml"``).

    Raises:
        ConfigError: a pattern does not compile (see :func:`compile_pattern`).
    """

    def __init__(
        self,
        *,
        enable: Sequence[str] | None = None,
        disable: Sequence[str] = (),
        enable_locations: Sequence[str] | None = None,
        disable_locations: Sequence[str] = (),
        allow_tags: Sequence[str] | None = None,
        deny_tags: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        config_source: str = "hostapp.toml",
    ) -> None:
        env = environ or {}
        self.rules: list[_Rule] = []
        if env.get(ENV_DISABLE):
            self._add(ENV_DISABLE, "deny", "name", split_env_list(env[ENV_DISABLE]), ENV_DISABLE, None)
        if env.get(ENV_ONLY) is not None:
            self._add(ENV_ONLY, "only", "name", split_env_list(env[ENV_ONLY]), ENV_ONLY, None)
        for setting, kind, subject, patterns in (
            ("plugins.disable", "deny", "name", disable),
            ("plugins.enable", "only", "name", enable),
            ("plugins.disable_locations", "deny", "location", disable_locations),
            ("plugins.enable_locations", "only", "location", enable_locations),
            ("plugins.deny_tags", "deny", "tags", deny_tags),
            ("plugins.allow_tags", "only", "tags", allow_tags),
        ):
            if patterns is None or (kind == "deny" and not patterns):
                continue
            self._add(setting, kind, subject, tuple(patterns), config_source, setting)

    def _add(
        self, setting: str, kind: str, subject: str, patterns: tuple[str, ...], source: str, key: str | None
    ) -> None:
        matchers = tuple(compile_pattern(p, source=source, key=key) for p in patterns)
        self.rules.append(_Rule(setting, kind, subject, patterns, matchers))

    def check(self, info: PluginInfo) -> str | None:
        """Return the text of the first rule that removes ``info``, or ``None`` if it passes."""
        for rule in self.rules:
            text = rule.check(info)
            if text is not None:
                return text
        return None

    def check_tags(self, tags: Iterable[str]) -> str | None:
        """Apply only the tag rules (``plugins.deny_tags``, then ``plugins.allow_tags``) to ``tags``."""
        tags = tuple(tags)
        for rule in self.rules:
            if rule.subject == "tags":
                text = rule.judge(tags)
                if text is not None:
                    return text
        return None
