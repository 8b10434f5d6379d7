"""``hostapp run`` is python's command line: every argument after ``SCRIPT`` or ``-m MODULE``
belongs to the program; and pytest run under it behaves as plain pytest, warnings as errors
included (hostapp's ``pytest11`` plugin is not in the already-imported ``hostapp`` package).

Real programs, run as subprocesses: a script, a package with ``__main__``, pip, pytest.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hostapp.testing._distfactory import install_distribution


def env_for(cwd: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTAPP_", "PYTHON", "PYTEST_")) or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}
    env["XDG_CACHE_HOME"] = str(cwd / ".cache")
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env_for(cwd, **env), capture_output=True, text=True, timeout=180
    )


def test_every_argument_after_the_script_is_the_programs(tmp_path):
    (tmp_path / "prog.py").write_text("import sys\nprint(sys.argv[1:])\n")
    args = ["-h", "--", "-q", "--db", "x.sqlite3", "--config", "nope.toml", "-m", "y"]
    got = run(["-m", "hostapp", "run", "-q", "prog.py", *args], tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"{args}\n"
    assert got.stderr == ""
    assert not (tmp_path / "x.sqlite3").exists()  # --db was the program's, not hostapp's


def test_every_argument_after_the_module_is_the_programs(tmp_path):
    package = tmp_path / "tool"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import sys\nprint(sys.argv[1:])\n")
    for hostapp_args, program_args in (
        (["-m", "tool"], ["-h", "--db", "x.sqlite3", "-q", "--json-summary", "s.json"]),
        (["-qm", "tool"], ["--help"]),           # python's combined -qm
        (["-q", "-mtool"], ["--", "-m", "z"]),   # -mMODULE, and '--' kept for the program
        (["--quiet", "--db", "own.sqlite3", "-m", "tool"], ["--version"]),
    ):
        got = run(["-m", "hostapp", "run", *hostapp_args, *program_args], tmp_path)
        assert got.returncode == 0, got.stderr
        assert got.stdout == f"{program_args}\n", hostapp_args
        if "--quiet" not in hostapp_args and "-q" not in hostapp_args and "-qm" not in hostapp_args:
            assert "hostapp run " in got.stderr  # the summary: -q after -m was the program's
    assert not (tmp_path / "x.sqlite3").exists()
    assert not (tmp_path / "s.json").exists()
    assert (tmp_path / "own.sqlite3").exists()  # before the target, --db is hostapp's


def test_options_before_the_target_are_checked(tmp_path):
    (tmp_path / "prog.py").write_text("print('ran')\n")
    unknown = run(["-m", "hostapp", "run", "--nope", "prog.py"], tmp_path)
    assert unknown.returncode == 2 and "No such option '--nope'" in unknown.stderr
    missing = run(["-m", "hostapp", "run", "-m"], tmp_path)
    assert missing.returncode == 2 and "Option '-m' requires an argument" in missing.stderr
    helped = run(["-m", "hostapp", "run", "-h"], tmp_path)
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: hostapp run [OPTIONS] SCRIPT [ARGS]...")


def test_pip_gets_its_own_arguments(tmp_path):
    """``hostapp run -m pip download --no-deps -d DIR six -h``: pip's help, as under python."""
    args = ["-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "wheels"), "six", "-h"]
    plain = run(args, tmp_path)
    traced = run(["-m", "hostapp", "run", "-q", *args], tmp_path)
    assert plain.returncode == traced.returncode == 0, traced.stderr
    assert "pip download [options]" in traced.stdout
    assert traced.stdout == plain.stdout
    # and without -h, pip does the download step (no index here: the same error as python's)
    offline = ["-m", "pip", "download", "--no-deps", "--no-index", "-d", str(tmp_path / "wheels"), "six"]
    plain, traced = run(offline, tmp_path), run(["-m", "hostapp", "run", "-q", *offline], tmp_path)
    assert traced.returncode == plain.returncode == 1
    assert "No matching distribution found for six" in traced.stderr
    assert traced.stderr == plain.stderr


PYTEST_PROJECT = {
    "pyproject.toml": """\
        [tool.pytest.ini_options]
        filterwarnings = ["error"]
        addopts = "-p no:cacheprovider"
    """,
    "test_sample.py": """\
        import warnings

        import pytest


        def test_passes():
            assert sum([1, 2]) == 3


        def test_fails_with_rewritten_assert():
            total = sum([1, 2])
            assert total == 4


        def test_warning_is_an_error():
            with pytest.raises(UserWarning):
                warnings.warn("boom", UserWarning)
    """,
}


def _pytest_outcome(result: subprocess.CompletedProcess[str]) -> tuple[int, list[str]]:
    """Exit status and the report lines, timings taken out."""
    lines = [re.sub(r" in [0-9.]+s", " in Xs", line) for line in result.stdout.splitlines()]
    return result.returncode, [line for line in lines if not line.startswith(("platform ", "rootdir", "plugins:"))]


def _pytest_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    for name, text in PYTEST_PROJECT.items():
        (project / name).write_text(textwrap.dedent(text))
    return project


def test_pytest_under_hostapp_run_is_plain_pytest_with_warnings_as_errors(tmp_path):
    project = _pytest_project(tmp_path)
    plain = run(["-m", "pytest"], project)
    traced = run(["-m", "hostapp", "run", "-q", "-m", "pytest"], project)
    assert "PytestAssertRewriteWarning" not in traced.stdout + traced.stderr
    assert _pytest_outcome(traced) == _pytest_outcome(plain)
    assert plain.returncode == 1  # one test fails, reported with the rewritten assert:
    assert "assert 3 == 4" in traced.stdout
    assert "1 failed, 2 passed" in traced.stdout


def test_the_same_with_hostapp_installed_from_a_wheel(tmp_path):
    """A wheel install lists every top-level package of the distribution in RECORD, and
    pytest marks each for rewriting: ``hostapp`` and ``hostapp_plugins`` say
    ``PYTEST_DONT_REWRITE``."""
    src = Path(__file__).resolve().parents[1] / "src"
    files = {
        path.relative_to(src).as_posix(): path.read_text(encoding="utf-8")
        for package in ("hostapp", "hostapp_plugins", "hostapp_pytest")
        for path in (src / package).rglob("*.py")
    }
    installed = importlib.metadata.distribution("hostapp")
    entry_points: dict[str, dict[str, str]] = {}
    for ep in installed.entry_points:
        entry_points.setdefault(ep.group, {})[ep.name] = ep.value
    site = tmp_path / "site"
    install_distribution(site, "hostapp", installed.version, entry_points=entry_points, files=files)
    project = _pytest_project(tmp_path)
    env = {"PYTHONPATH": str(site)}
    where = run(["-c", "import hostapp; print(hostapp.__file__)"], project, **env)
    assert where.stdout.strip() == str(site / "hostapp" / "__init__.py")
    plain = run(["-m", "pytest"], project, **env)
    traced = run(["-m", "hostapp", "run", "-q", "-m", "pytest"], project, **env)
    assert "PytestAssertRewriteWarning" not in traced.stdout + traced.stderr
    assert _pytest_outcome(traced) == _pytest_outcome(plain)
    assert "1 failed, 2 passed" in traced.stdout


def test_hostapp_is_not_imported_by_a_plain_pytest_run(tmp_path):
    """The fixtures come from ``hostapp_pytest``; pytest alone never marks ``hostapp``."""
    project = _pytest_project(tmp_path)
    (project / "test_sample.py").write_text(textwrap.dedent("""\
        import sys

        def test_fixtures_are_there(hostapp_pm):
            assert "hostapp_pytest" in sys.modules
            assert type(hostapp_pm).__name__ == "PluginManager"
    """))
    got = run(["-m", "pytest", "-q"], project)
    assert got.returncode == 0, got.stdout + got.stderr
