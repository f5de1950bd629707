"""``run_ingest`` in process, against the real collector: batching and stopping."""

from __future__ import annotations

import asyncio
import collections
import io
import json
import os
import re
import sys
import uuid
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hh_exporter.cli._ingest import run_ingest
from hh_exporter.collector import Collector, Faults

from .conftest import TOKEN, fast_exporter, http_json
from .spec import check_request


def write(path: Path, n: int, sessions: int) -> None:
    sids = [str(uuid.uuid4()) for _ in range(sessions)]
    with path.open("w") as f:
        for i in range(n):
            line: dict[str, object] = {
                "model": "gpt-4o", "provider": "openai",
                "messages": [{"role": "user", "content": f"q{i}"}],
                "response": {"role": "assistant", "content": "a"}, "duration": 5,
                "session_id": sids[i % sessions],
            }
            if i < sessions:  # the first line of each session brings its properties
                line["session_properties"] = {"session_name": f"s{i}"}
            f.write(json.dumps(line) + "\n")


async def test_interleaved_sessions_still_make_full_batches(
    collector: Collector, tmp_path: Path
) -> None:
    """8,000 lines in 400 sessions interleaved line by line go out in full 500-event batches
    (they once went out 20 at a time), each session started before its events."""
    src = tmp_path / "interleaved.jsonl"
    write(src, 8000, 400)
    hh = fast_exporter(collector.url, linger=1.0, max_buffer_events=8000)
    async with hh:
        res = await run_ingest([str(src)], hh, project=None, rejects=io.StringIO(),
                               progress=False)
        assert await hh.flush(30)
    st = hh.stats()
    assert res.sent == 8000 and st.delivered == 8000 and st.sessions_started == 400
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0
    batches = sum(stats["requests"]["/events/model/batch"].values())
    assert batches <= 8000 // 500 + 2


async def test_a_stop_is_seen_at_the_next_line(collector: Collector, tmp_path: Path) -> None:
    """Against a slow API, a stop request ends reading at the line being sent (it was once
    checked every 2,000 lines, seconds late)."""
    collector.faults.set(Faults(latency=0.2))
    src = tmp_path / "slow.jsonl"
    write(src, 20_000, 1)
    stop = asyncio.Event()
    hh = fast_exporter(collector.url, max_batch_events=100, max_in_flight=1,
                       max_buffer_events=500, close_timeout=1.0)
    accepted_at_stop = -1

    async def stopper() -> None:
        nonlocal accepted_at_stop
        for _ in range(600):  # bounded: 30 s at most
            if hh.stats().delivered >= 300:
                break
            await asyncio.sleep(0.05)
        accepted_at_stop = hh.stats().accepted
        stop.set()

    async with hh:
        task = asyncio.create_task(stopper())
        res = await run_ingest([str(src)], hh, project=None, rejects=io.StringIO(),
                               progress=False, stop=stop)
        await task
    assert res.interrupted and accepted_at_stop > 0
    assert res.sent <= accepted_at_stop + 1
    st = hh.stats()
    assert st.accepted == res.sent and st.pending == 0


def ingest_cmd(src: Path, url: str, tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hh_exporter", "ingest", str(src), "--api-url", url,
            "--no-progress", "--batch-events", "500", "--max-in-flight", "4",
            "--rejects", str(tmp / "rejects.jsonl"), *extra]


async def run(cmd: list[str], tmp: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp,
        env={**os.environ, "HH_API_KEY": TOKEN})
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_ids(path: Path, n: int, bad: frozenset[int] = frozenset()) -> list[str]:
    ids = []
    with path.open("w") as f:
        for i in range(1, n + 1):
            if i in bad:
                f.write("{not json\n")
                continue
            eid = str(uuid.uuid4())
            ids.append(eid)
            f.write(json.dumps({"event_id": eid, "model": "m", "provider": "p",
                                "messages": [{"role": "user", "content": f"q{i}"}],
                                "response": {"content": "a"}}) + "\n")
    return ids


