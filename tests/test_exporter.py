"""The exporter against the real collector over loopback."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

import pytest

import hh_exporter
from hh_exporter import BufferFullError, EventError, ExporterClosedError
from hh_exporter.collector import Collector, Faults

from .conftest import TOKEN, assert_balanced, fast_exporter, http_json, model_fields, stored_ids


async def test_batches_close_on_count(collector: Collector) -> None:
    """A session is started first; its events go in batches of max_batch_events."""
    async with fast_exporter(collector.url, max_batch_events=10, linger=5.0) as hh:
        s = hh.session(session_name="count", user_properties={"user": "u1"})
        ids = [s.log_model_event(**model_fields(i)) for i in range(30)]
        for _ in range(200):
            if hh.stats().delivered >= 30:
                break
            await asyncio.sleep(0.01)
        st = hh.stats()
        assert st.delivered >= 30  # long before the 5 s linger
        assert_balanced(st)
    # Up to max_in_flight batches travel at once, so arrival order is not log order.
    assert sorted(await stored_ids(collector, s.session_id)) == sorted(ids)
    _, props = await http_json(collector.url, f"/sessions/{s.session_id}")
    assert props["session_name"] == "count"
    assert props["user_properties"] == {"user": "u1"}
    _, stats = await http_json(collector.url, "/stats")
    assert stats["requests"]["/events/model/batch"] == {"200": 3}
    assert stats["requests"]["/session/start"] == {"200": 1}
    assert stats["orphan_events"] == 0 and stats["duplicate_event_ids"] == 0


async def test_batches_close_on_bytes(collector: Collector) -> None:
    """A batch never exceeds max_batch_bytes."""
    async with fast_exporter(collector.url, max_batch_bytes=4096, linger=0.01) as hh:
        for i in range(20):
            hh.log_model_event(**model_fields(i, size=900))
        assert await hh.flush(5)
        st = hh.stats()
        assert st.delivered == 20
        assert st.batches_sent >= 5  # ~1 KB each: at most 3-4 per 4 KB body
    _, stats = await http_json(collector.url, "/stats")
    assert stats["bytes_received"] <= st.batches_sent * 4096


async def test_linger_sends_a_partial_batch(collector: Collector) -> None:
    """A lone event goes out once linger expires, without a flush."""
    async with fast_exporter(collector.url, linger=0.05) as hh:
        hh.log_model_event(**model_fields())
        t0 = time.monotonic()
        while hh.stats().delivered < 1 and time.monotonic() - t0 < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert hh.stats().delivered == 1


async def test_many_short_sessions_share_requests(collector: Collector) -> None:
    """A thousand one-event sessions: one start each, and their events share a handful of
    batch requests, each event under its own session."""
    # Starts finish one after another; a linger longer than they take lets the released
    # events gather into full batches.
    async with fast_exporter(collector.url, linger=2.0) as hh:
        sessions = [hh.session(session_name=f"s{i}") for i in range(1000)]
        ids = {s.session_id: s.log_model_event(**model_fields(i)) for i, s in enumerate(sessions)}
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 1000 and st.sessions_started == 1000
        assert st.requests - 1000 <= 10
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0 and stats["sessions_started"] == 1000
    for sid in list(ids)[:5]:
        assert ids[sid] in await stored_ids(collector, sid)
        _, props = await http_json(collector.url, f"/sessions/{sid}")
        assert props["session_name"].startswith("s")


async def test_graceful_close_delivers_everything(collector: Collector) -> None:
    """Leaving the context delivers everything buffered."""
    async with fast_exporter(collector.url, linger=10.0) as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(1234)]
    st = hh.stats()
    assert st.delivered == 1234 and st.pending == 0
    assert_balanced(st)
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert set(ids) <= set(stored)


async def test_flush_deadline_against_a_server_that_never_answers(collector: Collector) -> None:
    """flush returns on time when the server hangs and counts cut requests as shutdown.

    "On time" is bounded by this test's own timeouts (10 s against a 60 s hang), not by a
    wall-clock threshold."""
    collector.faults.set(Faults(latency=60))
    hh = fast_exporter(collector.url, max_batch_events=10)
    async with hh:
        for i in range(100):
            hh.log_model_event(**model_fields(i))
        ok = await asyncio.wait_for(hh.flush(0.3), 10)
        assert ok is False
        st = hh.stats()
        assert st.dropped["shutdown"] > 0
        assert_balanced(st)
        await asyncio.wait_for(hh.aclose(0.3), 10)
    st = hh.stats()
    assert st.pending == 0
    assert st.dropped["shutdown"] == 100
    assert_balanced(st)


async def test_retries_503_and_429_with_retry_after(collector: Collector) -> None:
    """503 and 429 are retried (Retry-After honoured) and nothing is stored twice."""
    collector.faults.set(Faults(script=["503", "429@0.1", "503"]))
    async with fast_exporter(collector.url) as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(50)]
        t0 = time.monotonic()
        assert await hh.flush(5)
        took = time.monotonic() - t0
        st = hh.stats()
        assert st.delivered == 50
        assert st.retries == 3
        assert took >= 0.1  # the Retry-After floor was waited
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert sorted(stored) == sorted(ids)


async def test_a_partial_success_is_final_and_stores_nothing_twice(
    collector: Collector,
) -> None:
    """A 500 with event_ids and errors is the API's partial success: never re-sent (the API
    does not deduplicate), listed ids delivered, the rest rejected with the server's words."""
    collector.faults.set(Faults(script=["partial"]))
    async with fast_exporter(collector.url) as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(40)]
        assert await hh.flush(5)
        st = hh.stats()
        assert st.delivered == 20 and st.dropped["rejected"] == 20 and st.retries == 0
        assert "injected partial failure" in (st.last_error or "")
        assert st.breaker == "closed"
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert len(stored) == 20 and set(stored) <= set(ids)
    _, stats = await http_json(collector.url, "/stats")
    assert stats["duplicate_event_ids"] == 0


