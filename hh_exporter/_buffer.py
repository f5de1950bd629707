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

Order is kept within a lane, and so within a session. The buffer is bounded by event count
and by bytes; when full, ``append`` refuses the event (drop newest) or evicts the oldest.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

from ._encoding import body_overhead

__all__ = ["Batch", "Buffer"]

LaneKey = tuple[str, Hashable | None]


class Batch:
    """Events cut from the buffer to be sent together in one request.

    ``session_properties`` is set (and ``session_id`` too) for a single-session batch.
    """

    __slots__ = ("events", "nbytes", "route", "session_id", "session_properties")

    def __init__(
        self,
        route: str,
        session_id: Hashable | None,
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
    __slots__ = ("events", "first_time", "nbytes", "props")

    def __init__(self, props: bytes | None, now: float) -> None:
        self.events: deque[bytes] = deque()
        self.nbytes = 0
        self.first_time = now
        self.props = props


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
        self._lanes: OrderedDict[LaneKey, _Lane] = OrderedDict()
        #: Events and bytes held now.
        self.events = 0
        self.nbytes = 0
        #: Set when a batch is full (or the buffer went from empty to not): the worker should
        #: call :meth:`take_ready`. The worker clears it.
        self.ready = False
        #: Events evicted by ``drop_oldest`` since the owner last reset this to 0.
        self.evicted = 0
        # Appends since the last take: once they could fill a batch, small lanes may add up
        # to a full mixed batch, so the worker is woken to look.
        self._since_take = 0

    # -- putting events in -------------------------------------------------------------

    def fits(self, size: int) -> bool:
        """Whether an event of ``size`` bytes fits now without evicting anything."""
        return self.events < self.max_events and self.nbytes + size <= self.max_bytes

    def append(
        self, route: str, session_id: Hashable | None, props: bytes | None, data: bytes,
        now: float,
    ) -> bool:
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
        key = (route, session_id)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(props, now)
            if not self.events:
                self.ready = True
        lane.events.append(data)
        lane.nbytes += size
        self.events += 1
        self.nbytes += size
        self._since_take += 1
        n = len(lane.events)
        if n >= self.max_batch_events or self._since_take >= self.max_batch_events or (
            lane.nbytes + n + body_overhead(lane.props) >= self.max_batch_bytes
        ):
            self.ready = True
        return True

    def _evict_one(self) -> None:
        key, lane = next(iter(self._lanes.items()))
        data = lane.events.popleft()
        lane.nbytes -= len(data)
        self.events -= 1
        self.nbytes -= len(data)
        self.evicted += 1
        if not lane.events:
            del self._lanes[key]

    # -- taking batches out ------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the oldest lane's linger runs out (in the caller's clock), or None if empty."""
        if not self._lanes:
            return None
        return min(lane.first_time for lane in self._lanes.values()) + self.linger

    def take_ready(self, now: float, *, force: bool = False, limit: int = 1 << 30) -> list[Batch]:
        """Cut and return up to ``limit`` batches that are ready at ``now``.

        ``force`` cuts everything (flush and close).
        """
        out: list[Batch] = []
        self.ready = False
        self._since_take = 0
        if not self._lanes or limit <= 0:
            return out
        # 1. Lanes that hold a full batch go first, whole batches only.
        for key, lane in list(self._lanes.items()):
            while len(out) < limit and self._lane_full(lane):
                out.append(self._cut(key, lane, single=key[1] is not None))
            if not lane.events:
                del self._lanes[key]
        # 2. Per route: on linger or force, everything; else full mixed batches of small lanes.
        routes: dict[str, list[tuple[LaneKey, _Lane]]] = {}
        for key, lane in self._lanes.items():
            routes.setdefault(key[0], []).append((key, lane))
        for lanes in routes.values():
            if len(out) >= limit:
                break
            expired = force or min(lane.first_time for _, lane in lanes) + self.linger <= now
            small: list[tuple[LaneKey, _Lane]] = []
            for key, lane in lanes:
                if key[1] is not None and len(lane.events) >= self.session_batch_min_events:
                    while expired and lane.events and len(out) < limit:
                        out.append(self._cut(key, lane, single=True))
                else:
                    small.append((key, lane))
            self._pack_mixed(small, out, limit, drain=expired)
        for key in [k for k, lane in self._lanes.items() if not lane.events]:
            del self._lanes[key]
        if self._lanes and (force or any(self._lane_full(lane) for lane in self._lanes.values())):
            # More is ready than the limit let out: the worker must come back.
            self.ready = True
        return out

    def _lane_full(self, lane: _Lane) -> bool:
        n = len(lane.events)
        return n >= self.max_batch_events or (
            n > 0 and lane.nbytes + n + body_overhead(lane.props) >= self.max_batch_bytes
        )

    def _cut(self, key: LaneKey, lane: _Lane, *, single: bool) -> Batch:
        """Take one batch from the front of a lane, within both batch limits."""
        props = lane.props if single else None
        budget = self.max_batch_bytes - body_overhead(props)
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
        self.events -= len(events)
        self.nbytes -= nbytes
        return Batch(key[0], key[1] if single else None, props, events, nbytes)

    def _pack_mixed(
        self, lanes: list[tuple[LaneKey, _Lane]], out: list[Batch], limit: int, *, drain: bool
    ) -> None:
        """Pack small lanes, oldest first, into mixed batches.

        Without ``drain`` only full batches are cut, and the rest waits for its linger.
        """
        if not lanes:
            return
        left_events = sum(len(lane.events) for _, lane in lanes)
        left_bytes = sum(lane.nbytes for _, lane in lanes)
        budget = self.max_batch_bytes - body_overhead(None)
        route = lanes[0][0][0]
        it = iter(lanes)
        lane: _Lane | None = None
        while len(out) < limit and left_events:
            if not drain and left_events < self.max_batch_events and (
                left_bytes + left_events < budget
            ):
                return
            events: list[bytes] = []
            nbytes = 0
            while len(events) < self.max_batch_events:
                if lane is None or not lane.events:
                    lane = next((ln for _, ln in it if ln.events), None)
                    if lane is None:
                        break
                size = len(lane.events[0])
                if events and nbytes + size + len(events) > budget:
                    break
                events.append(lane.events.popleft())
                lane.nbytes -= size
                nbytes += size
            left_events -= len(events)
            left_bytes -= nbytes
            self.events -= len(events)
            self.nbytes -= nbytes
            out.append(Batch(route, None, None, events, nbytes))

    def drain_all(self) -> list[bytes]:
        """Remove and return every buffered event (used when closing gives up)."""
        events = [e for lane in self._lanes.values() for e in lane.events]
        self._lanes.clear()
        self.events = 0
        self.nbytes = 0
        self.ready = False
        return events
