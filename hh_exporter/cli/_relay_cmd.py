"""``hh-exporter relay``: one consumer of the Redis stream, with its stats line and endpoint."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

__all__ = ["command"]


async def command(args: argparse.Namespace) -> int:
    """``hh-exporter relay``: a Redis stream to the API until SIGINT/SIGTERM; the exit status."""
    import json

    from .._errors import ConfigError
    from ..streams import Relay, RelayStats

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
