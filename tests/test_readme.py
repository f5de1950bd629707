"""The README's quickstart runs as written, against the local collector."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from hh_exporter.collector import Collector

from .conftest import TOKEN, http_json

README = Path(__file__).parent.parent / "README.md"


async def test_quickstart_runs_as_written(collector: Collector, tmp_path: Path) -> None:
    """The first python block of the README delivers its events to HH_API_URL."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    script = tmp_path / "quickstart.py"
    script.write_text(code.group(1))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HH_API_KEY": TOKEN, "HH_API_URL": collector.url},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "ExporterStats(accepted=2" in out.decode()
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert len(stored) == 2  # the model call and the tool call, under their started session
    _, stats = await http_json(collector.url, "/stats")
    assert stats["sessions_started"] == 1 and stats["orphan_events"] == 0
