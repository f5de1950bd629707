"""Resumable ``ingest``: how far each input file is settled, kept in a checkpoint file.

Like Logstash's *sincedb*, for each file and destination: the file's identity (size and a
hash of its first block, so a rotated or edited file is not taken for the old one), the
byte offset below which every line is settled (delivered, dropped with a reason, or
rejected as invalid), and, because lines of interleaved sessions settle far out of file
order, what is settled beyond that prefix: the last line whose fate is known (``ahead``)
and the ranges of lines up to it that are not settled (``unsettled``). A resumed run reads
from the prefix, sends again only the unsettled lines up to ``ahead``, and everything after
it. So a crash re-sends what was in flight (and what was still buffered, which the API
never saw), not what settled ahead of a slow line.

The unsettled lines are the exporter's pending ones, so their ranges are bounded by its
buffer and in-flight limits, whatever the file's size; ``MAX_RANGES`` caps them anyway.
A checkpoint belongs to a destination too (:func:`destination_id`): the same file sent to
another API, API generation or key starts from the beginning. The file is written
atomically (write, fsync, rename, fsync of the directory) when it moved, at most every
50 ms: never per line.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading

import msgspec

from .._spool import fsync_dir
from .._stats import CUT_REASONS, DropReason

__all__ = ["Checkpoint", "FileMark", "FileTrack", "Tracker", "destination_id", "identify"]

log = logging.getLogger("hh_exporter")

#: Bytes hashed to identify a file; a file shorter than this is hashed whole.
HEAD_BYTES = 64 * 1024
#: Ranges of unsettled lines kept per file. Past it, the mark forgets what settled beyond
#: the last range kept (those lines are sent again on resume): the file stays small.
MAX_RANGES = 4096
_FINGERPRINT_SALT = b"hh-exporter checkpoint destination v1"


def destination_id(api_url: str, api: str, api_key: str) -> str:
    """Where a run sends: the API URL, its generation, and a fingerprint of the key.

    The fingerprint is 12 hex digits of a salted PBKDF2-SHA256 of the key: it tells two
    keys apart, and neither reveals the key nor lets it be checked cheaply (48 bits of a
    slow hash; an API key has far more entropy than that, so each fingerprint matches
    countless keys).
    """
    digest = hashlib.pbkdf2_hmac("sha256", api_key.encode(), _FINGERPRINT_SALT, 20_000)
    return f"{api_url.rstrip('/')} ({api}, key {digest.hex()[:12]})"


class FileMark(msgspec.Struct, kw_only=True):
    """How far one file is settled, for one destination."""

    size: int
    head: str
    #: Every line up to ``line`` (ending at byte ``offset``) is settled.
    offset: int = 0
    line: int = 0
    #: Lines after ``line`` up to ``ahead`` are settled too, except the ``unsettled`` ranges
    #: (first and last line numbers, inclusive).
    ahead: int = 0
    unsettled: list[tuple[int, int]] = msgspec.field(default_factory=list)
    done: bool = False


class _State(msgspec.Struct):
    version: int = 2
    files: dict[str, FileMark] = msgspec.field(default_factory=dict)


def identify(path: str) -> tuple[int, str]:
    """A file's identity: its size and the SHA-256 of its first block."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        size = os.fstat(f.fileno()).st_size
    return size, hashlib.sha256(head).hexdigest()