async def test_two_invalid_events_among_500_store_the_498_once() -> None:
    """A classic backend's answer to 2 invalid events among 500 is the partial 500 (the
    classic spec's "partially created"): the exporter counts 498 delivered and 2 rejected,
    and each good event is stored once."""
    async with Collector(token=TOKEN, strict=True) as collector, fast_exporter(
            collector.url, project="classic", max_batch_events=500, linger=5.0) as hh:
        s = hh.session(session_name="partial")
        ids = []
        for i in range(500):
            fields = model_fields(i)
            if i in (17, 333):
                # Valid for the exporter (the data-plane spec takes any messages), invalid
                # for a classic backend (messages must be objects). Only the server can tell.
                fields["messages"] = ["not an object"]
            ids.append(s.log_model_event(**fields))
        assert await hh.flush(5)
        st = hh.stats()
        assert st.delivered == 498 and st.dropped["rejected"] == 2 and st.retries == 0
        stored = await stored_ids(collector, s.session_id)
        _, stats = await http_json(collector.url, "/stats")
    assert sorted(stored) == sorted(ids[:17] + ids[18:333] + ids[334:])
    assert stats["duplicate_event_ids"] == 0 and stats["orphan_events"] == 0
    assert stats["requests"]["/events/model/batch"] == {"500": 1}


async def test_send_applies_backpressure(collector: Collector) -> None:
    """send() waits for buffer space instead of dropping, and everything arrives."""
    collector.faults.set(Faults(latency=0.02))
    async with fast_exporter(collector.url, max_buffer_events=50, max_batch_events=10,
                             max_in_flight=2) as hh:
        ids = [await hh.send_model_event(**model_fields(i)) for i in range(500)]
        assert hh.stats().buffered <= 50
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 500 and st.dropped_total == 0
    assert len(set(await collector.store.event_ids()) & set(ids)) == 500  # type: ignore[union-attr]


async def test_send_timeout_raises_buffer_full(collector: Collector) -> None:
    """send(timeout=...) raises BufferFullError when no space frees in time."""
    collector.faults.set(Faults(latency=60))
    hh = fast_exporter(collector.url, max_buffer_events=5, max_batch_events=5, max_in_flight=1)
    async with hh:
        for i in range(10):  # 5 in flight (hanging), 5 buffered
            await hh.send_model_event(**model_fields(i), timeout=1)
        with pytest.raises(BufferFullError):
            await hh.send_model_event(**model_fields(), timeout=0.05)
        assert_balanced(hh.stats())
        await hh.aclose(0.1)
    assert hh.stats().accepted == 10


