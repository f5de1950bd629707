"""The background delivery loop: start sessions, cut batches, send them under retry, account.

One worker task owns the buffer's output. It wakes when a batch is full, when a linger runs
out, when a request finishes, when a session is queued, or when a flush asks. It keeps up to
``max_starts_in_flight`` session starts and ``max_in_flight`` batch requests going, each in
its own task. A session's events are held until its ``POST /session/start`` returned 2xx
(see ``_buffer``).

With ``session_start="batch"`` a session's first batch creates it instead: it carries the
session's properties (``is_single_session: true``) and runs in a start slot, since it is
what the session's other events wait for. The first part of it answered 2xx, or a partial
success, created the session: its held events are released and later parts go mixed. A
part refused or out of retries hands the envelope to the next part (a 413 splits the
batch, and the first half keeps it); when no part created the session, its held events
are dropped as a failed start's are. Each event a batch holds ends in exactly one
counter: delivered, or dropped with a reason. How each answer to a batch is handled:

=========================  ==============================================================
2xx                        delivered; a body with ``success: false`` or fewer ``event_ids``
                           than events sent, or JSON that does not parse, is counted as
                           ``unconfirmed`` (and warned)
2xx not the API's          a content type that is not JSON, or JSON that is not the API's
                           answer (no object with ``event_ids``, ``success``,
                           ``session_id`` or ``event_id``): a captive portal or a wrong
                           ``api_url`` answered, nothing was stored. Retried like a 5xx,
                           then ``retries_exhausted``; logged once with what answered
5xx with ``event_ids`` +   final (partial success): listed ids ``delivered``, the rest
``errors``                 ``rejected`` with the server's errors; never retried, because
                           the API does not deduplicate and a retry would store the good
                           events again
408 425 429 5xx, errors    retried with backoff (``_retry``); then ``retries_exhausted``
413                        split in halves and each half sent; one event alone: ``too_large``
400 422 (other 4xx)        bisected to isolate the invalid events; those alone: ``rejected``
401 403                    ``unauthorized``, logged once, and the breaker pauses sending
3xx                        ``rejected``: redirects are never followed (a POST would turn
                           into a GET and the events vanish behind a 200)
=========================  ==============================================================
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ._breaker import CircuitBreaker
from ._buffer import Batch, Buffer, SessionStart
from ._encoding import batch_body
from ._errors import HHExporterError, TransportError
from ._retry import RETRYABLE_STATUSES, RetryableStatus, RetryPolicy, retry_call
from ._stats import Counters, DropReason
from ._transport import Response, Transport

__all__ = ["Sender"]

log = logging.getLogger("hh_exporter")

DropFn = Callable[[DropReason, int, "str | None", "int | None"], None]
SettledFn = Callable[[list[bytes], DropReason | None], None]
SessionFailedFn = Callable[[SessionStart, DropReason, str, "int | None"], None]


#: Splits one batch may make on 400/413 before the rest is dropped unsplit: isolating a few
#: bad events costs ~2 log2(n) requests, but a server that refuses *every* event would
#: otherwise cost 2n - 1 requests per batch.
MAX_SPLITS = 64


class _Answer(msgspec.Struct):
    """What the sender reads of a 2xx answer (``PostEventBatchResponse``), and the keys by
    which an answer is the API's (``PostEventBatchResponse``, ``PostEventResponse``,
    ``PostSessionStartResponse``: each requires one of them)."""

    event_ids: list[str] | None = None
    success: bool | None = None
    session_id: str | None = None
    event_id: str | None = None


class _Partial(msgspec.Struct):
    """A partial-success 5xx: ``{"event_ids": [...], "errors": [...], "success": true}``."""

    event_ids: list[str]
    errors: list[Any]


class _SessionAnswer(msgspec.Struct):
    """What the sender reads of a ``/session/start`` answer: the session's id."""

    session_id: str | None = None


class _EventId(msgspec.Struct):
    event_id: str | None = None


_decode_answer = msgspec.json.Decoder(_Answer).decode
_decode_partial = msgspec.json.Decoder(_Partial).decode
_decode_session = msgspec.json.Decoder(_SessionAnswer).decode
_decode_event_id = msgspec.json.Decoder(_EventId).decode


