"""The ``hh-exporter`` command: ``demo``, ``ingest``, ``serve`` and ``relay``.

argparse keeps the CLI dependency-free; rich, when installed (``hh-exporter[cli]``), only
makes progress bars nicer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Sequence

from .._config import DEFAULT_API_URL
from .._version import __version__

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hh-exporter", description=(
        "Ship LLM observability events to HoneyHive, or run a local compatible collector."))
    p.add_argument("--version", action="version", version=f"hh-exporter {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the exporter does")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the main job end to end on an embedded collector")
    d.add_argument("--events", type=int, default=5000, help="events to log (default 5000)")
    d.add_argument("--sessions", type=int, default=300, help="sessions (default 300)")
    d.add_argument("--faults", action="store_true",
                   help="inject 503s, 429s with Retry-After, random 5xx and latency")
    d.add_argument("--keep-db", metavar="PATH", help="keep the collector's SQLite file here")
    d.add_argument("--seed", type=int, default=7, help="workload seed (default 7)")
    d.add_argument("--api", choices=("legacy", "v1"), default="legacy",
                   help="API generation to speak (default legacy)")
    d.add_argument("--session-start", choices=("request", "batch"), default="request",
                   help="create each session with POST /session/start (request, default) "
                        "or with its first batch (batch)")
    d.add_argument("--latency", type=float, default=0.0,
                   help="seconds the collector adds to each request (default 0)")
    d.add_argument("--no-progress", action="store_true", help="no progress display")

    i = sub.add_parser("ingest", help="send JSONL files of events to the API")
    i.add_argument("files", nargs="+", metavar="FILE", help="JSONL files, '-' for stdin, .gz ok")
    i.add_argument("--api-url", default=None, help=f"default $HH_API_URL or {DEFAULT_API_URL}")
    i.add_argument("--api-key", default=None, help="default $HH_API_KEY")
    i.add_argument("--project", default=None, help="default $HH_PROJECT")
    i.add_argument("--api", choices=("legacy", "v1"), default=None,
                   help="API generation to speak (default $HH_API_VERSION, else legacy)")
    i.add_argument("--session-start", choices=("request", "batch"), default=None,
                   help="how a line's session_properties create its session: a "
                        "POST /session/start (request), or the session's first batch "
                        "(batch); default $HH_SESSION_START, else request")
    i.add_argument("--rejects", metavar="PATH", default=None,
                   help="where bad lines go (default: ingest-rejects.jsonl)")
    i.add_argument("--dry-run", action="store_true", help="validate only, send nothing")
    i.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="where to keep how far each file got (default: "
                        "ingest-checkpoint.json beside the rejects file)")
    i.add_argument("--no-checkpoint", action="store_true",
                   help="keep no checkpoint: a re-run sends everything again")
    i.add_argument("--restart", action="store_true",
                   help="ignore the checkpoint and read every file from the start")
    i.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to finish delivery at the end or on Ctrl-C (default 30)")
    i.add_argument("--max-in-flight", type=int, default=4, help="concurrent requests")
    i.add_argument("--batch-events", type=int, default=500, help="events per request")
    i.add_argument("--workers", type=int, default=None,
                   help="sending processes; a session's lines all go to one of them "
                        "(default: the cores available; 1: one process)")
    i.add_argument("--no-progress", action="store_true", help="no progress display")
    i.add_argument("--redact", action="store_true",
                   help="apply the built-in redaction rules (emails, bearer tokens, sk- keys, "
                        "card numbers, secret-named keys) to every line before it is sent")

    s = sub.add_parser("serve", help="run the local HoneyHive-compatible collector")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 = any)")
    s.add_argument("--db", default=":memory:", help="SQLite path, :memory: (default) or none")
    s.add_argument("--token", default=None,
                   help="Bearer token to require (default $HH_API_KEY, else a random one)")
    s.add_argument("--strict", action="store_true",
                   help="require what the classic API required (project, model fields, ...) "
                        "and refuse event_type 'session' in batches")
    s.add_argument("--redact", action="store_true",
                   help="apply the built-in redaction rules to events mapped from OTLP spans")
    s.add_argument("--dedup", action="store_true",
                   help="store an event_id once, ignoring re-sends (the real API does not)")
    s.add_argument("--fault-script", default="", help="e.g. 503,503,429@2,200,drop,partial")
    s.add_argument("--error-rate", type=float, default=0.0, help="random error share, 0-1")
    s.add_argument("--error-statuses", default="500,502,503", help="statuses for --error-rate")
    s.add_argument("--seed", type=int, default=None, help="seed of the random faults")
    s.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    s.add_argument("--session-latency", type=float, default=0.0,
                   help="seconds added to each POST /session/start, on top of --latency")
    s.add_argument("--max-body-bytes", type=int, default=None, help="larger bodies get 413")
    s.add_argument("--drop-rate", type=float, default=0.0,
                   help="share of requests whose connection is dropped, 0-1")

    r = sub.add_parser("relay", help="deliver a Redis stream of events (StreamExporter) to "
                                     "the API, as one of a group of relays")
    r.add_argument("--redis", default=None, help="Redis URL (default $HH_REDIS_URL)")
    r.add_argument("--stream", default="hh:events", help="stream key (default hh:events)")
    r.add_argument("--group", default="hh-relay", help="consumer group (default hh-relay)")
    r.add_argument("--consumer", default=None,
                   help="this relay's name in the group (default host-pid)")
    r.add_argument("--claim-idle", type=float, default=60.0,
                   help="seconds before another relay's pending entry is reclaimed "
                        "(default 60)")
    r.add_argument("--max-deliveries", type=int, default=5,
                   help="deliveries before an entry goes to the dead-letter stream (default 5)")
    r.add_argument("--dead-letter", default=None, help="dead-letter stream (default STREAM:dead)")
    r.add_argument("--api-url", default=None, help=f"default $HH_API_URL or {DEFAULT_API_URL}")
    r.add_argument("--api-key", default=None, help="default $HH_API_KEY")
    r.add_argument("--api", choices=("legacy", "v1"), default=None,
                   help="API generation the producers speak (default $HH_API_VERSION)")
    r.add_argument("--deadline", type=float, default=10.0,
                   help="seconds to finish the entries under way on SIGTERM (default 10)")
    r.add_argument("--stats-interval", type=float, default=10.0,
                   help="seconds between stats lines (default 10; 0: none)")
    r.add_argument("--stats-port", type=int, default=None,
                   help="serve GET /stats (JSON) and GET /metrics (Prometheus text) on "
                        "127.0.0.1:PORT (0: any free port)")
    r.add_argument("--linger", type=float, default=None, help="seconds a batch may wait")
    r.add_argument("--max-in-flight", type=int, default=None, help="concurrent requests")
    r.add_argument("--batch-events", type=int, default=None, help="events per request")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "demo":
            return asyncio.run(_demo(args))
        if args.command == "relay":
            return asyncio.run(_relay(args))
        return asyncio.run(_ingest(args))
    except KeyboardInterrupt:
        return 130


def _cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _fmt_dropped(dropped: dict[str, int]) -> str:
    parts = [f"{k} {v:,}" for k, v in dropped.items() if v]
    return ", ".join(parts) if parts else "none"


async def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

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
    print(f"  dropped       {_fmt_dropped(dict(st.dropped))}")
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


def _default_workers(files: list[str], cores: int) -> int:
    """``--workers`` when not given: one process unless workers pay.

    Measured (benchmarks/README.md, "ingest under users' conditions"): on 2 cores a second
    process only adds the reader's routing and the pipe (~4 µs a line more CPU) while the
    API's client, the loop and, often, a local API share the cores, so one process is the
    faster. Workers need a core each beside the reader's; stdin is one stream (and is read
    by one process anyway), and a small file does not repay their start (~0.3 s each).
    """
    if cores <= 2 or "-" in files:
        return 1
    try:
        size = sum(os.path.getsize(f) for f in files)
    except OSError:  # a missing file is reported by the run itself
        return 1
    if size < _WORKERS_MIN_BYTES:
        return 1
    return min(cores - 1, 8)


#: Below this much input, extra processes do not repay their start.
_WORKERS_MIN_BYTES = 256 << 20


class _Signals:
    """SIGINT/SIGTERM for ``ingest``: the first asks for a stop within ``--timeout``, a
    second SIGINT (or SIGTERM) for an immediate one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stop = asyncio.Event()
        self.now = asyncio.Event()
        self.halt = threading.Event()  # the same, for the workers' reader thread
        self.halt_now = threading.Event()
        self.at: float | None = None  # time.monotonic() of the first signal
        self.signo = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on, sig)

    def _on(self, sig: int) -> None:
        if self.at is None:
            self.at, self.signo = time.monotonic(), sig
            self.stop.set()
            self.halt.set()
        else:
            self.now.set()
            self.halt_now.set()

    def left(self, timeout: float) -> float:
        """Seconds left of ``timeout`` counted from the first signal (all of it if none)."""
        if self.at is None:
            return timeout
        return max(0.0, self.at + timeout - time.monotonic())