async def test_offer_encoded_takes_only_what_fits_now(collector: Collector) -> None:
    """offer_encoded queues an encoded event when the buffer has room and says False
    (accepting nothing) when it would have to wait; an event too large for any batch is
    taken and dropped as too_large, as send_encoded does; after close it raises."""
    import msgspec

    collector.faults.set(Faults(latency=60))
    hh = fast_exporter(collector.url, max_buffer_events=5, max_batch_events=5, max_in_flight=1,
                       max_batch_bytes=4096)

    def encoded(i: int, size: int = 0) -> bytes:
        return msgspec.json.encode({**model_fields(i, size), "event_id": str(uuid.uuid4()),
                                    "project": "test-project"})

    async with hh:
        offered = [hh.offer_encoded(encoded(i)) for i in range(5)]
        assert offered == [True] * 5
        assert hh.offer_encoded(encoded(5)) is False  # full: nothing waits, nothing taken
        assert hh.stats().accepted == 5 and hh.stats().buffered == 5
        assert hh.offer_encoded(encoded(6, size=8000)) is True  # never fits any batch
        st = hh.stats()
        assert st.accepted == 6 and st.dropped["too_large"] == 1
        assert_balanced(st)
        await hh.aclose(0.1)
    with pytest.raises(ExporterClosedError):
        hh.offer_encoded(encoded(7))
    assert_balanced(hh.stats())


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
async def test_overflow_is_counted(collector: Collector, policy: str) -> None:
    """A full buffer drops per the policy and counts queue_full; the rest is delivered."""
    notices: list[hh_exporter.DropNotice] = []
    hh = fast_exporter(collector.url, max_buffer_events=100, overflow=policy,
                       on_drop=notices.append)
    ids = [hh.log_model_event(**model_fields(i)) for i in range(150)]  # before start
    st = hh.stats()
    assert st.dropped["queue_full"] == 50 and st.buffered == 100
    assert_balanced(st)
    async with hh:
        pass
    st = hh.stats()
    assert st.delivered == 100
    assert sum(n.count for n in notices if n.reason == "queue_full") == 50
    stored = set(await collector.store.event_ids())  # type: ignore[union-attr]
    kept = ids[:100] if policy == "drop_newest" else ids[50:]
    assert stored == set(kept)


async def test_logging_from_other_threads(collector: Collector) -> None:
    """Events logged from worker threads are all delivered."""
    async with fast_exporter(collector.url) as hh:
        s = hh.session(session_name="threads")
        ids: list[str] = []
        lock = threading.Lock()

        def work(k: int) -> None:
            for i in range(200):
                eid = s.log_model_event(**model_fields(k * 1000 + i))
                with lock:
                    ids.append(eid)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        await asyncio.to_thread(lambda: [t.join() for t in threads])
        assert await hh.flush(5)
        st = hh.stats()
        assert st.delivered == 800
        assert_balanced(st)
    assert set(ids) <= set(await stored_ids(collector, s.session_id))


async def test_generic_events_go_to_events_batch(collector: Collector) -> None:
    """log_event sends chain/tool events to /events/batch with their session."""
    async with fast_exporter(collector.url) as hh:
        s = hh.session(session_name="gen")
        eid = s.log_event(event_type="tool", event_name="search", inputs={"q": "x"},
                          outputs={"hits": 3}, duration=5)
        assert await hh.flush(5)
    _, events = await http_json(collector.url, f"/sessions/{s.session_id}/events")
    tool = next(e for e in events["events"] if e["event_id"] == eid)
    assert tool["event_type"] == "tool" and tool["outputs"] == {"hits": 3}