class _Flight:
    """One batch's request task and which of its events are still unresolved."""

    __slots__ = ("batch", "failure", "remaining", "session", "settled", "splits_left", "task")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        #: The session this batch creates, until a part of it did (``session_start="batch"``).
        self.session = batch.session
        #: Why the last part that carried the session's envelope did not create it.
        self.failure: tuple[DropReason, str, int | None] = ("session_failed", "", None)
        self.remaining = len(batch)
        self.splits_left = MAX_SPLITS
        self.task: asyncio.Task[None] | None = None
        # ids of events settled in parts (halves of a split, a partial success); a batch
        # settled whole, the common case, never fills it.
        self.settled: set[int] = set()

    def unsettled(self) -> list[bytes]:
        """The events not resolved yet, in order."""
        if self.remaining == len(self.batch):
            return self.batch.events
        if not self.remaining:
            return []
        return [e for e in self.batch.events if id(e) not in self.settled]


class _StartFlight:
    """One session start under way."""

    __slots__ = ("done", "start", "task")

    def __init__(self, start: SessionStart) -> None:
        self.start = start
        self.done = False
        self.task: asyncio.Task[None] | None = None


class Sender:
    """Strictly private: the exporter's delivery worker."""

    def __init__(
        self,
        *,
        buffer: Buffer,
        transport: Transport,
        counters: Counters,
        policy: RetryPolicy,
        breaker: CircuitBreaker,
        max_in_flight: int,
        max_starts_in_flight: int,
        session_route: str,
        drop: DropFn,
        session_failed: SessionFailedFn,
        on_progress: Callable[[], None],
        on_settled: SettledFn | None = None,
        clock: Callable[[], float] = time.monotonic,
        first_batches: bool = False,
    ) -> None:
        self.buffer = buffer
        self.transport = transport
        self.counters = counters
        self.policy = policy
        self.breaker = breaker
        self.max_in_flight = max_in_flight
        self.max_starts_in_flight = max_starts_in_flight
        # session_start="batch": sessions' first batches run in the start slots.
        self._first_batches = first_batches
        self.session_route = session_route
        self._drop = drop
        self._session_failed = session_failed
        self._on_progress = on_progress
        self._on_settled = on_settled
        self._clock = clock
        #: Called with (seconds, events, the answer or error) as each batch's delivery ends,
        #: after its last retry: the exporter's health metrics, when on.
        self.on_operation: Callable[[float, int, Response | HHExporterError], object] | None = None
        # A transport that is not the API itself (a Redis stream) answers for a whole body:
        # its 2xx confirms every event, with no event ids to count.
        self._whole = bool(getattr(transport, "confirms_whole_body", False))
        self._flights: set[_Flight] = set()
        self._first_flights = 0  # flights of sessions' first batches (they use start slots)
        self._starts: dict[str, _StartFlight] = {}
        self._wake = asyncio.Event()
        self._rng = random.Random()
        #: >0 while someone flushes: everything buffered is cut at once.
        self.forcing = 0
        #: Whether the worker waits with a request slot free (see :meth:`run`).
        self.hungry = False
        #: The same for a start slot, which sessions' first batches use.
        self.first_hungry = False
        self._logged: dict[str, float] = {}

    def wake(self) -> None:
        """Ask the worker to look at the buffer again."""
        self._wake.set()

    @property
    def starts_pending(self) -> int:
        """Session starts queued or under way."""
        return len(self.buffer.starts) + len(self._starts)

    # -- the worker loop ---------------------------------------------------------------

    async def run(self) -> None:
        """The worker: runs until cancelled. An exception here is a bug, and fails loudly."""
        buf = self.buffer
        while True:
            # Everything is looked at now; take_ready and take_first re-set them if needed.
            buf.ready = buf.first_ready = False
            timeout: float | None = None
            launched = False
            blocking = self.breaker.blocking
            if blocking:
                if buf.starts or buf.events:
                    timeout = self.breaker.reopen_in()
            else:
                while buf.starts and len(self._starts) < self.max_starts_in_flight:
                    self._launch_start(buf.starts.popleft())
                    launched = True
            free = self.max_in_flight - (len(self._flights) - self._first_flights)
            free_first = (self.max_starts_in_flight - len(self._starts) - self._first_flights
                          if self._first_batches else 0)
            if (free > 0 or free_first > 0) and buf.events and not blocking:
                now = self._clock()
                batches = []
                if free > 0:
                    # A flush cuts everything at once, but not while session starts (or
                    # first batches) are still releasing events: each would make its own
                    # small batch. Until the last is done, the usual rules apply.
                    force = self.forcing > 0 and not (
                        buf.starts or self._starts or self._first_flights or buf.first_pending)
                    batches = buf.take_ready(now, force=force, limit=free)
                if free_first > 0 and buf.first_pending:
                    batches += buf.take_first(now, force=self.forcing > 0, limit=free_first)
                for batch in batches:
                    self._launch(batch)
                launched = launched or bool(batches)
                deadline = buf.next_deadline(mixed=free > 0, first=free_first > 0)
                if deadline is not None:
                    timeout = max(0.0, deadline - now)
            if launched:
                self._on_progress()
                continue
            self._wake.clear()
            if not blocking and ((buf.ready and free > 0) or (buf.first_ready and free_first > 0)):
                continue
            # Only a worker with a free request slot wants to hear that a batch is ready;
            # with every slot busy, a finishing request wakes it. Without this, a full
            # buffer woke the worker on every log call for nothing.
            self.hungry = free > 0
            self.first_hungry = free_first > 0
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self.hungry = self.first_hungry = False

    def _launch(self, batch: Batch) -> None:
        flight = _Flight(batch)
        if flight.session is not None:
            self._first_flights += 1
        self.counters.in_flight_events += len(batch)
        self.counters.in_flight_requests += 1
        self._flights.add(flight)
        flight.task = asyncio.get_running_loop().create_task(self._deliver_all(flight, batch))

    def _launch_start(self, start: SessionStart) -> None:
        flight = _StartFlight(start)
        self._starts[start.session_id] = flight
        flight.task = asyncio.get_running_loop().create_task(self._start_all(flight))

    async def _deliver_all(self, flight: _Flight, batch: Batch) -> None:
        try:
            await self._deliver(flight, batch, self._clock() + self.policy.deadline)
        except asyncio.CancelledError:
            self._resolve(flight, flight.unsettled(), "shutdown", "cancelled by a flush or "
                          "close deadline", None)
            flight.failure = ("shutdown", "cancelled by a flush or close deadline", None)
            raise
        except Exception as exc:  # a bug in delivery must not strand events uncounted
            log.exception("hh_exporter: delivery of a batch failed unexpectedly")
            self._resolve(flight, flight.unsettled(), "worker_failed", repr(exc), None)
            flight.failure = ("worker_failed", repr(exc), None)
        finally:
            if flight.batch.session is not None:
                self._first_flights -= 1
            if flight.session is not None:  # no part of it created the session
                reason, detail, status = flight.failure
                self._fail_first(flight, reason, detail, status)
            self._flights.discard(flight)
            self.counters.in_flight_requests -= 1
            self.wake()
            self._on_progress()

    async def _start_all(self, flight: _StartFlight) -> None:
        try:
            await self._start(flight)
        except asyncio.CancelledError:
            self._fail_start(flight, "shutdown", "cancelled by a flush or close deadline", None)
            raise
        except Exception as exc:  # a bug must not leave the session's events held forever
            log.exception("hh_exporter: starting a session failed unexpectedly")
            self._fail_start(flight, "worker_failed", repr(exc), None)
        finally:
            self._starts.pop(flight.start.session_id, None)
            self.wake()
            self._on_progress()

    def _fail_first(self, flight: _Flight, reason: DropReason, detail: str,
                    status: int | None) -> None:
        """A session's first batch did not create it: its held events go as a failed
        start's do. Once per flight."""
        start, flight.session = flight.session, None
        if start is None:
            return
        self.counters.sessions_failed += 1
        self._session_failed(start, reason, f"session {start.session_id} could not be "
                             f"created by its first batch: {detail}", status)

    def _created(self, flight: _Flight, start: SessionStart, body: bytes | None) -> None:
        """A part of a session's first batch was answered: the session exists. Its held
        events join the mixed lanes; the answer's ``session_id``, if any, must be ours."""
        if flight.session is not start:
            return
        flight.session = None
        self.counters.sessions_started += 1
        sid = start.session_id
        answered = _answer_session(body) if body is not None else None
        if answered is not None and answered != sid:
            self.counters.session_mismatches += 1
            self._warn("mismatch", "hh_exporter: the first batch of session %s answered "
                       "session_id %r: the session's events may be stored apart", sid,
                       answered)
        self.buffer.created(sid)
        self.buffer.release(sid, self._clock())
        self.wake()

    def _fail_start(self, flight: _StartFlight, reason: DropReason, detail: str,
                    status: int | None) -> None:
        if flight.done:
            return
        flight.done = True
        self.counters.sessions_failed += 1
        self._session_failed(flight.start, reason, detail, status)

    def cancel_all(self, reason: DropReason = "shutdown", detail: str = "cut at a deadline",
                   spool: Callable[[str, list[bytes], bytes | None], bool] | None = None,
                   ) -> None:
        """Cancel every request under way and drop its events now, with ``reason``.

        With ``spool``, a batch none of whose events was resolved yet is handed to it and
        counted as ``spooled`` if it took them. Session starts under way are cancelled and
        their held events go the same way (the exporter's ``session_failed``). The
        accounting is synchronous, so the stats add up the moment this returns, even if the
        tasks only unwind later; their own cancellation handlers then find nothing left.
        """
        for flight in list(self._flights):
            untouched = flight.remaining == len(flight.batch)
            # A first batch's segment carries its session's start body: a replay creates
            # the session before its events.
            body = flight.session.body if flight.session is not None else None
            if spool is not None and untouched and spool(flight.batch.route,
                                                         flight.batch.events, body):
                self._resolve(flight, flight.batch.events, "spooled", detail, None)
            else:
                self._resolve(flight, flight.unsettled(), reason, detail, None)
            if flight.session is not None:
                self._fail_first(flight, reason, detail, None)
            if flight.task is not None:
                flight.task.cancel()
        for start in list(self._starts.values()):
            self._fail_start(start, reason, detail, None)
            if start.task is not None:
                start.task.cancel()

    async def wait_cancelled(self, timeout: float = 1.0) -> None:
        """Give cancelled requests a moment to unwind (their events are already counted)."""
        tasks = [f.task for f in self._flights if f.task is not None]
        tasks.extend(f.task for f in self._starts.values() if f.task is not None)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # -- requests ------------------------------------------------------------------------

    async def _post(self, path: str, body: bytes, final: Callable[[Response], bool]) -> Response:
        """One attempt: a POST through the breaker. Retryable answers raise, unless
        ``final`` says the answer settles the request anyway."""
        await self.breaker.acquire()
        self.counters.requests += 1
        try:
            resp = await self.transport.post(path, body)
        except TransportError as exc:
            self.breaker.record(False)
            self.counters.last_error = str(exc)
            raise
        except BaseException:
            # Cancelled mid-request: free a probe slot without judging the server.
            self.breaker.release()
            raise
        if 200 <= resp.status < 300:
            why = _not_the_api(resp)
            if why is not None:
                self.breaker.record(False)
                self._not_the_api(resp, path, why)
                raise RetryableStatus(resp.status, None, f"not the API's answer: {why}")
        if resp.status in RETRYABLE_STATUSES and not final(resp):
            self.breaker.record(False)
            detail = _detail(resp.body)
            self.counters.last_error = f"HTTP {resp.status}: {detail}"
            raise RetryableStatus(resp.status, resp.retry_after, detail)
        self.breaker.record(resp.status < 300 or resp.status in (400, 413, 422) or (
            resp.status in RETRYABLE_STATUSES))
        return resp

    async def _send(self, path: str, body: bytes, what: str, deadline: float,
                    final: Callable[[Response], bool]) -> Response | HHExporterError:
        """POST with retries; the last answer, or the error that ended the retries."""

        async def attempt() -> Response:
            return await self._post(path, body, final)

        def on_retry(exc: BaseException, wait: float) -> None:
            self.counters.retries += 1
            log.debug("hh_exporter: retrying %s in %.2fs after %s", what, wait, exc)

        try:
            return await retry_call(
                attempt, self.policy, deadline=max(0.0, deadline - self._clock()),
                on_retry=on_retry, rng=self._rng,
            )
        except HHExporterError as exc:
            return exc

    def _refused(self, status: int, detail: str) -> None:
        """Note a 401/403 or a redirect: logged once per exporter, loudly, without the key."""
        self.counters.last_error = f"HTTP {status}: {detail}"
        key = "auth" if status in (401, 403) else "redirect"
        if key in self._logged:
            return
        self._logged[key] = 0.0
        if key == "auth":
            log.error("hh_exporter: the API refused the API key (HTTP %d: %s); events are "
                      "dropped as 'unauthorized' until it is fixed", status, detail)
        else:
            log.error("hh_exporter: the API answered a redirect (HTTP %d: %s); redirects are "
                      "not followed: check api_url (events are dropped as 'rejected')",
                      status, detail)

    def _not_the_api(self, resp: Response, path: str, why: str) -> None:
        """Note a 2xx that is not the API's: logged once per exporter, saying what answered
        (the URL, never the key) and with what."""
        url = resp.url or path
        self.counters.last_error = f"HTTP {resp.status} from {url}: not the API's answer: {why}"
        if "not_api" in self._logged:
            return
        self._logged["not_api"] = 0.0
        log.error("hh_exporter: %s answered HTTP %d with %s, which is not the HoneyHive API's "
                  "answer: check api_url (a web page, a captive portal or a proxy answered); "
                  "the events are retried, then dropped as 'retries_exhausted'",
                  url, resp.status, why)

    def _warn(self, key: str, msg: str, *args: object) -> None:
        """A warning at most once per 10 s per kind: an outage must not flood the log."""
        now = time.monotonic()
        if now - self._logged.get(key, -1e9) >= 10.0:
            self._logged[key] = now
            log.warning(msg, *args)

    # -- one session start ---------------------------------------------------------------

    async def _start(self, flight: _StartFlight) -> None:
        start = flight.start
        sid = start.session_id
        got = await self._send(self.session_route, start.body, f"the start of session {sid}",
                               self._clock() + self.policy.deadline, _never_final)
        if isinstance(got, HHExporterError):
            self._fail_start(flight, "session_failed", f"session {sid} could not be started: "
                             f"{got}", getattr(got, "status", None))
            return
        status = got.status
        if 200 <= status < 300:
            flight.done = True
            self.counters.sessions_started += 1
            answered = _session_id(got.body)
            if answered != sid:
                self.counters.session_mismatches += 1
                self._warn("mismatch", "hh_exporter: POST %s for %s answered session_id %r: "
                           "the session's events may be stored apart", self.session_route, sid,
                           answered)
            self.buffer.release(sid, self._clock())
            self.wake()
            return
        detail = _detail(got.body)
        if status in (401, 403) or 300 <= status < 400:
            self._refused(status, detail)
            reason: DropReason = "unauthorized" if status in (401, 403) else "session_failed"
        else:
            reason = "session_failed"
            self.counters.last_error = f"HTTP {status}: {detail}"
        self._fail_start(flight, reason, f"session {sid} could not be started: HTTP {status}: "
                         f"{detail}", status)

    # -- one batch -----------------------------------------------------------------------

    def _resolve(
        self, flight: _Flight, events: list[bytes], reason: DropReason | None,
        detail: str | None, status: int | None,
    ) -> None:
        """Settle ``events`` of ``flight``: delivered (``reason`` None) or dropped."""
        n = len(events)
        if n <= 0:
            return
        if events is not flight.batch.events:
            flight.settled.update(map(id, events))
        flight.remaining -= n
        self.counters.in_flight_events -= n
        if reason is None:
            self.counters.delivered += n
        else:
            self._drop(reason, n, detail, status)
        if self._on_settled is not None:
            self._on_settled(events, reason)

    async def _deliver(self, flight: _Flight, batch: Batch, deadline: float) -> None:
        # The part sent while the session does not exist yet carries its envelope.
        carried = flight.session
        body = batch_body(batch.route, batch.events,
                          None if carried is None else carried.properties)
        began = self._clock()
        got = await self._send(batch.route, body, f"a batch of {len(batch)}", deadline,
                               _is_partial)
        if self.on_operation is not None:  # health metrics: one record per batch
            self.on_operation(self._clock() - began, len(batch), got)
        if isinstance(got, HHExporterError):
            status = getattr(got, "status", None)
            if carried is not None:
                flight.failure = ("session_failed", str(got), status)
            self._resolve(flight, batch.events, "retries_exhausted", str(got), status)
            return
        status = got.status
        if carried is not None:
            if 200 <= status < 300 or status >= 500:  # 2xx, or a partial success
                self._created(flight, carried, got.body if status < 300 else None)
            else:
                why: DropReason = "unauthorized" if status in (401, 403) else "session_failed"
                flight.failure = (why, f"HTTP {status}: {_detail(got.body)}", status)
        if 200 <= status < 300:
            self.counters.batches_sent += 1
            confirmed = len(batch) if self._whole else _confirmed(got.body, len(batch))
            if confirmed < len(batch):
                self.counters.unconfirmed += len(batch) - confirmed
                self._warn("unconfirmed", "hh_exporter: the API answered HTTP %d to a batch "
                           "of %d events but confirmed %d (success false or missing event_ids)",
                           status, len(batch), confirmed)
            self._resolve(flight, batch.events, None, None, status)
            return
        if status >= 500:  # only a partial success gets here: retryable 5xx raised above
            self._partial(flight, batch, got)
            return
        detail = _detail(got.body)
        if status in (401, 403):
            self._refused(status, detail)
            self._resolve(flight, batch.events, "unauthorized", detail, status)
            return
        if 300 <= status < 400:
            self._refused(status, detail)
            self._resolve(flight, batch.events, "rejected", f"HTTP {status} redirect", status)
            return
        if len(batch) > 1 and status in (413, 400, 422) and flight.splits_left > 0:
            # 413: halves are smaller. 400/422: bisect so only the invalid events are dropped.
            flight.splits_left -= 1
            for half in batch.split():
                await self._deliver(flight, half, deadline)
            return
        reason: DropReason = "too_large" if status == 413 else "rejected"
        self.counters.last_error = f"HTTP {status}: {detail}"
        self._resolve(flight, batch.events, reason, detail, status)

    def _partial(self, flight: _Flight, batch: Batch, resp: Response) -> None:
        """Account a partial success: the ids it lists were stored, the rest refused."""
        answer = _decode_partial(resp.body)
        stored = {i.lower() for i in answer.event_ids}
        ok: list[bytes] = []
        refused: list[bytes] = []
        for e in batch.events:
            (ok if _event_id(e) in stored else refused).append(e)
        errors = "; ".join(str(e) for e in answer.errors[:5])[:500] or "partially created"
        self.counters.batches_sent += 1
        self.counters.last_error = f"HTTP {resp.status}: {errors}"
        self._resolve(flight, ok, None, None, resp.status)
        self._resolve(flight, refused, "rejected", errors, resp.status)


