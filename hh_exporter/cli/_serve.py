"""``hh-exporter serve``: the HoneyHive-compatible collector on this machine."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys

__all__ = ["command"]


async def command(args: argparse.Namespace) -> int:
    """``hh-exporter serve``: the local collector until SIGINT/SIGTERM; the exit status."""
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
