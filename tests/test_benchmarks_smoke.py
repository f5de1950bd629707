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
