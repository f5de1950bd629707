"""``run_ingest`` in process, against the real collector: batching and stopping."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path

from hh_exporter._ingest import run_ingest
from hh_exporter.collector import Collector, Faults

from .conftest import fast_exporter, http_json


def write(path: Path, n: int, sessions: int) -> None:
    sids = [str(uuid.uuid4()) for _ in range(sessions)]
    with path.open("w") as f:
        for i in range(n):
            line: dict[str, object] = {
                "model": "gpt-4o", "provider": "openai",
                "messages": [{"role": "user", "content": f"q{i}"}],
                "response": {"role": "assistant", "content": "a"}, "duration": 5,
                "session_id": sids[i % sessions],
            }
            if i < sessions:  # the first line of each session brings its properties
                line["session_properties"] = {"session_name": f"s{i}"}
            f.write(json.dumps(line) + "\n")


async def test_interleaved_sessions_still_make_full_batches(
    collector: Collector, tmp_path: Path
) -> None:
    """8,000 lines in 400 sessions interleaved line by line go out in full 500-event batches
    (they once went out 20 at a time), each session started before its events."""
    src = tmp_path / "interleaved.jsonl"
    write(src, 8000, 400)
    hh = fast_exporter(collector.url, linger=1.0, max_buffer_events=8000)
    async with hh:
        res = await run_ingest([str(src)], hh, project=None, rejects=io.StringIO(),
                               progress=False)
        assert await hh.flush(30)
    st = hh.stats()
    assert res.sent == 8000 and st.delivered == 8000 and st.sessions_started == 400
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0
    batches = sum(stats["requests"]["/events/model/batch"].values())
    assert batches <= 8000 // 500 + 2


async def test_a_stop_is_seen_at_the_next_line(collector: Collector, tmp_path: Path) -> None:
    """Against a slow API, a stop request ends reading at the line being sent (it was once
    checked every 2,000 lines, seconds late)."""
    collector.faults.set(Faults(latency=0.2))
    src = tmp_path / "slow.jsonl"
    write(src, 20_000, 1)
    stop = asyncio.Event()
    hh = fast_exporter(collector.url, max_batch_events=100, max_in_flight=1,
                       max_buffer_events=500, close_timeout=1.0)
    accepted_at_stop = -1

    async def stopper() -> None:
        nonlocal accepted_at_stop
        for _ in range(600):  # bounded: 30 s at most
            if hh.stats().delivered >= 300:
                break
            await asyncio.sleep(0.05)
        accepted_at_stop = hh.stats().accepted
        stop.set()

    async with hh:
        task = asyncio.create_task(stopper())
        res = await run_ingest([str(src)], hh, project=None, rejects=io.StringIO(),
                               progress=False, stop=stop)
        await task
    assert res.interrupted and accepted_at_stop > 0
    assert res.sent <= accepted_at_stop + 1
    st = hh.stats()
    assert st.accepted == res.sent and st.pending == 0
