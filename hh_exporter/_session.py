"""The session handle: events logged through it belong to its session."""

from __future__ import annotations

from typing import Any, Protocol, Unpack

import msgspec

from ._encoding import GENERIC_ROUTE, MODEL_ROUTE
from ._events import EventFields, ModelEventFields, SessionFields
from .wire._models import SessionProperties, SessionStartRequest

__all__ = ["Session", "SessionOwner", "Sink"]


class Sink(Protocol):
    """What sessions, spans, the wrappers and the span exporter need of an exporter
    (:class:`~hh_exporter.Exporter` and :class:`~hh_exporter.SyncExporter` both are one), so
    that they depend on this, not on the exporter's module (which imports them)."""

    def _log(self, route: str, fields: dict[str, Any], session: Session | None) -> str:
        """Check, encode and buffer one event of ``route`` (the log call's hot path)."""
        ...

    def session(self, **properties: Unpack[SessionFields]) -> Session:
        """Start a session and return its handle."""
        ...


class SessionOwner(Sink, Protocol):
    """A :class:`Sink` that makes :class:`Session` handles (only ``Exporter`` does)."""

    async def send_model_event(self, *, session: Session | None = None,
                               timeout: float | None = None,
                               **fields: Unpack[ModelEventFields]) -> str:
        """Log a model event, waiting for buffer space instead of dropping."""
        ...


class Session:
    """A session handle: events logged through it belong to the session.

    Create one with :meth:`Exporter.session`. The session is created before any of its
    events are stored: with ``POST /session/start``, or (``session_start="batch"``) by the
    single-session batch of its first events. Its events carry its ``session_id``.
    """

    __slots__ = ("_exporter", "announce", "session_id", "start_body")

    def __init__(self, exporter: SessionOwner, session_id: str, start_body: bytes,
                 announce: bool = False) -> None:
        self._exporter = exporter
        #: True until the first event is logged, when the session is made known to the
        #: buffer (``session_start="batch"``): a session with no events creates nothing.
        self.announce = announce
        #: The session's id (client-generated unless given).
        self.session_id = session_id
        #: The encoded ``POST /session/start`` body.
        self.start_body = start_body

    @property
    def properties(self) -> SessionProperties:
        """The properties as sent (decoded on demand: the hot path never needs them)."""
        return msgspec.json.decode(self.start_body, type=SessionStartRequest).session

    def __repr__(self) -> str:
        return f"Session(session_id={self.session_id!r})"

    def log_model_event(self, **fields: Unpack[ModelEventFields]) -> str:
        """Log a model event in this session; see :meth:`Exporter.log_model_event`."""
        return self._exporter._log(MODEL_ROUTE, fields, self)  # type: ignore[arg-type]

    def log_event(self, **fields: Unpack[EventFields]) -> str:
        """Log a generic event in this session; see :meth:`Exporter.log_event`."""
        return self._exporter._log(GENERIC_ROUTE, fields, self)  # type: ignore[arg-type]

    async def send_model_event(
        self, *, timeout: float | None = None, **fields: Unpack[ModelEventFields]
    ) -> str:
        """Like :meth:`log_model_event`, but wait for buffer space instead of dropping."""
        return await self._exporter.send_model_event(session=self, timeout=timeout, **fields)
