"""The Redis Streams pipeline against a real redis-server and the real collector:
StreamExporter producers, relays in a consumer group, reclaiming, dead letters, SIGTERM
and SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from hh_exporter.collector import Collector, Faults
from hh_exporter.streams import Relay, StreamExporter
from hh_exporter.streams._stream import session_key, split_batch

from .conftest import TOKEN, RedisServer, assert_balanced, http_json, model_fields

ROOT = Path(__file__).parent.parent


@pytest.fixture
async def rds(redis_server: RedisServer) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def producer(redis_server: RedisServer, stream: str, **kw: Any) -> StreamExporter:
    opts: dict[str, Any] = dict(project="p", linger=0.02, backoff_initial=0.01,
                                backoff_max=0.05, retry_deadline=10.0, close_timeout=5.0,
                                breaker_cooldown=0.05)
    opts.update(kw)
    return StreamExporter(redis_url=redis_server.url, stream=stream, **opts)


def relay(redis_server: RedisServer, collector: Collector, stream: str, consumer: str,
          **kw: Any) -> Relay:
    opts: dict[str, Any] = dict(api_key=TOKEN, api_url=collector.url, linger=0.02,
                                backoff_initial=0.01, backoff_max=0.05, retry_deadline=5.0,
                                claim_idle=1.0, block=0.1, breaker_cooldown=0.05)
    opts.update(kw)
    return Relay(redis_url=redis_server.url, stream=stream, consumer=consumer, **opts)


async def run_until(r: Relay, done: Any, timeout: float = 30.0) -> None:
    """Run a relay until ``done()`` (a coroutine function) says so, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop, stats_interval=0.2, on_stats=lambda s: None))
    try:
        async with asyncio.timeout(timeout):
            while not await done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


async def collector_stats(c: Collector) -> dict[str, Any]:
    _, stats = await http_json(c.url, "/stats")
    return dict(stats)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_a_forked_child_adds_through_the_inherited_producer(
    redis_server: RedisServer, rds: Any
) -> None:
    """A StreamExporter running in the parent, used in a forked child: the child's copy
    restarts empty with its own Redis connections; each event is in the stream once."""
    async with producer(redis_server, "f") as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(2)]
        assert await hh.flush(5)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                mine = [hh.log_model_event(**model_fields(i)) for i in range(3)]
                asyncio.run(hh.aclose(5.0))
                msg = " ".join([str(hh.stats().delivered), *mine])
            except BaseException as exc:
                msg = f"failed {exc!r}"
            os.write(w, msg.encode())
            os._exit(0)
        os.close(w)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        delivered, *child_ids = os.read(r, 10_000).decode().split()
        os.close(r)
        assert os.waitstatus_to_exitcode(status) == 0 and delivered == "3"
        ids += [hh.log_model_event(**model_fields(i)) for i in range(2)]
    assert hh.stats().delivered == 4
    stored = [json.loads(e)["event_id"] for _, f in await rds.xrange("f")
              for _, e in split_batch(f[b"r"].decode(), f[b"b"])]
    assert sorted(stored) == sorted(ids + child_ids)


async def test_a_session_start_is_in_the_stream_ahead_of_its_events(
    redis_server: RedisServer, rds: Any
) -> None:
    async with producer(redis_server, "s", max_batch_events=10) as hh:
        sessions = [hh.session(session_name=f"n{i}") for i in range(3)]
        for i in range(60):
            sessions[i % 3].log_model_event(**model_fields(i))
        assert await hh.flush(10)
    stats = hh.stats()
    assert stats.accepted == stats.delivered == 60 and stats.sessions_started == 3
    assert_balanced(stats)
    entries = await rds.xrange("s")
    seen_start: set[str] = set()
    events = 0
    for _, fields in entries:
        route = fields[b"r"].decode()
        if route == "/session/start":
            seen_start.add(json.loads(fields[b"b"])["session"]["session_id"])
            continue
        assert route == "/events/model/batch"
        for sid, _ in split_batch(route, fields[b"b"]):
            assert sid in seen_start  # its start came first
            events += 1
    assert events == 60 and seen_start == {s.session_id for s in sessions}
    key = session_key("s", sessions[0].session_id)
    assert await rds.get(key) == sessions[0].start_body
    assert 0 < await rds.ttl(key) <= 86_400


async def test_relay_delivers_acknowledges_and_trims(
    redis_server: RedisServer, rds: Any, collector: Collector
) -> None:
    async with producer(redis_server, "s") as hh:
        for n in range(20):
            s = hh.session(session_name=f"n{n}")
            for i in range(25):
                s.log_model_event(**model_fields(i))
    r = relay(redis_server, collector, "s", "only")

    async def done() -> bool:
        return (await collector_stats(collector))["events_stored"] >= 500

    await run_until(r, done)
    stats = await collector_stats(collector)
    assert stats["events_stored"] == 500 and stats["duplicate_event_ids"] == 0
    assert stats["orphan_events"] == 0 and stats["sessions_started"] == 20
    assert r.stats.events_delivered == 500 and r.stats.pending == 0
    assert r.stats.entries_acked == r.stats.entries_read
    assert await rds.xlen("s") == 0  # acknowledged entries were trimmed
    assert_balanced(r.exporter.stats())


