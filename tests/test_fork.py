"""Real fork() with an exporter: children exit, log on their own, or touch the inherited one.

Each case runs ``tests/forking.py`` in a subprocess against the real collector. Exit times
are bounded by this test's own timeout on the subprocess (``communicate`` within 20 s; a child
waiting on a loop thread it does not have would take its close_timeout of 30 s and more),
never by a timing threshold.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from hh_exporter.collector import Collector

from .conftest import TOKEN

SCRIPT = Path(__file__).parent / "forking.py"

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


async def run(url: str, mode: str, child: str) -> dict[str, dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), url, TOKEN, mode, child,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SCRIPT.parent.parent)})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:  # it hung: do not leave it (or its child) behind
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    result: dict[str, dict[str, object]] = {}
    for line in out.decode().splitlines():
        result.update(json.loads(line))
    return result


# A child forked from inside a running loop cannot sys.exit() through that loop (it would
# unwind the parent's loop state, shared epoll registrations included): like multiprocessing's
# children, it leaves with os._exit, which the "running" cases do.
CASES = [(m, c) for m in ("sync", "preloaded", "running", "imported")
         for c in ("exit", "own", "inherited") if (m, c) != ("running", "exit")]
CASES.append(("pool", "inherited"))  # multiprocessing's fork pool: workers log through it


@pytest.mark.parametrize(("mode", "child"), CASES)
async def test_fork(collector: Collector, mode: str, child: str) -> None:
    """The parent delivers all its events (one logged at import by an exporter nobody
    started included, at interpreter exit); the child exits promptly and cleanly; what the
    child logs, on its own exporter or on the inherited one (which restarts empty in the
    child, however the parent held it), is delivered; nothing of the parent's is sent twice."""
    res = await run(collector.url, mode, child)
    parent = res["parent"]
    assert parent["child_exit"] == 0
    parent_ids = parent["ids"]
    assert isinstance(parent_ids, list) and parent["delivered"] == len(parent_ids)
    child_ids: list[object] = []
    if child != "exit":
        got = res["child"]
        child_ids = list(got["ids"])  # type: ignore[call-overload]
        assert got["delivered"] == len(child_ids) == 3
        if "balanced" in got:
            assert got["balanced"] is True
        if "flushed" in got:
            assert got["flushed"] is True
    assert collector.store is not None
    stored = await collector.store.event_ids()
    assert sorted(stored) == sorted(parent_ids + child_ids)  # each once, nothing else


async def test_an_event_logged_at_import_that_cannot_be_delivered_is_reported_at_exit() -> None:
    """Never started, its API unreachable: the exit flush gives up at close_timeout, and
    the one close summary counts the event; nothing is lost without a word."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    code = ("import hh_exporter\n"
            f"hh = hh_exporter.Exporter(api_key='k', api_url={url!r}, close_timeout=1.0,"
            " backoff_initial=0.05, backoff_max=0.1)\n"
            "hh.log_model_event(model='m', provider='p', messages=[], response={})\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SCRIPT.parent.parent)})
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert "closed; 1 of 1 accepted events were not delivered (" in err.decode()
