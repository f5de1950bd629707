"""Resumable ``ingest``: how far each input file is settled, kept in a checkpoint file.

Like Logstash's *sincedb*: for each file, its identity (size and a hash of its first block, so
a rotated or edited file is not taken for the old one) and the byte offset below which every
line is settled: delivered, dropped with a reason, or rejected as invalid. The offset only
moves over a contiguous settled prefix, so a line in flight when the process died is sent
again on the next run, never skipped. The file is written atomically (write, fsync, rename,
fsync of the directory) when it moved, at most every 50 ms: never per line.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections import deque
from typing import Any

import msgspec

from ._spool import fsync_dir
from ._stats import CUT_REASONS, DropReason

__all__ = ["Checkpoint", "FileMark", "Tracker", "identify"]

log = logging.getLogger("hh_exporter")

#: Bytes hashed to identify a file; a file shorter than this is hashed whole.
HEAD_BYTES = 64 * 1024


class FileMark(msgspec.Struct, kw_only=True):
    """How far one file is settled."""

    size: int
    head: str
    offset: int = 0
    line: int = 0
    done: bool = False


class _State(msgspec.Struct):
    version: int = 1
    files: dict[str, FileMark] = msgspec.field(default_factory=dict)


def identify(path: str) -> tuple[int, str]:
    """A file's identity: its size and the SHA-256 of its first block."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        size = os.fstat(f.fileno()).st_size
    return size, hashlib.sha256(head).hexdigest()


class Checkpoint:
    """The checkpoint file: marks by absolute path, loaded at start, saved atomically."""

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
                self.files = msgspec.json.decode(f.read(), type=_State).files
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError) as exc:
            # A torn or foreign file must not stop the run: start over, and say so.
            log.warning("hh_exporter: ignoring the unreadable checkpoint %s: %s", path, exc)

    def snapshot(self) -> tuple[int, bytes]:
        """The checkpoint as it stands, numbered and encoded (cheap: a mark per file)."""
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


class Tracker:
    """Follows every line of an ingest run until it is settled, and moves the checkpoint.

    Lines are recorded in the order they are read; the exporter's ``on_settled`` marks their
    events settled (by object identity); the settled prefix then advances each file's mark.
    """

    def __init__(self, checkpoint: Checkpoint | None, *, restart: bool = False) -> None:
        self.checkpoint = checkpoint
        self.restart = restart
        # [file key, end offset, line number, settled?] in reading order.
        self._lines: deque[list[Any]] = deque()
        self._by_event: dict[int, list[Any]] = {}
        self._dirty = False
        self._moved = asyncio.Event()

    def begin(self, path: str) -> tuple[int, int, str | None, bool]:
        """Where to start reading ``path``: ``(offset, line, message, skip)``."""
        if self.checkpoint is None:
            return 0, 0, None, False
        key = self.key(path)
        size, head = identify(path)
        mark = self.checkpoint.files.get(key)
        fresh = FileMark(size=size, head=head)
        if mark is None or self.restart:
            self.checkpoint.files[key] = fresh
            return 0, 0, None, False
        if (mark.size, mark.head) != (size, head):
            self.checkpoint.files[key] = fresh
            return 0, 0, f"{path} changed since the checkpoint: reading it from the start", False
        if mark.done:
            return 0, mark.line, f"{path} was done in an earlier run: skipped", True
        if mark.offset == 0:
            return 0, 0, None, False
        return mark.offset, mark.line, f"resuming {path} at line {mark.line + 1:,}", False

    @staticmethod
    def key(path: str) -> str:
        """The checkpoint's key of ``path`` (computed once per file: it costs a syscall)."""
        return os.path.abspath(path)

    def settled_line(self, key: str, end: int, line: int) -> None:
        """A line that needs no answer (rejected, or blank)."""
        if self.checkpoint is not None:
            self._lines.append([key, end, line, True])
            self._advance()

    def sending(self, key: str, end: int, line: int, data: bytes) -> None:
        """A line whose event is about to be handed to the exporter (call before: the
        exporter may settle it before the hand-off returns)."""
        if self.checkpoint is not None:
            entry = [key, end, line, False]
            self._lines.append(entry)
            self._by_event[id(data)] = entry

    def not_sent(self, data: bytes) -> None:
        """The last line's event was not handed over after all (the run stopped)."""
        if self.checkpoint is not None and self._by_event.pop(id(data), None) is not None:
            self._lines.pop()

    def end_file(self, key: str) -> None:
        """Every line of the file was read: once they are settled, the file is done."""
        if self.checkpoint is not None:
            self._lines.append([key, None, None, True])
            self._advance()

    def on_settled(self, events: list[bytes], reason: DropReason | None = None) -> None:
        """The exporter's ``on_settled``. Events cut short (a deadline, a close) are not
        done: the checkpoint stays before them, so a resumed run sends them again."""
        if reason in CUT_REASONS:
            return
        by_event = self._by_event
        for data in events:
            entry = by_event.pop(id(data), None)
            if entry is not None:
                entry[3] = True
        self._advance()

    def _advance(self) -> None:
        lines = self._lines
        if not lines or not lines[0][3]:
            return
        assert self.checkpoint is not None
        files = self.checkpoint.files
        while lines and lines[0][3]:
            key, end, line, _ = lines.popleft()
            mark = files[key]
            if end is None:
                mark.done = True
            else:
                mark.offset, mark.line = end, line
        self._dirty = True
        self._moved.set()

    async def save(self, *, final: bool = False) -> None:
        """Write the checkpoint if it moved (``final``: in any case), off the event loop."""
        if self.checkpoint is None or not (self._dirty or final):
            return
        self._dirty = False
        number, data = self.checkpoint.snapshot()
        await asyncio.to_thread(self.checkpoint.write, number, data)

    async def autosave(self, interval: float = 0.05) -> None:
        """Save whenever the checkpoint moved, at most every ``interval`` seconds, until
        cancelled. A kill re-sends what settled after the last save: keeping that window
        short keeps the duplicates near what was in flight."""
        while True:
            await self._moved.wait()
            self._moved.clear()
            await self.save()
            await asyncio.sleep(interval)
