"""Prefork web servers: a real ``gunicorn -w 2`` serving the apps of ``tests/prefork``.

Each setup answers requests, then takes SIGTERM on the master, as a deployment does. Every
request must answer 200, and every event logged (each request's, and those logged at import
by the master or by the workers) must be stored exactly once: a child that re-sent the
master's buffer would show as a duplicate, a lost import event as a missing id. 200
requests per setup rather than the issue's 5,000: the property is the same, and the five
setups stay within ~20 s of CI.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from hh_exporter.collector import Collector

from .conftest import TOKEN

ROOT = Path(__file__).parent.parent
REQUESTS = 200

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="prefork servers need fork")

# (app mode, gunicorn options, events logged at import: by the master, by each worker)
SETUPS = {
    "uvicorn-lifespan": ("asgi_lifespan", ["-k", "uvicorn_worker.UvicornWorker"], 0, 0),
    "uvicorn-module-preload": ("asgi_module", ["-k", "uvicorn_worker.UvicornWorker",
                                               "--preload"], 1, 0),
    "flask-module": ("flask_module", [], 0, 1),
    "flask-module-preload": ("flask_module", ["--preload"], 1, 0),
    "flask-post-fork-preload": ("flask_post_fork", ["--preload", "-c",
                                                    "python:tests.prefork.conf"], 1, 0),
}


async def hammer(url: str, n: int) -> list[str]:
    """``n`` GETs, 8 at a time; every one must answer 200 with its event id."""
    ids: list[str] = []
    statuses: Counter[int] = Counter()
    queue = list(range(n))
    async with aiohttp.ClientSession() as s:

        async def one() -> None:
            while queue:
                queue.pop()
                async with s.get(url) as r:
                    statuses[r.status] += 1
                    if r.status == 200:
                        ids.append((await r.json())["event_id"])

        await asyncio.gather(*(one() for _ in range(8)))
    assert statuses == {200: n}, statuses
    return ids


@pytest.mark.timeout(60)
@pytest.mark.parametrize("setup", list(SETUPS))
async def test_gunicorn_two_workers(collector: Collector, tmp_path: Path, setup: str) -> None:
    """Every request answers 200; every logged event is stored once, the master's included."""
    mode, opts, master_events, worker_events = SETUPS[setup]
    # The test binds the port (127.0.0.1:0) and hands gunicorn the listening socket.
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    env = {**os.environ, "HH_APP_MODE": mode, "HH_IDS_DIR": str(tmp_path),
           "HH_API_KEY": TOKEN, "HH_API_URL": collector.url,
           "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"fd://{sock.fileno()}",
        "--graceful-timeout", "20", *opts, "tests.prefork.apps:app",
        cwd=ROOT, env=env, pass_fds=(sock.fileno(),),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    sock.close()
    try:
        ids = await hammer(f"http://127.0.0.1:{port}/", REQUESTS)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 40)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.decode()
    assert proc.returncode == 0, log
    assert "Traceback" not in log and "dropped" not in log, log
    imports = [p.read_text() for p in tmp_path.glob("import-*")]  # noqa: ASYNC240 - tiny
    assert len(imports) == master_events + 2 * worker_events
    assert collector.store is not None
    stored = Counter(await collector.store.event_ids())
    assert set(stored.values()) == {1}, "an event was stored twice"
    assert sorted(stored) == sorted(ids + imports)
