"""``hh-exporter ingest --workers N``: one reader, N sending processes, one of everything else.

The parent reads the files in order, as the single-process run does, and deals each line
to a worker by its session: every line of a session (the one that brings its properties
included) goes to the same worker, in file order, so ordering within a session and
"sessions started first" hold as they do in one process. Lines without a session are
dealt round-robin. (Splitting a large file by byte range instead could put a session's
start in one process and its events in another, with nothing to order them.)

Each worker validates, encodes and sends its lines with its own exporter, and reports back
what settled, which lines it rejected and why, and its final counts. The parent keeps the
one rejects file, the one progress bar, the one summary and the one checkpoint, which moves
over the contiguous prefix of lines settled by any worker (a line cut at a deadline holds
it, as in one process). The parent holds at most ``window`` unsettled lines per worker:
backpressure reaches the reader, and memory stays flat.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import signal
import sys
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import Connection, wait
from typing import IO, Any

import msgspec

from ._checkpoint import Tracker
from ._events import start_session_id
from ._ingest import (
    IngestResult,
    _prepare,
    _reason,
    _start_spooled_session,
    first_start,
    iter_lines,
    reject_record,
)
from ._progress import Progress
from ._spool import is_header, parse_header
from ._stats import CUT_REASONS, ExporterStats

__all__ = ["merge_stats", "run_parallel_ingest"]

_CHUNK = 256          # lines per message to a worker


class _Session(msgspec.Struct):
    session_id: str | None = None


class _Route(msgspec.Struct):
    session_id: str | None = None
    session_properties: _Session | None = None
    session: _Session | None = None


_decode_route = msgspec.json.Decoder(_Route).decode


def _session_of(line: bytes) -> str | None:
    """The session a line belongs to (the worker key); None if it has none or does not
    decode (the worker rejects it then, with its reason)."""
    try:
        r = _decode_route(line)
    except msgspec.DecodeError:
        return None
    sid = r.session_id
    if sid is None:
        props = r.session_properties or r.session
        sid = props.session_id if props is not None else None
    return sid.lower() if isinstance(sid, str) else None


def _known_rejects(rejects: IO[str]) -> set[tuple[str, int]]:
    """The (file, line) of rejects an earlier run of a resumed ingest already wrote: the
    workers read ahead, so a killed run may have rejected lines its checkpoint had not
    passed, and the resumed run must not write them twice."""
    name = getattr(rejects, "name", None)
    if not isinstance(name, str) or rejects.tell() == 0:
        return set()
    known: set[tuple[str, int]] = set()
    with contextlib.suppress(OSError), open(name, encoding="utf-8") as f:
        for text in f:
            with contextlib.suppress(msgspec.DecodeError, KeyError, TypeError):
                r = msgspec.json.decode(text)
                known.add((r["file"], r["line"]))
    return known


def _header_session(line: bytes) -> str | None:
    try:
        start = parse_header(line).start_body
    except msgspec.DecodeError:
        return None
    if start is None:
        return None
    try:
        sid = start_session_id(start)
    except msgspec.DecodeError:
        return None
    return sid.lower() if sid else None


# -- the worker process -----------------------------------------------------------------------

def _worker(lines: Connection, results: Connection, config: dict[str, Any],
            max_event_bytes: int) -> None:
    """A worker's main: lines in, results out, until the parent says "end"."""
    import asyncio

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _die_with_parent()
    asyncio.run(_work(lines, results, config, max_event_bytes))


