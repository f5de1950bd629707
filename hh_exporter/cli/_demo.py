"""``hh-exporter demo``: the main job end to end, on the embedded collector.

A realistic synthetic workload (sessions of varied length, chat turns of 200 B to 4 KB, some
chain and tool events) goes through the real exporter over HTTP to a collector on a free
loopback port. The summary ends with a check against the collector's database: every
delivered event stored exactly once, and nothing accepted unaccounted for.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .._exporter import Exporter
from ._progress import Progress, fmt_dropped

__all__ = ["DemoResult", "command", "run_demo", "workload"]

_WORDS = (
    "token latency prompt model answer context user tool search retrieve plan draft summary "
    "cache vector policy refund order invoice weather flight"
).split()


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(_WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def workload(events: int, sessions: int, seed: int = 7) -> list[tuple[int, dict[str, Any]]]:
    """``(session index, fields)`` for ``events`` events spread over ``sessions`` sessions.

    Session lengths vary (a few long conversations, many short ones); about one event in
    eight is a chain or tool event, the rest are model calls.
    """
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.2) for _ in range(sessions)]
    owners = rng.choices(range(sessions), weights=weights, k=events)
    for s in range(min(sessions, events)):  # every session gets at least one event
        owners[s] = s
    out: list[tuple[int, dict[str, Any]]] = []
    for i, s in enumerate(owners):
        if rng.random() < 0.125:
            kind = rng.choice(("chain", "tool"))
            out.append((s, {"event_type": kind, "event_name": f"{kind}-{rng.choice(_WORDS)}",
                            "inputs": {"query": _text(rng, rng.randint(50, 400))},
                            "outputs": {"result": _text(rng, rng.randint(50, 800))},
                            "duration": rng.uniform(1, 300)}))
            continue
        turns = rng.randint(1, 4)
        messages = [{"role": "system", "content": _text(rng, 200)}]
        for t in range(turns):
            messages.append({"role": "user" if t % 2 == 0 else "assistant",
                             "content": _text(rng, rng.randint(200, 4000) // turns)})
        pt, ct = rng.randint(50, 3000), rng.randint(10, 800)
        out.append((s, {
            "model": rng.choice(("gpt-4o", "gpt-4o-mini", "claude-sonnet-4")),
            "provider": rng.choice(("openai", "anthropic")),
            "messages": messages,
            "response": {"role": "assistant", "content": _text(rng, rng.randint(100, 1500))},
            "duration": rng.uniform(150, 4000),
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            "cost": round((pt + ct) * 2.5e-6, 6),
            "hyperparameters": {"temperature": 0.2, "max_tokens": 1024},
            "metadata": {"request": i},
        }))
    return out


@dataclass
class DemoResult:
    """What the demo measured and checked."""

    stats: Any
    elapsed: float
    log_p50_us: float
    log_p99_us: float
    logged_ids: list[str]
    stored_ids: list[str]
    collector_stats: dict[str, Any]
    session_ids: set[str] = field(default_factory=set)
    #: Sessions the collector saw started (``/session/start``), not auto-created.
    started_sessions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: How sessions were created: ``request`` or ``batch`` (``session_start``).
    session_start: str = "request"

    @property
    def ok(self) -> bool:
        """Whether the database check passed."""
        return not self.problems


async def run_demo(
    *, events: int = 5000, sessions: int = 300, faults: bool = False, db: str = ":memory:",
    seed: int = 7, progress: bool = True, latency: float = 0.0, api: str = "legacy",
    session_start: str = "request",
) -> DemoResult:
    """Run the demo workload against an embedded collector and check its database."""
    from ..collector import Collector, Faults

    token = secrets.token_urlsafe(24)
    fault_settings = None
    if faults:
        fault_settings = Faults(script=["503", "503", "429@0.5", "200", "503", "429@0.2"],
                                error_rate=0.05, error_statuses=[500, 502, 503, 504],
                                latency=max(latency, 0.005), seed=seed)
    elif latency:
        fault_settings = Faults(latency=latency)
    plan = workload(events, sessions, seed)
    collector = Collector(token=token, db=db, faults=fault_settings)
    await collector.start()
    try:
        exporter = Exporter(api_key=token, project="hh-exporter-demo", api_url=collector.url,
                            source="demo", linger=0.05, backoff_initial=0.05, backoff_max=1.0,
                            api=api, session_start=session_start)
        costs: list[int] = []
        ids: list[str] = []
        t0 = time.perf_counter()
        async with exporter:
            handles = [exporter.session(session_name=f"conversation-{s}",
                                        user_properties={"user": f"user-{s % 97}"})
                       for s in range(min(sessions, events))]
            clock = time.perf_counter_ns
            with Progress("demo", len(plan), enabled=progress) as bar:
                for i, (s, f) in enumerate(plan):
                    h = handles[s]
                    if "event_type" in f:
                        a = clock()
                        eid = h.log_event(**f)
                        costs.append(clock() - a)
                    else:
                        a = clock()
                        eid = h.log_model_event(**f)
                        costs.append(clock() - a)
                    ids.append(eid)
                    if i % 500 == 0:
                        await asyncio.sleep(0)  # let the worker run, as a real service would
                        bar.update(exporter.stats().delivered)
                flushing = asyncio.ensure_future(exporter.flush(120.0))
                while not flushing.done():  # the bar moves while the flush delivers
                    st = exporter.stats()
                    bar.update(st.delivered, f"retries {st.retries}")
                    await asyncio.wait([flushing], timeout=0.1)
                bar.update(exporter.stats().delivered)
        elapsed = time.perf_counter() - t0
        st = exporter.stats()
        assert collector.store is not None
        stored = await collector.store.event_ids()
        app_stats = await _collector_stats(collector.url, token)
        session_ids = {h.session_id for h in handles}
        started = await collector.store.started_sessions()
    finally:
        await collector.stop()
    costs.sort()
    result = DemoResult(
        stats=st, elapsed=elapsed,
        log_p50_us=costs[len(costs) // 2] / 1000 if costs else 0.0,
        log_p99_us=costs[min(len(costs) - 1, int(len(costs) * 0.99))] / 1000 if costs else 0.0,
        logged_ids=ids, stored_ids=stored, collector_stats=app_stats,
        session_ids=session_ids, started_sessions=started, session_start=session_start,
    )
    result.problems = _check(result, db_kept=db != "none")
    return result


async def _collector_stats(url: str, token: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(
        url + "/stats", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        data: dict[str, Any] = await r.json()
        return data


def _check(r: DemoResult, *, db_kept: bool) -> list[str]:
    problems: list[str] = []
    st = r.stats
    if not st.balanced:
        problems.append("stats do not add up: accepted != delivered + dropped + pending")
    if st.pending:
        problems.append(f"{st.pending} events still pending")
    cs = r.collector_stats
    if cs.get("duplicate_event_ids"):
        problems.append(f"the collector received {cs['duplicate_event_ids']} event_ids more "
                        "than once (the real API would store each copy)")
    if cs.get("orphan_events"):
        problems.append(f"{cs['orphan_events']} events arrived before their session was "
                        "started (the real API would auto-create a session for them)")
    if st.sessions_started != len(r.session_ids):
        problems.append(f"{st.sessions_started} of {len(r.session_ids)} sessions started")
    if r.session_start == "batch":
        # Each session created by its own first batch, once: no start request, no repeat.
        requests = cs.get("requests", {})
        starts = sum(sum(requests.get(p, {}).values()) for p in ("/session/start",
                                                                 "/v1/sessions"))
        if starts:
            problems.append(f"{starts} session start requests in session_start=batch mode")
        if cs.get("sessions_created_by_envelope") != len(r.session_ids):
            problems.append(f"{cs.get('sessions_created_by_envelope')} of "
                            f"{len(r.session_ids)} sessions created by their first batch")
        if cs.get("envelopes_for_existing_sessions"):
            problems.append(f"{cs['envelopes_for_existing_sessions']} envelopes repeated for "
                            "sessions that existed")
    if not db_kept:
        return problems
    missing_sessions = r.session_ids - set(r.started_sessions)
    if missing_sessions:
        problems.append(f"{len(missing_sessions)} sessions were never started on the collector")
    stored = set(r.stored_ids)
    if len(stored) != len(r.stored_ids):
        problems.append("an event_id is stored more than once")
    if st.dropped_total == 0:
        missing = set(r.logged_ids) - stored
        if missing:
            problems.append(f"{len(missing)} delivered events are missing from the database")
        if len(stored) != st.delivered:
            problems.append(f"database holds {len(stored)} events, exporter delivered "
                            f"{st.delivered}")
    elif len(stored) < st.delivered:
        problems.append(f"database holds {len(stored)} events, fewer than the "
                        f"{st.delivered} delivered")
    return problems


async def command(args: argparse.Namespace) -> int:
    """``hh-exporter demo``: the workload against an embedded collector; the exit status."""
    db = args.keep_db or ":memory:"
    print(f"hh-exporter demo: {args.events:,} events in {args.sessions:,} sessions to an "
          f"embedded collector{' with faults' if args.faults else ''}", flush=True)
    r = await run_demo(events=args.events, sessions=args.sessions, faults=args.faults, db=db,
                       seed=args.seed, progress=not args.no_progress, latency=args.latency,
                       api=args.api, session_start=args.session_start)
    st = r.stats
    print("\nsummary")
    print(f"  accepted      {st.accepted:,}")
    print(f"  sessions      {st.sessions_started:,} started, {st.sessions_failed:,} failed")
    print(f"  delivered     {st.delivered:,}")
    print(f"  dropped       {fmt_dropped(dict(st.dropped))}")
    print(f"  pending       {st.pending:,}")
    print(f"  batches       {st.batches_sent:,} ({st.requests:,} requests, {st.retries:,} retries)")
    print(f"  throughput    {st.delivered / r.elapsed:,.0f} events/s ({r.elapsed:.2f} s)")
    print(f"  log call      p50 {r.log_p50_us:.1f} us, p99 {r.log_p99_us:.1f} us")
    cs = r.collector_stats
    print(f"  collector     {cs['events_stored']:,} events stored, "
          f"{cs['duplicate_event_ids']:,} duplicate ids, {cs['orphan_events']:,} orphan events, "
          f"{cs['sessions_stored']:,} sessions")
    if args.keep_db:
        print(f"  database      {args.keep_db}")
    if r.ok:
        print("check: PASS - every delivered event is stored exactly once, under a session "
              "started before it; 0 duplicates, 0 orphans; stats add up")
        return 0
    for p in r.problems:
        print(f"check: FAIL - {p}")
    return 1
