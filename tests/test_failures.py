"""Every failure has an answer: 413 split, 400 isolation, breaker, outages, fork, hangs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import msgspec
import pytest

from hh_exporter import DropNotice, Exporter
from hh_exporter.collector import Collector, Faults
from hh_exporter.testing import MemoryTransport, Response, ok_answer

from .conftest import TOKEN, assert_balanced, fast_exporter, http_json, model_fields


async def test_413_splits_until_batches_fit(collector: Collector) -> None:
    """A 413 halves the batch until each part fits; a lone oversize event is too_large."""
    collector.faults.set(Faults(max_body_bytes=3000))
    async with fast_exporter(collector.url, max_batch_events=64) as hh:
        ids = [hh.log_model_event(**model_fields(i, size=200)) for i in range(64)]
        big = hh.log_model_event(**model_fields(size=5000))
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 64 and st.dropped["too_large"] == 1
        assert_balanced(st)
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert sorted(stored) == sorted(ids) and big not in stored


async def test_one_invalid_event_in_the_middle_is_isolated() -> None:
    """A 400 for the whole batch (as the v1 routes and other backends answer) bisects it:
    only the invalid event is dropped, with the server's message."""
    def strict_server(path: str, body: bytes) -> Response:
        for i, ev in enumerate(msgspec.json.decode(body).get("model_events", [])):
            if any(not isinstance(m, dict) for m in ev["messages"]):
                return Response(400, b'{"error":"model_events[%d].messages[0]: expected '
                                     b'object"}' % i)
        return ok_answer(path, body)

    notices: list[DropNotice] = []
    transport = MemoryTransport(strict_server)
    async with Exporter(api_key="k", transport=transport, linger=0.0, max_batch_events=500,
                        on_drop=notices.append) as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(200)]
        # A value the server rejects but the client cannot know about: a non-object message.
        bad = hh.log_model_event(**{**model_fields(), "messages": ["just a string"]})
        ids += [hh.log_model_event(**model_fields(i)) for i in range(200, 400)]
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 400 and st.dropped["rejected"] == 1
        assert_balanced(st)
    assert [n.count for n in notices if n.reason == "rejected"] == [1]
    assert "messages[0]" in (notices[0].detail or "")
    delivered = {e["event_id"] for _, body in transport.requests
                 for e in msgspec.json.decode(body)["model_events"]}
    assert ids and set(ids) <= delivered and bad in delivered  # tried, then isolated
    assert len(transport.requests) <= 2 * 9 + 1  # ~2 log2(401) requests, not 401


async def test_outage_then_recovery_loses_nothing(collector: Collector) -> None:
    """While the server is down logging continues; after it returns everything arrives."""
    collector.faults.set(Faults(error_rate=1.0, error_statuses=[503]))
    async with fast_exporter(collector.url, retry_deadline=30, max_attempts=100,
                             breaker_threshold=3, breaker_cooldown=0.05) as hh:
        ids = []
        for i in range(600):
            ids.append(hh.log_model_event(**model_fields(i)))
            if i % 50 == 0:
                await asyncio.sleep(0.02)
        assert hh.stats().breaker in ("open", "half_open")
        collector.faults.set(Faults())
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 600 and st.dropped_total == 0
        assert_balanced(st)
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert sorted(stored) == sorted(ids)


@pytest.mark.parametrize(
    ("faults", "n", "batch"),
    [(Faults(error_rate=0.2, seed=3), 1000, 20),   # random 20% 5xx
     (Faults(drop_rate=0.3, seed=5), 500, 25)],    # connections dropped mid-request
    ids=["random-5xx", "dropped-connections"],
)
async def test_transient_faults_are_retried_without_loss_or_doubles(
    collector: Collector, faults: Faults, n: int, batch: int
) -> None:
    """Retried faults lose nothing and store nothing twice; the stats add up."""
    collector.faults.set(faults)
    async with fast_exporter(collector.url, max_batch_events=batch) as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(n)]
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == n and st.retries > 0
        assert_balanced(st)
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert sorted(stored) == sorted(ids)


