"""docs/drivers.md is true: its example plugin, configuration and program run as shown
(``hostapp run``, ``hostapp components`` as subprocesses), its error lines are the real
ones, and the migrated opa-stack driver works against a TCP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hostapp.config import load_config
from hostapp.host import Host

DOC = Path(__file__).resolve().parent.parent / "docs" / "drivers.md"
TEXT = DOC.read_text(encoding="utf-8")
LABELLED = dict(re.findall(r"^\*\*`([^`]+)`\*\*\n```\w*\n(.*?)^```$", TEXT, re.M | re.S))
CONSOLE = re.findall(r"^```console\n(.*?)^```$", TEXT, re.M | re.S)


def hostapp(args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    return subprocess.run([sys.executable, "-m", "hostapp", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def outputs(block: str) -> list[tuple[str, str]]:
    """``[(command, output), ...]`` of a console block."""
    out: list[tuple[str, str]] = []
    for line in block.splitlines(keepends=True):
        if line.startswith("$ "):
            out.append((line[2:].strip(), ""))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + line)
    return out


@pytest.fixture
def example(tmp_path):
    for relative in ("plugins/jsonstore.py", "hostapp.toml", "app.py"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(LABELLED[relative], encoding="utf-8")
    return tmp_path


def test_the_example_runs_as_the_page_shows(example):
    first, broken = (b for b in CONSOLE if "$ hostapp run -q app.py" in b)
    for command, expected in outputs(first):
        result = hostapp(command.split()[1:], example)
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected
    assert json.loads((example / "var" / "settings.json").read_text()) == {"runs": 2}

    (example / "var" / "legacy.json").write_text("[1, 2]\n")
    (run_cmd, run_out), (_, table) = outputs(broken)
    result = hostapp(run_cmd.split()[1:], example)
    assert (result.returncode, result.stdout) == (0, run_out)
    shown = hostapp(["components"], example).stdout
    expected_rows = [line for line in table.splitlines() if line.startswith("│")]
    assert [line.rstrip() for line in shown.splitlines() if line.startswith("│")] == expected_rows
    assert re.search(r"run [0-9a-f]{32} \(ended\)", shown)
    loud = hostapp(["run", "app.py"], example)
    assert (
        "component 'legacy' (driver 'jsonstore', plugin 'jsonstore') is unavailable: validate() "
        "returned False; the host goes on without it (load = 'auto')"
    ) in loud.stderr
    rows = {row["name"]: row for row in json.loads(hostapp(["components", "--json"], example).stdout)}
    assert rows["legacy"]["state"] == "unavailable" and rows["settings"]["health"]["detail"] == {"keys": 1}


def test_the_error_lines_of_the_page_are_the_real_ones(example):
    (example / "var").mkdir()
    (example / "var" / "settings.json").write_text("[]")
    result = hostapp(["run", "app.py"], example)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert f"$ hostapp run app.py\n{line}\n$ echo $?\n1\n" in TEXT

    toml = LABELLED["hostapp.toml"]
    (example / "hostapp.toml").write_text(toml.replace('load = "yes"', 'load = "yes"\nreload = "no"'))
    result = hostapp(["components"], example)
    assert result.returncode == 2
    assert f"$ hostapp components\n{result.stderr}" in TEXT

    (example / "hostapp.toml").write_text(toml.replace('driver = "jsonstore"', 'driver = "jsonstor"', 1))
    result = hostapp(["run", "app.py"], example)
    assert result.returncode == 2
    assert f"$ hostapp run app.py\n{result.stderr}" in TEXT


@pytest.mark.parametrize("listening", [True, False])
def test_the_migrated_opa_stack_driver(tmp_path, listening):
    folder = tmp_path / "migrated"
    (folder / "plugins").mkdir(parents=True)
    (folder / "plugins" / "tcpservice.py").write_text(LABELLED["migrated/plugins/tcpservice.py"])

    async def main():
        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        if not listening:
            server.close()
            await server.wait_closed()
        toml = LABELLED["migrated/hostapp.toml"].replace("port = 7000", f"port = {port}")
        (folder / "hostapp.toml").write_text(toml + '\n[store]\npath = "store.sqlite3"\n[tracing]\nenabled = false\n')
        config = load_config(folder / "hostapp.toml", environ={"HOSTAPP_PLUGINS__AUTOLOAD": "0"})
        async with Host(config) as host:
            record = host.components["backend"]
            if not listening:
                return record.state, record.error
            reader, writer = host.component("backend").instance
            writer.write(b"ping\n")
            await writer.drain()
            answer = await reader.readline()
        server.close()
        await server.wait_closed()
        return host.components["backend"].state, answer

    state, detail = asyncio.run(main())
    if listening:
        assert (state, detail) == ("closed", b"ping\n")
    else:
        assert state == "unavailable" and detail.startswith("ConnectionRefusedError: ")
