"""The thread-backed facade for synchronous code, against the real collector."""

from __future__ import annotations

import asyncio
import threading

import hh_exporter
from hh_exporter.collector import Collector

from .conftest import TOKEN, model_fields


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
