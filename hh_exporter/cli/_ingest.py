"""``hh-exporter ingest``: JSONL files to the API through the exporter's backpressure path.

Each line is a model event in the API's own shape, or a generic event when it has
``event_type``. A line may carry ``session_id`` and ``session_properties`` (or ``session``).
Valid lines are sent as the bytes they are, with ``event_id`` (and ``project``, when one is
configured and the line has none) spliced in when missing, so nothing is encoded twice. The
first line that brings a session's properties starts the session with
``POST /session/start``; the session's events wait for it. A bad line is reported with its
file and line number, written to the rejects file with a reason, and skipped.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from .._errors import BufferFullError
from .._exporter import Exporter
from .._spool import is_header
from ._checkpoint import FileTrack, Tracker
from ._lines import (
    first_start,
    iter_lines,
    prepare,
    redact_line,
    reject_reason,
    reject_record,
    start_spooled_session,
)
from ._progress import Progress

__all__ = ["IngestResult", "close_within", "run_ingest"]


@dataclass
class IngestResult:
    """Counts of an ingest run. ``lines == sent + rejected`` unless interrupted."""

    lines: int = 0
    sent: int = 0
    rejected: int = 0
    #: Lines not read because an earlier run settled them (a checkpoint).
    skipped: int = 0
    sessions: int = 0
    interrupted: bool = False
    abort_reason: str | None = None
    elapsed: float = 0.0
    stats: Any = None


def file_lines(track: Tracker, path: str, res: IngestResult
               ) -> Iterator[tuple[FileTrack, int, int, int, bytes]]:
    """``(ft, start, end, n, line)`` of each line of ``path`` still to send, for one and for
    many workers alike. Lines an earlier run settled beyond its prefix (counted in
    ``res.skipped``) and blank lines are settled and skipped; the file is marked read only
    once every line was taken, so a caller that stops early leaves it unfinished."""
    if path == "-" and track.checkpoint is not None:
        # stdin is read from the start every time: it is not checkpointed.
        print("<stdin> cannot resume: it is read from the start and not "
              "checkpointed", file=sys.stderr)
    ft, offset, first, note, skip = track.begin(path)
    if note:
        print(note, file=sys.stderr)
    res.skipped += first
    if skip:
        return
    settled_before = ft.settled_before if ft.ahead else None
    for n, line in iter_lines(path, offset, first + 1):
        start, offset = offset, offset + len(line)
        if settled_before is not None and settled_before(n):
            res.skipped += 1  # settled by an earlier run beyond its prefix: not sent again
            ft.settled_line(offset, n)
            continue
        if line.isspace():  # a blank line (a file's lines are never empty)
            ft.settled_line(offset, n)
            continue
        yield ft, start, offset, n, line
    track.end_file(ft)


async def close_within(exporter: Exporter, timeout: float, stop: asyncio.Event,
                       now: asyncio.Event, left: Callable[[float], float]) -> None:
    """Flush and close ``exporter`` within ``timeout``, or by ``left(timeout)`` seconds
    once ``stop`` is set (a signal: its deadline counts from the signal, not from here);
    ``now`` closes at once. What is cut is counted by the exporter (``shutdown``)."""
    if not stop.is_set():
        flush = asyncio.ensure_future(exporter.flush(timeout))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((flush, stopped), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not flush.done():  # a stop during the final flush: its deadline applies
            flush.cancel()
            await asyncio.gather(flush, return_exceptions=True)
    close = asyncio.ensure_future(exporter.aclose(left(timeout) if stop.is_set() else 0.0))
    at_once = asyncio.ensure_future(now.wait())
    await asyncio.wait((close, at_once), return_when=asyncio.FIRST_COMPLETED)
    at_once.cancel()
    if not close.done():
        close.cancel()  # its cleanup counts what is left as shutdown, without waiting
        await asyncio.gather(close, return_exceptions=True)


async def run_ingest(
    files: list[str], exporter: Exporter | None, *, project: str | None, rejects: IO[str],
    dry_run: bool = False, progress: bool = True, max_event_bytes: int = 1024 * 1024,
    stop: asyncio.Event | None = None, refused: asyncio.Event | None = None,
    v1: bool = False, tracker: Tracker | None = None, redact: bool = False,
) -> IngestResult:
    """Send every valid line of ``files``; ``exporter`` may be None with ``dry_run``.

    ``project`` is spliced into lines that carry none (each line's own wins; None: none).
    The first line that brings a session's properties starts the session
    (``POST /session/start``) before any of its events leave. ``stop`` (Ctrl-C) and
    ``refused`` (the API refused the key) end the run early; the line being sent then is
    counted as not read. With a ``tracker`` (whose ``on_settled`` the exporter calls), each
    file resumes where an earlier run left it, and the checkpoint follows this run.
    """
    track = tracker or Tracker(None)
    res = IngestResult()
    # Sessions started by this run, bounded: a file of millions of sessions must not hold
    # them all. A session evicted here and brought again by a later line is started again;
    # the API merges a second start into the same session.
    started: OrderedDict[str, None] = OrderedDict()
    t0 = time.perf_counter()
    send = exporter.send_encoded if exporter is not None and not dry_run else None
    offer = exporter.offer_encoded if send is not None and exporter is not None else None

    def halted() -> bool:
        if stop is not None and stop.is_set():
            res.interrupted = True
            return True
        if refused is not None and refused.is_set():
            # Every further line would be refused too: stop reading, say why.
            res.interrupted = True
            res.abort_reason = "the API refused the API key"
            return True
        return False

    async def put(data: bytes, generic: bool, sid: str | None) -> bool:
        """Queue one event, waiting for space; False once told to stop.

        The timeout only applies while the buffer is full, so a stop request is seen within
        half a second even when nothing drains; the common case is one await.
        """
        assert send is not None
        while not halted():
            try:
                await send(data, generic=generic, session_id=sid, timeout=0.5)
                return True
            except BufferFullError:
                continue
        return False

    with Progress("ingest", None, enabled=progress) as bar:
        for path in files:
            for ft, start, offset, n, line in file_lines(track, path, res):
                if is_header(line):  # a spool segment's header: start its session, if any
                    start_spooled_session(line, exporter if send is not None else None,
                                           project, v1)
                    ft.settled_line(offset, n)
                    continue
                res.lines += 1
                try:
                    data, generic, sid, start_body = prepare(line, project, max_event_bytes,
                                                              v1, redact)
                except (msgspec.DecodeError, ValueError, TypeError) as exc:
                    reason = reject_reason(exc)
                    res.rejected += 1
                    where = "<stdin>" if path == "-" else path
                    print(f"{where}:{n}: rejected: {reason}", file=sys.stderr)
                    rejects.write(reject_record(where, n, reason,
                                                redact_line(line) if redact else line))
                    rejects.flush()  # a killed run must not lose the reasons it reported
                    ft.settled_line(offset, n)
                    continue
                if start_body is not None and sid is not None and first_start(started, sid):
                    res.sessions += 1
                    if exporter is not None and not dry_run:
                        exporter.start_session_encoded(sid, start_body)
                if offer is not None:
                    track.sending(ft, start, offset, n, data)
                    # The common case, when the buffer has room, makes no coroutine at all.
                    if not offer(data, generic, sid) and not await put(data, generic, sid):
                        track.not_sent(data)
                        res.lines -= 1  # not sent: counted as never read
                        break
                res.sent += 1
                # Every line: a send that waited for room (the common case against a slow
                # API) would otherwise hide a Ctrl-C for thousands of lines.
                if halted():
                    break
                if res.lines % 2000 == 0:
                    bar.update(res.sent)
                    await asyncio.sleep(0)
            if res.interrupted:
                break
        bar.update(res.sent, "flushing")
    res.elapsed = time.perf_counter() - t0
    return res
