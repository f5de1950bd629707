"""The public facade: lifecycle, the log calls, backpressure, flush and close, stats.

The hot path (``log_model_event``/``log_event``) checks and encodes the event in the calling
thread, then hands the bytes to the buffer: directly on the event loop's thread, through a
locked inbox from any other thread (which the loop polls while events come, and is woken
for once after a quiet spell). It never awaits and never does I/O.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import enum
import logging
import os
import sys
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, Unpack

import msgspec

from ._breaker import CircuitBreaker
from ._buffer import Buffer, SessionStart
from ._config import ExporterConfig
from ._encoding import (
    GENERIC_ROUTE,
    MODEL_ROUTE,
    SESSION_ROUTE,
    V1_ROUTE,
    V1_SESSION_ROUTE,
    body_overhead,
)
from ._errors import BufferFullError, EventError, ExporterClosedError
from ._events import (
    EventFields,
    ModelEventFields,
    SessionFields,
    describe,
    encode_event_v1,
    encode_model_event_v1,
    encode_session,
    fast_event,
    fast_model_event,
)
from ._ids import new_id
from ._metrics import ExporterMetrics, install
from ._replay import Replay
from ._retry import RetryPolicy
from ._runner import LoopThread
from ._sender import Sender
from ._session import Session
from ._spool import SpoolWriter
from ._stats import (
    CUT_REASONS,
    Counters,
    DropCallback,
    DropNotice,
    DropReason,
    ExporterStats,
)
from ._trace import TraceMixin
from ._transport import AiohttpTransport, Transport
from .redact import Redactor, resolve
from .wire._start import envelope_properties

_T = TypeVar("_T")
_Encoder = Callable[[dict[str, Any], str | None, str, str | None], tuple[str, bytes]]
__all__ = ["Exporter", "in_thread", "start_in_thread", "stop_thread"]

log = logging.getLogger("hh_exporter")
_live: weakref.WeakSet[Exporter] = weakref.WeakSet()
# Held by the one thread that restarts an inherited exporter in a forked child.
_reviving = threading.Lock()
# The parent's transports, as a child inherited them: kept, never closed or collected here
# (their sockets and loop are the parent's; a finaliser would warn about, or touch, them).
_inherited: list[object] = []
# Events from other threads: the loop is not woken per event (a self-pipe write and a GIL
# hand-off cost the caller 10-100 µs). While they keep coming, the loop polls the inbox every
# tick; after _INBOX_IDLE_TICKS quiet ticks it stops, and the next event wakes it once. A
# flood wakes it at once every _INBOX_WAKE_AT events: the inbox is outside the buffer's bound.
_INBOX_TICK = 0.005
_INBOX_IDLE_TICKS = 20
_INBOX_WAKE_AT = 1024

# Inbox routes that carry no event but the count of one withheld by the redact hook.
_WITHHELD: frozenset[str] = frozenset(("redacted", "redacted_failed"))


class _Withheld(Exception):
    """The redact hook dropped the event (counted): the log call returns its id."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id


_DEAD_LOOP = ("this exporter's event loop is closed (was it used from a second asyncio.run()?): "
              "create the Exporter inside the loop that uses it, e.g. with "
              "'async with Exporter(...)' in your main coroutine")


class _State(enum.Enum):
    NEW = "new"  # accepting events into the buffer; the worker has not started
    RUNNING = "running"  # the worker is delivering
    CLOSING = "closing"  # aclose() is delivering what it can; new events are refused
    CLOSED = "closed"  # done; new events are refused
    FAILED = "failed"  # the worker died; pending events were dropped as worker_failed
    FORKED = "forked"  # inherited by a child process: empty, restarts on first use there