async def _ingest(args: argparse.Namespace) -> int:
    from .._config import ExporterConfig
    from .._exporter import Exporter
    from .._stats import DropNotice
    from ._checkpoint import Checkpoint, Tracker, destination_id
    from ._ingest import close_within, run_ingest

    rejects_path = args.rejects or "ingest-rejects.jsonl"
    checkpoint_path = args.checkpoint or os.path.join(
        os.path.dirname(rejects_path), "ingest-checkpoint.json")
    exporter = None
    config = None
    if not args.dry_run:
        try:
            config = ExporterConfig.from_env(
                api_key=args.api_key, api_url=args.api_url, project=args.project, api=args.api,
                session_start=args.session_start, max_in_flight=args.max_in_flight,
                max_batch_events=args.batch_events,
                close_timeout=args.timeout, linger=0.2,
                # A small buffer: backpressure reaches the reader at once, memory stays flat,
                # and Ctrl-C leaves little to flush.
                max_buffer_events=max(2000, 4 * args.batch_events * args.max_in_flight))
        except ValueError as exc:
            print(f"hh-exporter ingest: {exc}", file=sys.stderr)
            return 2
    tracker = None
    if config is not None and not args.no_checkpoint:
        # A checkpoint belongs to a file and a destination: the same file to another API
        # (or generation, or key) is read from the start.
        tracker = Tracker(Checkpoint(checkpoint_path), restart=args.restart,
                          destination=destination_id(config.api_url, config.api,
                                                     config.api_key))
    # A resumed run keeps the rejects of the runs before it.
    resuming = tracker is not None and not args.restart and any(
        tracker.key(f) in tracker.checkpoint.files for f in args.files
        if f != "-" and tracker.checkpoint is not None)
    refused = asyncio.Event()
    if config is not None:
        def on_drop(notice: DropNotice) -> None:
            if notice.reason == "unauthorized":
                refused.set()

        exporter = Exporter(config=config, on_drop=on_drop,
                            on_settled=None if tracker is None else tracker.on_settled)
        project = config.project
        v1 = config.api == "v1"
    else:
        project = args.project or os.environ.get("HH_PROJECT") or None
        v1 = (args.api or os.environ.get("HH_API_VERSION")) == "v1"
    workers = args.workers if args.workers is not None else _default_workers(
        args.files, _cores())
    if workers < 1:
        print("hh-exporter ingest: --workers must be >= 1", file=sys.stderr)
        return 2
    signals = _Signals(asyncio.get_running_loop())
    # The rejects file gets a line per bad input line only: small, rare writes.
    with open(rejects_path, "a" if resuming else "w",  # noqa: ASYNC230
              encoding="utf-8") as rejects:
        if exporter is None or config is None:
            res = await run_ingest(args.files, None, project=project, rejects=rejects,
                                   dry_run=True, progress=not args.no_progress,
                                   stop=signals.stop, v1=v1, redact=args.redact)
        elif workers > 1:
            import dataclasses

            from ._ingest_workers import run_parallel_ingest

            settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
            settings["redact"] = args.redact
            res = await asyncio.to_thread(
                run_parallel_ingest, args.files, workers, settings, rejects=rejects,
                max_event_bytes=config.max_batch_bytes, progress=not args.no_progress,
                stop=signals.halt, stop_now=signals.halt_now, tracker=tracker,
                deadline=signals.left)
        else:
            saver = None if tracker is None else asyncio.create_task(tracker.autosave())
            try:
                await exporter.start()
                res = await run_ingest(
                    args.files, exporter, project=project, rejects=rejects,
                    progress=not args.no_progress, stop=signals.stop, refused=refused, v1=v1,
                    max_event_bytes=exporter.config.max_batch_bytes, tracker=tracker,
                    redact=args.redact)
                print("flushing...", file=sys.stderr, flush=True)
                # Waiting would only collect more refusals after a refused key.
                await close_within(exporter, 0.5 if res.abort_reason else args.timeout,
                                   signals.stop, signals.now, signals.left)
            finally:
                if not exporter.closed:  # an error above: close, counting what is left
                    await exporter.aclose(0)
                if saver is not None and tracker is not None:
                    saver.cancel()
                    await asyncio.gather(saver, return_exceptions=True)
                    # In any case: a save the cancel interrupted may hold an older state.
                    await tracker.save(final=True)
            res.stats = exporter.stats()
    if signals.at is not None:
        res.interrupted = True
    if res.rejected == 0 and not resuming:
        os.unlink(rejects_path)
    print("summary")
    if res.interrupted:
        why = res.abort_reason or (signal.Signals(signals.signo).name if signals.signo
                                   else None)
        print(f"  interrupted   yes{f' ({why})' if why else ''}: lines after the last one "
              "read were not sent; what was cut is counted as shutdown")
    if res.skipped:
        print(f"  skipped       {res.skipped:,} lines settled by an earlier run "
              f"(checkpoint {checkpoint_path})")
    print(f"  lines read    {res.lines:,}")
    print(f"  rejected      {res.rejected:,}" + (f" (see {rejects_path})" if res.rejected else ""))
    if args.dry_run:
        print(f"  valid         {res.sent:,} (dry run: nothing sent)")
        if signals.at is not None:
            return 128 + signals.signo
        return 1 if res.rejected else 0
    st = res.stats
    print(f"  accepted      {st.accepted:,}")
    if res.sessions:
        print(f"  sessions      {st.sessions_started:,} started, {st.sessions_failed:,} failed")
    print(f"  delivered     {st.delivered:,}")
    print(f"  dropped       {st.dropped_total:,} ({_fmt_dropped(dict(st.dropped))})")
    print(f"  pending       {st.pending:,}")
    print(f"  requests      {st.requests:,} ({st.retries:,} retries)")
    print(f"  throughput    {st.delivered / max(res.elapsed, 1e-9):,.0f} events/s "
          f"({res.elapsed:.2f} s)")
    if st.unconfirmed:
        print(f"  unconfirmed   {st.unconfirmed:,} (acknowledged without their event_ids)")
    if signals.at is not None:  # the conventional status of a run a signal ended
        return 128 + signals.signo
    failed = res.rejected or st.dropped_total or st.pending or res.interrupted or (
        st.unconfirmed)
    return 1 if failed else 0