async def test_aclose_returns_on_time_when_the_server_never_answers(
    collector: Collector,
) -> None:
    """aclose(timeout) meets its deadline against a hung server and counts shutdown."""
    collector.faults.set(Faults(script=["hang"] * 10))
    hh = fast_exporter(collector.url, max_batch_events=50)
    await hh.start()
    for i in range(300):
        hh.log_model_event(**model_fields(i))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(hh.aclose(0.5), 10)  # the hang is 3600 s
    st = hh.stats()
    assert st.dropped["shutdown"] == 300 and st.pending == 0
    assert_balanced(st)


async def test_retries_exhausted_is_counted() -> None:
    """A batch that keeps failing is dropped as retries_exhausted after max_attempts."""
    transport = MemoryTransport(lambda path, body: Response(503, b'{"error":"down"}'))
    async with Exporter(api_key="k", project="p", transport=transport, linger=0.0,
                        max_attempts=3, backoff_initial=0.0, breaker_threshold=0) as hh:
        hh.log_model_event(**model_fields())
        await hh.flush(5)
        st = hh.stats()
    assert st.dropped["retries_exhausted"] == 1 and st.requests == 3 and st.retries == 2


async def test_breaker_opens_and_probes_with_one_request() -> None:
    """After N failures the breaker opens, waits, then lets exactly one probe through."""
    calls: list[float] = []

    def handler(path: str, body: bytes) -> Response:
        calls.append(time.monotonic())
        return Response(503) if len(calls) <= 3 else Response(200, b'{"success":true}')

    transport = MemoryTransport(handler)
    async with Exporter(api_key="k", project="p", transport=transport, linger=0.0,
                        max_attempts=10, backoff_initial=0.0, breaker_threshold=3,
                        breaker_cooldown=0.2, max_in_flight=1) as hh:
        hh.log_model_event(**model_fields())
        assert await hh.flush(5)
        st = hh.stats()
    assert st.delivered == 1 and st.breaker == "closed"
    assert len(calls) == 4
    assert calls[3] - calls[2] >= 0.19  # the cool-down separated the probe from the failures


async def test_callback_errors_do_not_hurt_the_host() -> None:
    """An on_drop callback that raises is logged and ignored."""

    def bad_callback(n: DropNotice) -> None:
        raise RuntimeError("callback bug")

    transport = MemoryTransport(lambda p, b: Response(401, b'{"error":"bad key"}'))
    async with Exporter(api_key="k", project="p", transport=transport, linger=0.0,
                        on_drop=bad_callback) as hh:
        hh.log_model_event(**model_fields())
        await hh.flush(5)
        assert hh.stats().dropped["unauthorized"] == 1


async def test_encodable_extras_are_documented_types() -> None:
    """datetimes, UUIDs, sets and dataclasses encode; NaN becomes null."""
    import dataclasses
    import datetime
    import uuid

    @dataclasses.dataclass
    class Point:
        x: int

    transport = MemoryTransport()
    async with Exporter(api_key="k", project="p", transport=transport, linger=0.0) as hh:
        hh.log_model_event(**model_fields(), metadata={
            "when": datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC), "id": uuid.UUID(int=1),
            "tags": {"a"}, "p": Point(1), "nan": float("nan")})
    meta = transport.events()[0]["metadata"]
    assert meta == {"when": "2026-01-02T00:00:00Z", "id": str(uuid.UUID(int=1)),
                    "tags": ["a"], "p": {"x": 1}, "nan": None}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("session_start", ["request", "batch"])
async def test_child_after_fork_restarts_empty_and_parent_goes_on(
    collector: Collector, session_start: str
) -> None:
    """A forked child logs through the parent's running exporter: it restarts there, empty,
    on a thread of its own, and delivers only the child's event (in a session of its own);
    the parent still delivers its own, each stored once."""
    async with fast_exporter(collector.url, session_start=session_start) as hh:
        first = hh.log_model_event(**model_fields())
        hh.session(session_name="parent's, never used")  # queued at the fork
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what happens, then leave without cleanup
            try:
                eid = hh.session(session_name="child").log_model_event(**model_fields())
                asyncio.run(hh.aclose(5.0))
                st = hh.stats()
                msg = f"{eid} {st.delivered} {st.accepted}".encode()
            except BaseException as exc:
                msg = type(exc).__name__.encode() + b":" + str(exc).encode()
            os.write(w, msg)
            os._exit(0)
        os.close(w)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        out = os.read(r, 1000).decode()
        os.close(r)
        assert os.waitstatus_to_exitcode(status) == 0
        child_id, delivered, accepted = out.split()
        assert (delivered, accepted) == ("1", "1"), out
        last = hh.log_model_event(**model_fields())
        assert await hh.flush(5)
        assert hh.stats().delivered == 2
    assert collector.store is not None
    assert sorted(await collector.store.event_ids()) == sorted([first, last, child_id])