async def test_wrong_token_drops_as_unauthorized_once_logged(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """401 drops the batch as unauthorized, logs once, and never shows the key."""
    secret = "sk-very-secret-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    hh = fast_exporter(collector.url, api_key=secret, max_batch_events=5)
    async with hh:
        for i in range(20):
            hh.log_model_event(**model_fields(i))
        await hh.flush(5)
        st = hh.stats()
        assert st.dropped["unauthorized"] == 20
        assert_balanced(st)
        assert secret not in repr(hh) and secret not in repr(hh.config)
        assert secret not in str(st)
    errors = [r for r in caplog.records if "refused the API key" in r.getMessage()]
    assert len(errors) == 1
    assert secret not in caplog.text
    assert await collector.store.event_ids() == []  # type: ignore[union-attr]


async def test_closed_exporter_refuses_events(collector: Collector) -> None:
    """Logging after aclose raises ExporterClosedError; aclose is idempotent."""
    hh = fast_exporter(collector.url)
    async with hh:
        hh.log_model_event(**model_fields())
    await hh.aclose()
    with pytest.raises(ExporterClosedError):
        hh.log_model_event(**model_fields())
    assert hh.stats().accepted == 1


async def test_bad_events_raise_at_the_call_site(collector: Collector) -> None:
    """Wrong types and unencodable values raise EventError naming the field; others pass."""
    async with fast_exporter(collector.url) as hh:
        with pytest.raises(EventError, match="'usage' must be an object"):
            hh.log_model_event(**{**model_fields(), "usage": "lots"})
        with pytest.raises(EventError, match="'messages' must be a list"):
            hh.log_model_event(**{**model_fields(), "messages": "hi"})
        with pytest.raises(EventError, match="duration"):
            hh.log_model_event(**{**model_fields(), "duration": -1})
        with pytest.raises(EventError, match="'metadata' cannot be encoded"):
            hh.log_model_event(**model_fields(), metadata={"obj": object()})
        with pytest.raises(EventError, match="colour"):
            hh.log_model_event(**model_fields(), colour="red")  # type: ignore[call-arg]
        good = hh.log_model_event(**model_fields())
        assert await hh.flush(5)
        st = hh.stats()
        assert st.accepted == 1 and st.delivered == 1
    assert await collector.store.event_ids() == [good]  # type: ignore[union-attr]


async def test_event_snapshot_ignores_later_mutation(collector: Collector) -> None:
    """The event is encoded at log time: mutating the caller's dicts afterwards changes nothing."""
    async with fast_exporter(collector.url) as hh:
        s = hh.session(session_name="snap")
        msgs = [{"role": "user", "content": "before"}]
        s.log_model_event(**{**model_fields(), "messages": msgs})
        msgs[0]["content"] = "after"
        assert await hh.flush(5)
    _, events = await http_json(collector.url, f"/sessions/{s.session_id}/events")
    model = next(e for e in events["events"] if e.get("model"))
    assert model["messages"][0]["content"] == "before"


async def test_too_large_event_is_dropped_and_counted(collector: Collector) -> None:
    """An event larger than a batch may be is dropped as too_large, never sent."""
    async with fast_exporter(collector.url, max_batch_bytes=2048) as hh:
        hh.log_model_event(**model_fields(size=5000))
        hh.log_model_event(**model_fields())
        assert await hh.flush(5)
        st = hh.stats()
        assert st.dropped["too_large"] == 1 and st.delivered == 1
        assert_balanced(st)


async def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HH_* variables fill what arguments leave out; arguments win."""
    monkeypatch.setenv("HH_API_KEY", "env-key")
    monkeypatch.setenv("HH_PROJECT", "env-project")
    monkeypatch.setenv("HH_API_URL", "https://example.invalid/")
    monkeypatch.setenv("HH_SOURCE", "env-source")
    cfg = hh_exporter.ExporterConfig.from_env(project="arg-project")
    assert cfg.api_key == "env-key" and cfg.project == "arg-project"
    assert cfg.api_url == "https://example.invalid" and cfg.source == "env-source"
    assert "env-key" not in repr(cfg)
    with pytest.raises(hh_exporter.ConfigError, match="linger"):
        hh_exporter.ExporterConfig.from_env(linger=-1)
    monkeypatch.delenv("HH_API_KEY")
    with pytest.raises(hh_exporter.ConfigError, match="api_key"):
        hh_exporter.ExporterConfig.from_env()


def test_plain_http_to_a_remote_host_warns() -> None:
    """http:// to a non-loopback host warns that the key would travel unencrypted."""
    with pytest.warns(UserWarning, match="unencrypted"):
        hh_exporter.ExporterConfig(api_key="k", project="p", api_url="http://api.example.com")



async def test_session_id_without_a_handle_and_none_defaults(collector: Collector) -> None:
    """An explicit session_id attaches an event to a session; usage=None means {}."""
    sid = str(uuid.uuid4())
    async with fast_exporter(collector.url) as hh:
        eid = hh.log_model_event(**{**model_fields(), "usage": None}, session_id=sid)
        tid = hh.log_event(event_type="chain", event_name="c", inputs=None, session_id=sid)
        assert await hh.flush(5)
        assert hh.stats().delivered == 2
    assert sorted(await stored_ids(collector, sid)) == sorted([eid, tid])


async def test_types_are_checked_on_every_call_of_a_known_shape() -> None:
    """A call shape seen before skips the name checks, never the type checks."""
    from hh_exporter.testing import MemoryTransport

    async with hh_exporter.Exporter(api_key="k", project="p", transport=MemoryTransport()) as hh:
        for _ in range(3):
            hh.log_model_event(**model_fields())
        with pytest.raises(EventError, match="'usage' must be an object"):
            hh.log_model_event(**{**model_fields(), "usage": [1]})
        with pytest.raises(EventError, match="'messages' must be a list"):
            hh.log_model_event(**{**model_fields(), "messages": {"role": "user"}})
        with pytest.raises(EventError, match="missing required field"):
            hh.log_model_event(model="m", provider="p", messages=[])  # type: ignore[call-arg]
        assert hh.stats().accepted == 3