@pytest.mark.parametrize("workers", [1, 2])
async def test_an_ingest_killed_half_way_resumes_where_it_was(
    collector: Collector, tmp_path: Path, workers: int
) -> None:
    """SIGKILL part way through 50,000 lines, then the same command again: it says where it
    resumes, every line ends up stored, and the lines stored twice are exactly those the
    server stored that the checkpoint on disk did not hold settled (sent and not answered,
    or answered after its last write): none it held is sent again. How few those are under
    an API answering after 0.4 s is test_ingest_conditions' business."""
    src = tmp_path / "big.jsonl"
    ids = write_ids(src, 50_000, bad=frozenset({7, 30_001}))
    collector.faults.set(Faults(latency=0.1))
    proc = await asyncio.create_subprocess_exec(
        *ingest_cmd(src, collector.url, tmp_path, "--workers", str(workers)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, cwd=tmp_path,
        env={**os.environ, "HH_API_KEY": TOKEN})
    for _ in range(1200):  # bounded: 60 s at most
        _, stats = await http_json(collector.url, "/stats")
        if stats["events_received"] >= 15_000 or proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    assert proc.returncode is None
    proc.kill()
    await proc.wait()
    checkpoint = json.loads((tmp_path / "ingest-checkpoint.json").read_text())
    (mark,) = checkpoint["files"].values()
    assert 0 < mark["line"] < 50_000 and not mark["done"]
    await asyncio.sleep(0.3)  # requests the server received before the kill are stored
    assert collector.store is not None
    before = set(await collector.store.event_ids())
    unsettled = {i for lo, hi in mark["unsettled"] for i in range(lo, hi + 1)}
    line_of: dict[str, int] = {}
    for n, text in enumerate(src.read_text().splitlines(), start=1):
        if text.startswith("{\""):
            line_of[json.loads(text)["event_id"]] = n
    held = {eid for eid, n in line_of.items() if n <= mark["line"]
            or (n <= mark["ahead"] and n not in unsettled)}

    collector.faults.set(Faults())
    code, out, err = await run(
        ingest_cmd(src, collector.url, tmp_path, "--workers", str(workers)), tmp_path)
    # A bad line the killed run rejected is settled: it is not rejected again (exit 0).
    assert code in (0, 1), out + err
    assert f"resuming {src} at line {mark['line'] + 1:,}" in err
    skipped = int(re.search(r"skipped\s+([\d,]+)", out)[1].replace(",", ""))  # type: ignore[index]
    assert skipped >= mark["line"]  # the prefix, and what settled beyond it
    assert collector.store is not None
    stored = await collector.store.event_ids()
    assert set(stored) == set(ids)
    twice = {eid for eid, count in collections.Counter(stored).items() if count > 1}
    assert twice == before - held  # nothing the checkpoint held settled was sent again
    rejects = (tmp_path / "rejects.jsonl").read_text().splitlines()
    assert [json.loads(r)["line"] for r in rejects] == [7, 30_001]  # kept across the runs
    done = json.loads((tmp_path / "ingest-checkpoint.json").read_text())
    assert all(m["done"] for m in done["files"].values())


async def test_an_edited_file_is_read_again_and_a_done_one_is_skipped(
    collector: Collector, tmp_path: Path
) -> None:
    """A file done in an earlier run is skipped; once edited (its size or first block
    differ) it is read from the start; --restart ignores the checkpoint."""
    src = tmp_path / "small.jsonl"
    first = write_ids(src, 300)
    code, out, err = await run(ingest_cmd(src, collector.url, tmp_path), tmp_path)
    assert code == 0, out + err
    code, out, err = await run(ingest_cmd(src, collector.url, tmp_path), tmp_path)
    assert code == 0 and "done in an earlier run: skipped" in err
    assert "skipped       300 lines" in out
    second = write_ids(src, 300)  # same size class, different content: a new file
    code, out, err = await run(ingest_cmd(src, collector.url, tmp_path), tmp_path)
    assert code == 0 and "changed since the checkpoint" in err
    code, out, err = await run(ingest_cmd(src, collector.url, tmp_path, "--restart"), tmp_path)
    assert code == 0 and "delivered     300" in out
    assert collector.store is not None
    stored = await collector.store.event_ids()
    assert sorted(stored) == sorted(first + second + second)


async def test_stdin_cannot_resume_and_says_so(collector: Collector, tmp_path: Path) -> None:
    """stdin is read from the start every time, and the run says it is not checkpointed."""
    src = tmp_path / "s.jsonl"
    write_ids(src, 10)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hh_exporter", "ingest", "-", "--api-url", collector.url,
        "--no-progress", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env={**os.environ, "HH_API_KEY": TOKEN})
    out, err = await asyncio.wait_for(proc.communicate(src.read_bytes()), 60)
    assert proc.returncode == 0, out.decode() + err.decode()
    assert "<stdin> cannot resume" in err.decode()


