"""The Redis Streams pipeline beside the direct exporter:
``python benchmarks/streams.py [--events 100000] [--producers 2]``.

The same workload (the seed model event, 10 events per session) is logged by
``--producers`` processes, each with ``send_model_event`` (backpressure, no drops), and
delivered to the collector (``none`` mode, its own process):

- direct: each producer's ``Exporter`` POSTs to the collector;
- stream, 1 relay / 2 relays: each producer's ``StreamExporter`` adds to a Redis stream
  (``redis-server`` started here, no persistence) and ``hh-exporter relay`` processes
  deliver it.

Reported: events/s from the producers' start until the collector holds every event, the
producers' CPU µs per event (what a service pays), and the relays' CPU µs per event.
Everything shares this machine's cores, so the pipeline's extra hop (Redis, a relay) costs
throughput here that a fleet spread over machines would not pay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import aiohttp  # noqa: E402
from run import SEED_EVENT, TOKEN, start_sink  # noqa: E402

from hh_exporter import Exporter  # noqa: E402
from hh_exporter.streams import StreamExporter  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

STREAM = "bench:events"


def seed() -> dict[str, Any]:
    return {k: v for k, v in SEED_EVENT.items() if k != "project"}


async def produce(mode: str, url: str, n: int, token: str) -> None:
    """One producer process: log ``n`` events, flush, print its CPU per event."""
    fields = seed()
    cpu0 = time.process_time()
    opts: dict[str, Any] = dict(project="bench", close_timeout=300, max_buffer_events=20_000)
    hh: Exporter = (StreamExporter(redis_url=url, stream=STREAM, stream_maxlen=2_000, **opts)
                    if mode == "stream" else Exporter(api_key=token, api_url=url, **opts))
    async with hh:
        s = None
        for i in range(n):
            if i % 10 == 0:
                s = hh.session(session_name=f"b{i}")
            assert s is not None
            await s.send_model_event(**fields)
        assert await hh.flush(300)
    st = hh.stats()
    assert st.delivered == n and st.dropped_total == 0, st
    print(json.dumps({"cpu_us": (time.process_time() - cpu0) / n * 1e6}), flush=True)


async def stored(sink_url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(
            sink_url + "/stats", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        return int((await r.json())["events_stored"])


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc)."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


async def scenario(mode: str, relays: int, events: int, producers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        sink, sink_url = start_sink("none")
        redis = RedisServer(tmp) if mode == "stream" else None
        redis_url = redis.url if redis is not None else ""
        relay_procs = [subprocess.Popen(  # noqa: ASYNC220 - started once, before timing
            [sys.executable, "-m", "hh_exporter", "relay", "--redis", redis_url, "--stream",
             STREAM, "--consumer", f"r{i}", "--api-url", sink_url, "--stats-interval", "0",
             "--claim-idle", "300"],
            env={**os.environ, "HH_API_KEY": TOKEN}, stdout=subprocess.DEVNULL)
            for i in range(relays)]
        try:
            await asyncio.sleep(1.0)  # the relays are up and reading
            relay_cpu0 = sum(cpu_of(p.pid) for p in relay_procs)
            t0 = time.perf_counter()
            per = events // producers
            procs = [await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--produce", mode, "--url",
                redis_url if mode == "stream" else sink_url, "--events", str(per),
                "--token", TOKEN, stdout=asyncio.subprocess.PIPE) for _ in range(producers)]
            outs = [await p.communicate() for p in procs]
            if any(p.returncode for p in procs):
                raise SystemExit(f"a {mode} producer failed")
            for _ in range(12_000):  # bounded: 10 minutes
                if await stored(sink_url) >= per * producers:
                    break
                await asyncio.sleep(0.05)
            wall = time.perf_counter() - t0
            relay_cpu = sum(cpu_of(p.pid) for p in relay_procs) - relay_cpu0
            cpu = [json.loads(o.decode().splitlines()[-1])["cpu_us"] for o, _ in outs]
            total = per * producers
            return {"mode": mode, "relays": relays, "events": total,
                    "events_per_s": total / wall,
                    "producer_cpu_us": sum(cpu) / len(cpu),
                    "relay_cpu_us": relay_cpu / total * 1e6 if relays else 0.0}
        finally:
            for p in relay_procs:
                p.terminate()
                p.wait(30)
            if redis is not None:
                redis.kill()
            sink.terminate()
            sink.wait(30)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--produce", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--token", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:
        await produce(args.produce, args.url, args.events, args.token)
        return
    rows = [await scenario("direct", 0, args.events, args.producers),
            await scenario("stream", 1, args.events, args.producers),
            await scenario("stream", 2, args.events, args.producers)]
    print(f"\n{args.producers} producer processes, {args.events:,} seed events, "
          f"10 per session, to the none collector")
    print(f"{'path':<40}{'events/s':>10}{'vs direct':>11}{'producer CPU us/ev':>20}"
          f"{'relay CPU us/ev':>17}")
    direct = rows[0]["events_per_s"]
    for r in rows:
        label = "direct: Exporter -> API" if r["mode"] == "direct" else \
            f"producers -> Redis -> {r['relays']} relay{'s' if r['relays'] > 1 else ''} -> API"
        print(f"{label:<40}{r['events_per_s']:>10,.0f}{r['events_per_s'] / direct:>10.2f}x"
              f"{r['producer_cpu_us']:>20.1f}{r['relay_cpu_us']:>17.1f}")


if __name__ == "__main__":
    asyncio.run(main())
