"""The public API: every exported name resolves, and ``import hostapp`` stays cheap."""

from __future__ import annotations

import subprocess
import sys

import hostapp


def test_every_public_name_resolves_and_is_documented():
    for name in hostapp.__all__:
        value = getattr(hostapp, name)
        if name != "__version__":
            assert (getattr(value, "__doc__", None) or "").strip(), f"hostapp.{name} has no docstring"


def test_import_hostapp_does_not_import_heavy_modules():
    code = (
        "import sys, hostapp\n"
        "heavy = {'click', 'rich', 'sqlite3', 'asyncio', 'importlib.metadata', 'importlib_metadata',"
        " 'hostapp.tracing', 'hostapp.manager', 'hostapp.events', 'hostapp.store'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
