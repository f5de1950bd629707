"""``session_start="batch"``: a session is created by its first batch, the seeds' own shape.

The shape is the documented one (SPEC-DP ``/v1/events/batch``: "When ``single_session`` is
true, all events share the same session created from ``session_properties``"; the classic
``is_single_session`` + ``SessionPropertiesBatch.session_id``; ``reference/
honeyhive-api-behaviour.md`` §2). What a second envelope does to an existing session is not
documented, so a session never gets one: its later events wait for the first batch's 2xx
and travel in mixed batches.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hh_exporter import EventError, Response
from hh_exporter.collector import Collector, Faults
from hh_exporter.testing import MemoryTransport, ok_answer

from .conftest import TOKEN, assert_balanced, fast_exporter, http_json, model_fields
from .spec import check_request, validator


def _bodies(t: MemoryTransport, path: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(b) for p, b in t.requests if p == path]


async def test_300_short_and_2_long_sessions_at_once_against_a_strict_collector() -> None:
    """300 sessions of 3 events and 2 of 1,200, logged at once against the strict collector
    (classic rules): every event stored once, 0 orphans, no POST /session/start, and one
    envelope per session carrying its id and properties, never repeated."""
    async with Collector(token=TOKEN, strict=True) as c:
        async with fast_exporter(c.url, session_start="batch", linger=0.05,
                                 max_batch_events=200) as hh:
            short = [hh.session(session_name=f"short-{i}", user_properties={"n": i},
                                metadata={"kind": "short"}) for i in range(300)]
            long = [hh.session(session_name=f"long-{i}", inputs={"q": i}) for i in range(2)]
            ids: list[str] = []
            for k in range(1200):  # interleaved, as concurrent users would log them
                for s in long:
                    ids.append(s.log_model_event(**model_fields(k)))
                if k < 3:
                    ids.extend(s.log_model_event(**model_fields(k)) for s in short)
            assert await hh.flush(30)
            st = hh.stats()
            assert st.delivered == len(ids) == 300 * 3 + 2 * 1200
            assert st.sessions_started == 302 and st.sessions_failed == 0
            assert st.session_mismatches == 0
            assert_balanced(st)
        _, stats = await http_json(c.url, "/stats")
        assert stats["events_stored"] == len(ids) and stats["duplicate_event_ids"] == 0
        assert stats["orphan_events"] == 0 and stats["events_rejected"] == 0
        assert "/session/start" not in stats["requests"]
        assert stats["sessions_started"] == 0
        assert stats["sessions_created_by_envelope"] == 302
        assert stats["envelopes_for_existing_sessions"] == 0
        for s, name in [(short[7], "short-7"), (long[1], "long-1")]:
            _, props = await http_json(c.url, f"/sessions/{s.session_id}")
            assert props["session_name"] == name
        _, props = await http_json(c.url, f"/sessions/{short[7].session_id}")
        assert props["user_properties"] == {"n": 7} and props["metadata"] == {"kind": "short"}
        _, evs = await http_json(c.url, f"/sessions/{long[0].session_id}/events")
        assert len(evs["events"]) == 1200


async def test_one_envelope_per_session_and_later_events_wait_for_its_answer() -> None:
    """Seen from the transport: each session's first batch is its only single-session body
    (its session_id and properties in ``session_properties``); every batch carrying the
    session's other events is posted after that answer; no /session/start at all."""
    answered: dict[str, float] = {}
    posted: list[tuple[float, dict[str, Any]]] = []

    async def handler(path: str, body: bytes) -> Response:
        req = msgspec.json.decode(body)
        if req.get("is_single_session"):
            await asyncio.sleep(0.1)  # the session's creation takes a while
            answered[req["session_properties"]["session_id"]] = time.monotonic()
            return ok_answer(path, body)
        posted.append((time.monotonic(), req))
        return ok_answer(path, body)

    t = MemoryTransport(handler)
    async with fast_exporter("http://127.0.0.1:9", transport=t, session_start="batch",
                             linger=0.0, max_batch_events=10) as hh:
        sessions = [hh.session(session_name=f"s{i}", metadata={"i": i}) for i in range(5)]
        for i in range(200):
            sessions[i % 5].log_model_event(**model_fields(i))
        assert await hh.flush(5)
        assert hh.stats().delivered == 200
    assert not [p for p, _ in t.requests if p == "/session/start"]
    envelopes = [b for b in _bodies(t, "/events/model/batch") if b["is_single_session"]]
    sids = [b["session_properties"]["session_id"] for b in envelopes]
    assert sorted(sids) == sorted(s.session_id for s in sessions)  # one each, none repeated
    for b in envelopes:
        props = b["session_properties"]
        assert props["session_name"] == f"s{props['metadata']['i']}"
        assert props["project"] == "test-project" and props["source"] == "dev"
        assert {e["session_id"] for e in b["model_events"]} == {props["session_id"]}
        check_request("/events/model/batch", b)  # the spec's PostModelEventBatchRequest
    for when, req in posted:
        assert req["is_single_session"] is False and "session_properties" not in req
        for ev in req["model_events"]:
            assert when >= answered[ev["session_id"]]


