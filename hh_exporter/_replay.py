"""Replaying ``spool_dir``: what earlier exporters left there goes out through this one.

Segments are claimed under a lock (``_spool.claim_segments``), read in a thread and handed
to the exporter oldest first, with at most half the request slots' worth of events buffered
ahead of live traffic. A segment is deleted only once every event handed over from it is
settled; at close, what was not handed over yet goes back to the spool as a new segment.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ._spool import Segment, claim_segments
from .wire._start import restart_session

if TYPE_CHECKING:  # the exporter owns the replay; at run time only it imports this module
    from ._exporter import Exporter

__all__ = ["Replay"]

log = logging.getLogger("hh_exporter")


class Replay:
    """Strictly private: one exporter's replay of its ``spool_dir``."""

    def __init__(self, exporter: Exporter, directory: str) -> None:
        self._exporter = exporter
        self._directory = directory
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
        hh = self._exporter
        self._claimed = await asyncio.to_thread(claim_segments, self._directory)
        room = max(1, hh.config.max_in_flight // 2) * hh.config.max_batch_events
        buf, counters, progress = hh._buffer, hh._counters, hh._progress
        assert progress is not None
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
                sid, start_body = restart_session(start_body, hh._project, v1=hh._v1)
                if sid is not None and start_body is not None:
                    hh._dispatch(None, sid, start_body)
            for i, data in enumerate(seg.events):
                while buf.events >= room or not buf.fits(len(data)):
                    progress.clear()
                    await progress.wait()
                if hh.closed:
                    return  # closing: stop() sends the rest back to the spool
                seg.next = i + 1
                seg.outstanding += 1
                self.outstanding[id(data)] = seg
                counters.replayed += 1
                hh._accept(header.route, sid, data)
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
            if rest and not self._exporter._spool(seg.header.route, rest,
                                                  seg.header.start_body):
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
