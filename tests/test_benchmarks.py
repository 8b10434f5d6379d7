"""The benchmark harness records what it claims: each peer's check sees real spans, traces
and stored events (and fails when they are missing), the raw SQLite floor copies the rows
a host stored into the store's own schema with its pragmas, and the import-time list is
parsed into modules with their importers. Nothing here measures or asserts on time.

The peers come from the ``bench`` extra (``make test`` installs it); a test whose peer is
not installed is skipped.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._common import ChildError
from benchmarks._pythons import current_interpreter
from benchmarks.events import _child as events_child
from benchmarks.peers import EMPTY, REQUESTS, _closed_port, _Peers, parse_importtime

CALLS = 3  # requests500.py makes one warm-up request, then CALLS


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> _Peers:
    agent = _closed_port()
    yield _Peers(current_interpreter(), tmp_path_factory.mktemp("peers"), f"http://127.0.0.1:{agent.getsockname()[1]}")
    agent.close()


def run_requests(peers: _Peers, tool: str) -> dict:
    if peers.missing[tool]:
        pytest.skip(peers.missing[tool])
    _child, out = peers.run(tool, REQUESTS, [str(peers.out), str(CALLS), "0.01"], calls=CALLS + 1, timeout=120)
    assert out["n"] == CALLS and "settled_cpu_s" in out
    return json.loads(peers.report.read_text()) if peers.report.exists() else {}


@pytest.mark.parametrize("tool", ["otel_simple", "otel_batch"])
def test_opentelemetry_keeps_one_span_per_request(peers: _Peers, tool: str) -> None:
    report = run_requests(peers, tool)
    assert report["spans"] == CALLS + 1
    assert report["sample"]["url"].endswith("/warm")
    assert report["processor"] == ("SimpleSpanProcessor" if tool == "otel_simple" else "BatchSpanProcessor")
    assert peers._check(tool, CALLS + 2, 0) == f"{CALLS + 1} spans for {CALLS + 2} HTTP calls"


def test_ddtrace_creates_spans_with_its_agent_unreachable(peers: _Peers) -> None:
    report = run_requests(peers, "ddtrace")
    assert report["enabled"] is True
    assert report["spans"] == CALLS + 1
    assert report["sample"]["url"].endswith("/warm")


def test_hostapp_run_stores_the_calls_in_the_default_store(peers: _Peers) -> None:
    run_requests(peers, "hostapp")
    summary = json.loads(peers.summary.read_text())
    assert summary["store"] == str(peers.dir / ".hostapp" / "hostapp.sqlite3")
    assert summary["sinks"]["sqlite"]["delivered"] >= CALLS + 1
    peers.summary.unlink()
    assert "no run summary" in (peers._check("hostapp", CALLS + 1, 0) or "")


def test_kolo_run_adds_a_trace(peers: _Peers) -> None:
    if peers.missing["kolo"]:
        pytest.skip(peers.missing["kolo"])
    before = peers._kolo_traces()
    peers.run("kolo", EMPTY, [], calls=0, timeout=120)
    assert peers._kolo_traces() == before + 1
    assert peers._check("kolo", 0, before + 1) is not None


def test_opentelemetry_instrument_records_a_requests_call(peers: _Peers) -> None:
    if peers.missing["otel"]:
        pytest.skip(peers.missing["otel"])
    report = peers.otel_auto_check()
    assert report["spans"] == 1 and report["requests_instrumented"] is True
    assert report["provider"] == "opentelemetry.sdk.trace.TracerProvider"


def test_a_failing_peer_is_reported_by_name(peers: _Peers) -> None:
    with pytest.raises(ChildError, match="python"):
        peers.run("python", REQUESTS, [str(peers.out), "not-a-number"], calls=0, timeout=60)


def test_the_raw_floor_copies_the_stored_rows_with_the_stores_schema_and_pragmas(tmp_path: Path) -> None:
    host = events_child.host_mode(200, 4, tmp_path / "host")
    assert (host["stored"], host["lost"]) == (200, 0)
    raw = events_child.raw_mode(Path(host["db"]), tmp_path / "raw")
    assert raw["rows"]["events"] == 200
    assert "seq" not in raw["columns"]["events"] and "data" in raw["columns"]["events"]
    assert "PRAGMA journal_mode=WAL" in raw["pragmas"]
    con = sqlite3.connect(tmp_path / "raw" / "raw.sqlite3")
    source = sqlite3.connect(host["db"])
    query = "SELECT id, type, data FROM events ORDER BY seq"
    assert con.execute(query).fetchall() == source.execute(query).fetchall()
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name"
    assert con.execute(indexes).fetchall() == source.execute(indexes).fetchall()


def test_importtime_lines_become_modules_with_their_importers() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import json"], capture_output=True, text=True,
                          check=True)
    rows = {row["module"]: row for row in parse_importtime(done.stderr)}
    assert rows["json"]["depth"] == 0 and rows["json"]["parent"] is None
    assert rows["json.decoder"]["parent"] == "json"
    assert rows["json"]["cumulative_us"] >= rows["json.decoder"]["cumulative_us"] >= rows["json.decoder"]["self_us"]
