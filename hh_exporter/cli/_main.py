"""The ``hh-exporter`` command: ``demo``, ``ingest``, ``serve`` and ``relay``.

argparse keeps the CLI dependency-free; rich, when installed (``hh-exporter[cli]``), only
makes progress bars nicer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
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
        # Each command's module is imported when it runs: `--workers` spawns processes that
        # import this module, and they must not pay for the collector, aiohttp.web or rich.
        if args.command == "serve":
            from ._serve import command as serve

            return asyncio.run(serve(args))
        if args.command == "demo":
            from ._demo import command as demo

            return asyncio.run(demo(args))
        if args.command == "relay":
            from ._relay_cmd import command as relay

            return asyncio.run(relay(args))
        from ._ingest_cmd import command as ingest

        return asyncio.run(ingest(args))
    except KeyboardInterrupt:
        return 130
