"""The relay: reads a Redis stream in a consumer group and delivers it with the exporter.

Each entry read with ``XREADGROUP`` is split back into its events, which go through an
ordinary :class:`~hh_exporter.Exporter` (batching across entries, session gating, retries,
partial failures). The exporter's ``on_settled`` tells when each event is answered:

- an entry whose events were all answered (delivered, or dropped with the API's reason:
  ``rejected``, ``too_large``) is acknowledged with ``XACK``;
- an entry with an event cut short (a deadline, a close) or not answered (out of retries,
  the key refused, its session not started) is left pending: after ``claim_idle`` seconds
  any relay reclaims it with ``XAUTOCLAIM`` and tries again, and one delivered more than
  ``max_deliveries`` times goes to the dead-letter stream with its last reason.

Sessions: a relay starts each session before its events, from the start entry if it read
it, else from the start body the producer kept under ``{stream}:session:{id}``
(:mod:`._stream`): starting a session twice is harmless, as the API merges it. A start
entry is acknowledged once the start is queued: its body stays in that key. A producer's
single-session first batch starts its session the same way. The relay's own
``session_start`` decides how the API sees it: a ``POST /session/start``, or (``batch``)
the session's first batch from this relay (two relays that meet one session then each
send it an envelope).

Delivery is at least once: a relay that dies leaves its unacknowledged entries pending,
and the relay that reclaims them sends again the events of them that were already
delivered. Those are the only duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from typing import Any

import msgspec

from .._encoding import GENERIC_ROUTE, V1_ROUTE, V1_SESSION_ROUTE
from .._errors import ConfigError
from .._exporter import Exporter
from .._metrics import families
from .._prometheus import Family, render
from .._stats import DropReason
from ..wire._start import start_session_id
from ._stream import BATCH_ROUTES, START_ROUTES, envelope_start, session_key, split_batch

__all__ = ["Relay", "RelayStats", "default_consumer"]

log = logging.getLogger("hh_exporter.relay")

#: Drop reasons that are the API's answer about the events themselves: the entry is done.
#: Any other reason leaves the entry pending, for another try (or the dead-letter stream).
_ANSWERED: frozenset[DropReason | None] = frozenset((None, "rejected", "too_large"))
#: How long a relay's note of why an entry failed is kept (seconds).
_FAILURE_TTL = 7 * 86_400


def default_consumer() -> str:
    """``host-pid``: unique per process, stable for its life."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RelayStats(msgspec.Struct):
    """A relay's counters and its view of the stream."""

    consumer: str
    entries_read: int = 0
    entries_reclaimed: int = 0
    entries_acked: int = 0
    entries_dead_lettered: int = 0
    entries_trimmed: int = 0
    entries_in_flight: int = 0
    events_read: int = 0
    events_delivered: int = 0
    events_dropped: dict[str, int] = msgspec.field(default_factory=dict)
    sessions_started: int = 0  # confirmed by the API (starts from any relay count once each)
    stream_length: int = 0
    pending: int = 0
    oldest_pending_age_s: float = 0.0
    events_per_s: float = 0.0
    redis_errors: int = 0


class _Entry:
    __slots__ = ("eid", "failed", "remaining")

    def __init__(self, eid: str, remaining: int) -> None:
        self.eid = eid
        self.remaining = remaining
        self.failed: str | None = None