async def test_a_relay_starts_sessions_whose_start_another_relay_took(
    redis_server: RedisServer, rds: Any, collector: Collector
) -> None:
    """The start entries are read and acknowledged by a relay that then dies before
    starting anything; the relay that reads the events starts the sessions from the
    bodies the producer kept, before their events."""
    async with producer(redis_server, "s") as hh:
        starts = [hh.session(session_name=f"n{i}") for i in range(5)]
        await hh.flush()
        for i in range(50):
            starts[i % 5].log_model_event(**model_fields(i))
    await rds.xgroup_create("s", "hh-relay", id="0")
    got = await rds.xreadgroup("hh-relay", "ghost", {"s": ">"}, count=5)
    ids = [eid for eid, f in got[0][1] if f[b"r"] == b"/session/start"]
    assert len(ids) == 5
    await rds.xack("s", "hh-relay", *ids)
    r = relay(redis_server, collector, "s", "survivor")

    async def done() -> bool:
        return (await collector_stats(collector))["events_stored"] >= 50

    await run_until(r, done)
    stats = await collector_stats(collector)
    assert stats["orphan_events"] == 0 and stats["sessions_started"] == 5
    _, session = await http_json(collector.url, f"/sessions/{starts[0].session_id}")
    assert session["session_name"] == "n0"


async def test_a_full_stream_pushes_back_and_nothing_is_trimmed_unread(
    redis_server: RedisServer, rds: Any, collector: Collector
) -> None:
    hh = producer(redis_server, "s", stream_maxlen=3, max_batch_events=5, max_in_flight=1,
                  retry_deadline=30.0)
    await hh.start()
    for i in range(40):
        await hh.send_model_event(**model_fields(i))
    await asyncio.sleep(0.3)
    assert await rds.xlen("s") == 3  # the bound held: producers wait, Redis trims nothing
    assert hh.stats().pending > 0 and hh.stats().dropped_total == 0  # waiting, not dropping
    r = relay(redis_server, collector, "s", "drain")

    async def done() -> bool:
        return (await collector_stats(collector))["events_stored"] >= 40

    flushing = asyncio.create_task(hh.flush(30))
    await run_until(r, done)
    assert await flushing
    await hh.aclose()
    assert hh.stats().delivered == 40 and hh.stats().dropped_total == 0
    assert (await collector_stats(collector))["events_stored"] == 40


async def test_unanswered_entries_are_retried_then_dead_lettered(
    redis_server: RedisServer, rds: Any, collector: Collector
) -> None:
    collector.faults.set(Faults(error_rate=1.0, error_statuses=[503]))
    async with producer(redis_server, "s", max_batch_events=10) as hh:
        for i in range(20):
            hh.log_model_event(**model_fields(i))
    r = relay(redis_server, collector, "s", "a", retry_deadline=0.2, claim_idle=0.3,
              max_deliveries=2)

    async def done() -> bool:
        return int(await rds.xlen("s:dead")) >= 2

    await run_until(r, done)
    dead = await rds.xrange("s:dead")
    assert len(dead) == 2
    for _, fields in dead:
        reason = fields[b"reason"].decode()
        assert reason.startswith("delivered 3 times; last: retries_exhausted"), reason
        assert "503" in reason
        assert len(split_batch(fields[b"r"].decode(), fields[b"b"])) == 10
    assert (await rds.xpending("s", "hh-relay"))["pending"] == 0
    assert r.stats.entries_dead_lettered == 2 and r.stats.entries_acked == 0


async def test_an_entry_that_is_not_ours_goes_to_the_dead_letters(
    redis_server: RedisServer, rds: Any, collector: Collector
) -> None:
    await rds.xadd("s", {"r": "/events/model/batch", "b": b"{not json"})
    await rds.xadd("s", {"something": "else"})
    r = relay(redis_server, collector, "s", "a")

    async def done() -> bool:
        return int(await rds.xlen("s:dead")) >= 2

    await run_until(r, done)
    reasons = [f[b"reason"].decode() for _, f in await rds.xrange("s:dead")]
    assert reasons[0].startswith("undecodable batch")
    assert reasons[1].startswith("not an hh_exporter entry")