def _die_with_parent() -> None:
    """A killed parent takes its workers along (Linux ``PR_SET_PDEATHSIG``): a worker that
    kept sending after a SIGKILL would deliver lines the checkpoint never hears of, and a
    resumed run would send them twice."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pipes' EOF ends the worker instead
        pass


async def _work(lines: Connection, results: Connection, config: dict[str, Any],
                max_event_bytes: int) -> None:
    import asyncio

    from ._config import ExporterConfig
    from ._errors import BufferFullError
    from ._exporter import Exporter

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def reader() -> None:  # a thread: the loop never blocks on the pipe
        while True:
            try:
                msg = lines.recv()
            except EOFError:
                msg = ("end",)
            loop.call_soon_threadsafe(queue.put_nowait, msg)
            if msg[0] == "end":
                return

    threading.Thread(target=reader, daemon=True).start()
    seq_of: dict[int, int] = {}
    settled: list[int] = []
    cut: list[int] = []

    def on_settled(events: list[bytes], reason: Any) -> None:
        out = cut if reason in CUT_REASONS else settled
        for data in events:
            seq = seq_of.pop(id(data), None)
            if seq is not None:
                out.append(seq)

    refused = [False, False]  # seen, reported

    def on_drop(notice: Any) -> None:
        if notice.reason == "unauthorized":
            refused[0] = True

    def report() -> None:
        nonlocal settled, cut
        if refused[0] and not refused[1]:
            refused[1] = True
            results.send(("refused",))
        if settled:
            results.send(("settled", settled))
            settled = []
        if cut:
            results.send(("cut", cut))
            cut = []

    cfg = ExporterConfig(**config)
    project, v1 = cfg.project, cfg.api == "v1"
    exporter = Exporter(config=cfg, on_settled=on_settled, on_drop=on_drop)
    counts = {"sent": 0, "rejected": 0, "sessions": 0}
    started: OrderedDict[str, None] = OrderedDict()
    stopping = False
    async with exporter:
        while True:
            msg = await queue.get()
            if msg[0] == "end":
                stopping = msg[1] if len(msg) > 1 else False
                break
            for seq, kind, where, n, line in msg[1]:
                if kind == 1:
                    _start_spooled_session(line, exporter, project, v1)
                    settled.append(seq)
                    continue
                try:
                    data, generic, sid, start = _prepare(line, project, max_event_bytes, v1)
                except (msgspec.DecodeError, ValueError, TypeError) as exc:
                    counts["rejected"] += 1
                    results.send(("reject", seq, where, n, _reason(exc),
                                  line.decode("utf-8", "replace")))
                    continue
                if start is not None and sid is not None and first_start(started, sid):
                    counts["sessions"] += 1
                    exporter.start_session_encoded(sid, start)
                seq_of[id(data)] = seq
                while not exporter.offer_encoded(data, generic, sid):
                    try:
                        await exporter.send_encoded(data, generic=generic, session_id=sid,
                                                    timeout=0.5)
                        break
                    except BufferFullError:
                        report()
                counts["sent"] += 1
            report()
        if stopping:  # Ctrl-C: the parent's deadline applies to what is left
            await exporter.flush(config.get("close_timeout", 30.0))
    report()
    stats = exporter.stats()
    results.send(("done", counts, {f.name: (dict(v) if f.name == "dropped" else v)
                                   for f in dataclasses.fields(stats)
                                   for v in (getattr(stats, f.name),)}))
    results.close()


# -- the parent -------------------------------------------------------------------------------

def merge_stats(parts: list[dict[str, Any]]) -> ExporterStats:
    """The workers' exporter stats as one: counts added, the worst breaker, a last error."""
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(ExporterStats):
        values = [p[f.name] for p in parts]
        if f.name == "dropped":
            total: dict[str, int] = {}
            for d in values:
                for k, v in d.items():
                    total[k] = total.get(k, 0) + v
            merged[f.name] = total
        elif f.name == "breaker":
            order = ("closed", "half_open", "open")
            merged[f.name] = max(values, key=order.index) if values else "closed"
        elif f.name == "last_error":
            merged[f.name] = next((v for v in values if v), None)
        else:
            merged[f.name] = sum(values)
    from types import MappingProxyType

    merged["dropped"] = MappingProxyType(merged["dropped"])
    return ExporterStats(**merged)