class Exporter(TraceMixin):
    """Ships events to the HoneyHive API from a bounded buffer, in the background.

    Use it as an async context manager; it starts on entry and closes (delivering what it
    can within ``close_timeout``) on exit::

        async with hh_exporter.Exporter(project="support-bot") as hh:
            chat = hh.session(session_name="chat")
            chat.log_model_event(model="gpt-4o", provider="openai", messages=msgs,
                                 response=reply, duration=812, usage=usage)

    Args:
        api_key: Defaults to ``HH_API_KEY``.
        project: Defaults to ``HH_PROJECT``.
        api_url: Defaults to ``HH_API_URL``, then ``https://api.honeyhive.ai``.
        source: Defaults to ``HH_SOURCE``, then ``dev``.
        config: A complete :class:`ExporterConfig`; then no other setting may be given.
        transport: Replaces the aiohttp transport (for tests: :mod:`hh_exporter.testing`).
        on_drop: Called with a :class:`DropNotice` whenever events are dropped. It runs on
            the event loop and must not block; its exceptions are logged and ignored.
        on_settled: Called with the encoded events (the very ``bytes`` objects handed to
            :meth:`send_encoded`) and ``None`` when they are delivered, or the
            :data:`DropReason` when they are dropped. For loaders that record how far they
            got (``ingest``'s checkpoint, the stream relay's acknowledgements): a reason in
            ``CUT_REASONS`` means the API never answered for those events. Same rules as
            ``on_drop``.
        redact: ``True`` runs the built-in rules of :mod:`hh_exporter.redact` on every
            event's and session's fields before they are encoded (so the wire, the spool
            and a Redis stream never see the originals); a callable (a
            :data:`~hh_exporter.redact.Redactor`) runs instead and may return ``None`` to
            drop the event (counted ``redacted``); one that raises drops it too (counted
            ``redacted_failed``, logged with the exception's type only). Off by default.
        **options: Any other :class:`ExporterConfig` field, e.g. ``linger=0.5``.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        project: str | None = None,
        api_url: str | None = None,
        source: str | None = None,
        config: ExporterConfig | None = None,
        transport: Transport | None = None,
        on_drop: DropCallback | None = None,
        on_settled: Callable[[list[bytes], DropReason | None], object] | None = None,
        redact: bool | Redactor | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            config = ExporterConfig.from_env(
                api_key=api_key, project=project, api_url=api_url, source=source, **options
            )
        elif api_key or project or api_url or source or options:
            raise TypeError("pass either config= or individual settings, not both")
        self.config = config
        self._redact = resolve(redact)
        self._project = config.project
        self._v1 = config.api == "v1"
        # The wire routes and encoders of the configured API generation, chosen once.
        self._encode_model: _Encoder
        self._encode_generic: _Encoder
        if self._v1:
            self._model_route, self._generic_route = V1_ROUTE, V1_ROUTE
            self._encode_model, self._encode_generic = encode_model_event_v1, encode_event_v1
        else:
            self._model_route, self._generic_route = MODEL_ROUTE, GENERIC_ROUTE
            self._encode_model, self._encode_generic = fast_model_event, fast_event
        self._source = config.source
        # Sessions created by their first batch instead of POST /session/start.
        self._batch_sessions = config.session_start == "batch"
        self._announce_lock = threading.Lock()
        # The largest event a batch body can carry.
        self._max_event = config.max_batch_bytes - body_overhead()
        self._buffer = _new_buffer(config)
        self._counters = Counters()
        # Ours to close: the one we make, or one made for us (a StreamExporter's stream).
        self._own_transport = transport is None or getattr(
            transport, "closed_with_exporter", False) is True
        self._transport: Transport = transport or AiohttpTransport(
            config.api_url, config.api_key, timeout=config.request_timeout,
            max_connections=config.max_in_flight + config.max_starts_in_flight,
            user_agent_suffix=config.user_agent_suffix, trust_env=config.trust_env,
        )
        self._on_drop = on_drop
        self._on_settled = on_settled
        self._spool_writer = _spool_writer(config)
        self._metrics = _metrics(self) if config.metrics else None
        self._overflow_spool = config.overflow == "spool"
        self._replay: Replay | None = None
        self._state = _State.NEW
        self._accepting = True
        self._fail_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = threading.get_ident()
        # Other threads hand events over through this inbox, under the lock: a call that
        # returned an id has its event in the inbox, and whoever closes the inbox drains it,
        # so no returned id can go unaccounted (a loop callback per event could be lost
        # with its loop, and cost a self-pipe write each).
        self._lock = threading.Lock()
        self._inbox: list[tuple[str | None, str | None, bytes]] = []
        self._inbox_open = True
        self._polling = False  # the loop polls the inbox (set by callers, under the lock)
        self._idle_ticks = 0
        self._sender: Sender | None = None
        self._worker: asyncio.Task[None] | None = None
        self._progress: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        self._last_drop_log: dict[str, float] = {}
        # Sessions whose start failed, most recent last (bounded): their later events are
        # dropped at once instead of landing in a session the API would auto-create.
        self._failed_sessions: OrderedDict[str, str] = OrderedDict()
        # The loop thread this exporter runs on when it owns one (SyncExporter's, a forked
        # child's, the atexit flush's); None when it runs on the caller's loop.
        self._runner: LoopThread | None = None
        self._renew_transport = False  # inherited across fork(): a fresh one at start
        _live.add(self)

    def __repr__(self) -> str:
        # A transport may name its destination itself (a Redis stream: never its URL).
        label = getattr(self._transport, "label", None)
        where = label if isinstance(label, str) and label else f"url={self.config.api_url!r}"
        return (
            f"<{type(self).__name__} project={self._project!r} {where} "
            f"state={self._state.value} pending={self._buffer.events}>"
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Exporter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the background worker on the running loop. Idempotent."""
        if self._state is _State.RUNNING:
            return
        if self._state is _State.FORKED:  # inherited across fork(): starts afresh here
            self._state = _State.NEW
            self._accepting = self._inbox_open = True
        if self._state is not _State.NEW:
            raise ExporterClosedError(self._refusal())
        if self._renew_transport:
            self._renew_transport = False
            fresh = getattr(self._transport, "fresh", None)
            if callable(fresh):
                _inherited.append(self._transport)
                self._transport = fresh()
        loop = asyncio.get_running_loop()
        with self._lock:
            self._loop = loop
            self._thread_id = threading.get_ident()
        self._progress = asyncio.Event()
        self._closed = asyncio.Event()
        c = self.config
        self._sender = Sender(
            buffer=self._buffer,
            transport=self._transport,
            counters=self._counters,
            policy=RetryPolicy(
                max_attempts=c.max_attempts, deadline=c.retry_deadline,
                backoff_initial=c.backoff_initial, backoff_max=c.backoff_max,
                retry_after_max=c.retry_after_max,
            ),
            breaker=CircuitBreaker(c.breaker_threshold, c.breaker_cooldown),
            max_in_flight=c.max_in_flight,
            max_starts_in_flight=c.max_starts_in_flight,
            session_route=V1_SESSION_ROUTE if self._v1 else SESSION_ROUTE,
            drop=self._drop,
            session_failed=self._session_failed,
            on_progress=self._progress.set,
            first_batches=self._batch_sessions,
            on_settled=self._settled if (
                self._on_settled is not None or self._spool_writer is not None) else None,
        )
        if self._metrics is not None:
            self._sender.on_operation = self._metrics.record_operation
        self._state = _State.RUNNING
        self._worker = loop.create_task(self._run_worker(self._sender),
                                        name="hh_exporter-worker")
        self._worker.add_done_callback(self._worker_done)
        self._drain_inbox()
        if self.config.spool_dir is not None:
            # Late-bound where the exporter's own may change (its dispatch, its closed state).
            self._replay = Replay(
                self.config.spool_dir, buffer=self._buffer, counters=self._counters,
                progress=self._progress,
                room=max(1, c.max_in_flight // 2) * c.max_batch_events,
                project=self._project, v1=self._v1,
                start_session=lambda sid, body: self._dispatch(None, sid, body),
                accept=self._accept, spool=self._spool, closed=lambda: self.closed)
            self._replay.start(loop)

    async def _run_worker(self, sender: Sender) -> None:
        try:
            await sender.run()
        except asyncio.CancelledError:
            if self._state is _State.RUNNING:
                # Not our close: the loop is going away (asyncio.run() ended without
                # aclose()). Count what is left and release the connections while the loop
                # still runs; later calls say what to do instead of returning dead ids.
                self._fail("its event loop shut down without aclose() (did an asyncio.run() "
                           "end?): create the Exporter inside the loop that uses it, e.g. "
                           "'async with Exporter(...)' in your main coroutine")
                log.error("hh_exporter: the event loop shut down under a running exporter; "
                          "pending events are dropped as 'worker_failed'")
                if self._own_transport:
                    await self._transport.aclose()
            raise

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._state is not _State.RUNNING:
            return
        exc = task.exception()
        self._fail(f"the delivery worker failed: {exc!r}")
        log.error("hh_exporter: the delivery worker died; pending events are dropped",
                  exc_info=exc)

    def _fail(self, reason: str) -> None:
        self._state = _State.FAILED
        self._accepting = False
        self._close_inbox()
        self._fail_reason = reason
        self._counters.last_error = reason
        if self._sender is not None:
            self._sender.cancel_all("worker_failed", reason)
        self._buffer.starts.clear()
        for _, left in self._buffer.drain_all():
            self._drop("worker_failed", len(left), reason, None, left)
        if self._replay is not None:
            self._replay.stop()
        if self._progress is not None:
            self._progress.set()

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything pending now, and wait until nothing is pending.

        Queued session starts are sent too, and the events they hold. At the deadline
        (``close_timeout`` by default) requests still under way are cancelled and their
        events dropped as ``shutdown`` (or written to ``spool_path``); buffered events stay
        pending.

        Returns:
            True if nothing is pending and nothing was cut meanwhile by a deadline, a close
            or a failure (events the server refused or that ran out of retries are settled,
            with their reason in :meth:`stats`); False otherwise.

        Raises:
            ExporterClosedError: Called on another event loop than the exporter's.
        """
        runner = self._runner
        if runner is not None and runner.alive and not runner.current():
            return await runner.wrap(self.flush(timeout))  # it runs on its own loop thread
        timeout = self.config.close_timeout if timeout is None else timeout
        self._check_loop()
        if self._state is _State.NEW:
            await self.start()  # events logged before start are delivered too
        self._drain_inbox()
        cut = self._counters.cut
        sender, progress = self._sender, self._progress
        if sender is None or progress is None or (self._state is not _State.RUNNING and (
            self._state is not _State.CLOSING
        )):
            return self._pending() == 0
        sender.forcing += 1
        sender.wake()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    progress.clear()
                    if self._pending() == 0 and sender.starts_pending == 0:
                        # True only if nothing was cut meanwhile (say, by a concurrent close).
                        return self._counters.cut == cut
                    await progress.wait()
        except TimeoutError:
            sender.cancel_all(spool=self._spool_fn())
            await sender.wait_cancelled(0.1)
            return False
        finally:
            sender.forcing -= 1

    def flush_from_thread(self, timeout: float | None = None) -> bool:
        """Block another thread until :meth:`flush` returns on the exporter's loop: whether
        everything pending was settled within ``timeout`` (default ``close_timeout``).

        False without a running loop, if the loop goes away, and on the loop's own thread,
        where blocking would deadlock (``await flush()`` there instead).
        """
        deadline = self.config.close_timeout if timeout is None else timeout
        ran, result = self._block_on_loop(lambda: self.flush(deadline), deadline)
        return ran and bool(result)

    def close_from_thread(self, timeout: float | None = None) -> None:
        """Block another thread until :meth:`aclose` returns on the exporter's loop (within
        ``timeout``, default ``close_timeout``). Does nothing without a running loop, or on
        the loop's own thread (``await aclose()`` there instead)."""
        deadline = self.config.close_timeout if timeout is None else timeout
        self._block_on_loop(lambda: self.aclose(deadline), deadline)

    def _block_on_loop(self, make: Callable[[], Coroutine[Any, Any, _T]],
                       timeout: float) -> tuple[bool, _T | None]:
        loop = self._loop
        if loop is None or loop.is_closed():
            return False, None
        if threading.get_ident() == self._thread_id:
            return False, None
        try:
            # A second past the deadline: the call honours it, this only guards a stuck loop.
            return True, asyncio.run_coroutine_threadsafe(make(), loop).result(timeout + 1.0)
        except Exception:  # noqa: BLE001 - a deadline, or the loop went away
            return False, None

    async def aclose(self, timeout: float | None = None) -> None:
        """Deliver what can be delivered within ``timeout``, then stop. Idempotent.

        Whatever is still pending at the deadline is dropped as ``shutdown``. New events are
        refused from the moment it is called.
        """
        runner = self._runner
        if runner is not None and runner.alive and not runner.current():
            await runner.wrap(self.aclose(timeout))  # it runs on its own loop thread
            runner.stop()
            return
        if self._state in (_State.CLOSING, _State.CLOSED):
            if self._closed is not None:
                await self._closed.wait()
            return
        if self._state is _State.FORKED:  # inherited, never used here: nothing to deliver
            self._state = _State.CLOSED
            self._inbox_open = False
            return
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            # Its loop is gone (a second asyncio.run): nothing can be sent; count what is
            # left, and leave the transport, which belongs to the dead loop.
            log.warning("hh_exporter: aclose() called on another event loop than the "
                        "exporter's; pending events are dropped as 'shutdown'")
            self._accepting = False
            self._close_inbox()
            self._finish_close()
            self._summarize()
            return
        self._accepting = False
        self._close_inbox()
        if self._state is _State.NEW and (self._buffer.events or self._buffer.starts):
            await self.start()  # deliver what was logged before the worker ever ran
        was_failed = self._state is _State.FAILED
        self._state = _State.CLOSING
        try:
            if not was_failed and self._sender is not None:
                await self.flush(timeout)
        finally:
            self._finish_close()
            if self._worker is not None:
                await asyncio.gather(self._worker, return_exceptions=True)
            await self._close_spool()
            if self._own_transport:
                await self._transport.aclose()
            if self._closed is not None:
                self._closed.set()
            self._summarize()

    async def _close_spool(self) -> None:
        """Write what was handed to the spool, then finish deleting replayed segments."""
        if self._spool_writer is not None:
            await asyncio.to_thread(self._spool_writer.close)
            await asyncio.sleep(0)  # let failed writes be counted (their callbacks)
        if self._replay is not None:
            await self._replay.wait_deletions()

    def _summarize(self) -> None:
        """One warning at close whenever anything was not delivered: the rate limit on drop
        warnings must not hide the tail of the loss from a script that relies on close."""
        st = self.stats()
        if st.dropped_total or st.unconfirmed:
            lost = ", ".join(f"{k} {v:,}" for k, v in st.dropped.items() if v) or "none"
            log.warning("hh_exporter: closed; %s of %s accepted events were not delivered "
                        "(%s)%s", f"{st.dropped_total:,}", f"{st.accepted:,}", lost,
                        f"; {st.unconfirmed:,} delivered but unconfirmed"
                        if st.unconfirmed else "")

    def _finish_close(self) -> None:
        # Synchronous, so it completes even when the closing task is being cancelled.
        self._close_inbox()
        self._state = _State.CLOSED
        spool = self._spool_fn()
        if self._replay is not None:
            self._replay.stop()
        if self._sender is not None:
            self._sender.cancel_all(spool=spool)
        starts = self._buffer.starts
        while starts:
            self._session_failed(starts.popleft(), "shutdown", "session start still queued at "
                                 "close", None)
        for start in self._buffer.gathering():  # first batches never cut
            self._session_failed(start, "shutdown", "first batch still buffered at close",
                                 None)
        for route, left in self._buffer.drain_all():
            if spool is not None and spool(route, left, None):
                self._drop("spooled", len(left), self.config.spool_dir, None, left)
            else:
                self._drop("shutdown", len(left), "still buffered at close", None, left)
        if self._worker is not None:
            self._worker.cancel()

    def _spool_fn(self) -> Callable[[str, list[bytes], bytes | None], bool] | None:
        return self._spool if self._spool_writer is not None else None

    def _spool(self, route: str, events: list[bytes], session: bytes | None = None) -> bool:
        """Hand events to the spool's writer thread (never blocks); False if its queue is
        full. A write that fails later moves them from ``spooled`` to ``spool_failed``."""
        writer = self._spool_writer
        assert writer is not None
        loop = self._loop or asyncio.get_running_loop()
        return writer.put(route, session, events, loop, self._spool_failed)

    def _spool_failed(self, n: int, why: str) -> None:
        # They were counted spooled when handed over; they are dropped either way.
        self._counters.dropped["spooled"] -= n
        self._drop("spool_failed", n, why, None)

    def __del__(self) -> None:
        state = getattr(self, "_state", _State.CLOSED)
        if state in (_State.NEW, _State.RUNNING) and (
            state is _State.RUNNING or self._buffer.events
        ):
            pending = self._buffer.events + self._counters.in_flight_events + len(self._inbox)
            if pending:
                log.warning("hh_exporter: an Exporter was garbage-collected without aclose(); "
                            "%d pending events are lost", pending)
            warnings.warn(
                f"unclosed {self!r}: call 'await exporter.aclose()' or use 'async with'",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    # -- logging ---------------------------------------------------------------------------

    def session(self, **properties: Unpack[SessionFields]) -> Session:
        """Start a session and return its handle; never awaits.

        The properties (``session_name``, ``user_properties``, ``metadata``, ``inputs``, ...)
        are encoded now. The session is started with ``POST /session/start`` in the
        background, and its events are held until the API confirmed it, so none of them
        can reach the API before their session exists. With ``session_start="batch"`` its
        first events create it instead (a single-session batch carrying these properties),
        and a session with no events creates nothing.

        Raises:
            EventError: A property is unknown, has the wrong type or cannot be encoded.
            ExporterClosedError: The exporter is closed or failed.
        """
        if not self._accepting:
            self._refuse()
        if self._redact is not None:
            properties = self._redacted_session(properties)  # type: ignore[arg-type,assignment]
        try:
            session_id, body = encode_session(
                properties, project=self._project, source=self._source,  # type: ignore[arg-type]
                v1=self._v1)
        except EventError:
            raise
        except Exception as exc:  # noqa: BLE001 - a hostile value raised while checked
            raise EventError(f"the session cannot be checked or encoded: "
                             f"{type(exc).__name__}") from None
        if self._batch_sessions:  # made known with its first event (see _announce)
            return Session(self, session_id, body, announce=True)
        return self.start_session_encoded(session_id, body)

    def start_session_encoded(self, session_id: str, body: bytes) -> Session:
        """Queue an already-encoded ``POST /session/start`` body; return the handle.

        The bulk path of ``hh-exporter ingest``: ``body`` is ``{"session": {...}}`` with this
        ``session_id``. Events sent with this ``session_id`` wait for the start. With
        ``session_start="batch"``, the session's next events form its first batch, which
        carries these properties and creates it.
        """
        if not self._accepting:
            self._refuse()
        self._dispatch(None, session_id, body)
        return Session(self, session_id, body)

    def _announce(self, session: Session) -> None:
        """Make a session known to the buffer before its first event (batch mode). Under a
        lock, and the flag is cleared only after the hand-off: an event logged meanwhile
        from another thread cannot overtake its session's registration."""
        with self._announce_lock:
            if session.announce:
                self._dispatch(None, session.session_id, session.start_body)
                session.announce = False

    def log_model_event(
        self, *, session: Session | None = None, **fields: Unpack[ModelEventFields]
    ) -> str:
        """Log one model call without waiting; return its ``event_id``.

        ``model``, ``provider``, ``messages`` and ``response`` are required; ``duration``
        (milliseconds) defaults to 0 and ``usage`` to ``{}``. A ``None`` value means "not
        given" (except ``error``). The event is encoded now, so later changes to the
        arguments change nothing.

        Raises:
            EventError: A field is unknown, has the wrong type or cannot be encoded (nothing
                is logged).
            ExporterClosedError: The exporter is closed or failed.

        Network trouble never raises here: it shows in :meth:`stats` and ``on_drop``.
        """
        # _log's steps, inline: a layer of calls costs a tenth of the call's budget.
        if not self._accepting:
            self._refuse()
        try:
            wire, sid, event_id, data = self._encode(MODEL_ROUTE, fields, session)  # type: ignore[arg-type]
        except _Withheld as w:
            return w.event_id
        self._dispatch(wire, sid, data)
        return event_id

    def log_event(self, *, session: Session | None = None, **fields: Unpack[EventFields]) -> str:
        """Log one generic event (``chain``, ``tool``, ``model``) without waiting.

        ``event_type`` and ``event_name`` are required; ``inputs``, ``outputs`` and ``config``
        default to ``{}``. Same guarantees and errors as :meth:`log_model_event`.
        """
        return self._log(GENERIC_ROUTE, fields, session)  # type: ignore[arg-type]

    def _log(self, route: str, fields: dict[str, Any], session: Session | None) -> str:
        # The hot path. `fields` is a call's own **kwargs dict: completed in place, encoded
        # once. Whether the exporter accepts events is checked here, once, before encoding.
        if not self._accepting:
            self._refuse()
        try:
            wire, sid, event_id, data = self._encode(route, fields, session)
        except _Withheld as w:
            return w.event_id
        self._dispatch(wire, sid, data)
        return event_id

    def _encode(self, route: str, fields: dict[str, Any],
                session: Session | None) -> tuple[str, str | None, str, bytes]:
        """Check and encode one event: ``(wire route, session_id, event_id, bytes)``, or
        EventError, or _Withheld (the redact hook dropped it, counted)."""
        if session is None:
            sid = None
        elif type(session) is Session:
            sid = session.session_id
        else:
            raise EventError(f"session must be a Session from Exporter.session(), got "
                             f"{describe(session)}")
        if route is MODEL_ROUTE:
            encode, wire = self._encode_model, self._model_route
        else:
            encode, wire = self._encode_generic, self._generic_route
        if self._redact is not None:  # the only cost with redaction off
            fields = self._redacted(fields)
        try:
            event_id, data = encode(fields, self._project, self._source, sid)
        except EventError:
            raise
        except Exception as exc:  # noqa: BLE001 - a hostile value (__getattr__, ...) raised
            raise EventError(f"the event cannot be checked or encoded: {type(exc).__name__}"
                             ) from None
        # Made known only once its event is good: a session whose events are all refused
        # (or withheld) registers nothing. Still before the event is handed over.
        if session is not None and session.announce:
            self._announce(session)
        return wire, sid, event_id, data

    def _redacted(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Run the redact hook on an event's fields; raise _Withheld (counted) if it drops
        the event or fails: fail closed, and never a value in the log."""
        assert self._redact is not None
        try:
            out = self._redact(fields)
            if out is not None and not isinstance(out, dict):
                raise TypeError("the redact hook must return a dict or None")
        except Exception as exc:  # noqa: BLE001 - a failing hook drops its event, no more
            self._withhold("redacted_failed", f"the redact hook raised {type(exc).__name__}")
            raise _Withheld(_event_id(fields)) from None
        if out is None:
            self._withhold("redacted", "dropped by the redact hook")
            raise _Withheld(_event_id(fields))
        return out

    def _redacted_session(self, properties: dict[str, Any]) -> dict[str, Any]:
        """Run the redact hook on a session's properties. A session is not an event: one
        the hook drops or fails on starts with its identity only (fail closed)."""
        assert self._redact is not None
        try:
            out = self._redact(dict(properties))
            if isinstance(out, dict):
                return out
            if out is not None:
                raise TypeError("the redact hook must return a dict or None")
        except Exception as exc:  # noqa: BLE001 - fail closed, never the value
            log.warning("hh_exporter: the redact hook raised %s on a session's properties; "
                        "it starts without them", type(exc).__name__)
        return {k: v for k, v in properties.items() if k in ("session_id", "session_name")}

    def _withhold(self, reason: DropReason, detail: str) -> None:
        """Count an event the redact hook withheld as accepted and dropped: on the loop's
        thread now, else through the inbox (the counters are the loop's)."""
        if threading.get_ident() == self._thread_id:
            self._count_withheld(reason, detail)
        else:
            self._dispatch(reason, None, detail.encode())

    def _count_withheld(self, reason: str, detail: str) -> None:
        self._counters.accepted += 1
        self._drop(reason, 1, detail, None)  # type: ignore[arg-type]
    async def send_model_event(
        self, *, session: Session | None = None, timeout: float | None = None,
        **fields: Unpack[ModelEventFields],
    ) -> str:
        """Like :meth:`log_model_event`, but wait for buffer space instead of dropping.

        Raises:
            BufferFullError: No space within ``timeout`` seconds (the event is not accepted).
        """
        try:
            _, sid, event_id, data = self._encode(
                MODEL_ROUTE, fields, session)  # type: ignore[arg-type]
        except _Withheld as w:
            return w.event_id
        await self.send_encoded(data, session_id=sid, timeout=timeout)
        return event_id

    async def send_encoded(
        self,
        data: bytes,
        *,
        generic: bool = False,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Queue one already-encoded event (a JSON object), waiting for buffer space.

        The bulk path of ``hh-exporter ingest``: the caller has validated ``data`` and it
        carries its ``event_id`` (and its ``session_id``, which ``session_id`` repeats so
        the event waits for that session's start, if one is queued). ``generic`` selects
        ``POST /events/batch``.

        Raises:
            BufferFullError: No space within ``timeout`` seconds (the event is not accepted).
        """
        if self.offer_encoded(data, generic, session_id):
            return
        # No room now: wait for the worker to make some.
        buf = self._buffer
        size = len(data)
        if self._state is _State.NEW:
            await self.start()  # only the worker can make room
        progress = self._progress
        sender = self._sender
        if progress is None or sender is None:
            raise ExporterClosedError(self._refusal())
        try:
            async with asyncio.timeout(timeout):
                while not buf.fits(size):
                    if not self._accepting:
                        raise ExporterClosedError(self._refusal())
                    progress.clear()
                    sender.wake()
                    await progress.wait()
        except TimeoutError:
            raise BufferFullError(f"no buffer space within {timeout}s") from None
        self._accept(self._generic_route if generic else self._model_route, session_id, data)

    def offer_encoded(self, data: bytes, generic: bool = False,
                      session_id: str | None = None) -> bool:
        """:meth:`send_encoded` without waiting: queue the event if the buffer has room now
        and return True; return False (the event is not accepted) if it would have to wait.

        The bulk reader's common case, without a coroutine per event.

        Raises:
            ExporterClosedError: The exporter is closed or failed.
        """
        if not self._accepting:
            raise ExporterClosedError(self._refusal())
        if not self._buffer.fits(len(data)) and len(data) <= self._max_event:
            return False
        self._accept(self._generic_route if generic else self._model_route, session_id, data)
        return True

    # -- the hand-off to the buffer ----------------------------------------------------------

    def _dispatch(self, route: str | None, sid: str | None, data: bytes) -> None:
        """Hand an encoded event (or, with ``route`` None, a session start) to the buffer:
        directly on the loop's thread, else through the inbox. The caller has checked that
        the exporter accepts events."""
        if threading.get_ident() == self._thread_id:
            loop = self._loop
            if loop is not None and loop.is_closed():
                raise ExporterClosedError(_DEAD_LOOP)
            if route is None:
                self._add_start(sid, data)
            else:
                self._accept(route, sid, data)
            return
        with self._lock:
            if not self._inbox_open:
                raise ExporterClosedError(self._refusal())
            inbox = self._inbox
            inbox.append((route, sid, data))
            loop = self._loop
            if loop is None:  # not started: start() drains the inbox
                return
            polling = self._polling
            if polling and len(inbox) != _INBOX_WAKE_AT:
                return  # the loop comes for it within a tick
            self._polling = True
        try:
            loop.call_soon_threadsafe(self._drain_inbox if polling else self._poll_inbox)
        except RuntimeError:  # its loop is closed: nothing will ever drain the inbox
            with self._lock:
                if self._inbox and self._inbox[-1][2] is data:
                    self._inbox.pop()
            raise ExporterClosedError("the exporter's event loop is closed") from None

    def _poll_inbox(self) -> None:
        """Drain the inbox, and come back in a tick while events keep coming (on the loop)."""
        if self._drain_inbox():
            self._idle_ticks = 0
        else:
            self._idle_ticks += 1
        loop = self._loop
        if loop is None:  # forked: this loop is the parent's, and nothing more comes to it
            return
        if self._idle_ticks >= _INBOX_IDLE_TICKS or not self._inbox_open:
            with self._lock:
                if self._inbox and self._inbox_open:
                    self._idle_ticks = 0  # one came in meanwhile: keep polling
                else:
                    self._polling = False  # the next event wakes the loop
                    return
        loop.call_later(min(_INBOX_TICK, max(self.config.linger, 0.001)), self._poll_inbox)

    def _drain_inbox(self) -> int:
        """Accept what other threads handed over (on the loop, or at close); how many."""
        with self._lock:
            items, self._inbox = self._inbox, []
        for route, sid, data in items:
            if route is None:
                self._add_start(sid, data)
            elif route in _WITHHELD:
                self._count_withheld(route, data.decode())
            else:
                self._accept(route, sid, data)
        return len(items)

    def _close_inbox(self) -> None:
        """Refuse other threads from now on, and accept what they handed over already."""
        with self._lock:
            self._inbox_open = False
        self._drain_inbox()

    def _check_loop(self) -> None:
        loop = self._loop
        if loop is not None and loop is not asyncio.get_running_loop():
            raise ExporterClosedError(
                "this exporter belongs to another event loop: create the Exporter inside the "
                "loop that uses it, e.g. with 'async with Exporter(...)' in your main coroutine")

    def _add_start(self, sid: str | None, body: bytes) -> None:
        assert sid is not None  # a start always carries its session's id
        if self._batch_sessions:
            try:
                props = envelope_properties(body, v1=self._v1)
            except msgspec.DecodeError:
                # Not a body a batch can carry (start_session_encoded takes any bytes): it
                # goes as POST /session/start, whose answer judges it, as in request mode,
                # instead of raising on the loop mid-inbox.
                props = None
            if props is not None:
                self._buffer.add_envelope(SessionStart(sid, body, props))
                return
        self._buffer.add_start(SessionStart(sid, body))
        if self._sender is not None:
            self._sender.wake()

    def _accept(self, route: str, sid: str | None, data: bytes) -> None:
        self._counters.accepted += 1
        buf = self._buffer
        if len(data) > self._max_event:
            self._drop("too_large", 1, f"event of {len(data)} bytes exceeds max_batch_bytes="
                       f"{self.config.max_batch_bytes}", None, [data])
            return
        if self._failed_sessions and sid is not None and sid in self._failed_sessions:
            self._drop("session_failed", 1, self._failed_sessions[sid], None, [data])
            return
        if not buf.append(route, sid, data, time.monotonic()):
            if self._overflow_spool and self._spool(route, [data], buf.start_body(sid)):
                self._drop("spooled", 1, "buffer full", None, [data])
            else:
                self._drop("queue_full", 1, "buffer full", None, [data])
            return
        if buf.evicted:
            gone, buf.evicted = buf.evicted, []
            self._drop("queue_full", len(gone), "oldest events evicted", None, gone)
        if buf.ready or buf.first_ready:
            sender = self._sender
            if sender is not None and ((buf.ready and sender.hungry) or (
                    buf.first_ready and sender.first_hungry)):
                sender.wake()

    def _session_failed(self, start: SessionStart, reason: DropReason, detail: str,
                        status: int | None) -> None:
        """A session could not be started: its held events go with ``reason``.

        At a flush or close deadline (``shutdown``) with a spool, they are spooled instead,
        the first one carrying the session's properties so that ``hh-exporter ingest``
        starts the session before replaying them.
        """
        sid = start.session_id
        held = self._buffer.discard(sid)
        if reason != "shutdown":
            self._failed_sessions[sid] = detail
            if len(self._failed_sessions) > 10_000:
                self._failed_sessions.popitem(last=False)
        if not held:
            return
        spool = self._spool_writer is not None and reason == "shutdown"
        for route, events in held:
            # The segment carries the start body: a replay starts the session first.
            if spool and self._spool(route, events, start.body):
                self._drop("spooled", len(events), self.config.spool_dir, None, events)
            else:
                self._drop(reason, len(events), detail, status, events)

    def _starts_pending(self) -> int:
        if self._sender is not None:
            return self._sender.starts_pending
        return len(self._buffer.starts)

    def _refuse(self) -> None:
        """The slow path of a call that found the exporter not accepting events: one
        inherited across fork() restarts here, empty, on a loop thread of its own (so a log
        call never fails because of a fork); anything else raises ExporterClosedError."""
        if self._state is _State.FORKED:
            with _reviving:
                if self._state is _State.FORKED:
                    self._revive()
            if self._accepting:
                return
        raise ExporterClosedError(self._refusal())

    def _revive(self) -> None:
        try:
            start_in_thread(self, "hh_exporter-child")
        except Exception as exc:  # noqa: BLE001 - the host must not fail because of telemetry
            self._state = _State.FAILED
            self._accepting = self._inbox_open = False
            self._fail_reason = f"it could not restart after fork(): {exc!r}"
            log.error("hh_exporter: an exporter inherited across fork() could not restart: "
                      "%r", exc)

    def _refusal(self) -> str:
        if self._state is _State.FORKED:
            return ("this Exporter was inherited across fork() and has not restarted in this "
                    "process: log an event or 'await exporter.start()' first")
        if self._state is _State.FAILED:
            return f"the exporter failed and accepts no events: {self._fail_reason}"
        return "the exporter is closed and accepts no events"

    def _settled(self, events: list[bytes], reason: DropReason | None) -> None:
        if self._replay is not None and self._replay.outstanding:
            self._replay.settled(events)
        if self._on_settled is None:
            return
        try:
            self._on_settled(events, reason)
        except Exception:
            log.exception("hh_exporter: the on_settled callback raised")

    def _drop(self, reason: DropReason, n: int, detail: str | None, status: int | None,
              events: list[bytes] | None = None) -> None:
        """Count ``n`` dropped events. The sender settles its own events; the exporter's
        own drops pass ``events`` for ``on_settled``."""
        if events is not None and (self._on_settled is not None or self._replay is not None):
            self._settled(events, reason)
        self._counters.dropped[reason] += n
        if reason in CUT_REASONS:
            self._counters.cut += n
        now = time.monotonic()
        # One warning per reason per 10 s: a long outage must not flood the host's log.
        if now - self._last_drop_log.get(reason, -1e9) >= 10.0:
            self._last_drop_log[reason] = now
            log.warning("hh_exporter: dropped %d event(s): %s%s", n, reason,
                        f" ({detail})" if detail else "")
        if self._on_drop is not None:
            try:
                self._on_drop(DropNotice(reason, n, detail, status))
            except Exception:
                log.exception("hh_exporter: the on_drop callback raised")

    # -- observing -------------------------------------------------------------------------

    def _pending(self) -> int:
        return self._buffer.events + self._counters.in_flight_events

    def stats(self) -> ExporterStats:
        """An immutable snapshot of the counters; ``accepted == delivered + dropped + pending``.

        Call it on the exporter's event loop (``SyncExporter.stats`` does that for you): from
        another thread the counters may be read mid-update.
        """
        breaker = self._sender.breaker.state if self._sender is not None else "closed"
        return self._counters.snapshot(
            buffered=self._buffer.events, buffered_bytes=self._buffer.nbytes, breaker=breaker,
            sessions_pending=self._starts_pending(),
        )

    @property
    def closed(self) -> bool:
        """Whether the exporter refuses new events (closed, closing or failed)."""
        return not self._accepting and self._state is not _State.FORKED

    def _after_fork_in_child(self) -> None:
        # What was buffered belongs to the parent, which delivers it: the child's copy has
        # accepted nothing, and starts empty on first use (the next log call, or start()),
        # with its own loop thread, transport and connections. Neither the parent's loop
        # nor its thread exists here, so nothing of theirs is touched, not even closed.
        if self._state in (_State.NEW, _State.RUNNING, _State.FORKED):
            self._state = _State.FORKED
            self._accepting = False  # the slow path of the next log call restarts it
        else:  # closing, closed or failed in the parent: so it stays
            self._state = _State.CLOSED if self._state is _State.CLOSING else self._state
            self._accepting = False
        self._loop = None
        self._sender = None
        self._worker = None
        self._progress = None
        self._closed = None
        self._runner = None
        self._buffer = _new_buffer(self.config)  # starts, envelopes and all: the parent's
        self._counters = Counters()
        self._announce_lock = threading.Lock()  # the parent may have held it at fork()
        self._failed_sessions.clear()
        self._last_drop_log.clear()
        self._lock = threading.Lock()
        self._inbox = []
        self._inbox_open = self._state is _State.FORKED
        self._polling = False
        self._idle_ticks = 0
        self._thread_id = threading.get_ident()
        # Its own transport may hold the parent's connections: a fresh one at start.
        self._renew_transport = self._own_transport
        # The spool's writer thread, if the parent had one, is not the child's.
        self._spool_writer = _spool_writer(self.config)
        self._replay = None


def start_in_thread(exporter: Exporter, name: str) -> None:
    """Start ``exporter`` on a loop thread of its own (what SyncExporter runs it on)."""
    runner = LoopThread(name)
    try:
        runner.call(exporter.start(), 30.0)
    except BaseException:
        runner.stop()
        raise
    exporter._runner = runner
    _hook_child_exit()  # made in a pool child (Celery's worker_process_init, say)


def in_thread(exporter: Exporter, make: Callable[[], Coroutine[Any, Any, _T]],
              timeout: float | None) -> _T:
    """Block on ``make()`` run where ``exporter`` runs: on its loop thread, or, when it has
    none in this process (a child that never used what it inherited: nothing is under way),
    on a short-lived one."""
    runner = exporter._runner
    if runner is not None and runner.alive:
        return runner.call(make(), timeout)
    spare = LoopThread("hh_exporter-spare")
    try:
        return spare.call(make(), timeout)
    finally:
        spare.stop()


def stop_thread(exporter: Exporter) -> None:
    """Stop the exporter's own loop thread, if it has one here (after its close)."""
    runner = exporter._runner
    if runner is not None:
        runner.stop()


def _flush_at_exit() -> None:
    """At interpreter exit: close, within their ``close_timeout``, the exporters that hold
    events and that no one else will close: those running on a loop thread of their own,
    and those never started (events logged at import, before any loop existed), on a
    private loop. What cannot be delivered in time is counted and reported in the close
    summary. Idempotent: atexit and multiprocessing's exit hooks may both call it."""
    jobs: list[tuple[Exporter, LoopThread]] = []
    for exporter in list(_live):
        runner = exporter._runner
        if exporter._state is _State.RUNNING and runner is not None and runner.alive:
            jobs.append((exporter, runner))
        elif exporter._state is _State.NEW and (
                exporter._buffer.events or exporter._buffer.starts or exporter._inbox):
            runner = LoopThread("hh_exporter-atexit")
            exporter._runner = runner
            jobs.append((exporter, runner))
    if not jobs:
        return
    futures = [asyncio.run_coroutine_threadsafe(e.aclose(), r.loop) for e, r in jobs]
    # Each close honours its own deadline; the margin only covers a loop that is stuck.
    limit = max(e.config.close_timeout for e, _ in jobs) + 5.0
    concurrent.futures.wait(futures, timeout=limit)
    for _, runner in jobs:
        runner.stop(1.0)


# The process, and the exit hooks of the modules loaded there, that _hook_child_exit has
# registered _flush_at_exit with (a forked child starts with none of them).
_exit_hooks: tuple[int, set[str]] = (0, set())


def _hook_child_exit() -> None:
    """Register the flush at exit where a child process that leaves past ``atexit`` runs its
    exit hooks, once per process and module; called when an exporter starts on a loop thread
    of its own (the only ones that no caller's loop closes)."""
    global _exit_hooks
    if _exit_hooks[0] != os.getpid():
        _exit_hooks = (os.getpid(), set())
    done = _exit_hooks[1]
    # multiprocessing's children (and billiard's, Celery's fork of it) leave with os._exit,
    # past atexit: their own exit hooks run there.
    for name in ("multiprocessing.util", "billiard.util"):
        mp_util = sys.modules.get(name)
        if mp_util is not None and name not in done:
            done.add(name)
            mp_util.Finalize(None, _flush_at_exit, exitpriority=100)
    # A billiard *pool* child (Celery's prefork) calls os._exit before those hooks run
    # (billiard's Worker._do_exit): Celery's worker_process_shutdown signal, sent just
    # before, is the one hook left there.
    celery_signals = sys.modules.get("celery.signals")
    if celery_signals is not None and "celery" not in done:
        done.add("celery")
        celery_signals.worker_process_shutdown.connect(
            _flush_on_process_shutdown, weak=False, dispatch_uid="hh_exporter-flush")


def _flush_on_process_shutdown(*args: object, **kwargs: object) -> None:
    """Celery's ``worker_process_shutdown`` receiver: the flush at exit of a pool child."""
    _flush_at_exit()


def _new_buffer(c: ExporterConfig) -> Buffer:
    return Buffer(
        max_events=c.max_buffer_events,
        max_bytes=c.max_buffer_bytes,
        max_batch_events=c.max_batch_events,
        max_batch_bytes=c.max_batch_bytes,
        linger=c.linger,
        drop_oldest=c.overflow == "drop_oldest",
    )


def _event_id(fields: dict[str, Any]) -> str:
    """The id a withheld event's log call returns: the caller's own, else a fresh one."""
    given = fields.get("event_id")
    return given if isinstance(given, str) else new_id()


def _metrics(exporter: Exporter) -> ExporterMetrics | None:
    """The exporter's health instruments; None, with a warning, without opentelemetry-api:
    telemetry about telemetry must never stop the host."""
    writer = exporter._spool_writer
    try:
        return install(exporter.stats, capacity=exporter.config.max_buffer_events,
                       spool_bytes=None if writer is None else (lambda: writer.used_bytes))
    except ImportError:
        log.warning("hh_exporter: metrics=True needs opentelemetry-api "
                    "(pip install opentelemetry-api); no metrics are published")
        return None


def _spool_writer(c: ExporterConfig) -> SpoolWriter | None:
    if c.spool_dir is None:
        return None
    return SpoolWriter(c.spool_dir, max_bytes=c.spool_max_bytes,
                       fsync_always=c.spool_fsync == "always")


def _after_fork() -> None:
    global _reviving
    _reviving = threading.Lock()  # the parent may have held it at fork()
    for exporter in list(_live):
        exporter._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_flush_at_exit)
