"""Sessions are started before their events leave, and 2xx answers are read.

The order rule comes from every official client (``POST /session/start`` first) and from the
real backend's behaviour with events of an unknown session
(``reference/honeyhive-api-behaviour.md`` §1); the collector counts a violation as an orphan.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from hh_exporter import Response
from hh_exporter.collector import Collector, Faults
from hh_exporter.testing import MemoryTransport, ok_answer

from .conftest import assert_balanced, fast_exporter, http_json, model_fields, stored_ids


async def test_600_events_faster_than_linger_wait_for_their_session(
    collector: Collector,
) -> None:
    """600 events logged into one session at once (a full batch is ready long before the
    linger) reach the collector only after the session start did: 0 orphans."""
    collector.faults.set(Faults(session_latency=0.3))  # the start takes a while to answer
    async with fast_exporter(collector.url, linger=10.0, max_batch_events=100) as hh:
        s = hh.session(session_name="six-hundred")
        ids = [s.log_model_event(**model_fields(i)) for i in range(600)]
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 600 and st.sessions_started == 1
        assert_balanced(st)
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0 and stats["duplicate_event_ids"] == 0
    assert stats["requests"]["/session/start"] == {"200": 1}
    assert sorted(await stored_ids(collector, s.session_id)) == sorted(ids)


async def test_no_batch_leaves_before_the_start_answered() -> None:
    """Seen from the transport: every batch carrying the session's events is posted after
    the answer to its /session/start, however long that takes."""
    answered: dict[str, float] = {}
    posted: list[tuple[float, bytes]] = []

    async def handler(path: str, body: bytes) -> Response:
        if path == "/session/start":
            await asyncio.sleep(0.1)
            sid = msgspec.json.decode(body)["session"]["session_id"]
            answered[sid] = time.monotonic()
        else:
            posted.append((time.monotonic(), body))
        return ok_answer(path, body)

    transport = MemoryTransport(handler)
    async with fast_exporter("http://127.0.0.1:9", transport=transport, linger=0.0,
                             max_batch_events=10) as hh:
        sessions = [hh.session(session_name=f"s{i}") for i in range(5)]
        for i in range(200):
            sessions[i % 5].log_model_event(**model_fields(i))
        assert await hh.flush(5)
    assert len(answered) == 5
    for t, body in posted:
        for ev in msgspec.json.decode(body)["model_events"]:
            assert t >= answered[ev["session_id"]]


async def test_a_session_that_cannot_start_drops_its_events_counted() -> None:
    """A 4xx to the start drops the session's held and later events as session_failed;
    other sessions are unaffected."""

    def handler(path: str, body: bytes) -> Response:
        if path == "/session/start" and b'"doomed"' in body:
            return Response(400, b'{"error":"bad session"}')
        return ok_answer(path, body)

    async with fast_exporter("http://127.0.0.1:9", transport=MemoryTransport(handler)) as hh:
        bad = hh.session(session_name="doomed")
        good = hh.session(session_name="fine")
        for i in range(10):
            bad.log_model_event(**model_fields(i))
            good.log_model_event(**model_fields(i))
        assert await hh.flush(5)
        bad.log_model_event(**model_fields(99))  # after the failure: dropped at once
        st = hh.stats()
        assert st.sessions_failed == 1 and st.sessions_started == 1
        assert st.dropped["session_failed"] == 11 and st.delivered == 10
        assert "bad session" in (st.last_error or "")
        assert_balanced(st)


async def test_short_or_failed_2xx_answers_are_counted_unconfirmed() -> None:
    """A 2xx with fewer event_ids than events, success false, or no JSON at all is counted
    as unconfirmed, not silently delivered."""
    answers = iter([b'{"event_ids":["a"],"success":true}', b'{"event_ids":[],"success":false}',
                    b"<html>welcome to the hotel wifi</html>"])

    def handler(path: str, body: bytes) -> Response:
        if path == "/session/start":
            return ok_answer(path, body)
        return Response(200, next(answers))

    async with fast_exporter("http://127.0.0.1:9", transport=MemoryTransport(handler),
                             max_batch_events=3, linger=10.0) as hh:
        for i in range(9):
            hh.log_model_event(**model_fields(i))
        assert await hh.flush(5)
        st = hh.stats()
    assert st.delivered == 9 and st.unconfirmed == 2 + 3 + 3
    assert_balanced(st)


async def test_a_session_start_answer_naming_another_id_is_counted() -> None:
    """The answer's session_id is read; a different one is counted as a mismatch."""

    def handler(path: str, body: bytes) -> Response:
        if path == "/session/start":
            return Response(200, b'{"session_id":"11111111-1111-4111-8111-111111111111"}')
        return ok_answer(path, body)

    async with fast_exporter("http://127.0.0.1:9", transport=MemoryTransport(handler)) as hh:
        hh.session(session_name="x").log_model_event(**model_fields())
        assert await hh.flush(5)
        assert hh.stats().session_mismatches == 1


async def test_a_session_start_is_retried_like_a_batch(collector: Collector) -> None:
    """503s to the start are retried; its events wait, then go; nothing is orphaned."""
    collector.faults.set(Faults(script=["503", "503"]))
    async with fast_exporter(collector.url) as hh:
        s = hh.session(session_name="retried")
        ids = [s.log_model_event(**model_fields(i)) for i in range(20)]
        assert await hh.flush(5)
        st = hh.stats()
        assert st.retries == 2 and st.delivered == 20 and st.sessions_started == 1
    assert sorted(await stored_ids(collector, s.session_id)) == sorted(ids)
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0