class _Pool:
    """The workers, their pipes, and what each holds unsettled."""

    def __init__(self, n: int, config: dict[str, Any], max_event_bytes: int) -> None:
        ctx = mp.get_context("spawn")  # never fork an interpreter with threads and a loop
        self.procs = []
        self.lines: list[Connection] = []
        self.results: list[Connection] = []
        for _ in range(n):
            lines_r, lines_w = ctx.Pipe(duplex=False)
            res_r, res_w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(lines_r, res_w, config, max_event_bytes),
                            daemon=True, name="hh-ingest-worker")
            p.start()
            lines_r.close()
            res_w.close()
            self.procs.append(p)
            self.lines.append(lines_w)
            self.results.append(res_r)
        self.outstanding = [0] * n
        self.pending: list[list[Any]] = [[] for _ in range(n)]
        self.done: list[tuple[dict[str, int], dict[str, Any]] | None] = [None] * n

    def push(self, w: int, item: tuple[Any, ...]) -> None:
        batch = self.pending[w]
        batch.append(item)
        self.outstanding[w] += 1
        if len(batch) >= _CHUNK:
            self.flush(w)

    def flush(self, w: int) -> None:
        if self.pending[w]:
            self.lines[w].send(("lines", self.pending[w]))
            self.pending[w] = []


