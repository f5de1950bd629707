"""``hh-exporter ingest`` under users' conditions, as a user runs it (subprocesses):
an API that answers after 0.4 s, one that accepts and never answers, 400 sessions
interleaved line by line, SIGINT/SIGTERM/SIGKILL mid-run, two destinations from one
directory. Nothing here judges speed; the one time bound is the behaviour itself (a stop
ends within ``--timeout`` + 1 s)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hh_exporter.collector import Collector, Faults

from .conftest import TOKEN, http_json

SESSIONS = 400


def write_interleaved(path: Path, n: int, *, event_ids: bool = True) -> list[str]:
    """``n`` lines in 400 sessions interleaved line by line, each session's first line
    bringing its properties; each line's message says its number. Returns the sessions."""
    sids = [str(uuid.uuid4()) for _ in range(SESSIONS)]
    with path.open("w") as f:
        for i in range(n):
            line: dict[str, object] = {
                "model": "gpt-4o", "provider": "openai",
                "messages": [{"role": "user", "content": f"q{i}"}],
                "response": {"role": "assistant", "content": "a"}, "duration": 5,
                "session_id": sids[i % SESSIONS]}
            if event_ids:
                line["event_id"] = str(uuid.uuid4())
            if i < SESSIONS:
                line["session_properties"] = {"session_name": f"s{i}"}
            f.write(json.dumps(line) + "\n")
    return sids


async def stored_lines(collector: Collector, sids: list[str]) -> Counter[int]:
    """How many times each line (by its message) is stored."""
    assert collector.store is not None
    seen: Counter[int] = Counter()
    for sid in sids:
        for raw in await collector.store.session_events(sid):
            ev = json.loads(raw)
            if ev.get("event_type", "model") == "model" and ev.get("messages"):
                seen[int(ev["messages"][0]["content"][1:])] += 1
    return seen


def cmd(src: Path, url: str, wd: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hh_exporter", "ingest", str(src), "--api-url", url,
            "--no-progress", "--batch-events", "100", "--max-in-flight", "4", *extra]


async def start(args: list[str], wd: Path, key: str = TOKEN) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=wd,
        env={**os.environ, "HH_API_KEY": key})


def summary(out: str) -> dict[str, int]:
    return {m[1]: int(m[2].replace(",", ""))
            for m in re.finditer(r"^\s+(\w[\w ]*?)\s{2,}([\d,]+)", out, re.M)}


def assert_adds_up(out: str) -> dict[str, int]:
    num = summary(out)
    assert num["lines read"] == num["accepted"] + num["rejected"], out
    assert num["accepted"] == num["delivered"] + num["dropped"] + num["pending"], out
    return num


class HungServer:
    """Accepts connections, reads what comes, never answers (a raw socket server)."""

    def __init__(self) -> None:
        self.connections = 0
        self.bytes = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while chunk := await reader.read(1 << 16):
            self.bytes += len(chunk)

    async def __aenter__(self) -> HungServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self._writers:
            w.close()
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def hung() -> AsyncIterator[HungServer]:
    async with HungServer() as h:
        yield h


async def wait_for(cond: object, proc: asyncio.subprocess.Process, limit: float = 60) -> None:
    """Poll ``cond()`` (an async callable) every 50 ms, bounded by ``limit`` seconds."""
    for _ in range(int(limit / 0.05)):
        if await cond() or proc.returncode is not None:  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(("api", "timeout", "sig"), [
    ("hung", 1, signal.SIGINT), ("hung", 6, signal.SIGTERM),
    ("slow", 1, signal.SIGTERM), ("slow", 10, signal.SIGINT)])
