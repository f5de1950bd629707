"""Replaying ``spool_dir``: what earlier exporters left there goes out through this one.

Segments are claimed under a lock (``_spool.claim_segments``), read in a thread and handed
to the exporter oldest first, with at most half the request slots' worth of events buffered
ahead of live traffic. A segment is deleted only once every event handed over from it is
settled; at close, what was not handed over yet goes back to the spool as a new segment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ._buffer import Buffer
from ._spool import Segment, claim_segments
from ._stats import Counters
from .wire._start import restart_session

__all__ = ["Replay"]

log = logging.getLogger("hh_exporter")


class Replay:
    """Strictly private: one exporter's replay of its ``spool_dir``.

    Fed with what it needs of the exporter, as the sender is: its buffer, counters and
    progress event, ``room`` (events it may have buffered ahead of live traffic), the
    project and API generation of the start bodies, and callables to start a session,
    accept an event, spool events back, and ask whether the exporter is closed."""

    def __init__(self, directory: str, *, buffer: Buffer, counters: Counters,
                 progress: asyncio.Event, room: int, project: str | None, v1: bool,
                 start_session: Callable[[str, bytes], None],
                 accept: Callable[[str, str | None, bytes], None],
                 spool: Callable[[str, list[bytes], bytes | None], bool],
                 closed: Callable[[], bool]) -> None:
        self._directory = directory
        self._buffer, self._counters, self._progress = buffer, counters, progress
        self._room, self._project, self._v1 = room, project, v1
        self._start_session, self._accept, self._spool = start_session, accept, spool
        self._closed = closed
        #: Events handed over and not settled yet -> their segment (by object identity).
        self.outstanding: dict[int, Segment] = {}
        self._current: Segment | None = None
        self._claimed: list[Segment] = []
        self._task: asyncio.Task[None] | None = None
        self._deletions: set[asyncio.Future[None]] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin replaying in the background."""
        self._task = loop.create_task(self._run(), name="hh_exporter-replay")

    async def _run(self) -> None:
        self._claimed = await asyncio.to_thread(claim_segments, self._directory)
        room, buf, counters, progress = self._room, self._buffer, self._counters, self._progress
        accept, closed = self._accept, self._closed
        for seg in self._claimed:
            self._current = seg
            await asyncio.to_thread(seg.read)
            counters.spool_torn += seg.torn
            header = seg.header
            if header is None:
                seg.fed = True
                self._maybe_delete(seg)
                continue
            sid = None
            start_body = header.start_body
            if start_body is not None:
                # In the generation this exporter speaks: a segment may come from the other.
                sid, start_body = restart_session(start_body, self._project, v1=self._v1)
                if sid is not None and start_body is not None:
                    self._start_session(sid, start_body)
            for i, data in enumerate(seg.events):
                while buf.events >= room or not buf.fits(len(data)):
                    progress.clear()
                    await progress.wait()
                if closed():
                    return  # closing: stop() sends the rest back to the spool
                seg.next = i + 1
                seg.outstanding += 1
                self.outstanding[id(data)] = seg
                counters.replayed += 1
                accept(header.route, sid, data)
            seg.fed = True
            self._maybe_delete(seg)
        self._current = None

    def settled(self, events: list[bytes]) -> None:
        """Events settled by the exporter: a segment whose events all are can go."""
        outstanding = self.outstanding
        for data in events:
            seg = outstanding.pop(id(data), None)
            if seg is not None:
                seg.outstanding -= 1
                self._maybe_delete(seg)

    def stop(self) -> None:
        """At close: what was not handed over yet goes back to the spool as a new segment,
        and segments not begun are let go (another exporter may take them)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        seg = self._current
        if seg is not None and not seg.fed and seg.header is not None:
            rest = seg.events[seg.next:]
            if rest and not self._spool(seg.header.route, rest, seg.header.start_body):
                log.error("hh_exporter: %d replayed events could not go back to the spool; "
                          "%s is kept and will be replayed whole", len(rest), seg.path)
                seg.outstanding = -1  # never delete it
            seg.fed = True
            self._maybe_delete(seg)
        for other in self._claimed:
            if other is not seg and not other.fed:
                other.release()

    async def wait_deletions(self) -> None:
        """Let the deletions of replayed segments finish (at close)."""
        if self._deletions:
            await asyncio.gather(*self._deletions, return_exceptions=True)

    def _maybe_delete(self, seg: Segment) -> None:
        if seg.fed and seg.outstanding == 0:
            seg.outstanding = -1  # once
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(seg.delete))
            self._deletions.add(task)
            task.add_done_callback(self._deletions.discard)