class Relay:
    """Deliver a Redis stream's entries to the API; see the module's docs.

    Args:
        redis_url: The Redis server.
        stream: The stream producers add to (``StreamExporter(stream=...)``).
        group: The consumer group all relays of this stream share.
        consumer: This relay's name in the group (unique per process).
        claim_idle: Seconds an entry may stay pending before another relay reclaims it;
            longer than a batch's retry deadline, or live entries are sent twice.
        max_deliveries: Deliveries after which an entry goes to the dead-letter stream.
        dead_letter: The dead-letter stream (default ``{stream}:dead``).
        read_count: Entries per ``XREADGROUP``.
        max_entries_in_flight: Entries read and not yet answered, at most (backpressure:
            the relay reads no more until some are answered).
        **exporter: The delivering :class:`Exporter`'s settings (``api_key``, ``api_url``,
            ``api``, ...). ``project`` is not needed: events carry their own.
    """

    def __init__(self, *, redis_url: str, stream: str, group: str = "hh-relay",
                 consumer: str | None = None, claim_idle: float = 60.0,
                 max_deliveries: int = 5, dead_letter: str | None = None,
                 read_count: int = 64, block: float = 0.5,
                 max_entries_in_flight: int = 512, **exporter: Any) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - the extra is missing
            raise ConfigError("the relay needs the redis package: "
                              "pip install 'hh-exporter[redis]'") from None
        if claim_idle <= 0 or max_deliveries < 1 or read_count < 1 or block <= 0:
            raise ValueError("claim_idle and block must be > 0, max_deliveries and "
                             "read_count >= 1")
        self.stream = stream
        self.group = group
        self.consumer = consumer or default_consumer()
        self.dead_letter = dead_letter or f"{stream}:dead"
        self.claim_idle = claim_idle
        self.max_deliveries = max_deliveries
        self.read_count = read_count
        self.block = block
        self.max_entries_in_flight = max_entries_in_flight
        self._redis: Any = aioredis.Redis.from_url(redis_url)
        self.exporter = Exporter(on_settled=self._on_settled, **exporter)
        self._v1 = self.exporter.config.api == "v1"
        self._by_event: dict[int, _Entry] = {}
        self._entries: dict[str, _Entry] = {}
        self._acks: list[str] = []
        self._failures: dict[str, str] = {}
        self._started: OrderedDict[str, None] = OrderedDict()
        self._room = asyncio.Event()
        self._answered = asyncio.Event()
        self.stats = RelayStats(consumer=self.consumer)
        self._rate_mark = (time.monotonic(), 0)
        self._trim_mark = (time.monotonic(), 0)

    def metrics_text(self) -> str:
        """The relay's figures and its exporter's (named as :mod:`hh_exporter._metrics`
        names them) as Prometheus text: ``hh-exporter relay --stats-port``'s ``/metrics``."""
        s = self.stats
        fams = families(self.exporter.stats(), capacity=self.exporter.config.max_buffer_events,
                        name=f"relay/{self.consumer}")
        c = {"consumer": self.consumer, "stream": self.stream}
        for name, kind, helptext, value in (
            ("entries.read", "counter", "Stream entries read.", s.entries_read),
            ("entries.reclaimed", "counter", "Entries reclaimed from idle relays.",
             s.entries_reclaimed),
            ("entries.acked", "counter", "Entries acknowledged.", s.entries_acked),
            ("entries.dead_lettered", "counter", "Entries moved to the dead-letter stream.",
             s.entries_dead_lettered),
            ("entries.inflight", "gauge", "Entries read and not yet answered.",
             s.entries_in_flight),
            ("stream.length", "gauge", "Entries in the stream.", s.stream_length),
            ("group.pending", "gauge", "Entries pending in the group.", s.pending),
            ("group.oldest_pending_age", "gauge", "Seconds the oldest pending entry waited.",
             s.oldest_pending_age_s),
            ("redis.errors", "counter", "Redis commands that failed.", s.redis_errors),
        ):
            fams.append(Family(f"hh.relay.{name}", kind, helptext, [(c, value)]))  # type: ignore[arg-type]
        return render(fams)

    def __repr__(self) -> str:
        return (f"Relay(stream={self.stream!r}, group={self.group!r}, "
                f"consumer={self.consumer!r})")

    # -- the exporter's answers ----------------------------------------------------------

    def _on_settled(self, events: list[bytes], reason: DropReason | None) -> None:
        by_event = self._by_event
        if reason is None:
            self.stats.events_delivered += len(events)
        else:
            d = self.stats.events_dropped
            d[reason] = d.get(reason, 0) + len(events)
        answered = reason in _ANSWERED
        for data in events:
            entry = by_event.pop(id(data), None)
            if entry is None:
                continue
            if not answered and entry.failed is None:
                entry.failed = str(reason)
            entry.remaining -= 1
            if entry.remaining == 0:
                self._done(entry)
        self._answered.set()

    def _done(self, entry: _Entry) -> None:
        self._entries.pop(entry.eid, None)
        if entry.failed is None:
            self._acks.append(entry.eid)
        else:  # left pending for a later try; the reason is kept for the dead-letter record
            last = self.exporter.stats().last_error
            self._failures[entry.eid] = entry.failed + (f" ({last})" if last else "")
        self.stats.entries_in_flight = len(self._entries)
        if len(self._entries) < self.max_entries_in_flight:
            self._room.set()

    async def _flush_acks(self) -> None:
        # What cannot be written now (Redis down) is kept for the next flush.
        if self._failures:
            failures, self._failures = self._failures, {}
            try:
                async with self._redis.pipeline(transaction=False) as p:
                    for eid, why in failures.items():
                        p.set(failure_key(self.stream, eid), why, ex=_FAILURE_TTL)
                    await p.execute()
            except BaseException:
                self._failures = {**failures, **self._failures}
                raise
        if not self._acks:
            return
        ids, self._acks = self._acks, []
        try:
            await self._redis.xack(self.stream, self.group, *ids)
        except BaseException:
            self._acks[:0] = ids
            raise
        self.stats.entries_acked += len(ids)

    # -- entries ----------------------------------------------------------------------------

    async def _handle(self, eid: str, fields: dict[bytes, bytes]) -> None:
        route_b, body = fields.get(b"r"), fields.get(b"b")
        route = route_b.decode("utf-8", "replace") if route_b is not None else ""
        if body is None or (route not in START_ROUTES and route not in BATCH_ROUTES):
            await self._dead(eid, fields, f"not an hh_exporter entry (route {route!r})")
            return
        if (route in (V1_ROUTE, V1_SESSION_ROUTE)) != self._v1:
            await self._dead(eid, fields, f"entry for {route} but this relay speaks "
                             f"api={self.exporter.config.api}")
            return
        if route in START_ROUTES:
            try:
                sid = start_session_id(body)
            except msgspec.DecodeError as exc:
                await self._dead(eid, fields, f"undecodable session start: {exc}")
                return
            if sid is not None:
                self._start(sid, body)
            self._acks.append(eid)
            return
        try:
            events = split_batch(route, body)
        except msgspec.DecodeError as exc:
            await self._dead(eid, fields, f"undecodable batch: {exc}")
            return
        first = envelope_start(route, body)  # a session's first batch: it starts it
        if first is not None:
            self._start(*first)
        await self._start_unknown(events)
        entry = _Entry(eid, len(events))
        if not events:
            self._acks.append(eid)
            return
        self._entries[eid] = entry
        self.stats.entries_in_flight = len(self._entries)
        self.stats.events_read += len(events)
        generic = route in (GENERIC_ROUTE, V1_ROUTE)
        for sid, data in events:
            self._by_event[id(data)] = entry
            await self.exporter.send_encoded(data, generic=generic, session_id=sid)

    def _start(self, sid: str, body: bytes) -> None:
        if sid in self._started:
            self._started.move_to_end(sid)
            return
        self._started[sid] = None
        if len(self._started) > 100_000:
            self._started.popitem(last=False)
        self.exporter.start_session_encoded(sid, body)

    async def _start_unknown(self, events: list[tuple[str | None, bytes]]) -> None:
        """Start the sessions of ``events`` this relay has not started, from the start
        bodies the producers kept (another relay may have read their start entries)."""
        unknown = list(dict.fromkeys(
            sid for sid, _ in events if sid is not None and sid not in self._started))
        if not unknown:
            return
        bodies = await self._redis.mget([session_key(self.stream, s) for s in unknown])
        for sid, body in zip(unknown, bodies, strict=True):
            if body is not None:
                self._start(sid, body)
            else:  # no start kept (none was made, or its TTL ran out): send as they are
                self._started[sid] = None

    async def _dead(self, eid: str, fields: dict[bytes, bytes], reason: str) -> None:
        """Move an entry to the dead-letter stream with its reason, and acknowledge it."""
        log.warning("hh_exporter relay: entry %s to %s: %s", eid, self.dead_letter, reason)
        record = {**fields, b"id": eid.encode(), b"reason": reason.encode("utf-8", "replace")}
        async with self._redis.pipeline(transaction=True) as p:
            p.xadd(self.dead_letter, record)
            p.xack(self.stream, self.group, eid)
            await p.execute()
        self.stats.entries_dead_lettered += 1

    # -- the loops ------------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        from redis import exceptions as rx

        try:
            # From the stream's start: entries added before the first relay are not lost.
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except rx.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _keep_going(self, name: str, step: Any, stop: asyncio.Event) -> None:
        """Run ``step()`` until ``stop``, riding out Redis being unreachable (a restart, a
        failover): warn, wait with backoff (0.1 s to 5 s), go on. A group that vanished
        with its stream (Redis restarted without persistence) is created again."""
        from redis import exceptions as rx

        delay = 0.1
        while not stop.is_set():
            try:
                await step(stop)
                delay = 0.1
            except (rx.ConnectionError, rx.TimeoutError, OSError) as exc:
                self.stats.redis_errors += 1
                log.warning("hh_exporter relay: Redis unreachable in %s (%s); retrying in "
                            "%.1fs", name, type(exc).__name__, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
            except rx.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("hh_exporter relay: the group %s is gone from %s: creating it",
                            self.group, self.stream)
                await self._ensure_group()

    async def _read_step(self, stop: asyncio.Event) -> None:
        if len(self._entries) >= self.max_entries_in_flight:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), self.block)
            return
        got = await self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self.read_count,
            block=int(self.block * 1000))
        for _, entries in got or ():
            for eid_b, fields in entries:
                if stop.is_set():
                    return  # read but not handled: pending, reclaimed by another relay
                self.stats.entries_read += 1
                await self._handle(eid_b.decode(), fields)
        await self._flush_acks()

    async def _claim_step(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.05, self.claim_idle / 2))
        if not stop.is_set():
            await self.reclaim()

    async def reclaim(self) -> int:
        """Take over entries pending longer than ``claim_idle`` (their relay is dead or
        stuck) and handle them; dead-letter those delivered too often. Returns how many."""
        start = "0-0"
        handled = 0
        idle_ms = int(self.claim_idle * 1000)
        for _ in range(1000):  # bounded: 1000 pages of read_count entries per pass
            nxt, claimed, *rest = await self._redis.xautoclaim(
                self.stream, self.group, self.consumer, idle_ms, start_id=start,
                count=self.read_count)
            deleted = rest[0] if rest else []
            if deleted:  # pending entries the stream no longer holds (trimmed or deleted)
                self.stats.entries_trimmed += len(deleted)
                log.warning("hh_exporter relay: %d pending entries were gone from %s",
                            len(deleted), self.stream)
            if claimed:
                counts = await self._deliveries([c[0] for c in claimed])
                for eid_b, fields in claimed:
                    eid = eid_b.decode()
                    if fields is None:
                        continue
                    if eid in self._entries:  # ours, still under way: not idle, only slow
                        continue
                    self.stats.entries_reclaimed += 1
                    handled += 1
                    n = counts.get(eid, 1)
                    if n > self.max_deliveries:
                        why = await self._redis.get(failure_key(self.stream, eid))
                        last = why.decode("utf-8", "replace") if why else (
                            "no relay got an answer for it (they died or were stopped)")
                        await self._dead(eid, fields, f"delivered {n} times; last: {last}")
                    else:
                        await self._handle(eid, fields)
                await self._flush_acks()
            start = nxt.decode() if isinstance(nxt, bytes) else str(nxt)
            if start == "0-0":
                break
        return handled

    async def _deliveries(self, ids: list[bytes]) -> dict[str, int]:
        lo, hi = min(ids), max(ids)
        rows = await self._redis.xpending_range(
            self.stream, self.group, min=lo, max=hi, count=len(ids) + 100,
            consumername=self.consumer)
        return {(r["message_id"].decode() if isinstance(r["message_id"], bytes)
                 else r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def _ack_step(self, stop: asyncio.Event) -> None:
        self._answered.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._answered.wait(), 0.05)
        await self._flush_acks()
        # Trim acknowledged entries twice a second while acks come in: a producer at its
        # stream_maxlen waits for exactly this room.
        now = time.monotonic()
        if self.stats.entries_acked != self._trim_mark[1] and now - self._trim_mark[0] >= 0.5:
            self._trim_mark = (now, self.stats.entries_acked)
            await self._trim()

    async def observe(self) -> RelayStats:
        """Refresh the stream's figures (length, pending, oldest pending's age) and trim
        the entries every group has acknowledged; return the stats."""
        r = self._redis
        s = self.stats
        s.sessions_started = self.exporter.stats().sessions_started
        s.stream_length = int(await r.xlen(self.stream))
        summary = await r.xpending(self.stream, self.group)
        s.pending = int(summary["pending"])
        oldest = summary.get("min")
        if oldest:
            oid = oldest.decode() if isinstance(oldest, bytes) else str(oldest)
            s.oldest_pending_age_s = max(0.0, time.time() - int(oid.split("-")[0]) / 1000)
        else:
            s.oldest_pending_age_s = 0.0
        await self._trim()
        now, delivered = time.monotonic(), s.events_delivered
        t0, d0 = self._rate_mark
        if now > t0:
            s.events_per_s = (delivered - d0) / (now - t0)
        self._rate_mark = (now, delivered)
        return s

    async def _trim(self) -> None:
        """Drop entries that every group has read and acknowledged (``XTRIM MINID``), so
        the stream's length is the backlog that producers' ``stream_maxlen`` bounds."""
        r = self._redis
        keep: tuple[int, int] | None = None
        for g in await r.xinfo_groups(self.stream):
            summary = await r.xpending(self.stream, g["name"])
            if summary["pending"]:
                k = _id_key(_text(summary["min"]))  # the oldest pending entry stays
            else:  # everything this group was given is acknowledged
                ms, seq = _id_key(_text(g["last-delivered-id"]))
                k = (ms, seq + 1)
            keep = k if keep is None or k < keep else keep
        if keep is not None and keep > (0, 1):
            await r.xtrim(self.stream, minid=f"{keep[0]}-{keep[1]}", approximate=False)

    async def run(self, stop: asyncio.Event, *, deadline: float = 10.0,
                  on_stats: Any = None, stats_interval: float = 5.0) -> RelayStats:
        """Relay until ``stop`` is set; then stop reading, finish the entries under way
        within ``deadline`` seconds, acknowledge what was answered and leave the rest
        pending for the other relays. ``on_stats(stats)`` is called every interval."""
        await self._ensure_group()
        await self.exporter.start()
        tasks = [asyncio.create_task(self._keep_going("read", self._read_step, stop)),
                 asyncio.create_task(self._keep_going("reclaim", self._claim_step, stop)),
                 asyncio.create_task(self._keep_going("ack", self._ack_step, stop))]
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), stats_interval)
                for t in tasks:
                    if t.done() and not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                if on_stats is not None and not stop.is_set():
                    with contextlib.suppress(Exception):  # Redis down: the loops say so
                        await self.observe()
                    on_stats(self.stats)
        finally:
            stop.set()
            # The read and claim loops return at their next turn (a read blocks at most
            # `block`); what they read is handled or stays pending.
            _, slow = await asyncio.wait(tasks[:2], timeout=self.block + 1)
            for t in slow:
                t.cancel()
            await self.exporter.flush(deadline)
            await self.exporter.aclose(0)
            tasks[2].cancel()
            with contextlib.suppress(BaseException):
                await tasks[2]
            try:
                await self._flush_acks()
                await self.observe()
            except Exception as exc:  # noqa: BLE001 - Redis gone: the entries stay pending
                log.warning("hh_exporter relay: could not acknowledge %d entries at stop "
                            "(%s); they stay pending for the other relays", len(self._acks),
                            type(exc).__name__)
            await self._redis.aclose()
        return self.stats


def _id_key(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def failure_key(stream: str, entry_id: str) -> str:
    """Where a relay notes why an entry was left pending (for its dead-letter record)."""
    return f"{{{stream}}}:failure:{entry_id}"
