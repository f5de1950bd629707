"""The background delivery loop: wait, cut batches, send them under retry, account for each.

One worker task owns the buffer's output. It wakes when a batch is full, when a linger runs
out, when a request finishes, or when a flush asks; it keeps up to ``max_in_flight`` requests
going, each in its own task. Each event a batch holds ends in exactly one counter: delivered,
or dropped with a reason. How each answer is handled:

======================  =================================================================
2xx                     delivered
408 425 429 5xx, errors retried with backoff (``_retry``); then ``retries_exhausted``
413                     split in halves and each half sent; one event alone: ``too_large``
400 422 (other 4xx)     bisected to isolate the invalid events; those alone: ``rejected``
401 403                 ``unauthorized``, logged once, and the breaker pauses sending
======================  =================================================================
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import msgspec

from ._breaker import CircuitBreaker
from ._buffer import Batch, Buffer
from ._encoding import batch_body
from ._errors import HHExporterError, TransportError
from ._retry import RETRYABLE_STATUSES, RetryableStatus, RetryPolicy, retry_call
from ._stats import Counters, DropReason
from ._transport import Response, Transport

__all__ = ["Sender"]

log = logging.getLogger("hh_exporter")

DropFn = Callable[[DropReason, int, "str | None", "int | None"], None]


#: Splits one batch may make on 400/413 before the rest is dropped unsplit: isolating a few
#: bad events costs ~2 log2(n) requests, but a server that refuses *every* event would
#: otherwise cost 2n - 1 requests per batch.
MAX_SPLITS = 64


class _Flight:
    """One batch's request task and how many of its events are still unresolved."""

    __slots__ = ("batch", "remaining", "splits_left", "task")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.remaining = len(batch)
        self.splits_left = MAX_SPLITS
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
        drop: DropFn,
        on_progress: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buffer = buffer
        self.transport = transport
        self.counters = counters
        self.policy = policy
        self.breaker = breaker
        self.max_in_flight = max_in_flight
        self._drop = drop
        self._on_progress = on_progress
        self._clock = clock
        self._flights: set[_Flight] = set()
        self._wake = asyncio.Event()
        self._rng = random.Random()
        #: >0 while someone flushes: everything buffered is cut at once.
        self.forcing = 0
        #: Whether the worker waits with a request slot free (see :meth:`run`).
        self.hungry = False
        self._auth_logged = False

    def wake(self) -> None:
        """Ask the worker to look at the buffer again."""
        self._wake.set()

    # -- the worker loop ---------------------------------------------------------------

    async def run(self) -> None:
        """The worker: runs until cancelled. An exception here is a bug, and fails loudly."""
        buf = self.buffer
        while True:
            free = self.max_in_flight - len(self._flights)
            timeout: float | None = None
            if free > 0 and buf.events:
                if self.breaker.blocking:
                    timeout = self.breaker.reopen_in()
                else:
                    now = self._clock()
                    batches = buf.take_ready(now, force=self.forcing > 0, limit=free)
                    for batch in batches:
                        self._launch(batch)
                    if batches:
                        self._on_progress()
                        continue
                    deadline = buf.next_deadline()
                    if deadline is not None:
                        timeout = max(0.0, deadline - now)
            self._wake.clear()
            if buf.ready and free > 0 and not self.breaker.blocking:
                continue
            # Only a worker with a free request slot wants to hear that a batch is ready;
            # with every slot busy, a finishing request wakes it. Without this, a full
            # buffer woke the worker on every log call for nothing.
            self.hungry = free > 0
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self.hungry = False

    def _launch(self, batch: Batch) -> None:
        flight = _Flight(batch)
        self.counters.in_flight_events += len(batch)
        self.counters.in_flight_requests += 1
        self._flights.add(flight)
        flight.task = asyncio.get_running_loop().create_task(self._deliver_all(flight, batch))

    async def _deliver_all(self, flight: _Flight, batch: Batch) -> None:
        try:
            await self._deliver(flight, batch, self._clock() + self.policy.deadline)
        except asyncio.CancelledError:
            self._resolve(flight, flight.remaining, "shutdown", "cancelled by a flush or close "
                          "deadline", None)
            raise
        except Exception as exc:  # a bug in delivery must not strand events uncounted
            log.exception("hh_exporter: delivery of a batch failed unexpectedly")
            self._resolve(flight, flight.remaining, "worker_failed", repr(exc), None)
        finally:
            self._flights.discard(flight)
            self.counters.in_flight_requests -= 1
            self.wake()
            self._on_progress()

    def cancel_all(
        self, reason: DropReason = "shutdown", detail: str = "cut at a deadline",
        spool: Callable[[list[bytes]], bool] | None = None,
    ) -> None:
        """Cancel every request under way and drop its events now, with ``reason``.

        With ``spool``, a batch none of whose events was resolved yet is handed to it and
        counted as ``spooled`` if it took them. The accounting is synchronous, so the stats
        add up the moment this returns, even if the tasks only unwind later; their own
        cancellation handlers then find nothing left.
        """
        for flight in list(self._flights):
            untouched = flight.remaining == len(flight.batch)
            if spool is not None and untouched and spool(flight.batch.events):
                self._resolve(flight, flight.remaining, "spooled", detail, None)
            else:
                self._resolve(flight, flight.remaining, reason, detail, None)
            if flight.task is not None:
                flight.task.cancel()

    async def wait_cancelled(self, timeout: float = 1.0) -> None:
        """Give cancelled requests a moment to unwind (their events are already counted)."""
        tasks = [f.task for f in self._flights if f.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # -- one batch -----------------------------------------------------------------------

    def _resolve(
        self, flight: _Flight, n: int, reason: DropReason | None, detail: str | None,
        status: int | None,
    ) -> None:
        if n <= 0:
            return
        flight.remaining -= n
        self.counters.in_flight_events -= n
        if reason is None:
            self.counters.delivered += n
        else:
            self._drop(reason, n, detail, status)

    async def _deliver(self, flight: _Flight, batch: Batch, deadline: float) -> None:
        body = batch_body(batch.route, batch.events, batch.session_properties)

        async def attempt() -> Response:
            await self.breaker.acquire()
            self.counters.requests += 1
            try:
                resp = await self.transport.post(batch.route, body)
            except TransportError as exc:
                self.breaker.record(False)
                self.counters.last_error = str(exc)
                raise
            except BaseException:
                # Cancelled mid-request: free a probe slot without judging the server.
                self.breaker.release()
                raise
            if resp.status in RETRYABLE_STATUSES:
                self.breaker.record(False)
                detail = _detail(resp.body)
                self.counters.last_error = f"HTTP {resp.status}: {detail}"
                raise RetryableStatus(resp.status, resp.retry_after, detail)
            self.breaker.record(resp.status < 400 or resp.status in (400, 413, 422))
            return resp

        def on_retry(exc: BaseException, wait: float) -> None:
            self.counters.retries += 1
            log.debug("hh_exporter: retrying a batch of %d in %.2fs after %s", len(batch), wait,
                      exc)

        try:
            resp = await retry_call(
                attempt, self.policy, deadline=max(0.0, deadline - self._clock()),
                on_retry=on_retry, rng=self._rng,
            )
        except HHExporterError as exc:
            status = getattr(exc, "status", None)
            self._resolve(flight, len(batch), "retries_exhausted", str(exc), status)
            return

        status = resp.status
        if 200 <= status < 300:
            self.counters.batches_sent += 1
            self._resolve(flight, len(batch), None, None, status)
            return
        detail = _detail(resp.body)
        if status in (401, 403):
            self.counters.last_error = f"HTTP {status}: {detail}"
            if not self._auth_logged:
                self._auth_logged = True
                log.error("hh_exporter: the API refused the API key (HTTP %d: %s); events are "
                          "dropped as 'unauthorized' until it is fixed", status, detail)
            self._resolve(flight, len(batch), "unauthorized", detail, status)
            return
        if len(batch) > 1 and status in (413, 400, 422) and flight.splits_left > 0:
            # 413: halves are smaller. 400/422: bisect so only the invalid events are dropped.
            flight.splits_left -= 1
            for half in batch.split():
                await self._deliver(flight, half, deadline)
            return
        reason: DropReason = "too_large" if status == 413 else "rejected"
        self.counters.last_error = f"HTTP {status}: {detail}"
        self._resolve(flight, len(batch), reason, detail, status)


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
