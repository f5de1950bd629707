"""The session handle: events logged through it belong to its session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

import msgspec

from ._encoding import GENERIC_ROUTE, MODEL_ROUTE
from ._events import EventFields, ModelEventFields
from .wire._models import SessionProperties, SessionStartRequest

if TYPE_CHECKING:  # the exporter creates sessions; at run time only it imports this module
    from ._exporter import Exporter

__all__ = ["Session"]


class Session:
    """A session handle: events logged through it belong to the session.

    Create one with :meth:`Exporter.session`. The session is created before any of its
    events are stored: with ``POST /session/start``, or (``session_start="batch"``) by the
    single-session batch of its first events. Its events carry its ``session_id``.
    """

    __slots__ = ("_exporter", "announce", "session_id", "start_body")

    def __init__(self, exporter: Exporter, session_id: str, start_body: bytes,
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
