"""The durable spool: an outage longer than the buffer, then a second exporter replays."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from hh_exporter.collector import Collector, Faults

from .conftest import assert_balanced, fast_exporter, http_json, model_fields


def spooling(url: str, spool: Path, **kw: object):  # type: ignore[no-untyped-def]
    opts: dict[str, object] = dict(
        spool_dir=str(spool), overflow="spool", max_buffer_events=100, max_batch_events=50,
        max_attempts=10_000, retry_deadline=600.0, close_timeout=0.3)
    opts.update(kw)
    return fast_exporter(url, **opts)


async def test_an_outage_longer_than_the_buffer_is_spooled_then_replayed(
    collector: Collector, tmp_path: Path
) -> None:
    """The API answers 503 to everything; 1,000 events overflow a 100-event buffer into the
    spool and the close sends the rest there. A second exporter on the same directory, with
    the API back, replays them all: every event stored once, sessions started first, the
    segments gone, and accepted == delivered + dropped + pending in both."""
    spool = tmp_path / "spool"
    collector.faults.set(Faults(error_rate=1.0, error_statuses=[503]))
    first = spooling(collector.url, spool)
    async with first:
        s = first.session(session_name="through the outage")
        ids = [s.log_model_event(**model_fields(i)) for i in range(500)]
        ids += [first.log_model_event(**model_fields(i)) for i in range(500, 1000)]
        await asyncio.sleep(0.1)
    st1 = first.stats()
    assert_balanced(st1)
    assert st1.accepted == 1000 and st1.delivered == 0
    assert st1.dropped["spooled"] == 1000 and st1.dropped_total == 1000
    assert list(spool.glob("seg-*.jsonl")) and not list(spool.glob("*.tmp"))

    collector.faults.set(Faults())
    second = fast_exporter(collector.url, spool_dir=str(spool))
    async with second:
        for _ in range(200):  # bounded: 10 s at most
            if second.stats().replayed == 1000:
                break
            await asyncio.sleep(0.05)
        assert await second.flush(10)
        live = second.log_model_event(**model_fields())
        assert await second.flush(10)
    st2 = second.stats()
    assert_balanced(st2)
    assert st2.replayed == 1000 and st2.accepted == 1001 and st2.delivered == 1001
    assert collector.store is not None
    stored = await collector.store.event_ids()
    assert sorted(stored) == sorted([*ids, live])
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0 and stats["duplicate_event_ids"] == 0
    _, props = await http_json(collector.url, f"/sessions/{s.session_id}")
    assert props["session_name"] == "through the outage"
    assert not list(spool.glob("seg-*"))


async def test_two_exporters_on_one_spool_never_replay_a_segment_twice(
    collector: Collector, tmp_path: Path
) -> None:
    """Segments are taken under an exclusive lock: two exporters started together on the
    same directory deliver each spooled event once."""
    spool = tmp_path / "spool"
    collector.faults.set(Faults(error_rate=1.0, error_statuses=[503]))
    async with spooling(collector.url, spool, max_buffer_events=20, max_batch_events=10) as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(600)]
    assert len(list(spool.glob("seg-*.jsonl"))) >= 1
    collector.faults.set(Faults())
    a = fast_exporter(collector.url, spool_dir=str(spool))
    b = fast_exporter(collector.url, spool_dir=str(spool))
    async with a, b:
        for _ in range(200):
            if a.stats().replayed + b.stats().replayed == 600:
                break
            await asyncio.sleep(0.05)
        assert await a.flush(10) and await b.flush(10)
    assert a.stats().replayed + b.stats().replayed == 600
    assert collector.store is not None
    stored = await collector.store.event_ids()
    assert sorted(stored) == sorted(ids)


async def test_a_torn_last_line_is_skipped_and_counted(
    collector: Collector, tmp_path: Path
) -> None:
    """A segment whose writer was killed mid-line: the torn line is counted, the rest goes."""
    spool = tmp_path / "spool"
    spool.mkdir()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    lines = [json.dumps({"hh_spool": 1, "route": "/events/model/batch", "session": None})]
    lines += [json.dumps({**model_fields(i), "event_id": e}) for i, e in enumerate(ids)]
    torn = json.dumps({**model_fields(9), "event_id": str(uuid.uuid4())})[:40]
    (spool / "seg-00000000000000000001-1-0.jsonl").write_text("\n".join([*lines, torn]))
    async with fast_exporter(collector.url, spool_dir=str(spool)) as hh:
        for _ in range(200):
            if hh.stats().replayed == 3:
                break
            await asyncio.sleep(0.05)
        assert await hh.flush(5)
        st = hh.stats()
    assert st.replayed == 3 and st.delivered == 3 and st.spool_torn == 1
    assert collector.store is not None
    assert sorted(await collector.store.event_ids()) == sorted(ids)
    assert not list(spool.glob("seg-*"))


async def test_a_spool_at_its_bound_counts_what_it_cannot_keep(
    collector: Collector, tmp_path: Path
) -> None:
    """Past spool_max_bytes events are dropped as spool_failed, never raised in a log call;
    the stats add up."""
    spool = tmp_path / "spool"
    collector.faults.set(Faults(error_rate=1.0, error_statuses=[503]))
    hh = spooling(collector.url, spool, max_batch_bytes=4096, max_buffer_bytes=8192,
                  spool_max_bytes=8192, max_buffer_events=10, max_batch_events=5)
    async with hh:
        for i in range(300):
            hh.log_model_event(**model_fields(i))
    st = hh.stats()
    assert_balanced(st)
    assert st.dropped["spool_failed"] > 0 and st.dropped["spooled"] > 0
    assert st.dropped["spooled"] + st.dropped["spool_failed"] == 300
    kept = sum(len(p.read_bytes().splitlines()) - 1 for p in spool.glob("seg-*.jsonl"))
    assert kept == st.dropped["spooled"]