async def test_the_envelope_body_holds_against_the_spec_on_every_route() -> None:
    """Model, generic and v1 single-session bodies are valid requests of the spec's
    schemas (v1 with ``single_session``, never the legacy alias)."""
    for api, route, schema in [("legacy", "/events/model/batch", "PostModelEventBatchRequest"),
                               ("legacy", "/events/batch", "LegacyPostEventBatchRequest"),
                               ("v1", "/v1/events/batch", "PostEventBatchRequest")]:
        t = MemoryTransport()
        async with fast_exporter("http://127.0.0.1:9", transport=t, session_start="batch",
                                 api=api) as hh:
            s = hh.session(session_name="spec", user_properties={"u": 1}, config={"c": 2},
                           inputs={"i": 3}, metadata={"m": 4})
            if route == "/events/batch":
                s.log_event(event_type="tool", event_name="lookup", inputs={"q": 1})
            else:
                s.log_model_event(**model_fields())
            assert await hh.flush(5)
        (body,) = _bodies(t, route)
        validator(schema).validate(body)
        flag = "single_session" if api == "v1" else "is_single_session"
        assert body[flag] is True and body["session_properties"]["session_id"] == s.session_id
        assert body["session_properties"]["user_properties"] == {"u": 1}
        assert not [p for p, _ in t.requests if p in ("/session/start", "/v1/sessions")]


async def test_a_session_with_no_events_creates_nothing() -> None:
    """In batch mode a session handle that logs nothing costs no request at all."""
    t = MemoryTransport()
    async with fast_exporter("http://127.0.0.1:9", transport=t, session_start="batch") as hh:
        hh.session(session_name="idle")
        used = hh.session(session_name="used")
        used.log_model_event(**model_fields())
        assert await hh.flush(5)
        assert hh.stats().sessions_started == 1
    assert len(t.requests) == 1


async def test_the_collector_answers_the_envelope_with_the_session_it_created(
    collector: Collector,
) -> None:
    """The default collector answers a single-session batch with its ``session_id`` and
    counts a second envelope for the same session apart."""
    sid = "0b9a7c5e-1f7e-4a52-9d0e-3f0c6a4b2d11"
    body = {"model_events": [dict(model_fields(), project="p")], "is_single_session": True,
            "session_properties": {"session_id": sid, "session_name": "seed"}}
    check_request("/events/model/batch", body)
    status, answer = await http_json(collector.url, "/events/model/batch", "POST", body)
    assert status == 200 and answer["session_id"] == sid and len(answer["event_ids"]) == 1
    await http_json(collector.url, "/events/model/batch", "POST", body)
    _, stats = await http_json(collector.url, "/stats")
    assert stats["sessions_created_by_envelope"] == 1
    assert stats["envelopes_for_existing_sessions"] == 1 and stats["orphan_events"] == 0