async def test_cancelling_the_owner_task_still_closes() -> None:
    """Cancelling the task inside 'async with' closes the exporter within its deadline."""
    transport = MemoryTransport(lambda p, b: asyncio.sleep(60))  # type: ignore[arg-type,return-value]
    holder: list[Exporter] = []

    async def owner() -> None:
        async with Exporter(api_key="k", project="p", transport=transport, linger=0.0,
                            close_timeout=0.2) as hh:
            holder.append(hh)
            hh.log_model_event(**model_fields())
            await asyncio.sleep(60)

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)  # the transport would sleep 60 s
    st = holder[0].stats()
    assert holder[0].closed and st.dropped["shutdown"] == 1 and st.pending == 0


async def test_key_never_in_reprs_or_errors() -> None:
    """The API key appears in no repr, str or exception message."""
    secret = "hh_secret_key_0123456789"
    async with Exporter(api_key=secret, project="p", api_url="https://api.example.com") as hh:
        texts = [repr(hh), str(hh), repr(hh.config), str(hh.config), repr(hh._transport)]
        assert all(secret not in t for t in texts)



async def test_429_storm_with_retry_after(collector: Collector) -> None:
    """A storm of 429s with Retry-After is waited out; everything arrives once."""
    collector.faults.set(Faults(script=["429@0.05"] * 12))
    async with fast_exporter(collector.url, max_batch_events=50, max_attempts=20,
                             breaker_threshold=0) as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(200)]
        t0 = time.monotonic()
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 200 and st.retries == 12
        # Four batches in flight share the storm, each waiting at least the 50 ms floor
        # per 429 it received: the storm cannot pass in less than 12 / 4 floors.
        assert time.monotonic() - t0 >= 0.15
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert sorted(stored) == sorted(ids)


async def test_a_bug_in_the_transport_is_counted_not_raised() -> None:
    """An unexpected error while sending drops that batch as worker_failed; logging goes on."""
    calls = 0

    def handler(path: str, body: bytes) -> Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in a custom transport")
        return Response(200, b'{"success":true}')

    transport = MemoryTransport(handler)
    async with Exporter(api_key="k", project="p", transport=transport, linger=0.0,
                        max_in_flight=1) as hh:
        hh.log_model_event(**model_fields())
        await hh.flush(5)
        hh.log_model_event(**model_fields())
        assert await hh.flush(5)
        st = hh.stats()
    assert st.dropped["worker_failed"] == 1 and st.delivered == 1
    assert_balanced(st)


def test_unclosed_exporter_warns_when_collected() -> None:
    """An exporter dropped with events still buffered emits a ResourceWarning."""
    import gc

    hh = Exporter(api_key="k", project="p", transport=MemoryTransport())
    hh.log_model_event(**model_fields())
    with pytest.warns(ResourceWarning, match="unclosed"):
        del hh
        gc.collect()


async def test_pydantic_and_numpy_style_values_are_converted() -> None:
    """Objects with model_dump() and numpy-style scalars with item() are encoded."""

    class Model:
        def model_dump(self, mode: str = "python") -> dict[str, int]:
            return {"a": 1}

    class Float64:
        def item(self) -> float:
            return 0.5

    Float64.__module__ = "numpy"  # how numpy scalars present themselves to the hook
    transport = MemoryTransport()
    async with Exporter(api_key="k", project="p", transport=transport, linger=0.0) as hh:
        hh.log_model_event(**model_fields(), metadata={"m": Model(), "score": Float64()})
    assert transport.events()[0]["metadata"] == {"m": {"a": 1}, "score": 0.5}