async def test_a_stop_ends_within_the_timeout_and_a_second(
    collector: Collector, hung: HungServer, tmp_path: Path, api: str, timeout: int,
    sig: signal.Signals,
) -> None:
    """In the default configuration, against an API that answers after 0.4 s or one that
    never answers: the whole run exits within --timeout + 1 s of the signal, its one
    summary adds up, the status says interrupted (128 + the signal), nothing is stored
    twice, and batches were full."""
    src = tmp_path / "in.jsonl"
    write_interleaved(src, 30_000)
    collector.faults.set(Faults(latency=0.4))
    url = hung.url if api == "hung" else collector.url
    proc = await start(cmd(src, url, tmp_path, "--timeout", str(timeout)), tmp_path)

    async def under_way() -> bool:
        if api == "hung":
            return hung.connections >= 4  # every request slot taken, none answered
        _, stats = await http_json(collector.url, "/stats")
        return bool(stats["events_received"] >= 2_000)

    await wait_for(under_way, proc)
    assert proc.returncode is None
    t0 = time.monotonic()
    proc.send_signal(sig)
    out_b, err_b = await asyncio.wait_for(proc.communicate(), timeout + 30)
    took = time.monotonic() - t0
    out = out_b.decode()
    assert took <= timeout + 1, (took, out + err_b.decode())
    assert proc.returncode == 128 + sig, out + err_b.decode()
    assert "interrupted   yes" in out
    num = assert_adds_up(out)
    if api == "slow":
        assert collector.store is not None
        stored = await collector.store.event_ids()
        assert len(stored) == len(set(stored))  # nothing stored twice
        assert num["delivered"] <= len(stored) <= num["delivered"] + num["dropped"]
        _, stats = await http_json(collector.url, "/stats")
        batches = sum(stats["requests"]["/events/model/batch"].values())
        # Full batches of 100 (the final flush may leave a few short ones, one per slot).
        assert batches <= len(stored) // 100 + 4 + 2, (batches, len(stored))
    else:
        assert num["delivered"] == 0 and num["dropped"] > 0


async def test_a_second_sigint_exits_at_once(hung: HungServer, tmp_path: Path) -> None:
    """--timeout 10 against an API that never answers: a second Ctrl-C ends the run within
    a second of it, with a summary that adds up."""
    src = tmp_path / "in.jsonl"
    write_interleaved(src, 20_000)
    proc = await start(cmd(src, hung.url, tmp_path, "--timeout", "10"), tmp_path)

    async def under_way() -> bool:
        return hung.connections >= 4  # every request slot taken, none answered

    await wait_for(under_way, proc)
    assert proc.returncode is None
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 30)
    assert time.monotonic() - t0 <= 1.0, out_b.decode() + err_b.decode()
    assert proc.returncode == 130
    assert_adds_up(out_b.decode())


async def test_workers_late_at_the_deadline_are_killed_and_counted(
    hung: HungServer, tmp_path: Path
) -> None:
    """--workers 2, SIGTERM with --timeout 1 while the API hangs: the reader does not wait
    for its workers past the deadline; the summary counts every line they held."""
    src = tmp_path / "in.jsonl"
    write_interleaved(src, 20_000)
    proc = await start(cmd(src, hung.url, tmp_path, "--timeout", "1", "--workers", "2"),
                       tmp_path)

    async def under_way() -> bool:
        return hung.connections >= 8  # both workers' request slots taken

    await wait_for(under_way, proc)
    assert proc.returncode is None
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 30)
    out = out_b.decode()
    assert time.monotonic() - t0 <= 2.0, out + err_b.decode()
    assert proc.returncode == 128 + signal.SIGTERM
    num = assert_adds_up(out)
    assert num["dropped"] == num["accepted"] > 0