def run_parallel_ingest(
    files: list[str], workers: int, config: dict[str, Any], *, rejects: IO[str],
    max_event_bytes: int, progress: bool = True, stop: threading.Event | None = None,
    tracker: Tracker | None = None, save_every: float = 0.05,
) -> IngestResult:
    """Send every valid line of ``files`` with ``workers`` processes; see the module's docs.

    ``config`` is the exporters' :class:`ExporterConfig` as keyword arguments. ``stop``
    (Ctrl-C) ends the reading; the workers then flush within ``close_timeout``.
    """
    track = tracker or Tracker(None)
    res = IngestResult()
    t0 = time.perf_counter()
    # Read ahead of each worker by what its exporter can hold, and a half more to keep its
    # pipe full: a stop or a refused key then leaves little read and unsent.
    window = int(1.5 * (config["max_buffer_events"]
                        + config["max_in_flight"] * config["max_batch_events"])) + _CHUNK
    known = _known_rejects(rejects)
    pool = _Pool(workers, config, max_event_bytes)
    lines_of: dict[int, bytes] = {}   # seq -> the line object the tracker knows it by
    owner: dict[int, int] = {}        # seq -> worker
    trackers: dict[int, Tracker] = {}  # seq -> its tracker (stdin's tracks nothing)
    written: list[tuple[str, int, str]] = []  # this run's rejects: (file, line, record)
    rejects_start = rejects.tell()
    rr = 0
    seq = 0

    def settle(w: int, msg: Any) -> None:
        kind = msg[0]
        if kind == "settled":
            for s in msg[1]:
                owner.pop(s, None)
                pool.outstanding[w] -= 1
                obj = lines_of.pop(s, None)
                t = trackers.pop(s, track)
                if obj is not None:
                    t.on_settled([obj], None)
        elif kind == "cut":  # never answered: the checkpoint stays before them
            for s in msg[1]:
                owner.pop(s, None)
                pool.outstanding[w] -= 1
                lines_of.pop(s, None)
                trackers.pop(s, None)
        elif kind == "reject":
            _, s, where, n, reason, text = msg
            res.rejected += 1
            print(f"{where}:{n}: rejected: {reason}", file=sys.stderr)
            if (where, n) not in known:  # an earlier, killed run may have written it
                record = reject_record(where, n, reason, text)
                rejects.write(record)  # at once: a killed run keeps the reasons it reported
                rejects.flush()
                written.append((where, n, record))
            owner.pop(s, None)
            pool.outstanding[w] -= 1
            obj = lines_of.pop(s, None)
            t = trackers.pop(s, track)
            if obj is not None:
                t.on_settled([obj], None)
        elif kind == "refused":  # every further line would be refused too: stop reading
            res.abort_reason = "the API refused the API key"
        elif kind == "done":
            pool.done[w] = (msg[1], msg[2])

    def poll(timeout: float) -> None:
        ready = wait([c for i, c in enumerate(pool.results) if pool.done[i] is None],
                     timeout)
        for conn in ready:
            assert isinstance(conn, Connection)
            w = pool.results.index(conn)
            try:
                while conn.poll():
                    settle(w, conn.recv())
                    if pool.done[w] is not None:
                        break
            except (EOFError, OSError):
                died(w)

    def died(w: int) -> None:
        """A worker is gone (killed, out of memory): stop reading and say so. What it had
        not settled stays before the checkpoint, so a resumed run sends it again."""
        if pool.done[w] is None:
            pool.done[w] = ({"sent": 0, "rejected": 0, "sessions": 0}, {})
            pool.procs[w].join(1)
            res.abort_reason = (f"an ingest worker died (exit code {pool.procs[w].exitcode});"
                                f" run the same command again to resume")

    last_save = time.monotonic()

    def maybe_save() -> None:
        nonlocal last_save
        now = time.monotonic()
        if track.checkpoint is not None and now - last_save >= save_every:
            last_save = now
            track.checkpoint.write(*track.checkpoint.snapshot())

    def halted() -> bool:
        return (stop is not None and stop.is_set()) or res.abort_reason is not None

    try:
        with Progress("ingest", None, enabled=progress) as bar:
            for path in files:
                if path == "-":
                    if track.checkpoint is not None:
                        print("<stdin> cannot resume: it is read from the start and not "
                              "checkpointed", file=sys.stderr)
                    offset, first, note, skip = 0, 0, None, False
                else:
                    offset, first, note, skip = track.begin(path)
                if note:
                    print(note, file=sys.stderr)
                # stdin is read from the start every time: it is not checkpointed.
                t = track if path != "-" else Tracker(None)
                key = t.key(path)
                res.skipped += first
                if skip:
                    continue
                where = "<stdin>" if path == "-" else path
                for n, line in iter_lines(path, offset, first + 1):
                    offset += len(line)
                    if not line.strip():
                        t.settled_line(key, offset, n)
                        continue
                    header = is_header(line)
                    sid = _header_session(line) if header else _session_of(line)
                    if sid is None:
                        w, rr = rr, (rr + 1) % workers
                    else:
                        w = hash(sid) % workers
                    while pool.outstanding[w] >= window and pool.done[w] is None:
                        try:  # backpressure
                            pool.flush(w)
                        except OSError:
                            died(w)
                        poll(0.1)
                        maybe_save()
                        if halted():
                            break
                    if halted():
                        res.interrupted = True
                        break
                    seq += 1
                    if not header:
                        res.lines += 1
                    lines_of[seq] = line
                    owner[seq] = w
                    trackers[seq] = t
                    t.sending(key, offset, n, line)
                    try:
                        pool.push(w, (seq, 1 if header else 0, where, n, line))
                    except OSError:  # its pipe is broken: the worker is gone
                        died(w)
                    if seq % 2048 == 0:
                        poll(0)
                        maybe_save()
                        bar.update(res.lines - res.rejected)
                        if halted():
                            res.interrupted = True
                            break
                else:
                    t.end_file(key)
                if res.interrupted:
                    break
            bar.update(res.lines - res.rejected, "flushing")
            for w in range(workers):
                if pool.done[w] is not None:
                    continue
                try:
                    pool.flush(w)
                    pool.lines[w].send(("end", res.interrupted))
                except OSError:
                    died(w)
            while any(d is None for d in pool.done):
                poll(0.2)
                maybe_save()
            if halted():  # a Ctrl-C (or a refused key) while the workers were finishing
                res.interrupted = True
    finally:
        for c in pool.lines:
            with contextlib.suppress(OSError):
                c.close()
        for p in pool.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    if track.checkpoint is not None:
        track.checkpoint.write(*track.checkpoint.snapshot())
    if written:
        # Workers report rejects as they meet them; the file ends in line order, as a
        # single process writes it.
        order = {("<stdin>" if f == "-" else f): i for i, f in enumerate(files)}
        written.sort(key=lambda r: (order.get(r[0], len(order)), r[1]))
        rejects.seek(rejects_start)
        rejects.truncate()
        rejects.writelines(r[2] for r in written)
        rejects.flush()
    counts = [d[0] for d in pool.done if d is not None]
    res.sent = sum(c["sent"] for c in counts)
    res.sessions = sum(c["sessions"] for c in counts)
    res.stats = merge_stats([d[1] for d in pool.done if d is not None and d[1]])
    res.elapsed = time.perf_counter() - t0
    return res
