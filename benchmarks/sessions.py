"""How a session is created, both ways: ``python benchmarks/sessions.py [--n 100000]``.

``session_start="request"`` (``POST /session/start``, then the events) against
``session_start="batch"`` (the session's first batch carries its properties and creates
it), each beside floors measured in the same run against the same sink (the collector in
``none`` mode, its own process, on loopback):

1. many short sessions: ``--n`` events, 2 per session, until ``flush()`` returns: events/s,
   client CPU µs per event and requests, against the same events without sessions and a
   raw aiohttp POST of pre-encoded 500-event batches;
2. at 20 ms server latency (every request answered 20 ms late): 1,000 sessions of 2 events
   until ``flush()`` returns, against the same 2,000 events without sessions;
3. time until the first event is stored, at 20 ms: one session, one event, ``flush()``;
   the median of 20 runs.

Every run checks the collector's counts: 0 orphan events, and in batch mode no start
request and no envelope repeated for a session that existed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import TOKEN, raw_post_floor, realistic, start_sink

from hh_exporter import Exporter


async def sink_stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as c, c.get(
            url + "/stats", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        data: dict[str, Any] = await r.json()
        return data


async def run_once(url: str, fields: list[dict[str, Any]], per_session: int | None,
                   mode: str, **kw: Any) -> dict[str, Any]:
    """Log ``fields`` (``per_session`` events per session, or none) and flush: wall time,
    CPU per event, requests; the sink's counts are checked after."""
    before = await sink_stats(url)
    gc.collect()
    gc.freeze()  # the prepared dicts are not ours to walk
    wall0, cpu0 = time.perf_counter(), time.process_time()
    async with Exporter(api_key=TOKEN, project="bench", api_url=url, session_start=mode,
                        max_buffer_events=len(fields) * 2 + 10, max_buffer_bytes=1 << 30,
                        close_timeout=120, **kw) as hh:
        s = None
        for i, f in enumerate(fields):
            if per_session is None:
                hh.log_model_event(**f)
            else:
                if i % per_session == 0:
                    s = hh.session(session_name=f"s{i}")
                assert s is not None
                s.log_model_event(**f)
            if i % 1000 == 0:
                await asyncio.sleep(0)
        ok = await hh.flush(120)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    gc.unfreeze()
    st = hh.stats()
    assert ok and st.balanced and st.delivered == len(fields), st
    after = await sink_stats(url)

    def grew(key: str) -> int:
        return int(after[key]) - int(before[key])

    starts = sum(after["requests"].get("/session/start", {}).values()) - sum(
        before["requests"].get("/session/start", {}).values())
    assert grew("orphan_events") == 0, "events stored before their session"
    assert grew("envelopes_for_existing_sessions") == 0, "an envelope repeated"
    if mode == "batch":
        assert starts == 0 and grew("sessions_created_by_envelope") == (
            0 if per_session is None else -(-len(fields) // per_session))
    return {"s": wall, "events_per_s": len(fields) / wall,
            "cpu_us_per_event": cpu / len(fields) * 1e6, "requests": st.requests}


async def first_stored(url: str, mode: str, runs: int = 20) -> float:
    """Median seconds from logging one session's one event until flush() returned."""
    times = []
    field = realistic(10)[0]
    async with Exporter(api_key=TOKEN, project="bench", api_url=url, session_start=mode,
                        close_timeout=30) as hh:
        for _ in range(runs):
            t0 = time.perf_counter()
            hh.session(session_name="first").log_model_event(**field)
            assert await hh.flush(30)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="events of the short-session run")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    n = args.n // 2 * 2
    fields = realistic(n)
    while len(fields) < n:
        fields += fields[: n - len(fields)]
    enc = msgspec.json.Encoder()
    wire = [enc.encode({**f, "project": "bench", "event_id": f"{i:08d}-0000-4000-8000-0",
                        "start_time": 0, "end_time": 0}) for i, f in enumerate(fields)]
    out: dict[str, Any] = {"n": n}
    proc, url = start_sink("none")
    try:
        floor = await raw_post_floor(url, wire)
        none = await run_once(url, fields, None, "request")
        short = {m: await run_once(url, fields, 2, m) for m in ("request", "batch")}
    finally:
        proc.terminate()
        proc.wait(10)
    out.update(raw_post_rate=floor, no_sessions=none, short_sessions=short)
    print(f"\n{'many short sessions, ' + format(n, ',') + ' events':<40}{'events/s':>11}"
          f"{'CPU us/ev':>11}{'requests':>10}{'vs raw POST':>13}{'vs no-sess':>12}")
    print(f"{'  floor: raw aiohttp POST, 500/batch':<40}{floor:>11,.0f}")
    print(f"{'  floor: no sessions':<40}{none['events_per_s']:>11,.0f}"
          f"{none['cpu_us_per_event']:>11.2f}{none['requests']:>10,}"
          f"{none['events_per_s'] / floor:>12.0%}")
    for m, r in short.items():
        print(f"{'  2 per session, session_start=' + m:<40}{r['events_per_s']:>11,.0f}"
              f"{r['cpu_us_per_event']:>11.2f}{r['requests']:>10,}"
              f"{r['events_per_s'] / floor:>12.0%}"
              f"{r['events_per_s'] / none['events_per_s']:>11.0%}")

    m = min(n, 2000)
    proc, url = start_sink("none", 0.02)
    try:
        lat_none = await run_once(url, fields[:m], None, "request")
        lat = {mode: await run_once(url, fields[:m], 2, mode) for mode in ("request", "batch")}
        first = {mode: await first_stored(url, mode) for mode in ("request", "batch")}
    finally:
        proc.terminate()
        proc.wait(10)
    out.update(latency_20ms={"no_sessions": lat_none, **lat}, first_stored_20ms_s=first)
    print(f"\n{'20 ms server latency':<40}{'s':>11}{'requests':>11}{'x no-sess':>11}")
    print(f"{'  ' + format(m, ',') + ' events, no sessions':<40}{lat_none['s']:>11.2f}"
          f"{lat_none['requests']:>11,}")
    for mode, r in lat.items():
        print(f"{'  ' + format(m // 2, ',') + ' sessions x 2, ' + mode:<40}{r['s']:>11.2f}"
              f"{r['requests']:>11,}{r['s'] / lat_none['s']:>10.1f}x")
    print(f"{'  first event stored (median of 20)':<40}")
    for mode, s in first.items():
        print(f"{'    session_start=' + mode:<40}{s * 1000:>9.1f}ms"
              f"{'':>11}{s / 0.02:>10.1f}x the latency")
    print("\nchecked: 0 orphan events; batch mode: no POST /session/start, one envelope per "
          "session, none repeated")
    if args.json:
        Path(args.json).write_text(msgspec.json.encode(out).decode())  # noqa: ASYNC240 - once


if __name__ == "__main__":
    asyncio.run(main())