async def test_null_fields_are_left_out_as_the_official_clients_do(
    collector: Collector, tmp_path: Path
) -> None:
    """A line with null fields (the spec types them non-null, error aside) goes in without
    them, instead of being refused by the API."""
    src = tmp_path / "nulls.jsonl"
    eid = str(uuid.uuid4())
    src.write_text(json.dumps({
        "event_id": eid, "model": "m", "provider": "p", "messages": [{"content": None}],
        "response": {"content": "a"}, "usage": None, "metadata": None, "error": None,
        "duration": None}) + "\n")
    code, out, err = await run(ingest_cmd(src, collector.url, tmp_path), tmp_path)
    assert code == 0, out + err
    assert collector.store is not None
    assert await collector.store.event_ids() == [eid]


def test_events_cut_short_stay_unsettled_and_the_rest_is_kept_beyond_the_prefix(
    tmp_path: Path,
) -> None:
    """An event cut at a deadline or a close (``shutdown``) was never answered: it stays
    unsettled, so a resumed run sends it again; events answered after it (delivered, or
    dropped with the API's reason) are kept as settled beyond the prefix, so a resumed
    run does not send them again."""
    from hh_exporter.cli._checkpoint import Checkpoint, Tracker

    src = tmp_path / "f.jsonl"
    src.write_text("a\nb\nc\nd\n")
    cp = str(tmp_path / "cp.json")
    tracker = Tracker(Checkpoint(cp), destination="http://x (legacy, key 0)")
    ft, offset, first, _, skip = tracker.begin(str(src))
    assert (offset, first, skip) == (0, 0, False)
    events = [b"1", b"2", b"3", b"4"]
    for i, data in enumerate(events):
        tracker.sending(ft, 2 * i, 2 * (i + 1), i + 1, data)
    tracker.on_settled([events[0]], None)
    tracker.on_settled([events[1]], "shutdown")
    tracker.on_settled([events[2]], "rejected")
    tracker.save_now()
    mark = Checkpoint(cp).files[tracker.key(str(src))]
    assert (mark.line, mark.offset, mark.ahead) == (1, 2, 4)
    assert mark.unsettled == [(2, 2), (4, 4)]  # the cut one, and the one not answered yet
    # Resumed: read from line 2; line 3 is settled already, lines 2 and 4 go again.
    again = Tracker(Checkpoint(cp), destination="http://x (legacy, key 0)")
    ft2, offset, first, note, skip = again.begin(str(src))
    assert (offset, first, skip) == (2, 1, False) and note and "line 2" in note
    assert [n for n in (2, 3, 4) if ft2.settled_before(n)] == [3]
    # Another destination starts from the beginning.
    other = Tracker(Checkpoint(cp), destination="http://y (legacy, key 0)")
    assert other.begin(str(src))[1:3] == (0, 0)


def test_the_destination_fingerprint_does_not_reveal_the_key() -> None:
    """The checkpoint's key holds the API URL, its generation and a fingerprint that tells
    keys apart without holding the key or any part of it in the clear."""
    from hh_exporter.cli._checkpoint import destination_id

    key = "hh_live_" + "s3cr3t" * 6
    a = destination_id("https://api.honeyhive.ai/", "legacy", key)
    assert a == destination_id("https://api.honeyhive.ai", "legacy", key)
    assert a != destination_id("https://api.honeyhive.ai", "legacy", key + "x")
    assert a != destination_id("https://api.honeyhive.ai", "v1", key)
    assert a != destination_id("https://staging.honeyhive.ai", "legacy", key)
    fp = a.rsplit("key ", 1)[1].rstrip(")")
    assert len(fp) == 12 and not any(key[i:i + 4] in a for i in range(len(key) - 3))
    import hashlib

    assert fp not in hashlib.sha256(key.encode()).hexdigest()  # not a plain, fast hash