async def test_a_producer_without_redis_counts_its_losses(tmp_path: Path) -> None:
    hh = StreamExporter(redis_url="redis://:s3cret@127.0.0.1:9/0", stream="s",
                        retry_deadline=0.3, backoff_initial=0.01, backoff_max=0.05,
                        request_timeout=0.5, linger=0.01)
    assert "s3cret" not in repr(hh) and "s3cret" not in repr(hh._transport)
    async with hh:
        for i in range(5):
            hh.log_model_event(**model_fields(i))
        await hh.flush(5)  # settles them all: dropped with a reason, none cut
    stats = hh.stats()
    assert stats.dropped["retries_exhausted"] == 5 and stats.delivered == 0
    assert stats.last_error is not None and "s3cret" not in stats.last_error
    assert_balanced(stats)


def relay_cmd(url: str, collector: Collector, consumer: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hh_exporter", "relay", "--redis", url, "--stream", "fleet",
            "--consumer", consumer, "--api-url", collector.url, "--claim-idle", "2",
            "--stats-interval", "0.5", "--linger", "0.05", *extra]


async def test_sigterm_finishes_what_is_under_way_and_leaves_the_rest(
    redis_server: RedisServer, rds: Any, collector: Collector, tmp_path: Path
) -> None:
    """SIGTERM with a slow API: the relay stops reading, acknowledges what the API
    answered within its deadline and leaves the rest pending; a second relay finishes it
    and every event is stored."""
    async with producer(redis_server, "fleet", max_batch_events=50) as hh:
        for _ in range(10):
            s = hh.session()
            for i in range(100):
                s.log_model_event(**model_fields(i))
    collector.faults.set(Faults(latency=0.3))
    env = {**os.environ, "HH_API_KEY": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        *relay_cmd(redis_server.url, collector, "first", "--deadline", "0.5",
                   "--stats-port", "0", "--batch-events", "50", "--max-in-flight", "1"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    port = None
    for _ in range(100):
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        if "relay stats on" in line:
            port = int(line.rsplit(":", 1)[1].split("/")[0])
            break
    assert port is not None
    for _ in range(200):  # bounded: 10 s
        if (await collector_stats(collector))["events_stored"] > 0:
            break
        await asyncio.sleep(0.05)
    status, live = await http_json(f"http://127.0.0.1:{port}", "/stats")
    assert status == 200 and live["consumer"] == "first"
    status, text = await http_json(f"http://127.0.0.1:{port}", "/metrics")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(text)}  # prometheus_client's parser
    assert {"hh_exporter_event_exported", "hh_exporter_queue_size",
            "hh_relay_entries_acked"} <= names
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    assert "relay first:" in out.decode()
    pending = await rds.xpending("fleet", "hh-relay")
    stored = (await collector_stats(collector))["events_stored"]
    assert stored < 1000 and pending["pending"] > 0  # the rest is left for others

    collector.faults.set(Faults())
    r = relay(redis_server, collector, "fleet", "second", claim_idle=0.2)

    async def done() -> bool:
        return (await collector_stats(collector))["events_stored"] >= 1000 and \
            (await rds.xpending("fleet", "hh-relay"))["pending"] == 0

    await run_until(r, done)
    assert collector.store is not None
    assert len(set(await collector.store.event_ids())) == 1000


async def test_three_producers_two_relays_one_killed(
    redis_server: RedisServer, rds: Any, collector: Collector, tmp_path: Path
) -> None:
    """The issue's fleet test: 3 producer processes, 2 relay processes, 30,000 events; one
    relay is SIGKILLed in the middle. At the end the collector holds every event, the
    duplicates are at most the events of the killed relay's unacknowledged entries, and
    every session was started before its first event."""
    env = {**os.environ, "HH_API_KEY": TOKEN}
    relays = {name: await asyncio.create_subprocess_exec(
        *relay_cmd(redis_server.url, collector, name), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env) for name in ("r1", "r2")}
    collector.faults.set(Faults(latency=0.02))
    outs = [tmp_path / f"p{i}.ids" for i in range(3)]
    producers = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.stream_producer", redis_server.url, "fleet", "100",
        "100", str(out), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE) for out in outs]
    try:
        for _ in range(1200):  # bounded: 60 s
            if (await collector_stats(collector))["events_received"] >= 8_000:
                break
            await asyncio.sleep(0.05)
        victim = relays["r1"]
        victim.kill()
        await victim.wait()
        # What the killed relay read and never acknowledged: the only entries that may be
        # delivered twice (the survivor reclaims them once they are idle for 2 s).
        unacked = await rds.xpending_range("fleet", "hh-relay", min="-", max="+",
                                           count=100_000, consumername="r1")
        at_risk = 0
        for row in unacked:
            (entry,) = await rds.xrange("fleet", row["message_id"], row["message_id"]) or [
                (None, None)]
            if entry[1] is not None and entry[1][b"r"] != b"/session/start":
                at_risk += len(split_batch(entry[1][b"r"].decode(), entry[1][b"b"]))
        for p in producers:
            out, err = await asyncio.wait_for(p.communicate(), 120)
            assert p.returncode == 0, err.decode()
            report = json.loads(out.decode().strip().splitlines()[-1])
            assert report["accepted"] == report["delivered"] == 10_000
        ids = [i for out in outs for i in out.read_text().split()]
        assert len(ids) == len(set(ids)) == 30_000
        for _ in range(1200):  # bounded: 60 s for the survivor to finish
            pending = (await rds.xpending("fleet", "hh-relay"))["pending"]
            stats = await collector_stats(collector)
            if stats["events_stored"] - stats["duplicate_event_ids"] >= 30_000 and not pending:
                break
            await asyncio.sleep(0.05)
        assert collector.store is not None
        stored = await collector.store.event_ids()
        assert set(stored) == set(ids)
        duplicates = len(stored) - len(set(stored))
        print(f"fleet: {duplicates} duplicates, {at_risk} events at risk, {len(unacked)} unacked")
        assert duplicates <= at_risk, (duplicates, at_risk)
        stats = await collector_stats(collector)
        assert stats["orphan_events"] == 0  # every session started before its events
        assert stats["sessions_stored"] == 300
    finally:
        for p in [*relays.values(), *producers]:
            if p.returncode is None:
                p.kill()
                await p.wait()


