"""The bounded, sans-I/O event buffer, the batching rules, and the session gates.

The buffer never awaits, never reads the clock (``now`` is passed in) and holds only encoded
event bytes. Events live in *lanes*, one per ``(route, session_id)``; events logged without a
session share the lane ``(route, None)``. Every batch is mixed: each event carries its own
``session_id`` and the envelope says ``is_single_session: false``, so batches fill up whatever
the sessions' sizes and however they interleave. A route's batch is cut when:

* its lanes hold a full batch (``max_batch_events``, or a body of ``max_batch_bytes``);
* its oldest lane has waited ``linger`` seconds, or a flush forces it: everything goes.

Lanes are packed oldest first, so events of one session stay together and in order.

**Sessions are started before their events leave.** :meth:`Buffer.add_start` queues a
session's ``POST /session/start`` body and closes a *gate* on its id: events of that session
are held aside (counted in the buffer's bounds) until :meth:`release` opens the gate once
the start succeeded, or :meth:`discard` removes them when it failed.

**Or sessions are created by their first batch** (``session_start="batch"``):
:meth:`Buffer.add_envelope` registers a session whose first events gather in a lane of their
own; that lane is cut alone (:meth:`take_first`) into a single-session batch carrying the
session's properties, and from that moment the session is gated as above: its later events
wait until the sender releases them (the batch was answered 2xx) or discards them.

The buffer is bounded by event count and by bytes; when full, ``append`` refuses the event
(drop newest) or evicts the oldest.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

from ._encoding import body_overhead

__all__ = ["Batch", "Buffer", "SessionStart"]

Sid = Hashable | None

#: Sessions created by their first batch that the buffer remembers, most recent last: a
#: start body brought again (a spool segment, a relay's entry) must not make a second
#: envelope for a session that exists.
MAX_CREATED = 65_536


class Batch:
    """Events cut from the buffer to be sent together in one request.

    ``session`` is set on a session's first batch in ``session_start="batch"`` mode: the
    batch carries its properties and creates it.
    """

    __slots__ = ("events", "nbytes", "route", "session")

    def __init__(self, route: str, events: list[bytes], nbytes: int,
                 session: SessionStart | None = None) -> None:
        self.route = route
        self.events = events
        self.nbytes = nbytes
        self.session = session

    def __len__(self) -> int:
        return len(self.events)

    def split(self) -> tuple[Batch, Batch]:
        """Halve the batch, keeping order (used on 413 and to isolate invalid events). The
        halves carry no session: the sender gives its envelope to the first unsent part."""
        mid = len(self.events) // 2
        a, b = self.events[:mid], self.events[mid:]
        return Batch(self.route, a, sum(map(len, a))), Batch(self.route, b, sum(map(len, b)))

    def __repr__(self) -> str:
        return f"<Batch {self.route} events={len(self.events)} bytes={self.nbytes}>"


class SessionStart:
    """A queued ``POST /session/start``: the session's id and the encoded request body.

    In ``session_start="batch"`` mode, ``properties`` is the encoded ``session_properties``
    object its first batch carries instead (``body`` is kept for the spool).
    """

    __slots__ = ("body", "properties", "session_id")

    def __init__(self, session_id: str, body: bytes, properties: bytes | None = None) -> None:
        self.session_id = session_id
        self.body = body
        self.properties = properties

    def __repr__(self) -> str:
        return f"<SessionStart {self.session_id}>"


class _Lane:
    __slots__ = ("events", "first_time", "nbytes")

    def __init__(self, now: float) -> None:
        self.events: deque[bytes] = deque()
        self.nbytes = 0
        self.first_time = now


class _Envelope:
    """A session created by its first batch, whose first events are gathering."""

    __slots__ = ("budget", "lane", "route", "start")

    def __init__(self, start: SessionStart, budget: int) -> None:
        self.start = start
        self.budget = budget  # bytes of events (commas included) its first body can carry
        self.route: str | None = None  # the route of its first event: its batch's route
        self.lane: _Lane | None = None


class _Route:
    """The open lanes of one route, oldest first, and their totals."""

    __slots__ = ("events", "lanes", "nbytes")

    def __init__(self) -> None:
        self.lanes: OrderedDict[Sid, _Lane] = OrderedDict()
        self.events = 0
        self.nbytes = 0


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
        drop_oldest: bool = False,
    ) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_batch_events = max_batch_events
        self.max_batch_bytes = max_batch_bytes
        self.linger = linger
        self.drop_oldest = drop_oldest
        # Bytes of events (commas included) that fit in one body.
        self._budget = max_batch_bytes - body_overhead()
        self._routes: dict[str, _Route] = {}
        #: Session starts waiting to be sent, oldest first; the sender takes them.
        self.starts: deque[SessionStart] = deque()
        # Gated sessions -> their held lanes by route (insertion order: oldest first).
        self._held: dict[Sid, dict[str, _Lane]] = {}
        # Gated sessions -> their start body (a spool segment of their events carries it).
        self._start_bodies: dict[Sid, bytes] = {}
        #: Events and bytes held now, gated ones included.
        self.events = 0
        self.nbytes = 0
        #: Set when a batch or a session start is ready (or the linger timer must be armed):
        #: the worker should call :meth:`take_ready`. The worker clears it.
        self.ready = False
        #: The same for sessions' first batches (:meth:`take_first`), which use the
        #: sender's start slots, not its batch slots.
        self.first_ready = False
        #: Events evicted by ``drop_oldest`` since the owner last emptied this list.
        self.evicted: list[bytes] = []
        # Sessions created by their first batch, not cut yet; those with events also in
        # _first, in the order of their first event (so the oldest linger is the first).
        self._envelopes: dict[Sid, _Envelope] = {}
        self._first: OrderedDict[Sid, _Envelope] = OrderedDict()
        self._first_full: dict[Sid, None] = {}  # first lanes that hold a full batch
        self._created: OrderedDict[Sid, None] = OrderedDict()

    # -- sessions ----------------------------------------------------------------------

    def add_start(self, start: SessionStart) -> None:
        """Queue a session start and hold the session's events until it is released.

        Events already buffered under that id (logged with the bare ``session_id``) are held
        too: nothing of the session leaves before its start.
        """
        sid = start.session_id
        held = self._held.setdefault(sid, {})
        self._start_bodies[sid] = start.body
        for route, r in list(self._routes.items()):
            lane = r.lanes.pop(sid, None)
            if lane is None:
                continue
            r.events -= len(lane.events)
            r.nbytes -= lane.nbytes
            known = held.get(route)
            if known is None:
                held[route] = lane
            else:
                lane.events.extend(known.events)
                lane.nbytes += known.nbytes
                held[route] = lane
            if not r.lanes:
                del self._routes[route]
        self.starts.append(start)
        self.ready = True

    def gated(self, session_id: Sid) -> bool:
        """Whether events of ``session_id`` are held for their session's start."""
        return session_id in self._held

    def start_body(self, session_id: Sid) -> bytes | None:
        """The start body of a session whose start has not answered yet, else None."""
        env = self._envelopes.get(session_id) if self._envelopes else None
        if env is not None:
            return env.start.body
        return self._start_bodies.get(session_id)

    def add_envelope(self, start: SessionStart) -> None:
        """Register a session its first batch creates (``start.properties`` set).

        Its first events gather in a lane of their own, cut alone by :meth:`take_first`;
        events of it on another route are held until it exists. Events buffered already
        under its id (logged with the bare ``session_id``) become its first events. A
        session known already (registered, or its first batch under way) is left alone:
        it never gets a second envelope.
        """
        sid = start.session_id
        if sid in self._envelopes or sid in self._held or sid in self._created or (
                start.properties is None):
            return
        env = self._envelopes[sid] = _Envelope(
            start, self.max_batch_bytes - body_overhead(start.properties))
        for route, r in list(self._routes.items()):
            lane = r.lanes.pop(sid, None)
            if lane is None:
                continue
            r.events -= len(lane.events)
            r.nbytes -= lane.nbytes
            if not r.lanes:
                del self._routes[route]
            if env.lane is None:
                env.route, env.lane = route, lane
                self._first[sid] = env
                self._mark_first(sid, env)
                self.first_ready = True
            else:
                self._held.setdefault(sid, {})[route] = lane
                self._start_bodies[sid] = start.body

    def _mark_first(self, sid: Sid, env: _Envelope) -> None:
        lane = env.lane
        assert lane is not None
        n = len(lane.events)
        if n >= self.max_batch_events or lane.nbytes + n - 1 >= env.budget:
            self._first_full[sid] = None
            self.first_ready = True

    def created(self, session_id: Sid) -> None:
        """A session's first batch created it: it never gets another envelope here."""
        self._created[session_id] = None
        if len(self._created) > MAX_CREATED:
            self._created.popitem(last=False)

    def release(self, session_id: Sid, now: float) -> None:
        """The session started: its held events join the open lanes (linger counts anew)."""
        lanes = self._held.pop(session_id, None)
        self._start_bodies.pop(session_id, None)
        if not lanes:
            return
        for route, lane in lanes.items():
            r = self._route(route)
            known = r.lanes.get(session_id)
            if known is None:
                lane.first_time = now
                r.lanes[session_id] = lane
            else:  # events logged with the bare id before the gate closed
                known.events.extend(lane.events)
                known.nbytes += lane.nbytes
            r.events += len(lane.events)
            r.nbytes += lane.nbytes
            if self._full(r):
                self.ready = True

    def discard(self, session_id: Sid) -> list[tuple[str, list[bytes]]]:
        """The session cannot start: remove and return its held events by route, in order
        (a first batch not cut yet included)."""
        lanes = self._held.pop(session_id, None)
        self._start_bodies.pop(session_id, None)
        out: list[tuple[str, list[bytes]]] = []
        env = self._envelopes.pop(session_id, None)
        if env is not None and env.lane is not None and env.route is not None:
            self._first.pop(session_id, None)
            self._first_full.pop(session_id, None)
            out.append((env.route, list(env.lane.events)))
            self.events -= len(env.lane.events)
            self.nbytes -= env.lane.nbytes
        for route, lane in (lanes or {}).items():
            out.append((route, list(lane.events)))
            self.events -= len(lane.events)
            self.nbytes -= lane.nbytes
        return out

    # -- putting events in -------------------------------------------------------------

    def fits(self, size: int) -> bool:
        """Whether an event of ``size`` bytes fits now without evicting anything."""
        return self.events < self.max_events and self.nbytes + size <= self.max_bytes

    def append(self, route: str, session_id: Sid, data: bytes, now: float) -> bool:
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
        self.events += 1
        self.nbytes += size
        env = self._envelopes.get(session_id) if self._envelopes else None
        if env is not None:
            if env.route is None or env.route == route:
                lane = env.lane
                if lane is None:
                    lane = env.lane = _Lane(now)
                    env.route = route
                    self._first[session_id] = env
                    self.first_ready = True  # a new linger deadline: the worker must arm its timer
                lane.events.append(data)
                lane.nbytes += size
                self._mark_first(session_id, env)
                return True
            # Another route: it waits until the first batch created the session.
            self._start_bodies[session_id] = env.start.body
        held = self._held.get(session_id) if self._held else None
        if env is not None and held is None:
            held = self._held[session_id] = {}
        if held is not None:
            lane = held.get(route)
            if lane is None:
                lane = held[route] = _Lane(now)
            lane.events.append(data)
            lane.nbytes += size
            return True
        r = self._routes.get(route)
        if r is None:
            r = self._route(route)
        lane = r.lanes.get(session_id)
        if lane is None:
            lane = r.lanes[session_id] = _Lane(now)
        lane.events.append(data)
        lane.nbytes += size
        r.events += 1
        r.nbytes += size
        if r.events >= self.max_batch_events or r.nbytes + r.events > self._budget:
            self.ready = True
        return True

    def _route(self, route: str) -> _Route:
        r = self._routes.get(route)
        if r is None:
            r = self._routes[route] = _Route()
            self.ready = True  # a new linger deadline: the worker must arm its timer
        return r

    def _full(self, r: _Route) -> bool:
        return r.events >= self.max_batch_events or r.nbytes + r.events - 1 >= self._budget

    def _evict_one(self) -> None:
        if self._routes:
            route, r = min(self._routes.items(),
                           key=lambda kv: next(iter(kv[1].lanes.values())).first_time)
            sid, lane = next(iter(r.lanes.items()))
            data = lane.events.popleft()
            lane.nbytes -= len(data)
            r.events -= 1
            r.nbytes -= len(data)
            if not lane.events:
                del r.lanes[sid]
                if not r.lanes:
                    del self._routes[route]
        elif self._first:  # then the first batches still gathering
            sid, env = next(iter(self._first.items()))
            first = env.lane
            assert first is not None
            data = first.events.popleft()
            first.nbytes -= len(data)
            if not first.events:
                del self._first[sid]
                self._first_full.pop(sid, None)
                # Its route stays: events of it held on other routes keep waiting there.
                env.lane = None
        else:  # only held events are left: the oldest held session's first lane
            lanes = next(lane for lane in self._held.values() if lane)
            route = next(r for r, lane in lanes.items() if lane.events)
            lane = lanes[route]
            data = lane.events.popleft()
            lane.nbytes -= len(data)
            if not lane.events:
                del lanes[route]
        self.events -= 1
        self.nbytes -= len(data)
        self.evicted.append(data)

    # -- taking batches out ------------------------------------------------------------

    def next_deadline(self, *, mixed: bool = True, first: bool = True) -> float | None:
        """When the oldest open lane's linger runs out (in the caller's clock), or None;
        only mixed lanes, or only sessions' first lanes, when the caller says so (a worker
        with no slot for one kind must not wake for its deadline)."""
        times = [next(iter(r.lanes.values())).first_time
                 for r in self._routes.values()] if mixed else []
        if first and self._first:
            lane = next(iter(self._first.values())).lane
            assert lane is not None
            times.append(lane.first_time)
        if not times:
            return None
        return min(times) + self.linger

    def gathering(self) -> list[SessionStart]:
        """The sessions whose first batch is not cut yet (with events or not)."""
        return [env.start for env in self._envelopes.values()]

    @property
    def first_pending(self) -> bool:
        """Whether first batches of sessions are gathering (``session_start="batch"``)."""
        return bool(self._first)

    def take_first(self, now: float, *, force: bool = False,
                   limit: int = 1 << 30) -> list[Batch]:
        """Cut up to ``limit`` sessions' first batches that are ready at ``now`` (full,
        lingered, or all with ``force``). Each is cut alone and carries its session; the
        session is gated from now on, and what its first batch could not take is held."""
        out: list[Batch] = []
        first = self._first
        while first and len(out) < limit:
            sid, env = next(iter(first.items()))
            lane = env.lane
            assert lane is not None
            if not force and lane.first_time + self.linger > now:
                break
            out.append(self._cut_first(sid, env))
        for sid in list(self._first_full):
            if len(out) >= limit:
                break
            env2 = first.get(sid)
            if env2 is not None:
                out.append(self._cut_first(sid, env2))
        if first and len(out) >= limit:
            self.first_ready = True  # more may be ready than the limit let out: come back
        return out

    def _cut_first(self, sid: Sid, env: _Envelope) -> Batch:
        lane, route = env.lane, env.route
        assert lane is not None and route is not None
        del self._first[sid]
        self._first_full.pop(sid, None)
        del self._envelopes[sid]
        q = lane.events
        events: list[bytes] = []
        nbytes = 0
        while q and len(events) < self.max_batch_events:
            size = len(q[0])
            if events and nbytes + size + len(events) > env.budget:
                break
            events.append(q.popleft())
            nbytes += size
        lane.nbytes -= nbytes
        self.events -= len(events)
        self.nbytes -= nbytes
        # The session is gated until its first batch is answered.
        held = self._held.setdefault(sid, {})
        self._start_bodies[sid] = env.start.body
        if q:
            held[route] = lane
        return Batch(route, events, nbytes, env.start)

    def take_ready(self, now: float, *, force: bool = False, limit: int = 1 << 30) -> list[Batch]:
        """Cut and return up to ``limit`` batches that are ready at ``now``.

        ``force`` cuts every open lane (flush and close); held events stay held.
        """
        out: list[Batch] = []
        self.ready = False
        for route, r in list(self._routes.items()):
            if len(out) >= limit:
                break
            expired = force or next(iter(r.lanes.values())).first_time + self.linger <= now
            while r.lanes and len(out) < limit and (expired or self._full(r)):
                out.append(self._cut(route, r))
            if not r.lanes:
                del self._routes[route]
        if len(out) >= limit and any(
            force or self._full(r) for r in self._routes.values()
        ):
            self.ready = True  # more is ready than the limit let out: come back
        return out

    def _cut(self, route: str, r: _Route) -> Batch:
        """Pack one batch from the oldest lanes of a route, within both batch limits."""
        budget = self._budget
        limit = self.max_batch_events
        events: list[bytes] = []
        nbytes = 0
        lanes = r.lanes
        while lanes and len(events) < limit:
            sid, lane = next(iter(lanes.items()))
            q = lane.events
            taken = 0
            while q and len(events) < limit:
                size = len(q[0])
                if events and nbytes + size + len(events) > budget:
                    break
                events.append(q.popleft())
                nbytes += size
                taken += size
            lane.nbytes -= taken
            if q:  # the batch is full; the rest of this lane waits at the front
                break
            del lanes[sid]
        r.events -= len(events)
        r.nbytes -= nbytes
        self.events -= len(events)
        self.nbytes -= nbytes
        return Batch(route, events, nbytes)

    def drain_all(self) -> list[tuple[str, list[bytes]]]:
        """Remove and return every buffered event by route, held ones included (closing
        gives up). Queued session starts are left to the caller (``starts``)."""
        out: dict[str, list[bytes]] = {}
        for route, r in self._routes.items():
            out.setdefault(route, []).extend(e for lane in r.lanes.values() for e in lane.events)
        for env in self._first.values():
            if env.lane is not None and env.route is not None:
                out.setdefault(env.route, []).extend(env.lane.events)
        for lanes in self._held.values():
            for route, lane in lanes.items():
                out.setdefault(route, []).extend(lane.events)
        self._routes.clear()
        self._held.clear()
        self._envelopes.clear()
        self._first.clear()
        self._first_full.clear()
        self._start_bodies.clear()
        self.events = 0
        self.nbytes = 0
        self.ready = self.first_ready = False
        return list(out.items())
