"""The on-disk entry-point index: cold/warm reads, invalidation, corruption, atomic writes.

Real distributions are installed with ``install_distribution`` into site directories under
``tmp_path``. Directory mtimes are moved into the past with ``os.utime`` where a test needs
an entry to be "settled" (older than the racy window), exactly as time passing would.
"""

from __future__ import annotations

import importlib
import json
import marshal
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import importlib_metadata
import pytest

from hostapp.testing._distfactory import install_distribution, remove_distribution
from hostapp.discovery import EntryPointIndex, EntryPointRecord, read_entry_points
from hostapp.discovery import _scan
from hostapp.discovery.index import CACHE_FORMAT, MAX_CACHE_FILES

GROUP = "hostapp"


def settle(*paths: Path, seconds: float = 30) -> None:
    """Move the mtime of ``paths`` and their children into the past, as if changed ``seconds`` ago."""
    past = time.time_ns() - int(seconds * 1e9)
    for path in paths:
        for child in path.iterdir() if path.is_dir() else ():
            os.utime(child, ns=(past, past))
        os.utime(path, ns=(past, past))


def index(site: Path, cache: Path, *extra: Path, **kw) -> EntryPointIndex:
    return EntryPointIndex((GROUP,), cache_dir=cache, path=[str(site), *map(str, extra)], **kw)


def reference(*paths: Path, group: str = GROUP) -> list[tuple[str, str, str, str]]:
    """What importlib_metadata itself reports for ``paths`` (unique distributions, first wins)."""
    seen: set[str] = set()
    out = []
    for dist in importlib_metadata.distributions(path=[str(p) for p in paths]):
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name in seen:
            continue
        seen.add(name)
        out += [(dist.metadata["Name"], dist.version, ep.name, ep.value) for ep in dist.entry_points.select(group=group)]
    return out


def summary(records: list[EntryPointRecord]) -> list[tuple[str, str, str, str]]:
    return [(r.distribution, r.version, r.name, r.value) for r in records]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site directory with three distributions, one without hostapp entry points."""
    path = tmp_path / "site"
    install_distribution(path, "alpha-dist", "1.0", {GROUP: {"alpha": "alpha_mod", "alpha2": "alpha_mod:obj"}})
    install_distribution(path, "Beta_Dist", "2.5", {GROUP: {"beta": "beta_mod"}, "console_scripts": {"b": "beta_mod:main"}})
    install_distribution(path, "no-plugins", "0.1", {"console_scripts": {"np": "np:main"}})
    install_distribution(path, "no-eps-at-all", "0.1")
    settle(path)
    importlib.invalidate_caches()
    return path


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("ep-*.idx"))


def payload(idx: EntryPointIndex) -> tuple:
    """The cache file's content: ``(magic, format, key material, rows)``."""
    return marshal.loads(idx.cache_file.read_bytes())


def test_cold_then_warm_gives_equal_records(site: Path, cache: Path) -> None:
    cold = index(site, cache)
    cold_records = cold.read()
    assert cold.status == "cold"
    assert cold.cache_file.exists()
    warm = index(site, cache)
    warm_records = warm.read()
    assert (warm.status, warm.rescanned) == ("warm", ())
    assert warm_records == cold_records == index(site, cache).scan()
    assert summary(warm_records) == reference(site)
    assert sorted(r.name for r in warm_records) == ["alpha", "alpha2", "beta"]
    beta = next(r for r in warm_records if r.name == "beta")
    assert beta == EntryPointRecord("Beta_Dist", "2.5", GROUP, "beta", "beta_mod", str(site / "Beta_Dist-2.5.dist-info"))


def test_cache_file_shape(site: Path, cache: Path) -> None:
    idx = index(site, cache)
    idx.read()
    assert idx.cache_file.name == f"ep-{idx.key}.idx"
    magic, fmt, key, rows = payload(idx)
    assert (magic, fmt) == ("hostapp entry-point index", CACHE_FORMAT)
    assert key == (CACHE_FORMAT, sys.executable, sys.version, (GROUP,), (str(site),))
    ((path, mtime_ns, racy, listing, listing_racy, norms, columns),) = rows
    assert path == str(site)
    assert mtime_ns == os.stat(site).st_mtime_ns
    assert racy is False
    assert listing.startswith("4:")  # a fingerprint of the 4 .dist-info directories
    assert listing_racy is False
    assert sorted(norms) == ["alpha-dist", "beta-dist", "no-eps-at-all", "no-plugins"]
    records = sorted(zip(*columns))
    beta, alpha = str(site / "Beta_Dist-2.5.dist-info"), str(site / "alpha_dist-1.0.dist-info")
    assert records == [
        ("Beta_Dist", "2.5", GROUP, "beta", "beta_mod", beta, "beta-dist"),
        ("alpha-dist", "1.0", GROUP, "alpha", "alpha_mod", alpha, "alpha-dist"),
        ("alpha-dist", "1.0", GROUP, "alpha2", "alpha_mod:obj", alpha, "alpha-dist"),
    ]