@pytest.mark.parametrize("status", [400, 401])
async def test_a_refused_first_batch_drops_the_sessions_held_events(status: int) -> None:
    """A 4xx to the first batch: its events are dropped with the API's reason, the events
    held behind it and those logged later as ``session_failed`` (``unauthorized`` for
    401); other sessions are unaffected."""
    first = asyncio.Event()

    async def handler(path: str, body: bytes) -> Response:
        req = msgspec.json.decode(body)
        if req.get("is_single_session") and req["session_properties"]["session_name"] == "doomed":
            await first.wait()  # hold the answer until the session's later events are in
            return Response(status, b'{"error":"no"}')
        return ok_answer(path, body)

    t = MemoryTransport(handler)
    async with fast_exporter("http://127.0.0.1:9", transport=t, session_start="batch",
                             max_batch_events=5, linger=0.0, breaker_threshold=0) as hh:
        bad = hh.session(session_name="doomed")
        good = hh.session(session_name="fine")
        for i in range(5):
            bad.log_model_event(**model_fields(i))
        good.log_model_event(**model_fields())
        await asyncio.sleep(0.05)  # the first batch is under way
        for i in range(7):
            bad.log_model_event(**model_fields(i))
        first.set()
        await hh.flush(5)
        bad.log_model_event(**model_fields())  # after the failure: dropped at once
        await hh.flush(5)
        st = hh.stats()
        assert st.delivered == 1 and st.sessions_failed == 1 and st.sessions_started == 1
        first_reason = "unauthorized" if status == 401 else "rejected"
        held_reason = "unauthorized" if status == 401 else "session_failed"
        if status == 401:
            assert st.dropped["unauthorized"] == 5 + 7 and st.dropped["session_failed"] == 1
        else:
            assert st.dropped[first_reason] == 5
            assert st.dropped[held_reason] == 7 + 1
        assert_balanced(st)
    sent_bad = [b for b in _bodies(t, "/events/model/batch")
                if not b["is_single_session"] and any(
                    e["session_id"] == bad.session_id for e in b["model_events"])]
    assert sent_bad == []  # nothing of it was sent without its session


async def test_a_first_batch_out_of_retries_drops_the_session() -> None:
    """A first batch that runs out of retries: ``retries_exhausted`` for its events,
    ``session_failed`` for the held ones."""

    def handler(path: str, body: bytes) -> Response:
        if b'"is_single_session":true' in body:
            return Response(503, b'{"error":"busy"}')
        return ok_answer(path, body)

    async with fast_exporter("http://127.0.0.1:9", transport=MemoryTransport(handler),
                             session_start="batch", max_batch_events=3, linger=0.0,
                             max_attempts=2, breaker_threshold=0) as hh:
        s = hh.session(session_name="x")
        for i in range(8):
            s.log_model_event(**model_fields(i))
        await hh.flush(5)
        st = hh.stats()
        assert st.dropped["retries_exhausted"] == 3 and st.dropped["session_failed"] == 5
        assert st.sessions_failed == 1 and st.delivered == 0
        assert_balanced(st)


async def test_a_partial_success_on_the_first_batch_creates_the_session() -> None:
    """A partial-success 500 to the first batch stores its valid events and creates the
    session: the listed events are delivered, the rest rejected, never re-sent, and the
    held events are released in mixed batches."""
    c = Collector(token=TOKEN, faults=Faults(script=["partial"]))  # the first request only
    async with c:
        async with fast_exporter(c.url, session_start="batch", max_batch_events=4,
                                 linger=0.0) as hh:
            s = hh.session(session_name="half")
            for i in range(4):
                s.log_model_event(**model_fields(i))
            for i in range(6):
                s.log_model_event(**model_fields(i))
            assert await hh.flush(5)
            st = hh.stats()
            assert st.sessions_started == 1 and st.sessions_failed == 0
            assert st.dropped["rejected"] == 2 and st.delivered == 8
            assert_balanced(st)
        _, stats = await http_json(c.url, "/stats")
        assert stats["orphan_events"] == 0 and stats["events_stored"] == 8
        assert stats["sessions_created_by_envelope"] == 1
        assert stats["envelopes_for_existing_sessions"] == 0


