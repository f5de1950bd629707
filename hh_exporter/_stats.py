"""Delivery counters, the immutable stats snapshot, and drop notices.

Every accepted event is in exactly one of three states: delivered, dropped (with a reason), or
pending (buffered or in a request). ``accepted == delivered + dropped + pending`` always.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

__all__ = ["DROP_REASONS", "DropNotice", "DropReason", "ExporterStats"]

DropReason = Literal[
    "queue_full", "too_large", "rejected", "unauthorized", "retries_exhausted", "shutdown",
    "spooled", "worker_failed", "session_failed", "spool_failed", "redacted",
    "redacted_failed",
]
#: Every reason an accepted event can leave without delivery. ``spooled`` events were written
#: to ``spool_dir`` (cut by a deadline, or overflowing the buffer) for a later exporter, or
#: ``hh-exporter ingest``, to replay; ``spool_failed`` ones could not be (a full disk, the
#: spool at its bound).
#: ``session_failed`` events belong to a session whose ``POST /session/start`` was refused or
#: ran out of retries: sent anyway, they would land in a session the API auto-creates.
#: ``redacted`` events were dropped on purpose by the ``redact`` hook (it returned None);
#: ``redacted_failed`` ones by a hook that raised (fail closed: never sent unredacted).
DROP_REASONS: tuple[DropReason, ...] = (
    "queue_full", "too_large", "rejected", "unauthorized", "retries_exhausted", "shutdown",
    "spooled", "worker_failed", "session_failed", "spool_failed", "redacted",
    "redacted_failed",
)
#: Reasons that cut an event short rather than answer it: a deadline, a close, a dead
#: worker. The API never saw these events (or its answer was not awaited), so a loader that
#: records progress (a checkpoint, a stream's acknowledgement) must not count them as done.
CUT_REASONS: frozenset[DropReason] = frozenset(("shutdown", "spooled", "worker_failed"))


@dataclasses.dataclass(frozen=True, slots=True)
class DropNotice:
    """What the ``on_drop`` callback receives when events are dropped.

    Attributes:
        reason: Why they were dropped.
        count: How many events.
        detail: The server's message or the error, if any (never the API key).
        status: The HTTP status that caused the drop, if any.
    """

    reason: DropReason
    count: int
    detail: str | None = None
    status: int | None = None


DropCallback = Callable[[DropNotice], object]


@dataclasses.dataclass(frozen=True, slots=True)
class ExporterStats:
    """An immutable snapshot of an exporter's counters (see :meth:`Exporter.stats`).

    Attributes:
        accepted: Events accepted by a log call or ``send``.
        delivered: Events the server acknowledged with a 2xx (or listed as created in a
            partial-success 5xx).
        unconfirmed: Of ``delivered``, events whose 2xx answer did not confirm them
            (``success: false``, or fewer ``event_ids`` than events sent).
        dropped: Events dropped, by reason (every reason present, zero or not).
        pending: Events accepted but neither delivered nor dropped: buffered or in flight.
        pending_bytes: Encoded bytes of the buffered events.
        buffered: Events in the buffer, waiting for a batch.
        in_flight_events: Events in requests under way, retry waits included.
        in_flight_requests: Requests under way.
        batches_sent: Requests that got a 2xx.
        requests: Requests made, answered or not.
        retries: Retry attempts made.
        refused: Log calls refused outright (invalid event, or exporter closed); not accepted.
        sessions_started: Sessions the API confirmed with a 2xx to ``POST /session/start``
            (with ``session_start="batch"``: to their first batch, or a partial success).
        sessions_failed: Sessions that could not be started (their events are dropped as
            ``session_failed``, ``unauthorized`` or ``shutdown``).
        sessions_pending: Session starts queued or under way.
        session_mismatches: Session starts (or first batches) whose answer named another
            ``session_id``.
        replayed: Of ``accepted``, events replayed from ``spool_dir`` (left by an earlier
            exporter).
        spool_torn: Lines of spool segments that could not be read (a torn last line after a
            crash), skipped.
        breaker: Circuit breaker state: ``closed``, ``open`` or ``half_open``.
        last_error: The last delivery error, without secrets.
    """

    accepted: int
    delivered: int
    unconfirmed: int
    dropped: Mapping[str, int]
    pending: int
    pending_bytes: int
    buffered: int
    in_flight_events: int
    in_flight_requests: int
    batches_sent: int
    requests: int
    retries: int
    refused: int
    sessions_started: int
    sessions_failed: int
    sessions_pending: int
    session_mismatches: int
    replayed: int
    spool_torn: int
    breaker: str
    last_error: str | None

    @property
    def dropped_total(self) -> int:
        """All dropped events, whatever the reason."""
        return sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        """Whether ``accepted == delivered + dropped + pending`` holds in this snapshot."""
        return self.accepted == self.delivered + self.dropped_total + self.pending


class Counters:
    """Mutable counters owned by one exporter. Strictly private."""

    __slots__ = (
        "accepted",
        "batches_sent",
        "cut",
        "delivered",
        "dropped",
        "in_flight_events",
        "in_flight_requests",
        "last_error",
        "refused",
        "replayed",
        "requests",
        "retries",
        "session_mismatches",
        "sessions_failed",
        "sessions_started",
        "spool_torn",
        "unconfirmed",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.delivered = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.in_flight_events = 0
        self.in_flight_requests = 0
        self.batches_sent = 0
        self.requests = 0
        self.retries = 0
        self.refused = 0
        self.unconfirmed = 0
        #: Events dropped without an answer from the server (a deadline, a close, a
        #: failure): flush() compares it to tell "all answered" from "some cut".
        self.cut = 0
        self.sessions_started = 0
        self.sessions_failed = 0
        self.session_mismatches = 0
        self.replayed = 0
        self.spool_torn = 0
        self.last_error: str | None = None

    def snapshot(self, *, buffered: int, buffered_bytes: int, breaker: str,
                 sessions_pending: int = 0) -> ExporterStats:
        """Freeze the counters together with the buffer's state."""
        return ExporterStats(
            accepted=self.accepted,
            delivered=self.delivered,
            unconfirmed=self.unconfirmed,
            dropped=MappingProxyType(dict(self.dropped)),
            pending=buffered + self.in_flight_events,
            pending_bytes=buffered_bytes,
            buffered=buffered,
            in_flight_events=self.in_flight_events,
            in_flight_requests=self.in_flight_requests,
            batches_sent=self.batches_sent,
            requests=self.requests,
            retries=self.retries,
            refused=self.refused,
            sessions_started=self.sessions_started,
            sessions_failed=self.sessions_failed,
            sessions_pending=sessions_pending,
            session_mismatches=self.session_mismatches,
            replayed=self.replayed,
            spool_torn=self.spool_torn,
            breaker=breaker,
            last_error=self.last_error,
        )
