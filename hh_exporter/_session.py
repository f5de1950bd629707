"""The session handle: events logged through it belong to its session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

import msgspec

from ._encoding import GENERIC_ROUTE, MODEL_ROUTE
from ._events import EventFields, ModelEventFields
from ._models import SessionProperties

if TYPE_CHECKING:  # the exporter creates sessions; at run time only it imports this module
    from ._exporter import Exporter

__all__ = ["Session"]


class Session:
    """A session handle: events logged through it belong to the session.

    Create one with :meth:`Exporter.session`. Its properties were encoded when it was
    created; they are hoisted into single-session batches and announced once as an
    ``event_type: "session"`` event.
    """

    __slots__ = ("_exporter", "properties_json", "session_id")

    def __init__(self, exporter: Exporter, session_id: str, raw: bytes) -> None:
        self._exporter = exporter
        #: The session's id (client-generated unless given).
        self.session_id = session_id
        #: The properties as encoded JSON, hoisted into single-session batches.
        self.properties_json = raw

    @property
    def properties(self) -> SessionProperties:
        """The properties as sent (decoded on demand: the hot path never needs them)."""
        return msgspec.json.decode(self.properties_json, type=SessionProperties)

    def __repr__(self) -> str:
        return f"Session(session_id={self.session_id!r}, name={self.properties.session_name!r})"

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