class Checkpoint:
    """The checkpoint file: marks by file and destination, loaded at start, saved
    atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.files: dict[str, FileMark] = {}
        # Writes run in worker threads; a save cancelled mid-write still finishes its
        # thread, so the next one must wait for it.
        self._write_lock = threading.Lock()
        self._snapshots = 0  # a snapshot's number: an older one never overwrites a newer
        self._written = 0
        try:
            with open(path, "rb") as f:
                state = msgspec.json.decode(f.read(), type=_State)
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError) as exc:
            # A torn or foreign file must not stop the run: start over, and say so.
            log.warning("hh_exporter: ignoring the unreadable checkpoint %s: %s", path, exc)
            return
        if state.version >= 2:
            self.files = state.files
        else:  # keyed by the file alone: which destination it was sent to is unknown
            log.warning("hh_exporter: the checkpoint %s does not say where its files were "
                        "sent; every file is read from the start", path)

    def snapshot(self) -> tuple[int, bytes]:
        """The checkpoint as it stands, numbered and encoded (bounded: a mark per file)."""
        self._snapshots += 1
        return self._snapshots, msgspec.json.encode(_State(files=dict(self.files)))

    def write(self, number: int, data: bytes) -> None:
        """Write snapshot ``data`` atomically (a reader sees the old checkpoint or the new,
        whole), unless a newer snapshot was written already."""
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = f"{self.path}.tmp"
        with self._write_lock:
            if number <= self._written:
                return
            self._written = number
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fsync_dir(directory)


class FileTrack:
    """One file's lines of this run, until each is settled (see :class:`Tracker`).

    ``skip`` holds the line numbers an earlier run settled beyond its prefix: the reader
    passes them over (:meth:`settled_before`).
    """

    __slots__ = ("ahead", "done_reading", "end", "key", "last", "mark", "pending", "skip",
                 "tracked")

    def __init__(self, key: str, mark: FileMark | None, tracked: bool) -> None:
        self.key = key
        self.mark = mark
        self.tracked = tracked and mark is not None
        #: Line number -> byte offset where it starts, for lines handed over and not
        #: settled, in file order (a dict keeps insertion order).
        self.pending: dict[int, int] = {}
        self.last = mark.line if mark is not None else 0  # the last line read (or skipped)
        self.end = mark.offset if mark is not None else 0  # the byte after it
        self.ahead = 0
        self.skip: frozenset[int] = frozenset()
        self.done_reading = False

    def settled_before(self, n: int) -> bool:
        """Whether an earlier run settled line ``n`` beyond its prefix (then skip it)."""
        return n <= self.ahead and n not in self.skip

    def settled_line(self, end: int, n: int) -> None:
        """A line that needs no answer (rejected, blank, or settled by an earlier run)."""
        self.last, self.end = n, end

    def _update(self) -> None:
        """Move the mark to what is settled now (at a save: it costs a pass over the
        pending lines, bounded by the exporter's limits)."""
        mark = self.mark
        if mark is None:
            return
        pending = self.pending
        if not pending:
            mark.offset, mark.line, mark.ahead, mark.unsettled = self.end, self.last, 0, []
            mark.done = self.done_reading
            return
        first, start = next(iter(pending.items()))
        keys = list(pending)  # in file order
        ranges: list[tuple[int, int]] = []
        if keys[-1] - first + 1 == len(keys):  # one run: lines settling in order (common)
            ranges.append((first, keys[-1]))
        else:
            lo = hi = first
            for n in keys[1:]:
                if n == hi + 1:
                    hi = n
                    continue
                ranges.append((lo, hi))
                lo = hi = n
            ranges.append((lo, hi))
        ahead = self.last
        if len(ranges) > MAX_RANGES:  # forget what settled beyond the ranges kept
            ahead = ranges[MAX_RANGES][0] - 1
            ranges = ranges[:MAX_RANGES]
        mark.offset, mark.line, mark.done = start, first - 1, False
        mark.ahead, mark.unsettled = ahead, ranges


class Tracker:
    """Follows every line of an ingest run until it is settled, and moves the checkpoint.

    The reader calls :meth:`begin` for each file, then for each line either the file
    track's ``settled_line`` or :meth:`sending`; the exporter's ``on_settled`` marks
    events settled (by object identity). Lines settle in any order: each file's mark keeps
    its settled prefix and what settled beyond it (see the module's docs).
    """

    def __init__(self, checkpoint: Checkpoint | None, *, restart: bool = False,
                 destination: str = "") -> None:
        self.checkpoint = checkpoint
        self.restart = restart
        self.destination = destination
        self._files: list[FileTrack] = []
        self._by_event: dict[int, tuple[FileTrack, int]] = {}
        self._dirty = False
        self._moved = asyncio.Event()

    def key(self, path: str) -> str:
        """The checkpoint's key of ``path`` for this run's destination."""
        where = os.path.abspath(path)
        return f"{where} -> {self.destination}" if self.destination else where

    def begin(self, path: str) -> tuple[FileTrack, int, int, str | None, bool]:
        """Where to start reading ``path``: ``(track, offset, line, message, skip)``."""
        key = self.key(path) if path != "-" else "-"
        if self.checkpoint is None or path == "-":
            return FileTrack(key, None, False), 0, 0, None, False
        size, head = identify(path)
        mark = self.checkpoint.files.get(key)
        note = None
        if mark is not None and not self.restart and (mark.size, mark.head) != (size, head):
            note = f"{path} changed since the checkpoint: reading it from the start"
            mark = None
        if mark is None or self.restart:
            mark = self.checkpoint.files[key] = FileMark(size=size, head=head)
        track = FileTrack(key, mark, True)
        self._files.append(track)
        if mark.done:
            return track, 0, mark.line, f"{path} was done in an earlier run: skipped", True
        if mark.ahead > mark.line:
            track.ahead = mark.ahead
            track.skip = frozenset(n for lo, hi in mark.unsettled for n in range(lo, hi + 1))
        if mark.offset == 0 and not track.ahead:
            return track, 0, 0, note, False
        return (track, mark.offset, mark.line,
                f"resuming {path} at line {mark.line + 1:,}", False)

    def sending(self, track: FileTrack, start: int, end: int, n: int, data: bytes) -> None:
        """Line ``n`` (bytes ``start``..``end``), whose event ``data`` is about to be
        handed to the exporter (call before: the exporter may settle it before the
        hand-off returns)."""
        track.last, track.end = n, end
        if track.tracked:
            track.pending[n] = start
            self._by_event[id(data)] = (track, n)

    def not_sent(self, data: bytes) -> None:
        """The last line's event was not handed over after all (the run stopped): it
        stays unsettled, so a resumed run sends it."""
        self._by_event.pop(id(data), None)

    def end_file(self, track: FileTrack) -> None:
        """Every line of the file was read: once they are settled, the file is done."""
        track.done_reading = True
        self._dirty = True
        self._moved.set()

    def on_settled(self, events: list[bytes], reason: DropReason | None = None) -> None:
        """The exporter's ``on_settled``. Events cut short (a deadline, a close) are not
        done: they stay unsettled, so a resumed run sends them again."""
        if reason in CUT_REASONS or self.checkpoint is None:
            return
        by_event = self._by_event
        for data in events:
            entry = by_event.pop(id(data), None)
            if entry is not None:
                del entry[0].pending[entry[1]]
        self._dirty = True
        self._moved.set()

    def snapshot(self) -> tuple[int, bytes] | None:
        """Move every file's mark and encode the checkpoint (None without one)."""
        if self.checkpoint is None:
            return None
        for track in self._files:
            track._update()
        return self.checkpoint.snapshot()

    def save_now(self) -> None:
        """Write the checkpoint here and now (a thread that may block: the workers'
        reader)."""
        snap = self.snapshot()
        if snap is not None and self.checkpoint is not None:
            self._dirty = False
            self.checkpoint.write(*snap)

    async def save(self, *, final: bool = False) -> None:
        """Write the checkpoint if it moved (``final``: in any case), off the event loop."""
        if self.checkpoint is None or not (self._dirty or final):
            return
        self._dirty = False
        snap = self.snapshot()
        assert snap is not None
        await asyncio.to_thread(self.checkpoint.write, *snap)

    async def autosave(self, interval: float = 0.05) -> None:
        """Save whenever the checkpoint moved, at most every ``interval`` seconds, until
        cancelled. A kill re-sends what settled after the last save: keeping that window
        short keeps the duplicates near what was in flight."""
        while True:
            await self._moved.wait()
            self._moved.clear()
            await self.save()
            await asyncio.sleep(interval)