async def test_a_server_refusing_everything_is_not_bisected_forever() -> None:
    """When every event is refused, splitting stops after a bounded number of requests."""
    transport = MemoryTransport(lambda p, b: Response(400, b'{"error":"project archived"}'))
    async with Exporter(api_key="k", project="p", transport=transport, linger=10.0,
                        max_batch_events=500) as hh:
        for i in range(500):
            hh.log_model_event(**model_fields(i))
        await hh.flush(10)
        st = hh.stats()
    assert st.dropped["rejected"] == 500
    assert st.requests <= 2 * 64 + 1  # not 999
    assert_balanced(st)


@pytest.mark.parametrize("api", ["legacy", "v1"])
async def test_spool_keeps_what_a_deadline_cut_and_ingest_replays_it(
    collector: Collector, tmp_path: Path, api: str
) -> None:
    """With spool_dir, events cut at close are written as segments; hh-exporter ingest can
    replay the segments (a never-started session's segment starts it first)."""
    spool = tmp_path / "spool"
    collector.faults.set(Faults(latency=60))  # the server hangs
    hh = fast_exporter(collector.url, max_batch_events=20, spool_dir=str(spool), api=api)
    async with hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(200)]
        s = hh.session(session_name="spooled")  # its start hangs: its event is held
        ids.append(s.log_event(event_type="chain", event_name="c", inputs={}))
        await asyncio.sleep(0.05)  # four batches go in flight and hang
        await hh.aclose(0.2)
    st = hh.stats()
    assert st.dropped["spooled"] == 201 and st.dropped_total == 201
    assert_balanced(st)
    segments = sorted(spool.glob("seg-*.jsonl"))
    lines = [x for seg in segments for x in seg.read_bytes().splitlines()[1:]]
    assert sorted(json.loads(x)["event_id"] for x in lines) == sorted(ids)
    assert not list(spool.glob("*.tmp"))

    collector.faults.set(Faults())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hh_exporter", "ingest", *map(str, segments),
        "--api-url", collector.url, "--no-progress", "--rejects", str(tmp_path / "r.jsonl"),
        "--api", api, env={**os.environ, "HH_API_KEY": TOKEN, "HH_PROJECT": "test-project"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode() + err.decode()
    stored = set(await collector.store.event_ids())  # type: ignore[union-attr]
    assert set(ids) <= stored
    # The held event's segment carried the session's start: ingest started it first.
    _, props = await http_json(collector.url, f"/sessions/{s.session_id}")
    assert props["session_name"] == "spooled"
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0


@pytest.mark.parametrize("script", [
    ["partial"], ["400", "200"], ["503", "503", "200"], ["413"], ["hang"], ["401"],
])
async def test_every_event_is_settled_once_through_on_settled(
    collector: Collector, script: list[str]
) -> None:
    """on_settled receives each accepted event exactly once, whatever happens to it
    (delivered, rejected after a split, partial success, retried, cut at close, refused key),
    so a bulk loader can checkpoint on it; the count matches delivered + dropped."""
    collector.faults.set(Faults(script=script))
    settled: list[bytes] = []
    sent: list[bytes] = []
    by_reason: dict[str | None, int] = {}

    def on_settled(events: list[bytes], reason: str | None) -> None:
        settled.extend(events)
        by_reason[reason] = by_reason.get(reason, 0) + len(events)

    hh = fast_exporter(collector.url, max_batch_events=8, on_settled=on_settled,
                       close_timeout=0.5)
    async with hh:
        for i in range(40):
            data = msgspec.json.encode({**model_fields(i), "event_id": str(uuid.uuid4())})
            sent.append(data)
            await hh.send_encoded(data)
        await hh.flush(0.5)
    st = hh.stats()
    assert_balanced(st)
    assert st.pending == 0 and st.delivered + st.dropped_total == 40
    assert sorted(map(id, settled)) == sorted(map(id, sent))  # the same objects, once each
    # ... each with the reason it was counted under (None: delivered).
    assert by_reason.pop(None, 0) == st.delivered
    assert by_reason == {r: n for r, n in st.dropped.items() if n}
