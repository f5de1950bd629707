"""What a session costs the app in place: CPU per session, at a service's pace, cold caches.

``python benchmarks/session_cost.py [--sessions 600] [--gap 0.004] [--profile]``

An app's loop makes one session every ``gap`` seconds and logs one event in it, against
``hh-exporter serve --db none`` in another process (so only the app's own CPU is counted:
``time.process_time`` of this process, every thread). Paired in one run, rounds interleaved:

* ``floor``: the same loop and sleeps, no telemetry;
* ``events``: the event alone, no session (the event's own cost);
* ``sessions``: a session and its event.

``session cost = sessions - events``: its start request, the answer, the retry wrapper and
the hold and release of its event. At this pace each start is its own request with caches
gone cold in between, as in a service (``benchmarks/run.py``'s tight loop is warmer).
``--profile`` prints where a session's time goes (cProfile of the sessions rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import hh_exporter

TOKEN = "bench-token"
FIELDS: dict[str, Any] = dict(model="gpt-4o", provider="openai",
                              messages=[{"role": "user", "content": "hello " * 20}],
                              response={"role": "assistant", "content": "hi " * 30},
                              duration=812.0, usage={"prompt_tokens": 20, "total_tokens": 50})


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hh_exporter", "serve", "--port", "0", "--db", "none",
         f"--token={TOKEN}"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    return proc, line.split("listening on ")[1].split()[0]


async def round_(hh: hh_exporter.Exporter | None, mode: str, n: int,
                 gap: float) -> tuple[float, float]:
    """CPU seconds (user, system) of this process for ``n`` ticks of ``gap``, delivery
    included."""
    start = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(n):
        if hh is not None:
            s = hh.session(session_name="chat") if mode == "sessions" else None
            hh.log_model_event(session=s, **FIELDS)
        await asyncio.sleep(gap)
    if hh is not None:
        assert await hh.flush(10.0)
    end = resource.getrusage(resource.RUSAGE_SELF)
    return end.ru_utime - start.ru_utime, end.ru_stime - start.ru_stime


async def main(sessions: int, gap: float, rounds: int, profile: bool) -> None:
    sink, url = start_sink()
    prof = cProfile.Profile(time.process_time) if profile else None  # CPU, not wall
    try:
        async with hh_exporter.Exporter(api_key=TOKEN, api_url=url, project="bench",
                                        linger=0.05) as hh:
            await round_(hh, "sessions", 50, gap)  # connections open, imports done
            cpu: dict[str, list[tuple[float, float]]] = {"floor": [], "events": [],
                                                         "sessions": []}
            per = sessions // rounds
            for _ in range(rounds):
                cpu["floor"].append(await round_(None, "floor", per, gap))
                cpu["events"].append(await round_(hh, "events", per, gap))
                if prof is not None:
                    prof.enable()
                cpu["sessions"].append(await round_(hh, "sessions", per, gap))
                if prof is not None:
                    prof.disable()
            st = hh.stats()
            assert st.delivered == st.accepted and st.sessions_started >= sessions
    finally:
        sink.terminate()
        sink.wait()
    us = {k: statistics.median(u + s for u, s in v) / per * 1e6 for k, v in cpu.items()}
    sys_us = {k: statistics.median(s for _, s in v) / per * 1e6 for k, v in cpu.items()}
    print(f"{per * rounds} ticks per mode, {gap * 1e3:.1f} ms apart, {rounds} interleaved rounds "
          "(median round; CPU of this process, all threads, user+system)")
    print(f"{'mode':<10}{'us/tick':>10}{'over floor':>12}{'of it system':>14}")
    for k, v in us.items():
        print(f"{k:<10}{v:>10.1f}{v - us['floor']:>12.1f}{sys_us[k] - sys_us['floor']:>14.1f}")
    print(f"session cost (sessions - events): {us['sessions'] - us['events']:.1f} us "
          f"(system {sys_us['sessions'] - sys_us['events']:.1f})")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=600)
    ap.add_argument("--gap", type=float, default=0.004)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.sessions, a.gap, a.rounds, a.profile))
