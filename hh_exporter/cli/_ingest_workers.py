"""``hh-exporter ingest --workers N``: one reader, N sending processes, one of everything else.

The parent reads the files in order, as the single-process run does, and deals each line
to a worker by its session: every line of a session (the one that brings its properties
included) goes to the same worker, in file order, so ordering within a session and
"sessions started first" hold as they do in one process. Lines without a session are
dealt round-robin. (Splitting a large file by byte range instead could put a session's
start in one process and its events in another, with nothing to order them.)

Each worker validates, encodes and sends its lines with its own exporter, and reports back
what settled, which lines it rejected and why, and its final counts. The parent keeps the
one rejects file, the one progress bar, the one summary and the one checkpoint, which
keeps what any worker settled, in any order (a line cut at a deadline stays unsettled, as
in one process). The parent holds at most ``window`` unsettled lines per worker:
backpressure reaches the reader, and memory stays flat. Every stop is the parent's: a
worker late at the deadline is killed, and what it had not reported settled is counted
as cut (``shutdown``), never waited for.
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
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import IO, Any

import msgspec

from .._spool import is_header, parse_header
from .._stats import CUT_REASONS, ExporterStats
from ..wire._start import start_session_id
from ._checkpoint import Tracker
from ._ingest import IngestResult, close_within, file_lines
from ._lines import (
    first_start,
    prepare,
    redact_line,
    reject_reason,
    reject_record,
    start_spooled_session,
)
from ._progress import Progress

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

    # The parent decides when to stop (a Ctrl-C reaches the whole process group), and
    # kills a worker that is late.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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


def _stats_dict(stats: ExporterStats) -> dict[str, Any]:
    return {f.name: (dict(v) if f.name == "dropped" else v)
            for f in dataclasses.fields(stats) for v in (getattr(stats, f.name),)}


async def _work(lines: Connection, results: Connection, config: dict[str, Any],
                max_event_bytes: int) -> None:
    """Messages in: ``("lines", [...])``, ``("end", None)`` (read to the end: deliver
    within ``close_timeout``), ``("stop", deadline)`` (a signal: send nothing more, close
    by ``deadline``, a ``time.monotonic()`` value, shared by the processes of a host).

    Messages out: ``("settled", reason, seqs)`` as soon as lines settle (reason None:
    delivered), ``("reject", ...)``, ``("unsent", seqs)`` for lines never handed to the
    exporter because of a stop, ``("stats", {...})`` now and then (the parent's account of
    a worker it must kill), ``("refused",)``, and ``("done", counts, stats)``.
    """
    import asyncio

    from .._config import ExporterConfig
    from .._errors import BufferFullError
    from .._exporter import Exporter

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = asyncio.Event()
    deadline = [float("inf")]

    def stop_by(at: float) -> None:
        deadline[0] = at
        stop.set()

    def reader() -> None:  # a thread: the loop never blocks on the pipe
        while True:
            try:
                msg = lines.recv()
            except EOFError:
                msg = ("stop", time.monotonic())  # the parent is gone
            if msg[0] == "stop":  # at once, ahead of the lines still queued
                loop.call_soon_threadsafe(stop_by, msg[1])
            loop.call_soon_threadsafe(queue.put_nowait, msg)
            if msg[0] == "stop":
                return

    threading.Thread(target=reader, daemon=True).start()
    seq_of: dict[int, int] = {}
    settled: dict[Any, list[int]] = {}
    scheduled = [False]
    last_stats = [0.0]

    def report() -> None:
        scheduled[0] = False
        if refused[0] and not refused[1]:
            refused[1] = True
            results.send(("refused",))
        for reason, seqs in settled.items():
            if seqs:
                results.send(("settled", reason, seqs))
        settled.clear()
        now = time.monotonic()
        if now - last_stats[0] >= 0.2:
            last_stats[0] = now
            results.send(("stats", _stats_dict(exporter.stats())))

    def on_settled(events: list[bytes], reason: Any) -> None:
        out = settled.setdefault(reason, [])
        for data in events:
            seq = seq_of.pop(id(data), None)
            if seq is not None:
                out.append(seq)
        if not scheduled[0]:  # at once (a killed run re-sends what it had not told)
            scheduled[0] = True
            loop.call_soon(report)

    refused = [False, False]  # seen, reported

    def on_drop(notice: Any) -> None:
        if notice.reason == "unauthorized":
            refused[0] = True

    # Not an exporter setting: ingest's own (the built-in rules on each line).
    redact = bool(config.pop("redact", False))
    cfg = ExporterConfig(**config)
    project, v1 = cfg.project, cfg.api == "v1"
    exporter = Exporter(config=cfg, on_settled=on_settled, on_drop=on_drop)
    counts = {"sent": 0, "rejected": 0, "sessions": 0}
    started: OrderedDict[str, None] = OrderedDict()
    await exporter.start()
    while not stop.is_set():
        msg = await queue.get()
        if msg[0] != "lines":
            break
        chunk = msg[1]
        for i, (seq, kind, where, n, line) in enumerate(chunk):
            if stop.is_set():
                results.send(("unsent", [c[0] for c in chunk[i:]]))
                break
            if kind == 1:
                start_spooled_session(line, exporter, project, v1)
                settled.setdefault(None, []).append(seq)
                continue
            try:
                data, generic, sid, start = prepare(line, project, max_event_bytes, v1,
                                                     redact)
            except (msgspec.DecodeError, ValueError, TypeError) as exc:
                counts["rejected"] += 1
                kept = redact_line(line) if redact else line  # the rejects file too
                results.send(("reject", seq, where, n, reject_reason(exc),
                              kept.decode("utf-8", "replace")))
                continue
            if start is not None and sid is not None and first_start(started, sid):
                counts["sessions"] += 1
                exporter.start_session_encoded(sid, start)
            seq_of[id(data)] = seq
            handed = exporter.offer_encoded(data, generic, sid)
            while not handed and not stop.is_set():
                try:
                    await exporter.send_encoded(data, generic=generic, session_id=sid,
                                                timeout=0.5)
                    handed = True
                except BufferFullError:
                    report()
            if not handed:  # stopped while waiting for room
                del seq_of[id(data)]
                results.send(("unsent", [c[0] for c in chunk[i:]]))
                break
            counts["sent"] += 1
        report()
    if stop.is_set():  # lines still queued were never handed over
        while not queue.empty():
            msg = queue.get_nowait()
            if msg[0] == "lines":
                results.send(("unsent", [c[0] for c in msg[1]]))
    now = asyncio.Event()  # the parent kills a worker that is late: no "now" message
    await close_within(exporter, cfg.close_timeout, stop, now,
                       lambda _t: max(0.0, deadline[0] - time.monotonic()))
    report()
    results.send(("done", counts, _stats_dict(exporter.stats())))
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
    """The workers, their pipes, what each holds unsettled, and what each reported."""

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
        # What each worker told, for the account of one that must be killed.
        self.given = [0] * n       # event lines handed to it (spool headers aside)
        self.rejected = [0] * n
        self.unsent = [0] * n
        self.delivered = [0] * n
        self.dropped: list[dict[str, int]] = [{} for _ in range(n)]
        self.snapshot: list[dict[str, Any] | None] = [None] * n

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

    def account(self, w: int) -> tuple[dict[str, int], dict[str, Any]]:
        """The counts of worker ``w`` that did not report its own (killed at a deadline,
        or died): what it reported settled, and the rest of what it was given counted as
        cut (``shutdown``), so that the summary adds up; its other figures (requests,
        sessions) from its last stats."""
        accepted = self.given[w] - self.rejected[w] - self.unsent[w]
        dropped = dict(self.dropped[w])
        cut = accepted - self.delivered[w] - sum(dropped.values())
        dropped["shutdown"] = dropped.get("shutdown", 0) + max(0, cut)
        base = dict(self.snapshot[w] or {})
        zero = {f.name: 0 for f in dataclasses.fields(ExporterStats)}
        stats = {**zero, "breaker": "closed", "last_error": None, **base,
                 "accepted": accepted, "delivered": self.delivered[w], "dropped": dropped,
                 "pending": 0, "pending_bytes": 0, "buffered": 0, "in_flight_events": 0,
                 "in_flight_requests": 0, "sessions_pending": 0}
        stats["unconfirmed"] = min(stats["unconfirmed"], self.delivered[w])
        counts = {"sent": accepted, "rejected": self.rejected[w],
                  "sessions": int(base.get("sessions_started", 0))
                  + int(base.get("sessions_failed", 0)) + int(base.get("sessions_pending", 0))}
        return counts, stats


def run_parallel_ingest(
    files: list[str], workers: int, config: dict[str, Any], *, rejects: IO[str],
    max_event_bytes: int, progress: bool = True, stop: threading.Event | None = None,
    stop_now: threading.Event | None = None, tracker: Tracker | None = None,
    save_every: float = 0.02, deadline: Callable[[float], float] | None = None,
) -> IngestResult:
    """Send every valid line of ``files`` with ``workers`` processes; see the module's docs.

    ``config`` is the exporters' :class:`ExporterConfig` as keyword arguments. ``stop``
    (the first Ctrl-C or SIGTERM) ends the reading; the workers then deliver what they can
    by ``deadline(close_timeout)`` seconds from now (default: ``close_timeout``) and are
    killed if they have not reported by then. ``stop_now`` (a second Ctrl-C) kills them at
    once. Either way, what they did not report settled is counted as ``shutdown``.
    """
    track = tracker or Tracker(None)
    close_timeout = float(config.get("close_timeout", 30.0))
    left = deadline or (lambda t: t)
    res = IngestResult()
    t0 = time.perf_counter()
    # Read ahead of each worker by what its exporter can hold, and a half more to keep its
    # pipe full: a stop or a refused key then leaves little read and unsent.
    window = int(1.5 * (config["max_buffer_events"]
                        + config["max_in_flight"] * config["max_batch_events"])) + _CHUNK
    known = _known_rejects(rejects)
    pool = _Pool(workers, config, max_event_bytes)
    lines_of: dict[int, bytes] = {}   # seq -> the line object the tracker knows it by
    headers: set[int] = set()         # seqs of spool headers (not events)
    written: list[tuple[str, int, str]] = []  # this run's rejects: (file, line, record)
    rejects_start = rejects.tell()
    rr = 0
    seq = 0
    killed_at: float | None = None    # time.monotonic() by which late workers are killed

    def forget(w: int, s: int) -> bytes | None:
        pool.outstanding[w] -= 1
        headers.discard(s)
        return lines_of.pop(s, None)

    def settle(w: int, msg: Any) -> None:
        kind = msg[0]
        if kind == "settled":
            _, reason, seqs = msg
            cut = reason in CUT_REASONS
            n_events = 0
            for s in seqs:
                is_header = s in headers
                obj = forget(w, s)
                n_events += not is_header
                if obj is not None and not cut:  # cut: never answered, stays unsettled
                    track.on_settled([obj], None)
            if reason is None:
                pool.delivered[w] += n_events
            else:
                d = pool.dropped[w]
                d[reason] = d.get(reason, 0) + n_events
        elif kind == "unsent":  # never handed over (a stop): counted as never read
            for s in msg[1]:
                if s not in headers:
                    res.lines -= 1
                    pool.unsent[w] += 1
                forget(w, s)
        elif kind == "reject":
            _, s, where, n, reason, text = msg
            res.rejected += 1
            pool.rejected[w] += 1
            print(f"{where}:{n}: rejected: {reason}", file=sys.stderr)
            if (where, n) not in known:  # an earlier, killed run may have written it
                record = reject_record(where, n, reason, text)
                rejects.write(record)  # at once: a killed run keeps the reasons it reported
                rejects.flush()
                written.append((where, n, record))
            obj = forget(w, s)
            if obj is not None:
                track.on_settled([obj], None)
        elif kind == "stats":
            pool.snapshot[w] = msg[1]
        elif kind == "refused":  # every further line would be refused too: stop reading
            res.abort_reason = "the API refused the API key"
        elif kind == "done":
            pool.done[w] = (msg[1], msg[2])

    def poll(timeout: float) -> None:
        conns = [c for i, c in enumerate(pool.results) if pool.done[i] is None]
        if not conns:
            return
        for conn in wait(conns, timeout):
            assert isinstance(conn, Connection)
            w = pool.results.index(conn)
            try:
                while conn.poll():
                    settle(w, conn.recv())
                    if pool.done[w] is not None:
                        break
            except (EOFError, OSError):
                died(w)

    def kill(w: int) -> None:
        """End worker ``w`` now (late at its deadline, or a second Ctrl-C): what it had not
        reported settled is counted as cut, and stays unsettled in the checkpoint."""
        if pool.done[w] is None:
            pool.procs[w].kill()
            pool.procs[w].join(1)
            pool.done[w] = pool.account(w)

    def died(w: int) -> None:
        """A worker is gone (killed, out of memory): stop reading and say so. What it had
        not settled stays unsettled, so a resumed run sends it again."""
        if pool.done[w] is None:
            pool.procs[w].join(1)
            pool.done[w] = pool.account(w)
            if not halted():
                res.abort_reason = (f"an ingest worker died (exit code "
                                    f"{pool.procs[w].exitcode}); run the same command "
                                    f"again to resume")

    last_save = time.monotonic()

    def maybe_save() -> None:
        nonlocal last_save
        now = time.monotonic()
        if track.checkpoint is not None and now - last_save >= save_every:
            last_save = now
            track.save_now()

    def halted() -> bool:
        return (stop is not None and stop.is_set()) or res.abort_reason is not None

    def stop_workers() -> None:
        """Tell every worker to stop by the deadline of the stop (once)."""
        nonlocal killed_at
        if killed_at is not None:
            return
        now = time.monotonic()
        budget = left(close_timeout)
        # Workers close a little early, and are killed a little late, so that the whole
        # run still ends within the deadline and a second.
        killed_at = now + budget + 0.3
        for w in range(workers):
            if pool.done[w] is not None:
                continue
            unsent = pool.pending[w]  # read, not yet handed to the worker
            pool.pending[w] = []
            if unsent:
                settle(w, ("unsent", [item[0] for item in unsent]))
            try:
                pool.lines[w].send(("stop", now + max(0.0, budget - 0.2)))
            except OSError:
                died(w)

    try:
        with Progress("ingest", None, enabled=progress) as bar:
            for path in files:
                where = "<stdin>" if path == "-" else path
                for ft, start, offset, n, line in file_lines(track, path, res):
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
                    if halted() or pool.done[w] is not None:
                        res.interrupted = True
                        break
                    seq += 1
                    if header:
                        headers.add(seq)
                    else:
                        res.lines += 1
                        pool.given[w] += 1
                    lines_of[seq] = line
                    track.sending(ft, start, offset, n, line)
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
                if res.interrupted:
                    break
            bar.update(res.lines - res.rejected, "flushing")
            if halted():
                stop_workers()
            else:
                for w in range(workers):
                    if pool.done[w] is not None:
                        continue
                    try:
                        pool.flush(w)
                        pool.lines[w].send(("end", None))
                    except OSError:
                        died(w)
                # Read to the end: the workers deliver within close_timeout each.
                killed_at = time.monotonic() + close_timeout + 1.0
            while any(d is None for d in pool.done):
                if stop_now is not None and stop_now.is_set():
                    break
                if stop is not None and stop.is_set():
                    stop_workers()  # a Ctrl-C while the workers were finishing
                kill_at = killed_at if killed_at is not None else time.monotonic()
                if time.monotonic() >= kill_at:
                    break
                poll(min(0.05, max(0.0, kill_at - time.monotonic())))
                maybe_save()
            for w in range(workers):
                kill(w)  # late at the deadline, or a second Ctrl-C: never waited for
            if halted():
                res.interrupted = True
    finally:
        for c in pool.lines:
            with contextlib.suppress(OSError):
                c.close()
        for p in pool.procs:
            if p.is_alive():
                p.kill()
            p.join(timeout=1)
    track.save_now()
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
