"""Benchmarks with floors: ``python benchmarks/run.py [--n 100000] [--json out.json]``.

Every figure is printed beside a floor measured in the same run, so ratios compare across
noisy machines. The sink is the collector in ``none`` mode, in another process, on loopback.

Scenarios:
1. log cost: us per ``log_model_event`` (p50, p99) vs ``msgspec.json.encode`` of the same event;
2. end to end: events/s and client CPU us/event until ``flush()`` returns, vs the encode-only
   rate and a raw aiohttp POST of pre-encoded 500-event batches to the same sink;
3. many short sessions: the same with 1-2 events per session;
4. collector ingest: events/s of 500-event batches into SQLite and into ``none``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hh_exporter import Exporter
from hh_exporter._demo import workload

SEED_EVENT = json.loads(
    (Path(__file__).resolve().parent.parent / "tests/data/seed_model_batch.json").read_text()
)["model_events"][0]
TOKEN = secrets.token_urlsafe(16)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def seed_fields() -> dict[str, Any]:
    f = {k: v for k, v in SEED_EVENT.items() if k != "project"}
    return f


def realistic(n: int) -> list[dict[str, Any]]:
    return [f for _, f in workload(n, max(1, n // 10), seed=11) if "event_type" not in f]


async def bench_log_cost(n: int) -> list[dict[str, Any]]:
    rows = []
    enc = msgspec.json.Encoder()
    for label, events in (("seed event", [seed_fields()] * n), ("realistic mix", realistic(n))):
        floor = []
        for f in events:
            a = time.perf_counter_ns()
            enc.encode(f)
            floor.append((time.perf_counter_ns() - a) / 1000)
        cost = []
        async with Exporter(api_key=TOKEN, project="bench", api_url="http://127.0.0.1:9",
                            max_buffer_events=n + 10, max_attempts=1, linger=3600,
                            close_timeout=0.1) as hh:
            for f in events:
                f2 = dict(f)
                a = time.perf_counter_ns()
                hh.log_model_event(**f2)
                cost.append((time.perf_counter_ns() - a) / 1000)
            hh._buffer.drain_all()  # nothing to deliver: the sink is deliberately absent
        size = sum(len(enc.encode(f)) for f in events) / len(events)
        rows.append({"scenario": f"log cost, {label} (~{size:,.0f} B)",
                     "p50_us": pct(cost, 0.5), "p99_us": pct(cost, 0.99),
                     "floor_p50_us": pct(floor, 0.5), "floor_p99_us": pct(floor, 0.99),
                     "target": "p50 <= floor + 1.5 us"})
    return rows


def start_sink(db: str = "none") -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hh_exporter", "serve", "--port", "0", "--db", db, "--token",
         TOKEN], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    return proc, line.split("listening on ")[1].split()[0]


async def raw_post_floor(url: str, events: list[bytes]) -> float:
    bodies = [b'{"model_events":[' + b",".join(events[i:i + 500]) + b'],"is_single_session":false}'
              for i in range(0, len(events), 500)]
    sem = asyncio.Semaphore(4)
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        connector=aiohttp.TCPConnector(limit=4),
    ) as s:

        async def post(b: bytes) -> None:
            async with sem, s.post(url + "/events/model/batch", data=b) as r:
                await r.read()
                assert r.status == 200, r.status

        t0 = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bodies))
        return len(events) / (time.perf_counter() - t0)


async def end_to_end(
    url: str, fields: list[dict[str, Any]], per_session: int | None
) -> dict[str, Any]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    async with Exporter(api_key=TOKEN, project="bench", api_url=url,
                        max_buffer_events=len(fields) * 2 + 10, max_buffer_bytes=1 << 30,
                        close_timeout=120) as hh:
        if per_session is None:
            for i, f in enumerate(fields):
                hh.log_model_event(**f)
                if i % 1000 == 0:
                    await asyncio.sleep(0)
        else:
            s = None
            for i, f in enumerate(fields):
                if i % per_session == 0:
                    s = hh.session(session_name=f"s{i}")
                assert s is not None
                s.log_model_event(**f)
                if i % 1000 == 0:
                    await asyncio.sleep(0)
        ok = await hh.flush(120)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    st = hh.stats()
    assert ok and st.balanced and st.dropped_total == 0, st
    return {"events": st.delivered, "events_per_s": st.delivered / wall,
            "cpu_us_per_event": cpu / len(fields) * 1e6, "requests": st.requests}


async def collector_ingest(db: str, n: int) -> float:
    proc, url = start_sink(db)
    try:
        ev = {**SEED_EVENT}
        bodies = []
        for b in range(n // 500):
            evs = [msgspec.json.encode({**ev, "event_id": f"{b:08d}-0000-4000-8000-{i:012d}"})
                   for i in range(500)]
            bodies.append(b'{"model_events":[' + b",".join(evs) + b"]}")
        sem = asyncio.Semaphore(8)
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        ) as s:

            async def post(body: bytes) -> None:
                async with sem, s.post(url + "/events/model/batch", data=body) as r:
                    await r.read()
                    assert r.status == 200

            t0 = time.perf_counter()
            await asyncio.gather(*(post(b) for b in bodies))
            return len(bodies) * 500 / (time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="events per end-to-end scenario")
    ap.add_argument("--json", default="benchmarks/results.json")
    args = ap.parse_args()
    n = args.n
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
                           "n": n}
    rows = await bench_log_cost(min(n, 20_000))
    out["log_cost"] = rows
    print(f"\n{'scenario':<44}{'p50 us':>9}{'p99 us':>9}{'floor p50':>11}{'floor p99':>11}")
    for r in rows:
        print(f"{r['scenario']:<44}{r['p50_us']:>9.2f}{r['p99_us']:>9.2f}"
              f"{r['floor_p50_us']:>11.2f}{r['floor_p99_us']:>11.2f}")

    fields = realistic(n)
    while len(fields) < n:
        fields += fields[: n - len(fields)]
    enc = msgspec.json.Encoder()
    t0 = time.perf_counter()
    for f in fields:
        enc.encode(f)
    enc_rate = n / (time.perf_counter() - t0)
    # The raw floor posts valid events: add what the exporter adds (project, ids, times).
    wire = [enc.encode({**f, "project": "bench", "event_id": f"{i:08d}-0000-4000-8000-0",
                        "start_time": 0, "end_time": 0}) for i, f in enumerate(fields)]
    proc, url = start_sink("none")
    try:
        floor_post = await raw_post_floor(url, wire)
        e2e = await end_to_end(url, fields, None)
        short = await end_to_end(url, fields, 2)
    finally:
        proc.terminate()
        proc.wait(10)
    enc_us = 1e6 / enc_rate
    out.update(encode_rate=enc_rate, raw_post_rate=floor_post, end_to_end=e2e,
               short_sessions=short)
    print(f"\n{'scenario':<44}{'events/s':>12}{'CPU us/ev':>11}{'vs raw POST':>13}"
          f"{'CPU vs enc':>12}")
    print(f"{'floor: msgspec encode only':<44}{enc_rate:>12,.0f}{enc_us:>11.2f}")
    print(f"{'floor: raw aiohttp POST, 500-event batches':<44}{floor_post:>12,.0f}")
    for label, r in (("end to end, realistic mix", e2e),
                     ("many short sessions (2 events each)", short)):
        print(f"{label:<44}{r['events_per_s']:>12,.0f}{r['cpu_us_per_event']:>11.2f}"
              f"{r['events_per_s'] / floor_post:>12.0%}{r['cpu_us_per_event'] / enc_us:>11.1f}x")
    print("targets: events/s >= 80% of raw POST; CPU/event <= 2x encode; short sessions >= 50%"
          " of end to end")

    m = max(5000, min(n, 100_000))
    sqlite_rate = await collector_ingest(":memory:", m)
    none_rate = await collector_ingest("none", m)
    out.update(collector_sqlite=sqlite_rate, collector_none=none_rate)
    print(f"\n{'collector ingest, 500-event seed batches':<44}{'events/s':>12}")
    print(f"{'  SQLite (:memory:, WAL, group commit)':<44}{sqlite_rate:>12,.0f}")
    print(f"{'  none (validate and count)':<44}{none_rate:>12,.0f}")
    Path(args.json).write_text(json.dumps(out, indent=2))  # noqa: ASYNC240 - once, at the end
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