async def test_a_413_on_the_first_batch_splits_it_and_the_first_half_keeps_the_envelope(
) -> None:
    """A 413 to the first batch halves it: the first half carries the envelope and creates
    the session, the second goes mixed after it; nothing is orphaned or repeated."""
    async with Collector(token=TOKEN, faults=Faults(max_body_bytes=6000)) as c:
        async with fast_exporter(c.url, session_start="batch", max_batch_events=8,
                                 linger=0.0) as hh:
            s = hh.session(session_name="big", metadata={"m": 1})
            ids = [s.log_model_event(**model_fields(i, size=1000)) for i in range(8)]
            assert await hh.flush(10)
            st = hh.stats()
            assert st.delivered == 8 and st.sessions_started == 1
            assert_balanced(st)
        _, stats = await http_json(c.url, "/stats")
        assert stats["requests"]["/events/model/batch"].get("413", 0) >= 1
        assert stats["orphan_events"] == 0 and stats["events_stored"] == 8
        assert stats["sessions_created_by_envelope"] == 1
        assert stats["envelopes_for_existing_sessions"] == 0
        _, evs = await http_json(c.url, f"/sessions/{s.session_id}/events")
        assert sorted(e["event_id"] for e in evs["events"]) == sorted(ids)


async def test_the_answers_session_id_is_compared_with_ours() -> None:
    """A 2xx whose ``session_id`` is not the one the envelope carried is counted in
    ``session_mismatches``."""

    def handler(path: str, body: bytes) -> Response:
        n = len(msgspec.json.decode(body)["model_events"])
        return Response(200, msgspec.json.encode(
            {"event_ids": [f"e{i}" for i in range(n)], "success": True,
             "session_id": "00000000-0000-4000-8000-000000000000"}))

    async with fast_exporter("http://127.0.0.1:9", transport=MemoryTransport(handler),
                             session_start="batch") as hh:
        hh.session(session_name="x").log_model_event(**model_fields())
        assert await hh.flush(5)
        assert hh.stats().session_mismatches == 1