def _is_json_type(ctype: str) -> bool:
    return ctype in ("application/json", "text/json") or ctype.endswith("+json")


def _not_the_api(resp: Response) -> str | None:
    """Why a 2xx is not the API's answer, or None if it may be. The API always answers
    JSON: another media type means something else answered. A JSON body that does not
    parse stays the API's (counted unconfirmed): a cut answer, not a stranger."""
    ctype = resp.content_type
    if ctype is not None and not _is_json_type(ctype):
        return f"Content-Type {ctype or '(none)'} ({len(resp.body)} bytes)"
    try:
        shape = _decode_answer(resp.body)
    except msgspec.ValidationError as exc:  # JSON, but not shaped as the API answers
        return f"a JSON body not the API's ({str(exc)[:80]})"
    except msgspec.DecodeError:
        return None
    if shape.event_ids is None and shape.success is None and shape.session_id is None \
            and shape.event_id is None:
        return "a JSON body with none of event_ids, success, session_id, event_id"
    return None


def _never_final(resp: Response) -> bool:
    return False


def _is_partial(resp: Response) -> bool:
    """Whether a 5xx is the API's partial success (final: a retry would duplicate)."""
    if resp.status < 500 or not resp.body.startswith(b"{"):
        return False
    try:
        _decode_partial(resp.body)
    except msgspec.DecodeError:
        return False
    return True


def _confirmed(body: bytes, n: int) -> int:
    """How many of ``n`` events a 2xx answer confirms."""
    try:
        answer = _decode_answer(body)
    except msgspec.DecodeError:
        return 0
    if answer.success is False or answer.event_ids is None:
        return 0
    return min(n, len(answer.event_ids))


def _answer_session(body: bytes) -> str | None:
    """The ``session_id`` of a batch's 2xx answer (``PostEventBatchResponse``), if any."""
    try:
        return _decode_answer(body).session_id
    except msgspec.DecodeError:
        return None


def _session_id(body: bytes) -> str | None:
    try:
        return _decode_session(body).session_id
    except msgspec.DecodeError:
        return None


def _event_id(event: bytes) -> str | None:
    try:
        eid = _decode_event_id(event).event_id
    except msgspec.DecodeError:
        return None
    return None if eid is None else eid.lower()


def _detail(body: bytes) -> str:
    """The server's message, short, from a JSON error body or plain text."""
    if not body:
        return ""
    text = body[:500].decode("utf-8", "replace")
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return text.strip()
    if isinstance(obj, dict):
        for key in ("error", "message", "detail", "errors"):
            if key in obj:
                return str(obj[key])[:500]
    return text.strip()