async def test_a_relay_rides_out_a_redis_restart(
    redis_server: RedisServer, collector: Collector, tmp_path: Path
) -> None:
    """Redis goes away under a running relay and comes back empty on the same port (a
    restart without persistence): the relay warns, waits, creates its group again and
    delivers what producers add after the restart."""
    port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    async with producer(redis_server, "s") as hh:
        for i in range(10):
            hh.log_model_event(**model_fields(i))
    r = relay(redis_server, collector, "s", "steady")
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop, stats_interval=0.2, on_stats=lambda s: None))
    try:
        async with asyncio.timeout(30):
            for _ in range(600):
                if (await collector_stats(collector))["events_stored"] >= 10:
                    break
                await asyncio.sleep(0.05)
            redis_server.kill()
            for _ in range(600):
                if r.stats.redis_errors:
                    break
                await asyncio.sleep(0.05)
            redis_server.restart_on(port)
            async with producer(redis_server, "s") as hh2:
                for i in range(10):
                    hh2.log_model_event(**model_fields(i))
            while (await collector_stats(collector))["events_stored"] < 20:
                assert not task.done()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert r.stats.redis_errors > 0 and r.stats.events_delivered == 20


def test_sync_stream_exporter_for_code_without_a_loop(redis_server: RedisServer) -> None:
    """SyncStreamExporter: the SyncExporter API with a stream behind it (a Celery task, a
    script), from a plain thread."""
    import redis

    from hh_exporter.streams import SyncStreamExporter

    with SyncStreamExporter(redis_url=redis_server.url, stream="sync", project="p",
                            linger=0.02) as hh:
        s = hh.session(session_name="job")
        for i in range(30):
            s.log_model_event(**model_fields(i))
        assert hh.flush(10)
        stats = hh.stats()
    assert stats.accepted == stats.delivered == 30 and stats.sessions_started == 1
    client = redis.Redis.from_url(redis_server.url)
    try:
        routes = [f[b"r"] for _, f in client.xrange("sync")]
    finally:
        client.close()
    assert routes[0] == b"/session/start" and set(routes[1:]) == {b"/events/model/batch"}


async def test_v1_producers_and_relay(
    redis_server: RedisServer, rds: Any, collector: Collector
) -> None:
    """api="v1" end to end: the v1 start and batch routes go through the stream, and a
    legacy relay refuses them into the dead letters instead of sending them wrongly."""
    async with producer(redis_server, "v", api="v1") as hh:
        s = hh.session(session_name="v1")
        for i in range(12):
            s.log_event(event_type="tool", event_name=f"t{i}", inputs={"i": i})
    # Both groups exist from the start: a relay trims only what every group acknowledged.
    await rds.xgroup_create("v", "hh-relay", id="0")
    wrong = relay(redis_server, collector, "v", "legacy", group="wrong")

    async def two_dead() -> bool:
        return int(await rds.xlen("v:dead")) >= 2

    await run_until(wrong, two_dead)
    reasons = {f[b"reason"].decode() for _, f in await rds.xrange("v:dead")}
    assert all("this relay speaks api=legacy" in r for r in reasons)
    right = relay(redis_server, collector, "v", "v1", api="v1")

    async def stored() -> bool:
        return (await collector_stats(collector))["events_stored"] >= 12

    await run_until(right, stored)
    stats = await collector_stats(collector)
    assert stats["events_received_by_api"]["v1"] == 12 and stats["orphan_events"] == 0
