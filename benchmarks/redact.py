"""What redaction costs a log call: ``python benchmarks/redact.py [--n 20000] [--rounds 3]``.

Rows, per event shape (the seed event, and one with an email, a bearer token and an ``sk-``
key in its messages): the log call's p50/p99 with ``redact`` off, with the built-in rules
(``redact=True``) and with an identity callable, against a floor measured in the same run
(``msgspec.json.encode`` of the same wire event). The rounds interleave the modes so that
machine noise hits each alike; the table gives each mode's median p50 over the rounds and
its ratio to the floor. No network: the exporter's in-memory transport, never flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import pct, seed_fields

from hh_exporter import Exporter
from hh_exporter.testing import MemoryTransport


def secret_fields() -> dict[str, Any]:
    f = seed_fields()
    f["messages"] = [*f["messages"], {"role": "user", "content": (
        "reach me at jane.doe@example.org, header Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig, "
        "key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv")}]
    return f


async def log_cost(fields: dict[str, Any], n: int, redact: Any) -> list[float]:
    cost = []
    async with Exporter(api_key="k", project="bench", transport=MemoryTransport(),
                        max_buffer_events=n + 10, linger=3600, close_timeout=0.1,
                        redact=redact) as hh:
        for _ in range(n):
            f2 = dict(fields)
            a = time.perf_counter_ns()
            hh.log_model_event(**f2)
            cost.append((time.perf_counter_ns() - a) / 1000)
        hh._buffer.drain_all()  # nothing to deliver: only the call is measured
    return cost


def floor_cost(fields: dict[str, Any], n: int) -> list[float]:
    enc = msgspec.json.Encoder()
    wire = {**fields, "project": "bench", "event_id": "0b6f2f9e-8d3c-4c43-9a53-4f9d6f7c1a10",
            "start_time": 1795371168173, "end_time": 1795371168985, "source": "dev"}
    out = []
    for _ in range(n):
        a = time.perf_counter_ns()
        enc.encode(wire)
        out.append((time.perf_counter_ns() - a) / 1000)
    return out


async def main(n: int, rounds: int) -> None:
    modes: dict[str, Any] = {"off": None, "built-in rules": True, "identity callable": (
        lambda f: f)}
    print("| event | mode | p50 µs | p99 µs | floor p50 µs | p50 / floor |")
    print("|---|---|---:|---:|---:|---:|")
    for label, fields in (("seed event", seed_fields()), ("with 3 secrets", secret_fields())):
        p50s: dict[str, list[float]] = {m: [] for m in modes}
        p99s: dict[str, list[float]] = {m: [] for m in modes}
        floors: list[float] = []
        for _ in range(rounds):
            floors.append(pct(floor_cost(fields, n), 0.5))
            for m, r in modes.items():
                c = await log_cost(fields, n, r)
                p50s[m].append(pct(c, 0.5))
                p99s[m].append(pct(c, 0.99))
        floor = statistics.median(floors)
        for m in modes:
            p50 = statistics.median(p50s[m])
            print(f"| {label} | {m} | {p50:.2f} | {statistics.median(p99s[m]):.2f} | "
                  f"{floor:.2f} | {p50 / floor:.2f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    asyncio.run(main(a.n, a.rounds))
