"""Shared fixtures: the real collector on 127.0.0.1:0 and exporters pointed at it."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hh_exporter import Exporter, ExporterStats
from hh_exporter.collector import Collector

from .redis_server import RedisServer

TOKEN = "test-token-3f9a"
# The exporter honours proxy variables; tests talk to 127.0.0.1 only, never through a proxy.
os.environ["NO_PROXY"] = ",".join(filter(None, (os.environ.get("NO_PROXY"), "127.0.0.1,localhost")))
DATA = Path(__file__).parent / "data"


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    async with Collector(token=TOKEN) as c:
        yield c


def fast_exporter(url: str, **kw: Any) -> Exporter:
    """An exporter with short intervals, for tests: no long sleeps anywhere."""
    opts: dict[str, Any] = dict(
        api_key=TOKEN, project="test-project", api_url=url, linger=0.02,
        backoff_initial=0.01, backoff_max=0.05, retry_after_max=0.2, request_timeout=5.0,
        retry_deadline=10.0, close_timeout=5.0, breaker_cooldown=0.05,
    )
    opts.update(kw)
    return Exporter(**opts)


def model_fields(i: int = 0, size: int = 0) -> dict[str, Any]:
    return dict(
        model="gpt-4o", provider="openai",
        messages=[{"role": "user", "content": f"question {i} " + "x" * size}],
        response={"role": "assistant", "content": f"answer {i}"},
        duration=12.5, usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )


async def http_json(
    url: str, path: str, method: str = "GET", body: Any = None, token: str = TOKEN,
    raw: bytes | None = None, headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    hdrs = {"Authorization": f"Bearer {token}"}
    if headers:
        hdrs.update(headers)
    async with aiohttp.ClientSession() as s:
        if raw is not None:
            hdrs.setdefault("Content-Type", "application/json")
            resp_cm = s.request(method, url + path, data=raw, headers=hdrs)
        else:
            resp_cm = s.request(method, url + path, json=body, headers=hdrs)
        async with resp_cm as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text


async def stored_ids(c: Collector, session_id: str) -> list[str]:
    _, body = await http_json(c.url, f"/sessions/{session_id}/events")
    return [e["event_id"] for e in body["events"]]


def assert_balanced(s: ExporterStats) -> None:
    assert s.accepted == s.delivered + s.dropped_total + s.pending, s
    assert s.pending == s.buffered + s.in_flight_events, s


class ThreadedCollector:
    """The real collector on its own loop in a thread, for tests of synchronous code (the
    SyncExporter, forked processes) that must not share the test's loop."""

    def __init__(self, **kw: Any) -> None:
        import threading

        self._kw = kw
        self._ready = threading.Event()
        self._stop: Any = None
        self._loop: Any = None
        self.collector: Collector | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        import asyncio

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with Collector(token=TOKEN, **self._kw) as c:
                self.collector = c
                self._ready.set()
                await self._stop.wait()

        asyncio.run(main())

    def start(self) -> str:
        self._thread.start()
        assert self._ready.wait(10)
        assert self.collector is not None
        return self.collector.url

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the collector's loop (to read its store)."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def threaded_collector() -> Any:
    tc = ThreadedCollector()
    tc.start()
    yield tc
    tc.stop()


@pytest.fixture
def collector_url(threaded_collector: ThreadedCollector) -> str:
    assert threaded_collector.collector is not None
    return threaded_collector.collector.url


@pytest.fixture(autouse=True)
def _collect_garbage_per_test() -> Any:
    """Collect garbage after each test, so that a leaked resource (an unclosed client
    session, say) is reported against the test that leaked it, not at the end of the run."""
    yield
    import gc

    gc.collect()


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path)
    yield server
    server.kill()
