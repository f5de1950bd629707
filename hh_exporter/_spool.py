"""The durable spool: what cannot be delivered now goes to bounded segment files on disk, and
an exporter started on the same directory later replays it.

A segment is ``seg-<time ns>-<pid>-<n>.tmp`` while it is written (its writer holds an
``flock`` on it), renamed to ``.jsonl`` when complete. Its first line is a header,
``{"hh_spool": 1, "route": ..., "session": ...}`` (``session``: the start body of a session
that was never started, so a replay starts it first), then one encoded event per line, as
sent on the wire: ``hh-exporter ingest`` can replay a segment too. A torn last line (the
writer was killed) is skipped and counted, never fatal.

All disk I/O runs in threads, never on the event loop: writes in one writer thread fed by a
bounded queue, reads and deletions through ``asyncio.to_thread``. Two processes sharing a
directory never replay the same segment: a replayer takes a segment only with an exclusive,
non-blocking ``flock``, and keeps it until every event cut from it was settled.

Fsync policy: a segment is fsynced when it is closed (full, or at close of the exporter), and
the directory after its rename; ``fsync="always"`` also fsyncs after every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["Segment", "SpoolWriter", "claim_segments", "fsync_dir", "is_header"]

log = logging.getLogger("hh_exporter")

SEGMENT_BYTES = 8 * 1024 * 1024
_HEADER_PREFIX = b'{"hh_spool":'
_counter = itertools.count()


class Header(msgspec.Struct):
    """A segment's first line. ``session`` is raw JSON: a start body, or ``null``."""

    hh_spool: int
    route: str
    session: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))

    @property
    def start_body(self) -> bytes | None:
        """The never-started session's start body, or None."""
        body = bytes(self.session)
        return None if body == b"null" else body


_decode_header = msgspec.json.Decoder(Header).decode


def is_header(line: bytes) -> bool:
    """Whether ``line`` is a segment's header (``ingest`` skips it, or starts its session)."""
    return line.startswith(_HEADER_PREFIX)


def parse_header(line: bytes) -> Header:
    """Decode a header line; ``msgspec.DecodeError`` if it is not one."""
    return _decode_header(line)


def _dir_bytes(directory: str) -> int:
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("seg-"):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
    return total


def fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


FailFn = Callable[[int, str], None]