async def test_workers_keep_sessions_whole_and_in_order(
    collector: Collector, tmp_path: Path
) -> None:
    """--workers 3 against --workers 1 on the same file of interleaved sessions with bad
    lines: the same counts and the same rejects file (in line order), every session started
    before its events (0 orphans), and each session's events stored in file order (a
    session's lines all go to one worker, in order)."""
    src = tmp_path / "mixed.jsonl"
    sids = [str(uuid.uuid4()) for _ in range(60)]
    with src.open("w") as f:
        for i in range(6000):
            if i in (65, 2500, 4999):
                f.write("{broken\n")
                continue
            line: dict[str, object] = {
                "model": "m", "provider": "p", "response": {"content": "a"},
                "messages": [{"role": "user", "content": f"q{i}"}],
                "session_id": sids[i % 60].upper() if i % 7 == 0 else sids[i % 60]}
            if i < 60:
                line["session_properties"] = {"session_name": f"s{i}"}
            f.write(json.dumps(line) + "\n")
    results = {}
    for workers in (1, 3):
        wd = tmp_path / f"w{workers}"
        wd.mkdir()
        code, out, err = await run(
            ingest_cmd(src, collector.url, wd, "--workers", str(workers)), wd)
        assert code == 1, out + err  # the three bad lines
        results[workers] = (out.split("throughput")[0].replace("(see", ""),
                            (wd / "rejects.jsonl").read_text())
        assert "lines read    6,000" in out and "rejected      3" in out
        assert "delivered     5,997" in out
    assert results[1][1] == results[3][1]
    assert [json.loads(r)["line"] for r in results[3][1].splitlines()] == [66, 2501, 5000]
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0 and stats["events_stored"] == 2 * 5997
    for sid in sids[:10]:
        _, body = await http_json(collector.url, f"/sessions/{sid}/events")
        seq = [int(e["messages"][0]["content"][1:]) for e in body["events"]]
        assert len(seq) == 2 * (100 - sum(1 for b in (65, 2500, 4999) if sids[b % 60] == sid))
        half = len(seq) // 2  # the two runs' events, one run after the other
        assert seq[:half] == sorted(seq[:half]) and seq[half:] == sorted(seq[half:])


def _workers(pid: int) -> list[int]:
    """The ingest's worker processes (spawned children; not multiprocessing's tracker)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    out = []
    for k in kids:
        try:
            cmd = Path(f"/proc/{k}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing" in cmd and b"resource_tracker" not in cmd:
            out.append(k)
    return out


async def test_a_worker_that_dies_stops_the_run_and_the_next_run_resumes(
    collector: Collector, tmp_path: Path
) -> None:
    """SIGKILL one worker half way: the run stops reading, says which worker died and
    exits non-zero; the checkpoint holds only what was settled, so the same command again
    stores every line."""
    import signal

    src = tmp_path / "big.jsonl"
    ids = write_ids(src, 20_000)
    collector.faults.set(Faults(latency=0.05))
    proc = await asyncio.create_subprocess_exec(
        *ingest_cmd(src, collector.url, tmp_path, "--workers", "2"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "HH_API_KEY": TOKEN})
    victim = None
    for _ in range(1200):  # bounded: 60 s
        _, stats = await http_json(collector.url, "/stats")
        kids = _workers(proc.pid)
        if stats["events_received"] >= 2_000 and kids:
            victim = kids[0]
            break
        await asyncio.sleep(0.05)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
    out = out_b.decode()
    assert proc.returncode == 1
    assert "an ingest worker died (exit code -9)" in out
    checkpoint = json.loads((tmp_path / "ingest-checkpoint.json").read_text())
    (mark,) = checkpoint["files"].values()
    assert not mark["done"]  # the dead worker's lines are not settled: the file is not done
    collector.faults.set(Faults())
    code, out, err = await run(
        ingest_cmd(src, collector.url, tmp_path, "--workers", "2"), tmp_path)
    assert code == 0, out + err
    # It resumes where the settled prefix ended (the very start, if the dead worker held
    # the first line).
    assert mark["line"] == 0 or f"resuming {src} at line {mark['line'] + 1:,}" in err
    assert collector.store is not None
    assert set(await collector.store.event_ids()) == set(ids)


_IDS = [str(uuid.UUID(int=i * 7919 + 1, version=4)) for i in range(3)]


def _line_values() -> st.SearchStrategy[object]:
    """JSON values, with the texts that trip a byte-level reader: "null" in strings."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.sampled_from(["null", '"error":null', "x null y", ""]),
                        st.text(max_size=8))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
        max_leaves=8)


