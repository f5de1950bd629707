"""The benchmark runs and its accounting adds up; its speed is not judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_benchmark_smoke(tmp_path: Path) -> None:
    """A tiny run of every scenario completes, delivers every event and writes its JSON."""
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--n", "2000",
         "--ingest-lines", "3000", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["end_to_end"]["events"] == 2000
    assert data["short_sessions"]["events"] == 2000
    assert all(r["orphan_events"] == 0 for r in data["sessions_at_latency"])
    assert data["spool"]["spooled"] + data["spool"]["queue_full"] == data["spool"]["events"]
    assert "floor" in proc.stdout and "raw aiohttp POST" in proc.stdout
    assert [b["max_buffer_bytes"] >> 20 for b in data["burst"]] == [16, 64]
    assert all(b["delivered"] + b["queue_full"] == 2000 + 2000 for b in data["burst"])  # + warm-up
    assert set(data["ingest_workers"]) == {"1", "2"}


def test_integrations_benchmark_smoke() -> None:
    """A tiny run of the instrumentation benchmark completes and delivers every event."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "integrations.py"), "--calls", "20",
         "--rounds", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the wrapper alone" in proc.stdout and "whole calls" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    delivered, accepted = (int(x.replace(",", "")) for x in
                           last.split("delivered ")[1].split(" accepted")[0].split(" of "))
    assert delivered == accepted and last.endswith("dropped 0")


def test_streams_benchmark_smoke() -> None:
    """A tiny run of the fleet benchmark (direct, 1 relay, 2 relays) completes: every
    producer's events reach the collector on every path."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "streams.py"), "--events", "600"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 relays -> API" in proc.stdout and "direct: Exporter -> API" in proc.stdout


def test_service_benchmark_smoke() -> None:
    """A tiny run of the service benchmark: five uvicorn servers answer every request, and
    every event their exporters logged reaches the collector once; the only orphans are the
    ``events`` mode's, which have no session (a third of what was logged)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "service.py"), "--rate", "100",
         "--seconds", "0.5", "--rounds", "1"], capture_output=True, text=True, timeout=120,
        cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sessions10" in proc.stdout and "otel" in proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith("events: "))
    logged, received = (int(x.split()[-1].replace(",", "")) for x in line.split(", ")[:2])
    orphans = int(line.split("orphans ")[1].split(",")[0])
    assert logged == received and orphans == logged // 3 and line.endswith("duplicates 0"), line
