"""Lifecycle races and misuse: threads logging through close, a second event loop, what a
close reports, what flush() promises, an exporter that is never closed."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
import warnings

import pytest

import hh_exporter
from hh_exporter import ExporterClosedError
from hh_exporter.collector import Collector, Faults
from hh_exporter.testing import MemoryTransport

from .conftest import (
    TOKEN,
    ThreadedCollector,
    assert_balanced,
    fast_exporter,
    model_fields,
    stored_ids,
)


def test_threads_logging_through_close_lose_no_returned_id(
    threaded_collector: ThreadedCollector,
) -> None:
    """8 threads log through a SyncExporter while close() runs: every call that returned an
    id has its event accepted, and delivered or counted; the others were told (raised)."""
    c = threaded_collector.collector
    assert c is not None
    hh = hh_exporter.SyncExporter(api_key=TOKEN, api_url=c.url, linger=0.01)
    returned: list[str] = []
    refused = [0]
    unexpected: list[str] = []  # any other error, named in the failure
    lock = threading.Lock()
    go = threading.Event()

    def work() -> None:
        go.wait()
        for i in range(50_000):  # bounded; close() stops them long before
            try:
                eid = hh.log_model_event(**model_fields(i))
            except ExporterClosedError:
                with lock:
                    refused[0] += 1
                return
            except Exception as exc:  # a race in the log call (a refill of the id pool did)
                unexpected.append(f"{type(exc).__name__}: {exc}")
                return
            with lock:
                returned.append(eid)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    go.set()
    for _ in range(30_000):  # close while they are in full flow (bounded: 30 s at most)
        if len(returned) >= 2000:
            break
        time.sleep(0.001)
    hh.close(5.0)
    for t in threads:
        t.join(30)
    st = hh.stats()
    assert unexpected == []
    assert st.accepted == len(returned) and st.pending == 0
    assert st.delivered + st.dropped_total == st.accepted
    assert st.refused == 0 and refused[0] == 8
    stored = threaded_collector.run(c.store.event_ids())  # type: ignore[union-attr]
    assert len(stored) == st.delivered and set(stored) <= set(returned)


def test_an_exporter_from_a_finished_asyncio_run_says_what_to_do(
    collector_url: str,
) -> None:
    """Used from a second asyncio.run(), the exporter refuses with ExporterClosedError saying
    how to fix it, instead of returning ids no worker will send. The first loop's end counted
    what was left (worker_failed) and closed the connections; the stats add up."""
    hh = fast_exporter(collector_url, linger=10.0)

    async def first() -> None:
        await hh.start()
        hh.log_model_event(**model_fields())
        assert await hh.flush(5)
        hh.log_model_event(**model_fields())  # still buffered when asyncio.run() ends

    async def second() -> None:
        with pytest.raises(ExporterClosedError, match=r"asyncio\.run"):
            hh.log_model_event(**model_fields())
        with pytest.raises(ExporterClosedError, match=r"asyncio\.run"):
            hh.session(session_name="s")
        await hh.aclose(1)  # no error, nothing left to do
        assert hh.closed

    asyncio.run(first())
    asyncio.run(second())
    st = hh.stats()
    assert st.delivered == 1 and st.dropped["worker_failed"] == 1
    assert_balanced(st)


async def test_one_close_summary_whenever_anything_was_lost(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """Drops during a close come flight by flight; the close ends with one summary of all of
    them, which the per-reason rate limit does not hide."""
    collector.faults.set(Faults(latency=60))
    caplog.set_level(logging.WARNING, logger="hh_exporter")
    async with fast_exporter(collector.url, max_batch_events=100, close_timeout=0.3) as hh:
        for i in range(3000):
            hh.log_model_event(**model_fields(i))
    st = hh.stats()
    assert st.dropped["shutdown"] == 3000
    summaries = [r.getMessage() for r in caplog.records if "closed;" in r.getMessage()]
    assert summaries == ["hh_exporter: closed; 3,000 of 3,000 accepted events were not "
                         "delivered (shutdown 3,000)"]


async def test_flush_is_false_when_a_concurrent_close_cut_everything() -> None:
    """flush() returns True only if everything pending was delivered or answered: not when
    aclose() dropped it meanwhile."""
    transport = MemoryTransport(lambda p, b: asyncio.sleep(60))  # type: ignore[arg-type,return-value]
    hh = hh_exporter.Exporter(api_key="k", transport=transport, linger=0.0)
    await hh.start()
    for i in range(10):
        hh.log_model_event(**model_fields(i))
    flushing = asyncio.create_task(hh.flush(30))
    await asyncio.sleep(0.05)
    await hh.aclose(0.1)
    assert await flushing is False
    st = hh.stats()
    assert st.dropped["shutdown"] == 10 and st.pending == 0


async def test_rejected_events_count_as_answered_for_flush(collector: Collector) -> None:
    """Events the server answered (rejected) leave flush() True: nothing is pending."""
    async with fast_exporter(collector.url) as hh:
        hh.log_event(event_type="tool", event_name="x",
                     inputs={"a": 1}, metadata={"m": 1})
        collector.faults.set(Faults(script=["400"]))
        assert await hh.flush(5) is True
        assert hh.stats().dropped["rejected"] == 1


def test_an_exporter_never_closed_warns_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    """Garbage-collected with events pending: a ResourceWarning and a logged warning that says
    how many events are lost."""
    caplog.set_level(logging.WARNING, logger="hh_exporter")
    hh = hh_exporter.Exporter(api_key="k", transport=MemoryTransport())
    for i in range(7):
        hh.log_model_event(**model_fields(i))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del hh
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert any("7 pending events are lost" in r.getMessage() for r in caplog.records)


async def test_sessions_from_other_threads_start_before_their_events(
    collector: Collector,
) -> None:
    """session() and log calls from another thread go through the same inbox, in order."""
    async with fast_exporter(collector.url) as hh:
        def work() -> list[str]:
            s = hh.session(session_id=str(uuid.uuid4()))
            return [s.log_model_event(**model_fields(i)) for i in range(50)]

        ids = await asyncio.to_thread(work)
        assert await hh.flush(5)
        st = hh.stats()
        assert st.delivered == 50 and st.sessions_started == 1
    assert collector.store is not None
    assert sorted(await collector.store.event_ids()) == sorted(ids)


async def test_flush_and_close_from_another_thread(collector: Collector) -> None:
    """flush_from_thread/close_from_thread block a foreign thread until the exporter's loop
    has flushed/closed; on the loop's own thread (where blocking would deadlock) and
    without a loop they return at once."""
    idle = fast_exporter(collector.url)
    assert idle.flush_from_thread(1.0) is False  # never started: no loop to run on
    idle.close_from_thread(1.0)  # a no-op, not a hang
    assert not idle.closed
    await idle.aclose()
    async with fast_exporter(collector.url) as hh:
        s = hh.session(session_name="from-thread")
        for i in range(50):
            s.log_model_event(**model_fields(i))
        assert hh.flush_from_thread(5.0) is False  # this is the loop's thread
        assert await asyncio.to_thread(hh.flush_from_thread, 5.0) is True
        st = hh.stats()
        assert st.delivered == 50 and st.pending == 0, st
        assert len(await stored_ids(collector, s.session_id)) == 50
        await asyncio.to_thread(hh.close_from_thread, 5.0)
        assert hh.closed
        assert_balanced(hh.stats())
