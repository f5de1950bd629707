"""The thread-backed facade for synchronous code, against the real collector."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import hh_exporter
from hh_exporter.collector import Collector

from .conftest import TOKEN, ThreadedCollector, model_fields


def test_sync_exporter_from_plain_threads() -> None:
    """SyncExporter delivers events logged from several plain threads and closes cleanly."""
    ready = threading.Event()
    stop = threading.Event()
    box: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            async with Collector(token=TOKEN) as c:
                box["collector"] = c
                ready.set()
                await asyncio.to_thread(stop.wait)
                box["stored"] = await c.store.event_ids()  # type: ignore[union-attr]

        asyncio.run(main())

    server = threading.Thread(target=serve)
    server.start()
    assert ready.wait(10)
    c = box["collector"]
    assert isinstance(c, Collector)
    try:
        with hh_exporter.SyncExporter(api_key=TOKEN, project="sync", api_url=c.url,
                                      linger=0.02) as hh:
            s = hh.session(session_name="sync")
            ids: list[str] = []
            lock = threading.Lock()

            def work() -> None:
                for i in range(100):
                    eid = s.log_model_event(**model_fields(i))
                    with lock:
                        ids.append(eid)

            workers = [threading.Thread(target=work) for _ in range(3)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            assert hh.flush(5)
            st = hh.stats()
            assert st.delivered == 300 and st.balanced and st.sessions_started == 1
        assert hh.stats().pending == 0
    finally:
        stop.set()
        server.join(10)
    assert set(ids) == set(box["stored"])  # type: ignore[arg-type]


def _stored(tc: ThreadedCollector) -> int:
    assert tc.collector is not None and tc.collector.store is not None
    return len(tc.run(tc.collector.store.event_ids()))


def _wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.005)):  # bounded
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_events_from_other_threads_go_out_without_a_flush_and_the_loop_rests_when_idle(
    threaded_collector: ThreadedCollector,
) -> None:
    """The loop is not woken per event from another thread: it polls the inbox while events
    come, and stops after a quiet spell. Sparse events still leave within the linger, with
    no flush; after the quiet spell the loop has stopped polling, and the next event wakes
    it and is delivered too; a flood (more than the wake-up mark) is delivered whole."""
    c = threaded_collector.collector
    assert c is not None
    with hh_exporter.SyncExporter(api_key=TOKEN, api_url=c.url, linger=0.01) as hh:
        inner = hh._exporter
        for i in range(20):  # sparse: one event every 2 ms
            hh.log_model_event(**model_fields(i))
            time.sleep(0.002)
        assert _wait_for(lambda: _stored(threaded_collector) == 20)
        assert _wait_for(lambda: not inner._polling)  # it rests after a quiet spell
        hh.log_model_event(**model_fields(20))  # wakes it once
        assert _wait_for(lambda: _stored(threaded_collector) == 21)
        ids = [hh.log_model_event(**model_fields(i)) for i in range(3000)]  # a flood
        assert hh.flush(10)
        st = hh.stats()
    assert st.accepted == st.delivered == 3021 and st.pending == 0
    assert len(set(ids)) == 3000 and _stored(threaded_collector) == 3021