@st.composite
def _lines(draw: st.DrawFn) -> dict[str, object]:
    """Lines that are valid but for at most one field, so that most are sent."""
    bad = draw(st.sampled_from([None, None, None, None, "model", "messages", "event_type",
                                "ids", "objects", "duration"]))

    def pick(name: str, good: st.SearchStrategy[object], wrong: list[object]) -> object:
        return draw(st.sampled_from(wrong) if bad == name else good)

    objects = st.dictionaries(st.sampled_from(["a", "null", "error"]), _line_values(),
                              max_size=3)
    line: dict[str, object] = {}
    if draw(st.booleans()):
        line.update(model=pick("model", st.just("m"), [None, 3]), provider="p",
                    messages=pick("messages", st.lists(objects, max_size=2), [[1], None, "m"]),
                    response=draw(_line_values()))
    else:
        line["event_type"] = pick("event_type", st.sampled_from(["tool", "chain", "model"]),
                                  ["bogus", 1])
        line["event_name"] = "e"
    for name in ("session_id", "event_id", "parent_id"):
        if draw(st.booleans()):
            line[name] = pick("ids", st.sampled_from([_IDS[0], _IDS[1].upper(), _IDS[2], None]),
                              ["not-a-uuid", 7])
    for name in ("usage", "metadata", "inputs", "outputs", "config"):
        if draw(st.booleans()):
            line[name] = pick("objects", st.one_of(objects, st.none()), [[], "x"])
    if draw(st.booleans()):
        line["duration"] = pick("duration", st.one_of(st.floats(0, 1e6), st.none()), [-1, "1"])
    if draw(st.booleans()):
        line["error"] = draw(st.sampled_from([None, "null", "boom", "", {"a": None}]))
    if draw(st.booleans()):
        line["project"] = draw(st.one_of(st.text(max_size=5), st.none()))
    line.update(draw(st.dictionaries(st.sampled_from(["feedback", "x", "null"]),
                                     _line_values(), max_size=3)))
    return line


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=_lines(), spaced=st.booleans())
def test_a_line_goes_out_whole_or_is_rejected_with_a_reason(
    line: dict[str, object], spaced: bool
) -> None:
    """Any line: rejected with a reason, or sent as the same object with only what the API
    needs changed (an event_id and the run's project when missing, lower-case ids, empty
    usage/inputs and a zero duration when missing, top-level nulls left out but "error"'s),
    however the line is spaced and whatever "null" texts its strings hold."""
    from hh_exporter.cli._lines import prepare

    text = json.dumps(line, separators=(", ", ": ") if spaced else (",", ":")).encode()
    try:
        data, generic, sid, start = prepare(text + b"\n", "proj", 1 << 20)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        assert str(exc)  # a reason for the rejects file
        return
    out = json.loads(data)
    assert start is None  # no session properties here
    expected = {k: (v.lower() if k in ("session_id", "event_id", "parent_id") else v)
                for k, v in line.items() if v is not None or k == "error"}
    for k, v in expected.items():
        assert out[k] == v, k
    added = set(out) - set(expected)
    assert all(v is not None for k, v in out.items() if k != "error")
    assert added <= {"event_id", "project", "usage", "duration", "inputs"}
    assert uuid.UUID(out["event_id"]).hex == uuid.UUID(str(out["event_id"])).hex
    assert out["project"] == (line["project"] if line.get("project") is not None else "proj")
    assert generic == (line.get("event_type") is not None)
    assert sid == expected.get("session_id")
    if not generic:
        assert out["usage"] == expected.get("usage", {})
        assert out["duration"] == expected.get("duration", 0)
    # What goes out is a valid request of the real API's spec, whatever we think of it.
    if generic:
        check_request("/events/batch", {"events": [out]})
    else:
        check_request("/events/model/batch", {"model_events": [out]})


@pytest.mark.parametrize(("field", "value"), [
    ("feedback", []), ("metrics", "fast"), ("user_properties", 1), ("hyperparameters", [1]),
    ("children_ids", "a"), ("children_ids", [1]), ("source", 3), ("event_name", {}),
    ("error", {"message": "x"}), ("model_name", 1)])
def test_a_field_the_spec_types_is_checked_on_the_line(field: str, value: object) -> None:
    """A line whose field has a type the spec's ModelEvent/LegacyEvent refuse is rejected
    with a reason naming the field, rather than sent to be refused by the API."""
    import jsonschema

    from hh_exporter.cli._lines import prepare

    line = {"model": "m", "provider": "p", "messages": [], "response": {}, field: value}
    with pytest.raises(msgspec.ValidationError, match=field):
        prepare(json.dumps(line).encode(), "proj", 1 << 20)
    # The premise is the spec's, not ours: its schema refuses that event, and takes it
    # without the field.
    with pytest.raises(jsonschema.ValidationError):
        check_request("/events/model/batch", {"model_events": [line]})
    del line[field]
    check_request("/events/model/batch", {"model_events": [line]})
