"""The on-disk entry-point index: cold/warm reads, invalidation, corruption, atomic writes.

Real distributions are installed with ``install_distribution`` into site directories under
``tmp_path``. Directory mtimes are moved into the past with ``os.utime`` where a test needs
an entry to be "settled" (older than the racy window), exactly as time passing would.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import importlib_metadata
import pytest

from hostapp._distfactory import install_distribution, remove_distribution
from hostapp.discovery import EntryPointIndex, EntryPointRecord, read_entry_points
from hostapp.discovery.index import MAX_CACHE_FILES

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
    return sorted(cache.glob("ep-*.json"))


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
    data = json.loads(idx.cache_file.read_text())
    assert data["format"] == 2
    assert data["key"] == [sys.executable, sys.version, [GROUP], [str(site)]]
    (row,) = data["entries"]
    assert row["path"] == str(site)
    assert row["mtime_ns"] == os.stat(site).st_mtime_ns
    assert row["racy"] is False
    assert row["listing"].startswith("4:")  # a fingerprint of the 4 .dist-info directories
    assert row["listing_racy"] is False
    names = sorted(name for name, _ in row["dists"])
    assert names == ["alpha-dist", "beta-dist", "no-eps-at-all", "no-plugins"]


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
    assert json.loads(idx.cache_file.read_text())["entries"][0]["mtime_ns"] == os.stat(site).st_mtime_ns


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


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[]",
        '{"format": 1}',
        '{"format": 99, "key": null, "entries": []}',
        "KEY_WITH_BAD_ROWS",
        "KEY_WITH_BAD_RECORD",
        "\x00\xff garbage",
    ],
)
def test_corrupt_cache_file_is_rebuilt(site: Path, cache: Path, content: str) -> None:
    idx = index(site, cache)
    good = idx.read()
    key = [sys.executable, sys.version, [GROUP], [str(site)]]
    if content == "KEY_WITH_BAD_ROWS":
        content = json.dumps({"format": 2, "key": key, "entries": [{"path": str(site), "mtime_ns": "x"}]})
    elif content == "KEY_WITH_BAD_RECORD":
        row = {"path": str(site), "mtime_ns": os.stat(site).st_mtime_ns, "racy": False, "dists": [["a", [["too", "short"]]]]}
        content = json.dumps({"format": 2, "key": key, "entries": [row]})
    idx.cache_file.write_text(content, errors="surrogateescape")
    again = index(site, cache)
    assert again.read() == good
    assert again.status == "cold"
    assert json.loads(idx.cache_file.read_text())["format"] == 2  # rewritten, valid


def test_writes_are_atomic_and_leave_no_temporary_files(site: Path, cache: Path) -> None:
    for _ in range(3):
        index(site, cache).read()
        install_distribution(site, f"extra-{time.monotonic_ns()}", "1.0")
    assert [p.name for p in cache.iterdir() if not p.name.startswith("ep-")] == []
    (only,) = cache_files(cache)
    json.loads(only.read_text())


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
    sys.path.insert(0, SITE)
    import hostapp.discovery as d
    from pathlib import Path
    preloaded = sorted(m for m in ("importlib.metadata", "importlib_metadata") if m in sys.modules)
    infos = d.discover(d.DiscoveryOptions(cache_dir=Path(CACHE)), environ={})
    idx = d.EntryPointIndex(("hostapp",), cache_dir=CACHE)
    idx.read()
    print(json.dumps({
        "preloaded": preloaded,
        "loaded": sorted(m for m in ("importlib.metadata", "importlib_metadata") if m in sys.modules),
        "names": sorted(i.name for i in infos),
        "status": idx.status,
        "rescanned": idx.rescanned,
    }))
    """
)


def test_warm_discover_does_not_import_importlib_metadata(site: Path, cache: Path) -> None:
    script = WARM_SCRIPT.replace("SITE", repr(str(site))).replace("CACHE", repr(str(cache)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTAPP_")}

    def run() -> dict:
        # -P: no script directory / current directory on sys.path
        done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    cold = run()
    assert cold["loaded"]  # the cold scan needs importlib_metadata
    warm = run()
    assert warm["preloaded"] == [], "importing hostapp.discovery pulled in importlib metadata"
    assert warm["status"] == "warm", warm["rescanned"]
    assert warm["loaded"] == [], "a warm discover must not import importlib.metadata / importlib_metadata"
    assert {"alpha", "alpha2", "beta"} <= set(warm["names"])
    assert warm["names"] == cold["names"]

    (site / "unrelated.py").write_text("")  # changes the site directory's mtime only
    touched = run()
    assert (touched["status"], touched["loaded"]) == ("warm", [])
    assert touched["names"] == cold["names"]
