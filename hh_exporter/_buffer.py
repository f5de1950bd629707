"""The bounded, sans-I/O event buffer, and the batching rules.

The buffer never awaits, never reads the clock (``now`` is passed in) and holds only encoded
event bytes. Events live in *lanes*, one per ``(route, session_id)``; events logged without a
session share the lane ``(route, None)``. A batch is cut when:

* a lane is full (``max_batch_events``, or a body of ``max_batch_bytes``): a single-session
  batch with the session's properties hoisted into the envelope;
* a route's oldest event has waited ``linger`` seconds, or a flush forces it: every lane of
  the route goes. Lanes with at least ``session_batch_min_events`` events go as single-session
  batches; smaller lanes are packed together into mixed batches, so a thousand one-event
  sessions cost two requests, not a thousand;
* the small lanes of a route add up to a full batch: a full mixed batch goes at once.

Every count the rules need is kept up to date as events come and go, so a take touches only
what it cuts: many thousands of pending short sessions cost nothing per wake.

Order is kept within a lane, and so within a session. The buffer is bounded by event count
and by bytes; when full, ``append`` refuses the event (drop newest) or evicts the oldest.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

from ._encoding import body_overhead

__all__ = ["Batch", "Buffer"]

Sid = Hashable | None


class Batch:
    """Events cut from the buffer to be sent together in one request.

    ``session_properties`` is set (and ``session_id`` too) for a single-session batch.
    """

    __slots__ = ("events", "nbytes", "route", "session_id", "session_properties")

    def __init__(
        self,
        route: str,
        session_id: Sid,
        session_properties: bytes | None,
        events: list[bytes],
        nbytes: int,
    ) -> None:
        self.route = route
        self.session_id = session_id
        self.session_properties = session_properties
        self.events = events
        self.nbytes = nbytes

    def __len__(self) -> int:
        return len(self.events)

    def split(self) -> tuple[Batch, Batch]:
        """Halve the batch, keeping order (used on 413 and to isolate invalid events)."""
        mid = len(self.events) // 2
        a, b = self.events[:mid], self.events[mid:]
        props = self.session_properties
        return (
            Batch(self.route, self.session_id, props, a, sum(map(len, a))),
            Batch(self.route, self.session_id, props, b, sum(map(len, b))),
        )

    def __repr__(self) -> str:
        kind = "single" if self.session_properties is not None else "mixed"
        return f"<Batch {self.route} {kind} events={len(self.events)} bytes={self.nbytes}>"


class _Lane:
    __slots__ = ("events", "first_time", "nbytes", "overhead", "props", "small")

    def __init__(self, props: bytes | None, now: float) -> None:
        self.events: deque[bytes] = deque()
        self.nbytes = 0
        self.first_time = now
        self.props = props
        self.overhead = body_overhead(props)
        self.small = True


class _Route:
    """The lanes of one route, split into small (packed) and big (single-session) ones."""

    __slots__ = ("big", "lanes", "small", "small_bytes", "small_events")

    def __init__(self) -> None:
        self.lanes: OrderedDict[Sid, _Lane] = OrderedDict()  # creation order: oldest first
        self.small: OrderedDict[Sid, _Lane] = OrderedDict()
        self.big: dict[Sid, _Lane] = {}
        self.small_events = 0
        self.small_bytes = 0


class Buffer:
    """Bounded buffer of encoded events, grouped in lanes by route and session.

    Not thread-safe: the exporter calls it from its event loop only.
    """

    def __init__(
        self,
        *,
        max_events: int,
        max_bytes: int,
        max_batch_events: int,
        max_batch_bytes: int,
        linger: float,
        session_batch_min_events: int = 16,
        drop_oldest: bool = False,
    ) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_batch_events = max_batch_events
        self.max_batch_bytes = max_batch_bytes
        self.linger = linger
        self.session_batch_min_events = session_batch_min_events
        self.drop_oldest = drop_oldest
        self._mixed_budget = max_batch_bytes - body_overhead(None)
        self._routes: dict[str, _Route] = {}
        self._full: dict[tuple[str, Sid], None] = {}  # an ordered set
        #: Events and bytes held now.
        self.events = 0
        self.nbytes = 0
        #: Set when a batch is ready (or the buffer went from empty to not): the worker should
        #: call :meth:`take_ready`. The worker clears it.
        self.ready = False
        #: Events evicted by ``drop_oldest`` since the owner last reset this to 0.
        self.evicted = 0

    # -- putting events in -------------------------------------------------------------

    def fits(self, size: int) -> bool:
        """Whether an event of ``size`` bytes fits now without evicting anything."""
        return self.events < self.max_events and self.nbytes + size <= self.max_bytes

    def append(self, route: str, session_id: Sid, props: bytes | None, data: bytes,
               now: float) -> bool:
        """Add one encoded event; return False if it was refused because the buffer is full.

        With ``drop_oldest`` the oldest events are evicted instead (counted in ``evicted``).
        """
        size = len(data)
        if self.events >= self.max_events or self.nbytes + size > self.max_bytes:
            if not self.drop_oldest or size > self.max_bytes:
                return False
            while self.events and (
                self.events >= self.max_events or self.nbytes + size > self.max_bytes
            ):
                self._evict_one()
        r = self._routes.get(route)
        if r is None:
            r = self._routes[route] = _Route()
        lane = r.lanes.get(session_id)
        if lane is None:
            lane = r.lanes[session_id] = r.small[session_id] = _Lane(props, now)
            if not self.events:
                self.ready = True
        lane.events.append(data)
        lane.nbytes += size
        self.events += 1
        self.nbytes += size
        n = len(lane.events)
        if lane.small:
            r.small_events += 1
            r.small_bytes += size
            if session_id is not None and n >= self.session_batch_min_events:
                self._make_big(r, session_id, lane)
            elif r.small_events >= self.max_batch_events or (
                r.small_bytes + r.small_events > self._mixed_budget
            ):
                self.ready = True
        if n >= self.max_batch_events or lane.nbytes + n + lane.overhead >= self.max_batch_bytes:
            self._full[(route, session_id)] = None
            self.ready = True
        return True

    def _make_big(self, r: _Route, sid: Sid, lane: _Lane) -> None:
        del r.small[sid]
        r.big[sid] = lane
        lane.small = False
        r.small_events -= len(lane.events)
        r.small_bytes -= lane.nbytes

    def _settle(self, route: str, r: _Route, sid: Sid, lane: _Lane) -> None:
        """Re-file a lane whose size went down: drop it when empty, or demote it to small."""
        if not lane.events:
            del r.lanes[sid]
            if lane.small:
                del r.small[sid]
            else:
                del r.big[sid]
            self._full.pop((route, sid), None)
            if not r.lanes:
                del self._routes[route]
            return
        if not lane.small and len(lane.events) < self.session_batch_min_events:
            del r.big[sid]
            r.small[sid] = lane
            lane.small = True
            r.small_events += len(lane.events)
            r.small_bytes += lane.nbytes
        if not self._lane_full(lane):
            self._full.pop((route, sid), None)

    def _evict_one(self) -> None:
        route, r = min(self._routes.items(), key=lambda kv: next(iter(kv[1].lanes.values()))
                       .first_time)
        sid, lane = next(iter(r.lanes.items()))
        data = lane.events.popleft()
        size = len(data)
        lane.nbytes -= size
        if lane.small:
            r.small_events -= 1
            r.small_bytes -= size
        self.events -= 1
        self.nbytes -= size
        self.evicted += 1
        self._settle(route, r, sid, lane)

    # -- taking batches out ------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the oldest lane's linger runs out (in the caller's clock), or None if empty."""
        if not self._routes:
            return None
        return min(next(iter(r.lanes.values())).first_time
                   for r in self._routes.values()) + self.linger

    def take_ready(self, now: float, *, force: bool = False, limit: int = 1 << 30) -> list[Batch]:
        """Cut and return up to ``limit`` batches that are ready at ``now``.

        ``force`` cuts everything (flush and close).
        """
        out: list[Batch] = []
        self.ready = False
        if not self._routes or limit <= 0:
            return out
        # 1. Lanes that hold a full batch go first, whole batches only.
        for route, sid in list(self._full):
            r = self._routes[route]
            lane = r.lanes[sid]
            while len(out) < limit and self._lane_full(lane):
                out.append(self._cut(route, r, sid, lane, single=sid is not None))
            self._settle(route, r, sid, lane)
        # 2. Per route: on linger or force, everything; else full mixed batches of small lanes.
        for route, r in list(self._routes.items()):
            if len(out) >= limit:
                break
            expired = force or next(iter(r.lanes.values())).first_time + self.linger <= now
            if expired:
                for sid, lane in list(r.big.items()):
                    while lane.events and len(out) < limit:
                        out.append(self._cut(route, r, sid, lane, single=True))
                    self._settle(route, r, sid, lane)
            self._pack_mixed(route, r, out, limit, drain=expired)
        if self._full or (force and self.events):
            self.ready = True  # more is ready than the limit let out: come back
        else:
            for r in self._routes.values():
                if r.small_events >= self.max_batch_events or (
                    r.small_bytes + r.small_events > self._mixed_budget
                ):
                    self.ready = True
        return out

    def _lane_full(self, lane: _Lane) -> bool:
        n = len(lane.events)
        return n >= self.max_batch_events or (
            n > 0 and lane.nbytes + n + lane.overhead >= self.max_batch_bytes
        )

    def _cut(self, route: str, r: _Route, sid: Sid, lane: _Lane, *, single: bool) -> Batch:
        """Take one batch from the front of a lane, within both batch limits."""
        props = lane.props if single else None
        budget = self.max_batch_bytes - (lane.overhead if single else body_overhead(None))
        events: list[bytes] = []
        nbytes = 0
        q = lane.events
        while q and len(events) < self.max_batch_events:
            size = len(q[0])
            if events and nbytes + size + len(events) > budget:
                break
            events.append(q.popleft())
            nbytes += size
        lane.nbytes -= nbytes
        if lane.small:
            r.small_events -= len(events)
            r.small_bytes -= nbytes
        self.events -= len(events)
        self.nbytes -= nbytes
        return Batch(route, sid if single else None, props, events, nbytes)

    def _pack_mixed(self, route: str, r: _Route, out: list[Batch], limit: int, *,
                    drain: bool) -> None:
        """Pack small lanes, oldest first, into mixed batches.

        Without ``drain`` only full batches are cut, and the rest waits for its linger.
        """
        budget = self._mixed_budget
        while r.small and len(out) < limit:
            if not drain and r.small_events < self.max_batch_events and (
                r.small_bytes + r.small_events <= budget
            ):
                return
            events: list[bytes] = []
            nbytes = 0
            while r.small and len(events) < self.max_batch_events:
                sid, lane = next(iter(r.small.items()))
                q = lane.events
                taken = 0
                while q and len(events) < self.max_batch_events:
                    size = len(q[0])
                    if events and nbytes + size + len(events) > budget:
                        break
                    events.append(q.popleft())
                    nbytes += size
                    taken += size
                lane.nbytes -= taken
                if q:  # the batch is full; the rest of this lane waits
                    break
                self._settle(route, r, sid, lane)
            r.small_events -= len(events)
            r.small_bytes -= nbytes
            self.events -= len(events)
            self.nbytes -= nbytes
            out.append(Batch(route, None, None, events, nbytes))
            if route not in self._routes:
                return

    def drain_all(self) -> list[bytes]:
        """Remove and return every buffered event (used when closing gives up)."""
        events = [e for r in self._routes.values() for lane in r.lanes.values()
                  for e in lane.events]
        self._routes.clear()
        self._full.clear()
        self.events = 0
        self.nbytes = 0
        self.ready = False
        return events