@pytest.mark.parametrize(("workers", "event_ids"), [(1, True), (1, False), (2, True)])
async def test_a_kill_at_a_third_resends_only_what_was_in_flight(
    collector: Collector, tmp_path: Path, workers: int, event_ids: bool
) -> None:
    """SIGKILL of the reader at a third of 6,000 lines in 400 interleaved sessions, against
    an API answering after 0.4 s; then the same command again: every line is stored, and
    at most what was in flight at the kill is stored twice. Exactly: the lines stored twice
    are the lines the server stored that the checkpoint on disk did not yet hold settled
    (sent and not answered, or answered after its last write), none of those it held. And
    those are few: each process's max_in_flight batches, and at most as many again whose
    answers came after the checkpoint's last write (it is written every 50 ms, 20 ms with
    workers, whose answers cross a pipe first; a loaded machine stretches that). A
    contiguous prefix alone re-sent most of what was stored."""
    src = tmp_path / "in.jsonl"
    n = 6000
    sids = write_interleaved(src, n, event_ids=event_ids)
    collector.faults.set(Faults(latency=0.4))
    args = cmd(src, collector.url, tmp_path, "--workers", str(workers))
    proc = await start(args, tmp_path)

    async def a_third() -> bool:
        _, stats = await http_json(collector.url, "/stats")
        return bool(stats["events_stored"] >= n // 3)

    await wait_for(a_third, proc)
    assert proc.returncode is None
    proc.kill()
    await proc.wait()
    mark, = json.loads((tmp_path / "ingest-checkpoint.json").read_text())["files"].values()
    assert not mark["done"] and len(mark["unsettled"]) <= 4096
    await asyncio.sleep(0.6)  # requests the server received before the kill are stored
    before = await stored_lines(collector, sids)
    unsettled = {i for lo, hi in mark["unsettled"] for i in range(lo, hi + 1)}
    # Line numbers count from 1; a line's message holds its index from 0.
    held = {i for i in range(n) if i + 1 <= mark["line"]
            or (i + 1 <= mark["ahead"] and i + 1 not in unsettled)}
    unrecorded = set(before) - held  # stored, not known settled by the checkpoint

    collector.faults.set(Faults())
    proc = await start(args, tmp_path)
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 120)
    out = out_b.decode()
    assert proc.returncode == 0, out + err_b.decode()
    assert_adds_up(out)
    seen = await stored_lines(collector, sids)
    assert set(seen) == set(range(n))  # every line stored
    twice = {i for i, c in seen.items() if c > 1}
    assert twice == unrecorded  # nothing the checkpoint held settled was sent again
    assert all(seen[i] == 2 for i in twice)
    bound = workers * 2 * 4 * 100
    assert len(twice) <= bound, (len(twice), bound, sum(before.values()))
    # The prefix alone would have re-sent everything stored beyond it.
    beyond_prefix = sum(1 for i in before if i >= mark["line"])
    assert len(twice) <= beyond_prefix


async def test_a_worker_killed_resends_only_what_it_had_in_flight(
    collector: Collector, tmp_path: Path
) -> None:
    """SIGKILL of one of two workers at a third, against a slow API: the run stops and
    says so, its summary adds up; the same command again stores every line, at most the
    in-flight batches of both workers, and as many again answered after the checkpoint's
    last write, twice."""
    from .test_ingest import _workers

    src = tmp_path / "in.jsonl"
    n = 6000
    sids = write_interleaved(src, n)
    collector.faults.set(Faults(latency=0.4))
    args = cmd(src, collector.url, tmp_path, "--workers", "2", "--timeout", "2")
    proc = await start(args, tmp_path)
    victim: list[int] = []

    async def a_third() -> bool:
        _, stats = await http_json(collector.url, "/stats")
        kids = _workers(proc.pid)
        if stats["events_stored"] >= n // 3 and kids:
            victim.append(kids[0])
            return True
        return False

    await wait_for(a_third, proc)
    assert victim
    os.kill(victim[0], signal.SIGKILL)
    out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
    out = out_b.decode()
    assert proc.returncode == 1 and "an ingest worker died (exit code -9)" in out
    assert_adds_up(out)
    collector.faults.set(Faults())
    proc = await start(args, tmp_path)
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out_b.decode() + err_b.decode()
    seen = await stored_lines(collector, sids)
    assert set(seen) == set(range(n))
    assert sum(c - 1 for c in seen.values()) <= 2 * 2 * 4 * 100


async def test_two_destinations_from_one_directory(tmp_path: Path) -> None:
    """The same file to a staging API, then to production, from one directory and the
    default checkpoint: each receives every line once; a re-run to the first sends nothing
    new; --restart still sends it all again. The checkpoint does not hold the key."""
    src = tmp_path / "in.jsonl"
    sids = write_interleaved(src, 1200, event_ids=False)
    async with Collector(token=TOKEN) as staging, Collector(token="prod-" + TOKEN) as prod:
        for c, key in ((staging, TOKEN), (prod, "prod-" + TOKEN), (staging, TOKEN)):
            proc = await start(cmd(src, c.url, tmp_path), tmp_path, key)
            out_b, err_b = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, out_b.decode() + err_b.decode()
        assert "done in an earlier run: skipped" in err_b.decode()
        for c in (staging, prod):
            seen = await stored_lines(c, sids)
            assert set(seen) == set(range(1200)) and set(seen.values()) == {1}
        proc = await start(cmd(src, staging.url, tmp_path, "--restart"), tmp_path)
        out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert "delivered     1,200" in out_b.decode()
    text = (tmp_path / "ingest-checkpoint.json").read_text()
    assert TOKEN not in text and len(json.loads(text)["files"]) == 2
