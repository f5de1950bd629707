"""The CLI as a user runs it: subprocesses, exit codes, summaries, database contents."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import signal
import sqlite3
import sys
import uuid
from pathlib import Path

from hh_exporter.collector import Collector, Faults

from .conftest import TOKEN, http_json

EXAMPLE = Path(__file__).parent.parent / "examples" / "events.jsonl"


async def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                  stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hh_exporter", *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_lines(path: Path, n: int, bad: dict[int, str] | None = None) -> list[str]:
    ids = []
    with path.open("w") as f:
        for i in range(1, n + 1):
            if bad and i in bad:
                f.write(bad[i] + "\n")
                continue
            eid = str(uuid.uuid4())
            ids.append(eid)
            f.write(json.dumps({
                "event_id": eid, "model": "gpt-4o", "provider": "openai",
                "messages": [{"role": "user", "content": f"q{i}"}],
                "response": {"role": "assistant", "content": "a"}, "duration": 10,
                "usage": {"total_tokens": 3}, "session_id": f"00000000-0000-4000-8000-{i % 7:012d}",
            }) + "\n")
    return ids


async def test_demo_runs_end_to_end_and_checks_the_database(tmp_path: Path) -> None:
    """demo exits 0, prints its summary, and its kept database holds every event once."""
    db = tmp_path / "demo.db"
    code, out, err = await run_cli("demo", "--events", "1500", "--sessions", "60",
                                   "--keep-db", str(db), "--no-progress")
    assert code == 0, out + err
    assert "check: PASS" in out
    for word in ("accepted", "delivered", "dropped", "batches", "events/s", "p50", "p99"):
        assert word in out
    with sqlite3.connect(db) as conn:
        n, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events"
                                   ).fetchone()
        sessions = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    assert n == distinct == 1500
    assert sessions == 60
    for word in ("0 duplicate ids", "0 orphan events", "60 started"):
        assert word in out


async def test_demo_in_v1_mode_passes_its_check() -> None:
    """demo --api v1 speaks /v1/sessions and /v1/events/batch and passes the same check."""
    code, out, err = await run_cli("demo", "--api", "v1", "--events", "600", "--sessions",
                                   "30", "--no-progress")
    assert code == 0, out + err
    assert "check: PASS" in out and "30 started" in out


async def test_demo_with_faults_retries_and_loses_nothing() -> None:
    """demo --faults shows retries and still passes its check."""
    code, out, err = await run_cli("demo", "--events", "1000", "--sessions", "40", "--faults",
                                   "--no-progress")
    assert code == 0, out + err
    assert "check: PASS" in out
    retries = int(out.split(" retries)")[0].rsplit(", ", 1)[1].replace(",", ""))
    assert retries > 0


async def test_ingest_reports_bad_lines_and_delivers_the_rest(
    collector: Collector, tmp_path: Path
) -> None:
    """Bad lines are reported with their line numbers, written to rejects, and skipped."""
    src = tmp_path / "events.jsonl"
    huge = json.dumps({"model": "m", "provider": "p", "messages": [], "response": {},
                       "metadata": {"blob": "x" * (5 << 20)}})
    ids = write_lines(src, 50, bad={7: "{not json", 20: json.dumps({"model": "m"}),
                                    33: json.dumps({"model": "m", "provider": "p",
                                                    "messages": "x", "response": {}}),
                                    41: huge})
    rejects = tmp_path / "rejects.jsonl"
    code, out, err = await run_cli(
        "ingest", str(src), "--api-url", collector.url, "--rejects", str(rejects),
        "--no-progress", env={"HH_API_KEY": TOKEN, "HH_PROJECT": "cli"})
    assert code == 1  # something was rejected
    for n in (7, 20, 33, 41):
        assert f"{src}:{n}: rejected" in err
    assert "messages: expected array, got str" in err
    assert "exceeds the batch limit" in err
    rows = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [r["line"] for r in rows] == [7, 20, 33, 41]
    assert "delivered     46" in out
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert sorted(stored) == sorted(ids)


async def test_ingest_through_faults_gz_and_stdin(collector: Collector, tmp_path: Path) -> None:
    """A faulty server still gets every line once; .gz files and stdin work."""
    collector.faults.set(Faults(script=["503", "429@0.1", "drop"], error_rate=0.2, seed=1))
    gz = tmp_path / "a.jsonl.gz"
    plain = tmp_path / "b.jsonl"
    ids_a = write_lines(plain, 300)
    with gzip.open(gz, "wt") as f:
        f.write(plain.read_text())
    ids_b = write_lines(plain, 200)
    code, out, err = await run_cli(
        "ingest", str(gz), "-", "--api-url", collector.url, "--batch-events", "50",
        "--no-progress", env={"HH_API_KEY": TOKEN, "HH_PROJECT": "cli"},
        stdin=plain.read_bytes(), cwd=tmp_path)
    assert code == 0, out + err
    assert "delivered     500" in out
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert sorted(stored) == sorted(ids_a + ids_b)


async def test_ingest_of_the_shipped_example(collector: Collector, tmp_path: Path) -> None:
    """examples/events.jsonl goes in: its session is started before its events, with its
    properties; bad lines are skipped."""
    code, out, err = await run_cli(
        "ingest", str(EXAMPLE), "--api-url", collector.url, "--no-progress",
        "--rejects", str(tmp_path / "r.jsonl"), env={"HH_API_KEY": TOKEN, "HH_PROJECT": "ex"})
    assert code == 1, out + err  # two lines of the example are bad on purpose
    assert "delivered     5" in out
    assert "sessions      1 started, 0 failed" in out
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0 and stats["sessions_started"] == 1
    sid = "0b6f2f9e-8d3c-4c43-9a53-4f9d6f7c1a10"
    _, props = await http_json(collector.url, f"/sessions/{sid}")
    assert props["session_name"] == "geography"
    assert props["user_properties"] == {"user": "ada"}
    _, events = await http_json(collector.url, f"/sessions/{sid}/events")
    kinds = sorted(e.get("event_type", "model") for e in events["events"])
    assert kinds == ["model", "model", "tool"]
    assert all(e["project"] == "ex" and uuid.UUID(e["event_id"]) for e in events["events"])
    assert not any("session_properties" in e for e in events["events"])


async def test_ingest_needs_no_project_and_keeps_each_lines_own(tmp_path: Path) -> None:
    """The API docs' own example events go in with no --project and no HH_PROJECT: each line
    keeps the project it carries, and lines without one are sent without one."""
    seed = json.loads((Path(__file__).parent / "data" / "seed_model_batch.json").read_text())
    lines = [json.dumps(e) for e in seed["model_events"]]
    lines.append(json.dumps({k: v for k, v in seed["model_events"][0].items()
                             if k != "project"}))
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "HH_PROJECT"}
    env["HH_API_KEY"] = TOKEN
    db = tmp_path / "c.db"
    async with Collector(token=TOKEN, db=str(db)) as c:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hh_exporter", "ingest", str(src), "--api-url", c.url,
            "--no-progress", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=tmp_path)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode() + err.decode()
        assert f"delivered     {len(lines)}" in out.decode()
    with sqlite3.connect(db) as conn:
        bodies = [json.loads(r[0]) for r in conn.execute("SELECT body FROM events")]
    projects = sorted(str(b.get("project")) for b in bodies)
    assert projects == sorted(["New Project"] * (len(lines) - 1) + ["None"])


async def test_ingest_dry_run_sends_nothing(collector: Collector, tmp_path: Path) -> None:
    """--dry-run validates and sends nothing."""
    code, out, _err = await run_cli("ingest", str(EXAMPLE), "--dry-run", "--no-progress",
                                   "--rejects", str(tmp_path / "r.jsonl"))
    assert code == 1  # the example has two bad lines, on purpose
    assert "valid         5" in out
    _, stats = await http_json(collector.url, "/stats")
    assert stats["events_received"] == 0


async def test_interrupted_ingest_accounts_for_every_line(
    collector: Collector, tmp_path: Path
) -> None:
    """Ctrl-C flushes within the deadline and the summary accounts for every line read."""
    collector.faults.set(Faults(latency=0.05))
    src = tmp_path / "big.jsonl"
    write_lines(src, 20000)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hh_exporter", "ingest", str(src), "--api-url", collector.url,
        "--batch-events", "100", "--max-in-flight", "1", "--timeout", "1", "--no-progress",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "HH_API_KEY": TOKEN, "HH_PROJECT": "cli"},
    )
    # Interrupt once delivery is under way (not by the clock: a slow start must not matter).
    for _ in range(600):
        _, stats = await http_json(collector.url, "/stats")
        if stats["events_received"] >= 300 or proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    assert proc.returncode is None, await proc.communicate()
    # From now on the server answers too late for the deadline, so a backlog is cut however
    # fast or slow the reader got on a loaded machine (the in-flight request finishes first).
    collector.faults.set(Faults(latency=3.0))
    proc.send_signal(signal.SIGINT)
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 30)
    out = out_b.decode()
    assert proc.returncode == 128 + signal.SIGINT, out + err_b.decode()  # interrupted
    num = {m[1]: int(m[2].replace(",", ""))
           for m in re.finditer(r"^\s+(\w[\w ]*?)\s{2,}([\d,]+)", out, re.M)}
    assert "interrupted" in out
    assert num["lines read"] == num["accepted"] + num["rejected"]
    assert num["accepted"] > 0 and num["lines read"] < 20000
    assert num["accepted"] == num["delivered"] + num["dropped"] + num["pending"]
    assert num["dropped"] > 0  # the 1 s deadline cut the backlog short
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    # A request cut at the deadline may still have reached the server: counted as dropped
    # by the client (it cannot know), stored by the server. Never more than that.
    assert num["delivered"] <= len(stored) <= num["delivered"] + num["dropped"]


async def test_serve_prints_its_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    """serve listens on loopback, checks the token, and commits on SIGTERM."""
    db = tmp_path / "serve.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hh_exporter", "serve", "--port", "0", "--db", str(db),
        "--token", TOKEN, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    url = line.split("listening on ")[1].split()[0]
    assert url.startswith("http://127.0.0.1:")
    body = {"model_events": [{"project": "p", "model": "m", "provider": "p", "messages": [],
                              "response": {}, "duration": 1, "usage": {}}]}
    status, resp = await http_json(url, "/events/model/batch", "POST", body)
    assert status == 200
    status, _ = await http_json(url, "/events/model/batch", "POST", body, token="nope")
    assert status == 401
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT event_id FROM events")]
    assert ids == resp["event_ids"]


async def test_ingest_with_a_wrong_key_stops_early(collector: Collector, tmp_path: Path) -> None:
    """A refused key stops the run instead of sending the whole file to be refused."""
    src = tmp_path / "many.jsonl"
    write_lines(src, 30000)
    code, out, err = await run_cli(
        "ingest", str(src), "--api-url", collector.url, "--no-progress", "--batch-events", "100",
        "--max-in-flight", "1", env={"HH_API_KEY": "wrong-key", "HH_PROJECT": "cli"},
        cwd=tmp_path)
    assert code == 1
    assert "the API refused the API key" in out
    assert "wrong-key" not in out + err
    lines = int(re.search(r"lines read\s+([\d,]+)", out)[1].replace(",", ""))  # type: ignore[index]
    assert lines < 30000