def test_the_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HH_SESSION_START`` sets the mode; an argument wins; anything else is refused."""
    from hh_exporter import ConfigError, ExporterConfig

    monkeypatch.setenv("HH_SESSION_START", "batch")
    assert ExporterConfig.from_env(api_key="k").session_start == "batch"
    assert ExporterConfig.from_env(api_key="k", session_start="request").session_start == \
        "request"
    with pytest.raises(ConfigError, match="session_start"):
        ExporterConfig(api_key="k", session_start="eventually")  # type: ignore[arg-type]


async def test_ingest_with_session_start_batch_creates_each_session_by_its_first_batch(
    tmp_path: Path,
) -> None:
    """``hh-exporter ingest --session-start batch`` of 300 sessions of 3 lines and 2 of
    1,200, interleaved, whose first lines bring ``session_properties``, into the strict
    collector, with two workers: every line stored once, 0 orphans, no
    ``POST /session/start``, one envelope per session with its id and properties."""
    from .test_cli import run_cli

    sids = [str(uuid.uuid4()) for _ in range(302)]
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()

    def line(sid: str, i: int) -> None:
        ev: dict[str, Any] = dict(model_fields(i), session_id=sid, event_id=str(uuid.uuid4()))
        if sid not in seen:  # a session's first line brings its properties
            seen.add(sid)
            ev["session_properties"] = {"session_name": f"n-{sid[:8]}",
                                        "user_properties": {"sid": sid}}
        lines.append(ev)

    for k in range(1200):
        for sid in sids[300:]:
            line(sid, k)
        if k < 3:
            for sid in sids[:300]:
                line(sid, k)
    src = tmp_path / "seeds.jsonl"
    src.write_text("".join(json.dumps(ev) + "\n" for ev in lines))
    async with Collector(token=TOKEN, strict=True) as c:
        code, out, err = await run_cli(
            "ingest", str(src), "--api-url", c.url, "--session-start", "batch",
            "--workers", "2", "--no-progress", "--rejects", str(tmp_path / "r.jsonl"),
            env={"HH_API_KEY": TOKEN, "HH_PROJECT": "seeds"}, cwd=tmp_path)
        assert code == 0, out + err
        assert f"delivered     {len(lines):,}" in out
        _, stats = await http_json(c.url, "/stats")
        assert stats["events_stored"] == len(lines) and stats["duplicate_event_ids"] == 0
        assert stats["orphan_events"] == 0 and "/session/start" not in stats["requests"]
        assert stats["sessions_created_by_envelope"] == 302
        assert stats["envelopes_for_existing_sessions"] == 0
        stored = await c.store.event_ids()  # type: ignore[union-attr]
        assert sorted(stored) == sorted(ev["event_id"] for ev in lines)
        for sid in (sids[0], sids[301]):
            _, props = await http_json(c.url, f"/sessions/{sid}")
            assert props["session_name"] == f"n-{sid[:8]}"
            assert props["user_properties"] == {"sid": sid}


async def test_the_demo_in_batch_mode_holds_its_check_through_faults() -> None:
    """``hh-exporter demo --session-start batch --faults``: every event stored once, under
    a session its first batch created before it, no start request, no repeated envelope."""
    from hh_exporter.cli._demo import run_demo

    r = await run_demo(events=1500, sessions=120, faults=True, progress=False,
                       session_start="batch")
    assert r.ok, r.problems
    assert r.stats.delivered == 1500 and r.stats.retries > 0
    assert r.collector_stats["sessions_created_by_envelope"] == 120
    assert "/session/start" not in r.collector_stats["requests"]


@pytest.mark.parametrize("relay_mode", ["batch", "request"])
async def test_stream_producers_in_batch_mode_and_relays_in_either(
    redis_server: Any, relay_mode: str,
) -> None:
    """A ``StreamExporter(session_start="batch")`` puts each session's first batch in the
    stream with its properties (kept under the session key, as a start's are); a relay
    creates the session from them by its own mode: its first batch, or a start request."""
    from hh_exporter.streams import StreamExporter

    from .test_streams import collector_stats, relay, run_until

    async with Collector(token=TOKEN) as c:
        async with StreamExporter(redis_url=redis_server.url, stream="b", linger=0.02,
                                  session_start="batch", project="p") as hh:
            sessions = [hh.session(session_name=f"n{i}", metadata={"i": i})
                        for i in range(20)]
            for i in range(200):
                sessions[i % 20].log_model_event(**model_fields(i))
            assert await hh.flush(10)
            assert hh.stats().sessions_started == 20
        r = relay(redis_server, c, "b", "one", session_start=relay_mode)

        async def done() -> bool:
            return bool((await collector_stats(c))["events_stored"] >= 200)

        await run_until(r, done)
        stats = await collector_stats(c)
        assert stats["events_stored"] == 200 and stats["orphan_events"] == 0
        assert stats["duplicate_event_ids"] == 0
        if relay_mode == "batch":
            assert "/session/start" not in stats["requests"]
            assert stats["sessions_created_by_envelope"] == 20
            assert stats["envelopes_for_existing_sessions"] == 0
        else:
            assert stats["sessions_started"] == 20
        _, props = await http_json(c.url, f"/sessions/{sessions[3].session_id}")
        assert props["session_name"] == "n3" and props["metadata"] == {"i": 3}


def test_sessions_benchmark_smoke() -> None:
    """A tiny run of ``benchmarks/sessions.py`` completes in both modes; its own checks
    (0 orphans, no start request and no repeated envelope in batch mode) hold."""
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "sessions.py"), "--n",
                           "400"], capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "session_start=batch" in proc.stdout and "first event stored" in proc.stdout


async def test_first_batches_cut_at_close_are_spooled_with_their_session(
    collector: Collector, tmp_path: Path,
) -> None:
    """The API answers 503 to everything: the close cuts each session's first batch under
    way and its held events, and spools them with the session's start body. A second
    exporter in batch mode replays them: each session created by its first batch, every
    event stored once, 0 orphans."""
    spool = tmp_path / "spool"
    collector.faults.set(Faults(error_rate=1.0, error_statuses=[503]))
    first = fast_exporter(collector.url, session_start="batch", spool_dir=str(spool),
                          max_batch_events=5, linger=0.0, max_attempts=10_000,
                          retry_deadline=600.0, close_timeout=0.3)
    async with first:
        sessions = [first.session(session_name=f"out-{i}") for i in range(3)]
        ids = [s.log_model_event(**model_fields(i)) for s in sessions for i in range(5)]
        await asyncio.sleep(0.1)  # the first batches are under way, retrying
        ids += [s.log_model_event(**model_fields(i)) for s in sessions for i in range(4)]
    st1 = first.stats()
    assert_balanced(st1)
    assert st1.dropped["spooled"] == 27 and st1.delivered == 0

    collector.faults.set(Faults())
    second = fast_exporter(collector.url, session_start="batch", spool_dir=str(spool))
    async with second:
        for _ in range(200):  # bounded: 10 s at most
            if second.stats().replayed == 27:
                break
            await asyncio.sleep(0.05)
        assert await second.flush(10)
    assert second.stats().delivered == 27
    assert collector.store is not None
    assert sorted(await collector.store.event_ids()) == sorted(ids)
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0 and stats["duplicate_event_ids"] == 0
    assert "/session/start" not in stats["requests"]
    assert stats["envelopes_for_existing_sessions"] == 0
    _, props = await http_json(collector.url, f"/sessions/{sessions[2].session_id}")
    assert props["session_name"] == "out-2"


def test_sync_exporter_in_batch_mode_from_eight_threads(threaded_collector: Any) -> None:
    """``SyncExporter(session_start="batch")``: 8 plain threads log into 40 sessions at
    once (each session's first event may come from any thread): every event stored once,
    0 orphans, each session created by one envelope, none repeated."""
    import threading

    from hh_exporter import SyncExporter

    url = threaded_collector.collector.url
    with SyncExporter(api_key=TOKEN, project="sync", api_url=url, linger=0.02,
                      session_start="batch") as hh:
        sessions = [hh.session(session_name=f"t{i}") for i in range(40)]
        ids: list[str] = []
        lock = threading.Lock()

        def work(k: int) -> None:
            mine = [sessions[(k + j) % 40].log_model_event(**model_fields(j))
                    for j in range(50)]
            with lock:
                ids.extend(mine)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert hh.flush(10)
        st = hh.stats()
        assert st.delivered == 400 and st.sessions_started == 40
    stats = threaded_collector.run(http_json(url, "/stats"))[1]
    assert stats["orphan_events"] == 0 and stats["events_stored"] == 400
    assert stats["sessions_created_by_envelope"] == 40
    assert stats["envelopes_for_existing_sessions"] == 0
    stored = threaded_collector.run(threaded_collector.collector.store.event_ids())
    assert sorted(stored) == sorted(ids)


async def test_a_session_whose_events_are_all_refused_registers_nothing() -> None:
    """Batch mode: a session is made known with its first *good* event. One whose event is
    refused at the call (EventError) holds no envelope that would never be cut; its next
    good event still creates it, in one envelope, against the strict collector."""
    async with Collector(token=TOKEN, strict=True) as c:
        async with fast_exporter(c.url, session_start="batch") as hh:
            s = hh.session(session_name="refused-first")
            with pytest.raises(EventError):
                s.log_model_event(model="m", provider="p", messages="not a list")
            assert not hh._buffer._envelopes  # nothing registered for it
            eid = s.log_model_event(**model_fields(1))
            assert await hh.flush(10)
            assert_balanced(hh.stats())
        _, stats = await http_json(c.url, "/stats")
        assert stats["sessions_created_by_envelope"] == 1 and stats["orphan_events"] == 0
        _, evs = await http_json(c.url, f"/sessions/{s.session_id}/events")
        assert [e["event_id"] for e in evs["events"]] == [eid]


async def test_a_start_body_a_batch_cannot_carry_goes_as_a_start_request() -> None:
    """Batch mode: ``start_session_encoded`` with bytes that are no start body does not
    raise on the loop (nor lose what was queued after it); it goes as POST /session/start,
    whose 400 fails that session alone, counted, while another session is delivered."""
    async with Collector(token=TOKEN) as c:
        async with fast_exporter(c.url, session_start="batch", max_attempts=1) as hh:
            bad = str(uuid.uuid4())
            lost = hh.start_session_encoded(bad, b"not json").log_model_event(
                **model_fields(0))
            good = hh.session(session_name="fine")
            kept = good.log_model_event(**model_fields(1))
            assert await hh.flush(10)
            st = hh.stats()
            assert_balanced(st)
            assert st.delivered == 1 and st.dropped["session_failed"] == 1
        _, stats = await http_json(c.url, "/stats")
        assert stats["requests"]["/session/start"] == {"400": 1}
        ids = await c.store.event_ids()  # type: ignore[union-attr]
        assert kept in ids and lost not in ids