class SpoolWriter:
    """Appends events to segments from one writer thread. Strictly private.

    ``put`` is called on the event loop and never blocks: it queues the events (bounded by
    ``queue_bytes``) or refuses them. A write that fails later (a full disk, the directory at
    ``max_bytes``) is reported through ``on_fail(count, why)``, run on the loop.
    """

    def __init__(self, directory: str, *, max_bytes: int, fsync_always: bool = False,
                 queue_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync_always = fsync_always
        self.queue_bytes = queue_bytes
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._queued = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._used = -1  # bytes in the directory, known once the thread has looked
        self._file: Any = None
        self._key: tuple[str, bytes | None] | None = None
        self._path = ""
        self._size = 0

    @property
    def used_bytes(self) -> int:
        """Bytes in the spool directory, as the writer thread last knew (0 before it looked)."""
        return max(self._used, 0)

    def put(self, route: str, session: bytes | None, events: list[bytes],
            loop: asyncio.AbstractEventLoop, on_fail: FailFn) -> bool:
        """Queue ``events`` for ``route`` (and the never-started session's start body);
        False if the queue is at its bound (the caller counts them dropped)."""
        size = sum(map(len, events))
        with self._lock:
            if self._queued + size > self.queue_bytes:
                return False
            self._queued += size
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hh_exporter-spool",
                                                daemon=True)
                self._thread.start()
        self._queue.put((route, session, events, size, loop, on_fail))
        return True

    def close(self) -> None:
        """Write what is queued, close the segment, stop the thread. Blocking: run it in a
        thread (``asyncio.to_thread``)."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join()

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
            self._used = _dir_bytes(self.directory)
        except OSError as exc:
            log.error("hh_exporter: the spool directory %s cannot be used: %s",
                      self.directory, exc)
            self._used = self.max_bytes  # every write fails, and is counted
        while True:
            items = [self._queue.get()]
            while True:  # take everything queued: one write per run of the same segment
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in items
            run: list[tuple[Any, ...]] = []
            for item in items:
                if item is None:
                    continue
                if run and (run[0][0], run[0][1]) != (item[0], item[1]):
                    self._write_run(run)
                    run = []
                run.append(item)
            if run:
                self._write_run(run)
            if stop:
                self._close_segment()
                return

    def _write_run(self, run: list[tuple[Any, ...]]) -> None:
        route, session = run[0][0], run[0][1]
        events = [e for item in run for e in item[2]]
        size = sum(item[3] for item in run)
        with self._lock:
            self._queued -= size
        why = self._write(route, session, events, size)
        if why is not None:
            for _, _, evs, _, loop, on_fail in run:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
                    loop.call_soon_threadsafe(on_fail, len(evs), why)

    def _write(self, route: str, session: bytes | None, events: list[bytes],
               size: int) -> str | None:
        """Append ``events``; None on success, else why they could not be written."""
        needed = size + len(events)
        if self._used + needed > self.max_bytes:
            return f"the spool is at its bound of {self.max_bytes:,} bytes"
        try:
            if self._key != (route, session) or self._size >= SEGMENT_BYTES:
                self._close_segment()
                self._open_segment(route, session)
            # Joined in pieces of about 1 MiB: one join of the whole queue would hold the
            # GIL for the length of a 64 MiB copy, and stall the event loop with it.
            written = 0
            piece: list[bytes] = []
            piece_bytes = 0
            for e in events:
                piece.append(e)
                piece_bytes += len(e) + 1
                if piece_bytes >= 1 << 20:
                    written += self._file.write(b"\n".join(piece) + b"\n")
                    piece, piece_bytes = [], 0
            if piece:
                written += self._file.write(b"\n".join(piece) + b"\n")
            self._file.flush()
            if self.fsync_always:
                os.fsync(self._file.fileno())
        except OSError as exc:
            self._close_segment()
            return f"cannot write the spool: {exc}"
        self._size += written
        self._used += written
        return None

    def _open_segment(self, route: str, session: bytes | None) -> None:
        name = f"seg-{time.time_ns():020d}-{os.getpid()}-{next(_counter)}.tmp"
        self._path = os.path.join(self.directory, name)
        f = open(self._path, "xb")  # noqa: SIM115 - closed by _close_segment
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # ours until renamed: no replayer takes it
        header = msgspec.json.encode({"hh_spool": 1, "route": route,
                                      "session": msgspec.Raw(session) if session else None})
        f.write(header + b"\n")
        self._file = f
        self._key = (route, session)
        self._size = len(header) + 1
        self._used += self._size

    def _close_segment(self) -> None:
        f, self._file = self._file, None
        self._key = None
        if f is None:
            return
        try:
            f.flush()
            os.fsync(f.fileno())
            os.replace(self._path, self._path[:-4] + ".jsonl")
            fsync_dir(self.directory)
        except OSError as exc:
            log.error("hh_exporter: cannot close the spool segment %s: %s", self._path, exc)
        finally:
            f.close()


class Segment:
    """A segment claimed for replay: its lock is held until :meth:`release`."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self.header: Header | None = None
        self.events: list[bytes] = []
        self.torn = 0
        #: Events handed to the exporter and not settled yet.
        self.outstanding = 0
        #: Whether every event was handed over (or sent back to the spool).
        self.fed = False
        #: How many events were handed over so far.
        self.next = 0

    def read(self) -> None:
        """Read the header and the events (blocking: run in a thread). A line that is not a
        JSON object (a torn last line) is skipped and counted in ``torn``."""
        with open(self._fd, "rb", closefd=False) as f:
            f.seek(0)
            lines = f.read().split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        if not lines:
            return
        try:
            self.header = parse_header(lines[0])
        except msgspec.DecodeError:
            self.torn += len(lines)
            return
        for line in lines[1:]:
            if line.startswith(b"{") and line.endswith(b"}") and _is_object(line):
                self.events.append(line)
            else:
                self.torn += 1

    def delete(self) -> None:
        """Remove the segment and let go of its lock (blocking: run in a thread)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.release()

    def release(self) -> None:
        """Let go of the lock (the file stays for a later replay)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _is_object(line: bytes) -> bool:
    try:
        msgspec.json.decode(line, type=dict)
    except msgspec.DecodeError:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_segments(directory: str) -> list[Segment]:
    """Take every segment no one else holds, oldest first (blocking: run in a thread).

    Complete segments (``.jsonl``) and those a dead writer left (``.tmp`` whose pid is gone)
    are taken with a non-blocking exclusive ``flock``: another process replaying or writing
    one keeps it.
    """
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith("seg-"))
    except OSError:
        return []
    out: list[Segment] = []
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(".tmp"):
            try:
                pid = int(name.split("-")[2])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid() or _pid_alive(pid):
                continue
        elif not name.endswith(".jsonl"):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # replayed and deleted by another process meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not os.path.exists(path):  # deleted between our open and our lock
            os.close(fd)
            continue
        out.append(Segment(path, fd))
    return out