async def _serve(args: argparse.Namespace) -> int:
    from ..collector import Collector, Faults, parse_script

    try:
        faults = Faults(
            script=parse_script(args.fault_script), error_rate=args.error_rate,
            error_statuses=[int(x) for x in args.error_statuses.split(",") if x.strip()],
            seed=args.seed, latency=args.latency, session_latency=args.session_latency,
            max_body_bytes=args.max_body_bytes,
            drop_rate=args.drop_rate,
        )
    except ValueError as exc:
        print(f"hh-exporter serve: {exc}", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("HH_API_KEY")
    generated = token is None
    if token is None:
        token = secrets.token_urlsafe(18)
    collector = Collector(token=token, db=args.db, host=args.host, port=args.port,
                          strict=args.strict, dedup=args.dedup, faults=faults,
                          redact=args.redact)
    url = await collector.start()
    print(f"hh-exporter collector listening on {url} (db {args.db})", flush=True)
    if generated:
        # A token made up just now, for this local server; not the user's API key.
        print(f"token: {token}  (set HH_API_KEY or --token to choose one)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("stopping: committing acknowledged events", flush=True)
        await collector.stop()
    return 0


async def _relay(args: argparse.Namespace) -> int:
    import json

    from .._errors import ConfigError
    from .._relay import Relay, RelayStats

    url = args.redis or os.environ.get("HH_REDIS_URL")
    if not url:
        print("hh-exporter relay: --redis or HH_REDIS_URL is required", file=sys.stderr)
        return 2
    opts = {k: v for k, v in (("api_url", args.api_url), ("api_key", args.api_key),
                              ("api", args.api), ("linger", args.linger),
                              ("max_in_flight", args.max_in_flight),
                              ("max_batch_events", args.batch_events)) if v is not None}
    try:
        relay = Relay(redis_url=url, stream=args.stream, group=args.group,
                      consumer=args.consumer, claim_idle=args.claim_idle,
                      max_deliveries=args.max_deliveries, dead_letter=args.dead_letter,
                      **opts)
    except (ConfigError, ValueError) as exc:
        print(f"hh-exporter relay: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    web_runner = None
    if args.stats_port is not None:
        from aiohttp import web

        async def stats_handler(request: web.Request) -> web.Response:
            return web.json_response(json.loads(_stats_json(relay.stats)))

        async def metrics_handler(request: web.Request) -> web.Response:
            from .._prometheus import CONTENT_TYPE

            return web.Response(text=relay.metrics_text(),
                                headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/stats", stats_handler)
        app.router.add_get("/metrics", metrics_handler)
        web_runner = web.AppRunner(app, access_log=None)
        await web_runner.setup()
        site = web.TCPSite(web_runner, "127.0.0.1", args.stats_port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"relay stats on http://127.0.0.1:{port}/stats", flush=True)

    def line(s: RelayStats) -> None:
        dropped = ", ".join(f"{k} {v:,}" for k, v in s.events_dropped.items() if v) or "none"
        print(f"relay {s.consumer}: {s.events_per_s:,.0f} ev/s, delivered "
              f"{s.events_delivered:,}, stream {s.stream_length:,}, pending {s.pending:,} "
              f"(oldest {s.oldest_pending_age_s:.1f}s), acked {s.entries_acked:,}, "
              f"reclaimed {s.entries_reclaimed:,}, dead-lettered {s.entries_dead_lettered:,}, "
              f"dropped {dropped}", flush=True)

    print(f"hh-exporter relay {relay.consumer}: {args.stream} group {args.group}", flush=True)
    try:
        stats = await relay.run(stop, deadline=args.deadline,
                                on_stats=line if args.stats_interval > 0 else None,
                                stats_interval=args.stats_interval or 3600.0)
    finally:
        if web_runner is not None:
            await web_runner.cleanup()
    line(stats)
    return 0


def _stats_json(stats: object) -> bytes:
    import msgspec

    return msgspec.json.encode(stats)
