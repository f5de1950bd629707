"""Telemetry in a real service: ``python benchmarks/service.py [--rate 1000] [--seconds 4]``.

A FastAPI app (``benchmarks/service_app.py``) on uvicorn, one server process per mode, all
against ``hh-exporter serve --db none`` in its own process, all on 127.0.0.1:

``off`` (no telemetry), ``events`` (one model event per request), ``sessions10`` (a session
per 10 requests), ``sessions1`` (a session per request), ``otel`` (a span per request
through OpenTelemetry's BatchSpanProcessor and OTLP/HTTP exporter, for reference).

This process is the load generator: open loop at a fixed rate (each request is due at
``t0 + i / rate`` and its latency counts from then, so a stall shows instead of slowing
the load), over 32 keep-alive connections, with a bounded number of requests. Modes are
interleaved round by round, so each is paired with ``off`` under the same machine load.
Reported per mode (median over rounds): p50 and p99 latency, and the server process's CPU
per request (``/proc``, every thread), each also as added over ``off``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
MODES = ("off", "events", "sessions10", "sessions1", "otel")
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
TICK = os.sysconf("SC_CLK_TCK")


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hh_exporter", "serve", "--port", "0", "--db", "none",
         f"--token={TOKEN}"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().decode().split("listening on ")[1].split()[0]


def start_server(mode: str, sink: str) -> tuple[subprocess.Popen[bytes], int]:
    sock = socket.create_server(("127.0.0.1", 0), backlog=256)
    port = sock.getsockname()[1]
    env = {**os.environ, "HH_SERVICE_MODE": mode, "HH_API_URL": sink, "HH_API_KEY": TOKEN,
           "PYTHONPATH": str(ROOT), "NO_PROXY": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.service_app:app", "--fd",
         str(sock.fileno()), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env, pass_fds=(sock.fileno(),))
    sock.close()
    return proc, port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])


async def drive(port: int, rate: float, n: int, conns: int = 32) -> tuple[list[float], int]:
    """``n`` requests due ``1 / rate`` apart: latencies from their due times, and how many
    did not answer 200."""
    loop = asyncio.get_running_loop()
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(conns):
        free.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    bad = 0

    async def one(due: float) -> None:
        nonlocal bad
        conn = await free.get()
        try:
            if await get(*conn) != 200:
                bad += 1
        finally:
            free.put_nowait(conn)
        latencies.append(loop.time() - due)

    t0 = loop.time() + 0.05
    tasks = []
    for i in range(n):
        due = t0 + i / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    while not free.empty():
        free.get_nowait()[1].close()
    return latencies, bad


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


async def wait_ready(port: int) -> None:
    for _ in range(200):  # up to 10 s for the server to import and answer
        try:
            _, bad = await drive(port, 100, 1, conns=1)
            if not bad:
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the server on port {port} did not answer")


async def main(rate: float, seconds: float, rounds: int) -> None:
    sink, url = start_sink()
    servers = {m: start_server(m, url) for m in MODES}
    n = int(rate * seconds)
    res: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
    try:
        for _, port in servers.values():
            await wait_ready(port)
        for _, port in servers.values():
            await drive(port, rate, int(rate))  # a second of warm-up each
        for _ in range(rounds):
            for mode in MODES:
                proc, port = servers[mode]
                await asyncio.sleep(0.5)  # let the last mode's deliveries settle
                cpu0 = cpu_seconds(proc.pid)
                lat, bad = await drive(port, rate, n)
                await asyncio.sleep(0.3)  # the last batches leave within linger
                cpu = cpu_seconds(proc.pid) - cpu0
                assert bad == 0, f"{mode}: {bad} requests did not answer 200"
                res[mode].append((pct(lat, 0.5), pct(lat, 0.99), cpu / n))
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        # Each exporter closed with its server: what reached the sink, against what was logged
        # (three modes log one event per request: the probe, the warm-up and the rounds).
        req = urllib.request.Request(url + "/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: ASYNC210 - at the end
            got = json.loads(r.read())
        sink.terminate()
        sink.wait()
    logged = 3 * (1 + int(rate) + rounds * n)
    print(f"events: logged {logged:,}, received {got['events_received']:,}, "
          f"orphans {got['orphan_events']}, duplicates {got['duplicate_event_ids']}")

    def med(mode: str, k: int) -> float:
        return statistics.median(r[k] for r in res[mode])

    print(f"FastAPI on uvicorn, {rate:,.0f} req/s for {seconds:g} s per mode and round, "
          f"{rounds} rounds interleaved (median); CPU: the server process, all threads")
    print(f"{'mode':<12}{'p50 ms':>8}{'p99 ms':>8}{'CPU us/req':>12}"
          f"{'+p50 ms':>9}{'+p99 ms':>9}{'+CPU us':>9}")
    for mode in MODES:
        p50, p99, cpu = med(mode, 0) * 1e3, med(mode, 1) * 1e3, med(mode, 2) * 1e6
        b50, b99, bcpu = med("off", 0) * 1e3, med("off", 1) * 1e3, med("off", 2) * 1e6
        print(f"{mode:<12}{p50:>8.2f}{p99:>8.2f}{cpu:>12.1f}"
              f"{p50 - b50:>+9.2f}{p99 - b99:>+9.2f}{cpu - bcpu:>+9.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    started = time.monotonic()
    asyncio.run(main(a.rate, a.seconds, a.rounds))
    print(f"({time.monotonic() - started:.0f} s)")