def test_adding_and_removing_a_distribution_invalidates(site: Path, cache: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    settle(other)
    assert index(site, cache, other).read()  # cold, written

    added = install_distribution(site, "gamma-dist", "3.0", {GROUP: {"gamma": "gamma_mod"}})
    idx = index(site, cache, other)
    records = idx.read()
    assert (idx.status, idx.rescanned) == ("updated", (str(site),))  # `other` reused from the cache
    assert "gamma" in [r.name for r in records]
    assert summary(records) == reference(site, other)

    remove_distribution(added)
    assert not added.exists()
    idx = index(site, cache, other)
    records = idx.read()
    assert idx.status == "updated"
    assert "gamma" not in [r.name for r in records]
    assert summary(records) == reference(site, other)


def test_unrelated_change_in_a_path_entry_reuses_its_records(site: Path, cache: Path) -> None:
    cold = index(site, cache)
    records = cold.read()
    (site / "__pycache__").mkdir()  # the directory's mtime changes, its distributions don't
    (site / "notes.txt").write_text("x")
    for _ in range(2):  # the first sees a new mtime, the second a "racy" (too recent) one
        idx = index(site, cache)
        assert idx.read() == records
        assert (idx.status, idx.rescanned) == ("warm", ())
    assert payload(idx)[3][0][1] == os.stat(site).st_mtime_ns


def test_reinstalling_the_same_version_is_seen(site: Path, cache: Path) -> None:
    index(site, cache).read()
    remove_distribution(site / "alpha_dist-1.0.dist-info")
    install_distribution(site, "alpha-dist", "1.0", {GROUP: {"alpha": "alpha_mod", "alpha_new": "alpha_mod:new"}})
    importlib.invalidate_caches()
    idx = index(site, cache)
    assert sorted(r.name for r in idx.read()) == ["alpha", "alpha_new", "beta"]
    assert idx.rescanned == (str(site),)


def test_a_new_path_entry_is_scanned_alone(site: Path, cache: Path, tmp_path: Path) -> None:
    later = tmp_path / "later"
    index(site, cache, later).read()  # `later` does not exist yet
    install_distribution(later, "later-dist", "1.0", {GROUP: {"later": "later_mod"}})
    idx = index(site, cache, later)
    assert "later" in [r.name for r in idx.read()]
    assert idx.rescanned == (str(later),)


def test_racy_entry_is_rescanned_even_if_mtime_looks_unchanged(tmp_path: Path, cache: Path) -> None:
    site = tmp_path / "fresh"
    install_distribution(site, "first", "1.0", {GROUP: {"first": "m"}})
    first = index(site, cache)
    first.read()  # the directory was modified just now: recorded as racy
    mtime = os.stat(site).st_mtime_ns
    # A second install within the same timestamp tick of a coarse-grained file system:
    install_distribution(site, "second", "1.0", {GROUP: {"second": "m"}})
    os.utime(site, ns=(mtime, mtime))
    importlib.invalidate_caches()
    again = index(site, cache)
    assert sorted(r.name for r in again.read()) == ["first", "second"]
    assert again.rescanned == (str(site),)


def test_in_place_entry_points_edit_is_the_documented_limitation(site: Path, cache: Path) -> None:
    index(site, cache).read()
    ep_file = site / "alpha_dist-1.0.dist-info" / "entry_points.txt"
    mtime = os.stat(site).st_mtime_ns
    ep_file.write_text("[hostapp]\nalpha = alpha_mod\nalpha3 = alpha_mod:new\n")
    assert os.stat(site).st_mtime_ns == mtime  # editing inside a dist-info does not touch the site dir
    stale = index(site, cache)
    assert "alpha3" not in [r.name for r in stale.read()]
    assert stale.status == "warm"
    assert "alpha3" in [r.name for r in index(site, cache, use_cache=False).read()]
    assert index(site, cache).clear() == 1
    rebuilt = index(site, cache)
    assert "alpha3" in [r.name for r in rebuilt.read()]
    assert rebuilt.status == "cold"


def _good_rows(site: Path) -> tuple:
    return ((str(site), os.stat(site).st_mtime_ns, False, None, False, ("a",), (("d",), ("1",), (GROUP,), ("n",), ("v",), ("",), ("a",))),)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"format": 2, "key": null, "entries": []}',
        b"\x00\xff garbage",
        "TRUNCATED",
        "EMPTY_TUPLE",
        "WRONG_MAGIC",
        "OTHER_FORMAT",
        "OTHER_KEY",
        "ROWS_NOT_A_TUPLE",
        "ROW_TOO_SHORT",
        "BAD_MTIME",
        "COLUMNS_UNEVEN",
        "NON_STR_FIELD",
        "NONE_FIELD",
        "NON_STR_NORM",
    ],
)
def test_corrupt_cache_file_is_rebuilt(site: Path, cache: Path, content: bytes | str) -> None:
    idx = index(site, cache)
    good = idx.read()
    key = (CACHE_FORMAT, sys.executable, sys.version, (GROUP,), (str(site),))
    magic = "hostapp entry-point index"
    (row,) = _good_rows(site)
    bad_columns = {
        "COLUMNS_UNEVEN": (("d", "e"), *row[6][1:]),
        "NON_STR_FIELD": (row[6][0], (1,), *row[6][2:]),
        "NONE_FIELD": (*row[6][:5], (None,), row[6][6]),
    }
    variants = {
        "TRUNCATED": idx.cache_file.read_bytes()[: idx.cache_file.stat().st_size // 2],
        "EMPTY_TUPLE": marshal.dumps(()),
        "WRONG_MAGIC": marshal.dumps(("something else", CACHE_FORMAT, key, (row,))),
        "OTHER_FORMAT": marshal.dumps((magic, 99, key, (row,))),
        "OTHER_KEY": marshal.dumps((magic, CACHE_FORMAT, (*key[:4], ("/elsewhere",)), (row,))),
        "ROWS_NOT_A_TUPLE": marshal.dumps((magic, CACHE_FORMAT, key, [row])),
        "ROW_TOO_SHORT": marshal.dumps((magic, CACHE_FORMAT, key, (row[:6],))),
        "BAD_MTIME": marshal.dumps((magic, CACHE_FORMAT, key, ((row[0], "x", *row[2:]),))),
        "NON_STR_NORM": marshal.dumps((magic, CACHE_FORMAT, key, ((*row[:5], (1,), *row[6:]),))),
    }
    for name, columns in bad_columns.items():
        variants[name] = marshal.dumps((magic, CACHE_FORMAT, key, ((*row[:6], columns),)))
    # The well-formed file these variants spoil is accepted (so each test spoils one thing):
    idx.cache_file.write_bytes(marshal.dumps((magic, CACHE_FORMAT, key, (row,))))
    assert [(r.distribution, r.name) for r in index(site, cache).read()] == [("d", "n")]

    idx.cache_file.write_bytes(variants.get(content, content) if isinstance(content, str) else content)
    again = index(site, cache)
    assert again.read() == good
    assert again.status == "cold"
    assert payload(idx)[1] == CACHE_FORMAT  # rewritten, valid


def test_writes_are_atomic_and_leave_no_temporary_files(site: Path, cache: Path) -> None:
    for _ in range(3):
        index(site, cache).read()
        install_distribution(site, f"extra-{time.monotonic_ns()}", "1.0")
    assert [p.name for p in cache.iterdir() if not p.name.startswith("ep-")] == []
    (only,) = cache_files(cache)
    assert marshal.loads(only.read_bytes())[1] == CACHE_FORMAT


def test_stale_temporary_files_are_pruned(site: Path, cache: Path) -> None:
    cache.mkdir()
    stale = cache / ".ep-deadbeef.json.123.abcd.tmp"
    fresh = cache / ".ep-cafe.json.456.ef01.tmp"
    stale.write_text("{")
    fresh.write_text("{")
    settle(stale, seconds=7200)
    index(site, cache).read()
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer still running


def test_at_most_max_cache_files_are_kept(site: Path, cache: Path, tmp_path: Path) -> None:
    for i in range(MAX_CACHE_FILES + 4):
        extra = tmp_path / f"entry{i}"
        index(site, cache, extra).read()  # a different sys.path: a different key
    assert len(cache_files(cache)) == MAX_CACHE_FILES
    newest = index(site, cache, tmp_path / f"entry{MAX_CACHE_FILES + 3}")
    assert newest.cache_file.exists()
    assert not index(site, cache, tmp_path / "entry0").cache_file.exists()


def test_key_depends_on_groups_and_path(site: Path, cache: Path, tmp_path: Path) -> None:
    base = index(site, cache)
    assert base.key != EntryPointIndex((GROUP, "kolo.processors"), cache_dir=cache, path=[str(site)]).key
    assert base.key != index(site, cache, tmp_path).key
    assert base.key == index(site, cache).key
    assert len(base.key) == 16


def test_use_cache_false_reads_and_writes_nothing(site: Path, cache: Path) -> None:
    idx = index(site, cache, use_cache=False)
    records = idx.read()
    assert idx.status == "disabled"
    assert summary(records) == reference(site)
    assert not cache.exists()
    assert summary(read_entry_points([GROUP], use_cache=False, cache_dir=cache, path=[str(site)])) == reference(site)
    assert not cache.exists()


def test_unwritable_cache_dir_still_returns_records(site: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    idx = index(site, blocker / "cache")
    assert summary(idx.read()) == reference(site)


def test_distributions_are_unique_by_normalized_name_first_wins(tmp_path: Path, cache: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    install_distribution(first, "Foo.Bar", "2.0", {GROUP: {"foo_new": "foo_mod"}})
    install_distribution(second, "foo-bar", "1.0", {GROUP: {"foo_old": "foo_mod"}})
    install_distribution(second, "other", "1.0", {GROUP: {"other": "other_mod"}})
    settle(first, second)
    records = EntryPointIndex([GROUP], cache_dir=cache, path=[str(first), str(second)]).read()
    assert [r.name for r in records] == ["foo_new", "other"]
    assert summary(records) == reference(first, second)
    warm = EntryPointIndex([GROUP], cache_dir=cache, path=[str(first), str(second)])
    assert warm.read() == records and warm.status == "warm"


def test_two_distributions_same_entry_point_name_both_returned_in_path_order(tmp_path: Path, cache: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    install_distribution(first, "one", "1.0", {GROUP: {"same": "one_mod"}})
    install_distribution(second, "two", "1.0", {GROUP: {"same": "two_mod"}})
    records = read_entry_points([GROUP], cache_dir=cache, path=[str(second), str(first)])
    assert [(r.distribution, r.name) for r in records] == [("two", "same"), ("one", "same")]


def test_several_groups(site: Path, cache: Path) -> None:
    records = read_entry_points([GROUP, "console_scripts"], cache_dir=cache, path=[str(site)])
    assert sorted((r.group, r.name) for r in records) == [
        ("console_scripts", "b"),
        ("console_scripts", "np"),
        ("hostapp", "alpha"),
        ("hostapp", "alpha2"),
        ("hostapp", "beta"),
    ]


def test_default_path_is_sys_path(site: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    idx = EntryPointIndex([GROUP], cache_dir=cache)
    assert idx.entries[0] == str(site)
    assert sorted(r.name for r in idx.read() if r.dist_path.startswith(str(site))) == ["alpha", "alpha2", "beta"]


WARM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, SITE)
    before = set(sys.modules)  # json, pathlib and what they import are the script's
    import hostapp.discovery as d
    preloaded = sorted(m for m in ("importlib.metadata", "importlib_metadata") if m in sys.modules)
    infos = d.discover(d.DiscoveryOptions(cache_dir=Path(CACHE)), environ={})
    heavy = sorted(m for m in HEAVY if m in sys.modules and m not in before)
    idx = d.EntryPointIndex(("hostapp",), cache_dir=CACHE)
    idx.read()
    print(json.dumps({
        "preloaded": preloaded,
        "loaded": sorted(m for m in ("importlib.metadata", "importlib_metadata") if m in sys.modules),
        "heavy": heavy,
        "names": sorted(i.name for i in infos),
        "status": idx.status,
        "rescanned": idx.rescanned,
    }))
    """
)


#: Modules a warm discover() does not need (each costs 0.3-3 ms to import). dataclasses is
#: not among them: PluginInfo and DiscoveryOptions are plain dataclasses (about 2 ms of a
#: warm discovery; every host imports dataclasses anyway, for the event record and the specs).
HEAVY = (
    "hostapp.types",
    "hostapp.errors",
    "hostapp.discovery._scan",
    "hostapp.discovery._record",
    "json",
    "traceback",
    "zlib",
    "fnmatch",
    "platformdirs",
)


def test_warm_discover_does_not_import_importlib_metadata(site: Path, cache: Path) -> None:
    script = WARM_SCRIPT.replace("SITE", repr(str(site))).replace("CACHE", repr(str(cache))).replace("HEAVY", repr(HEAVY))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_") or k == "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"}

    def run() -> dict:
        # -P: no script directory / current directory on sys.path
        done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    cold = run()
    assert cold["loaded"] == [], "scanning plain site directories must not import importlib metadata"
    warm = run()
    assert warm["preloaded"] == [], "importing hostapp.discovery pulled in importlib metadata"
    assert warm["status"] == "warm", warm["rescanned"]
    assert warm["loaded"] == [], "a warm discover must not import importlib.metadata / importlib_metadata"
    assert warm["heavy"] == [], "a warm discover imported modules it does not need"
    assert {"alpha", "alpha2", "beta"} <= set(warm["names"])
    assert warm["names"] == cold["names"]

    (site / "unrelated.py").write_text("")  # changes the site directory's mtime only
    touched = run()
    assert (touched["status"], touched["loaded"]) == ("warm", [])
    assert touched["names"] == cold["names"]


# -- the scanner matches importlib.metadata -------------------------------------------------


def library_entry_points(text: str, groups: tuple[str, ...] = (GROUP,)) -> list[tuple[str, str, str]]:
    """What importlib_metadata parses out of an ``entry_points.txt`` text."""
    return [(ep.group, ep.name, ep.value) for ep in importlib_metadata.EntryPoints._from_text(text) if ep.group in groups]


@pytest.mark.parametrize(
    "text",
    [
        "[hostapp]\na = b\n",
        "  [hostapp]  \n  a=b  \n# comment = x\n; semi = x\n",
        "[[hostapp]]\na = b\n",
        "[ hostapp ]\na = b\n",
        "\ufeff[hostapp]\na = b\n",
        "a = b\n[hostapp]\nc = d\n",
        "[hostapp]\na = b = c\n",
        "[hostapp]\r\na = b\r\n[other]\rx = y\r",
        "[hostapp]\n=value\nname=\n",
        "[hostapp]\na = b\n[other]\nx = y\n[hostapp]\nc = d\n",
        "[hostapp]\n  # comment\n\n\ta = mod:obj.attr [extra1, extra2]\n",
        "[hostapp]\x0ba = b\x0c[other]\x1cc = d\u2028e = f\n",
        "[hostapp]\na = b\n[console_scripts]\nx = y:z\n",
        "[hostapp]",
        "",
    ],
)
def test_parse_entry_points_matches_importlib_metadata(text: str) -> None:
    assert _scan.parse_entry_points(text, (GROUP,)) == library_entry_points(text)
    both = (GROUP, "other")
    assert _scan.parse_entry_points(text, both) == library_entry_points(text, both)


@pytest.mark.parametrize("text", ["[hostapp]\nno equals sign\n", "[other]\nbroken\n[hostapp]\na = b\n"])
def test_parse_entry_points_raises_where_importlib_metadata_does(text: str) -> None:
    with pytest.raises((ValueError, TypeError)):  # the backport raises TypeError, the stdlib ValueError
        library_entry_points(text)
    with pytest.raises(ValueError):
        _scan.parse_entry_points(text, (GROUP,))


def library_name_and_version(text: str) -> tuple[str, str]:
    import email

    from importlib_metadata._adapters import Message

    message = Message(email.message_from_string(text))
    return message["Name"], message["Version"]


@pytest.mark.parametrize(
    "text",
    [
        "Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n\nbody\nName: not this\n",
        "name:  Foo  \nVERSION:1.0\n",
        "Version: 2\nName: a\nName: b\n",
        "Name: foo\nSummary: a summary\n  folded on two lines\nVersion: 1\n",
        "Name:\nVersion: 1\n",
        "Name: f\u00f6\u00f6\nVersion: 1.0+local\n",
        "Name:\tfoo\nVersion: \t1\n",
        "X-Weird!#$%&'*+-.^_`|~: value\nName: foo\nVersion: 1\n",
    ],
)
def test_name_and_version_matches_email_parser(text: str) -> None:
    assert _scan.name_and_version(text) == library_name_and_version(text)


@pytest.mark.parametrize(
    "text",
    [
        "Name: foo\n  folded\nVersion: 1\n",  # folded Name: left to the library
        "Name: foo\nVersion: 1\n\tfolded\n",
        "Name: foo\n",  # no Version
        "Version: 1\n",
        "From someone\nName: foo\nVersion: 1\n",
        "Name: foo\r\nVersion: 1\r\n",
        "Bad Header: x\nName: foo\nVersion: 1\n",
        "\nName: foo\nVersion: 1\n",
    ],
)
def test_name_and_version_leaves_unusual_headers_to_the_library(text: str) -> None:
    assert _scan.name_and_version(text) is None


def write_metadata_dir(parent: Path, dirname: str, files: dict[str, str | bytes]) -> Path:
    path = parent / dirname
    path.mkdir(parents=True)
    for name, content in files.items():
        (path / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def reference_full(*paths: Path, group: str = GROUP) -> list[tuple[str, str, str, str, str]]:
    """Like :func:`reference`, with the metadata directory of each entry point."""
    seen: set[str] = set()
    out = []
    for dist in importlib_metadata.distributions(path=[str(p) for p in paths]):
        if dist._normalized_name in seen:
            continue
        seen.add(dist._normalized_name)
        meta = dist.metadata
        out += [(meta["Name"], meta["Version"], ep.name, ep.value, str(dist._path)) for ep in dist.entry_points.select(group=group)]
    return out


def full(records: list[EntryPointRecord]) -> list[tuple[str, str, str, str, str | None]]:
    return [(r.distribution, r.version, r.name, r.value, r.dist_path) for r in records]


def test_unusual_distributions_are_read_as_importlib_metadata_reads_them(tmp_path: Path, cache: Path) -> None:
    import zipfile

    site = tmp_path / "site"
    ep = "[hostapp]\n{name} = {name}_mod\n"
    install_distribution(site, "plain", "1.0", {GROUP: {"plain": "plain_mod"}})
    write_metadata_dir(site, "bom-1.0.dist-info", {"METADATA": "Name: bom\nVersion: 1.0\n", "entry_points.txt": "\ufeff[hostapp]\nbom = m\n[hostapp]\nbom2 = m\n"})
    write_metadata_dir(site, "folded-1.0.dist-info", {"METADATA": "Name: Folded\nSummary: one\n  two\nVersion: 2.0\n", "entry_points.txt": ep.format(name="folded")})
    write_metadata_dir(site, "FoldedName-1.0.dist-info", {"METADATA": "Metadata-Version: 2.1\nName: FoldedName\n  more\nVersion: 1\n", "entry_points.txt": ep.format(name="foldedname")})
    write_metadata_dir(site, "crlf-1.0.dist-info", {"METADATA": "Name: crlf\r\nVersion: 3\r\n", "entry_points.txt": "[hostapp]\r\ncrlf = m\r\n"})
    write_metadata_dir(site, "legacy-0.5-py3.11.egg-info", {"PKG-INFO": "Metadata-Version: 1.1\nName: legacy\nVersion: 0.5\n", "entry_points.txt": ep.format(name="legacy")})
    write_metadata_dir(site, "nover.dist-info", {"METADATA": "Name: nover\nVersion: 9\n", "entry_points.txt": ep.format(name="nover")})
    write_metadata_dir(site, "-1.0.dist-info", {"METADATA": "Name: noname\nVersion: 1\n", "entry_points.txt": ep.format(name="noname")})
    write_metadata_dir(site, "Dup-1.0.dist-info", {"METADATA": "Name: Dup\nVersion: 1.0\n", "entry_points.txt": ep.format(name="dup1")})
    write_metadata_dir(site, "dup-2.0.dist-info", {"METADATA": "Name: dup\nVersion: 2.0\n", "entry_points.txt": ep.format(name="dup2")})
    write_metadata_dir(site, "other-1.0.dist-info", {"METADATA": "Name: other\nVersion: 1\n", "entry_points.txt": "[console_scripts]\nhostapp = x:y\n# [hostapp]\n"})
    (site / "file-1.0.egg-info").write_text("Metadata-Version: 1.0\nName: file\nVersion: 1.0\n")
    egg = tmp_path / "eggy-1.0-py3.11.egg"
    write_metadata_dir(egg, "EGG-INFO", {"PKG-INFO": "Name: eggy\nVersion: 1.0\n", "entry_points.txt": ep.format(name="eggy")})
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        zf.writestr("zipped-1.0.dist-info/entry_points.txt", ep.format(name="zipped"))
        zf.writestr("plain-7.0.dist-info/METADATA", "Name: plain\nVersion: 7.0\n")  # shadowed by site's
        zf.writestr("plain-7.0.dist-info/entry_points.txt", ep.format(name="plain7"))
    settle(site, egg, archive)
    importlib.invalidate_caches()

    paths = (site, egg, archive)
    expected = reference_full(*paths)
    assert {name for _, _, name, _, _ in expected} >= {"plain", "bom2", "folded", "crlf", "legacy", "nover", "noname", "eggy", "zipped"}
    for use_cache in (False, True, True):  # no cache, cold, warm
        idx = index(site, cache, egg, archive, use_cache=use_cache)
        assert full(idx.read()) == expected, idx.status
    assert idx.status == "warm"


def test_broken_distributions_lose_their_entry_points_but_still_shadow(tmp_path: Path, cache: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_metadata_dir(first, "badline-1.0.dist-info", {"METADATA": "Name: badline\nVersion: 1\n", "entry_points.txt": "[hostapp]\nok = m\nbroken line\n"})
    write_metadata_dir(first, "latin1-1.0.dist-info", {"METADATA": "Name: latin1\nVersion: 1\n", "entry_points.txt": b"[hostapp]\nl = caf\xe9\n"})
    write_metadata_dir(first, "nometa-1.0.dist-info", {"entry_points.txt": "[hostapp]\nnometa = m\n"})
    for name in ("badline", "latin1", "nometa"):
        install_distribution(second, name, "2.0", {GROUP: {f"{name}_second": "m"}})
    install_distribution(second, "fine", "1.0", {GROUP: {"fine": "m"}})
    settle(first, second)
    for use_cache in (False, True, True):
        records = index(first, cache, second, use_cache=use_cache).read()
        assert [r.name for r in records] == ["fine"]


def test_scan_yields_records_in_importlib_metadata_order(tmp_path: Path, cache: Path) -> None:
    site = tmp_path / "site"
    for i in range(30):
        install_distribution(site, f"order-{i:02d}", "1.0", {GROUP: {f"order{i:02d}": "m"}})
    settle(site)
    assert summary(index(site, cache, use_cache=False).read()) == reference(site)


def test_legacy_json_cache_files_are_pruned_and_cleared(site: Path, cache: Path, tmp_path: Path) -> None:
    cache.mkdir()
    legacy = [cache / f"ep-{i:016x}.json" for i in range(MAX_CACHE_FILES)]
    for path in legacy:
        path.write_text("{}")
        settle(path, seconds=100)
    idx = index(site, cache)
    idx.read()  # one current file: the oldest legacy one goes
    assert idx.cache_file.exists()
    assert len(list(cache.glob("ep-*.json"))) == MAX_CACHE_FILES - 1
    assert idx.clear() == MAX_CACHE_FILES
    assert list(cache.iterdir()) == []


def test_entry_point_record_class_is_created_on_first_use() -> None:
    script = textwrap.dedent(
        """
        import pickle, sys, dataclasses
        import hostapp.discovery as d
        assert "hostapp.discovery._record" not in sys.modules
        from hostapp.discovery.index import EntryPointRecord
        assert d.EntryPointRecord is EntryPointRecord is d.index.EntryPointRecord
        assert dataclasses.is_dataclass(EntryPointRecord)
        record = EntryPointRecord("d", "1", "g", "n", "v", None)
        assert pickle.loads(pickle.dumps(record)) == record
        assert repr(record).startswith("EntryPointRecord(distribution='d'")
        try:
            d.NoSuchName
        except AttributeError:
            pass
        else:
            raise AssertionError("expected AttributeError")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Foo.Bar_baz", "foo-bar-baz"), ("a__b--c..d", "a-b-c-d"), ("A-_.-B", "a-b"), ("-x-", "-x-"), ("", ""), ("Ünï_Çödé", "ünï-çödé")],
)
def test_normalize_name_is_pep503(name: str, expected: str) -> None:
    from hostapp.discovery.index import normalize_name

    assert normalize_name(name) == expected == re.sub(r"[-_.]+", "-", name).lower()
