"""``requires``: the distributions a plugin needs, checked from installed metadata before import.

A plugin declares them in its metadata file (``"requires": ["redis>=4.5"]``), in
``[plugins.meta.NAME] requires = [...]``, or through the extras of its entry point
(``acme = acme_hostapp [redis]``: what the distribution's extra ``redis`` requires, read
from its ``METADATA``, as setuptools' entry-point extras mean). A plugin whose requirement
is not met is ``not_applicable``, never imported (plux's and opa-stack's "does this plugin
apply here" decided from metadata). Requirement strings are PEP 508 (``packaging``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

__all__ = ["entry_point_extras", "extra_requirements", "unmet"]

_EXTRAS = re.compile(r"\[([^\]]*)\]\s*$")


def entry_point_extras(value: str | None) -> list[str]:
    """The extras of an entry-point value: ``"acme_hostapp [redis, s3]"`` -> ``["redis", "s3"]``."""
    found = _EXTRAS.search(value or "")
    return [e.strip() for e in found.group(1).split(",") if e.strip()] if found else []


def extra_requirements(dist_info: str, extras: Sequence[str]) -> list[str]:
    """What a distribution's ``extras`` require, from the ``Requires-Dist`` lines of its
    ``METADATA`` (the markers that name the extra are dropped; others are kept).

    Args:
        dist_info: the ``.dist-info`` directory.
        extras: extra names.

    Returns:
        requirement strings; ``[]`` when the file cannot be read.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        with open(os.path.join(dist_info, "METADATA"), encoding="utf-8") as f:
            lines = [line[len("Requires-Dist:"):].strip() for line in f if line.startswith("Requires-Dist:")]
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        if marker is None or "extra" not in str(marker):
            continue
        if any(marker.evaluate({"extra": extra}) for extra in extras):
            requirement.marker = None
            out.append(str(requirement))
    return out


def unmet(requirements: Iterable[str]) -> str | None:
    """Why the first unmet requirement is unmet, or ``None`` when every one is met.

    A requirement whose environment marker does not apply here (``; python_version <
    "3.12"``) is met. Versions are compared by the requirement's specifier, pre-releases
    included.

    Returns:
        ``"requires 'redis>=4.5': redis is not installed"``,
        ``"requires 'redis>=5': redis 4.6.0 is installed"``,
        ``"requires 'x y': not a valid requirement (...)"``, or ``None``.
    """
    import importlib.metadata

    from packaging.requirements import InvalidRequirement, Requirement

    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            return f"requires {text!r}: not a valid requirement ({exc})"
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            return f"requires {text!r}: {requirement.name} is not installed"
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            return f"requires {text!r}: {requirement.name} {version} is installed"
    return None
