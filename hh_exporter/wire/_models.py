"""msgspec Structs for the HoneyHive wire format the exporter sends and reads.

Field names and order follow ``reference/honeyhive-wire.md``. Timestamps (``start_time``,
``end_time``) are integer epoch milliseconds and ``duration`` is milliseconds, as on the wire.
``omit_defaults`` keeps unset optional fields off the wire, so a body carries only what the
caller gave plus what the classic API requires.
"""

# No `from __future__ import annotations` here: msgspec resolves string annotations in the
# defining module's namespace by __module__, which the package rewrites to "hh_exporter".
from typing import Any

import msgspec

__all__ = [
    "BatchResponse",
    "Event",
    "EventBatch",
    "ModelEvent",
    "ModelEventBatch",
    "SessionProperties",
    "SessionStartRequest",
]


class ModelEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One model call, an item of ``model_events`` in ``POST /events/model/batch``.

    The classic API requires ``project``, ``model``, ``provider``, ``messages``, ``response``,
    ``duration`` and ``usage``; the exporter always fills them.
    """

    project: str | None = None
    source: str | None = None
    event_name: str | None = None
    event_id: str
    session_id: str | None = None
    parent_id: str | None = None
    model: str
    provider: str
    messages: list[Any]
    response: Any
    duration: float
    usage: dict[str, Any]
    cost: float | None = None
    error: str | None = None
    hyperparameters: dict[str, Any] | None = None
    template: list[Any] | None = None
    template_inputs: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    children_ids: list[str] | None = None
    start_time: int
    end_time: int
    metadata: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    feedback: dict[str, Any] | None = None
    user_properties: dict[str, Any] | None = None


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A generic event (``chain``, ``tool`` or ``model``), an item of
    ``events`` in ``POST /events/batch``."""

    project: str | None = None
    source: str | None = None
    event_name: str
    event_type: str
    event_id: str
    session_id: str | None = None
    parent_id: str | None = None
    children_ids: list[str] | None = None
    config: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: str | None = None
    start_time: int
    end_time: int
    duration: float
    metadata: dict[str, Any] | None = None
    feedback: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    user_properties: dict[str, Any] | None = None


class SessionProperties(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A session's properties: the ``session`` object of ``POST /session/start``."""

    session_name: str | None = None
    project: str | None = None
    source: str | None = None
    session_id: str | None = None
    config: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    user_properties: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    feedback: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    start_time: int | float | None = None


class SessionStartRequest(msgspec.Struct, kw_only=True):
    """The body of ``POST /session/start``."""

    session: SessionProperties


class ModelEventBatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of ``POST /events/model/batch`` (classic field names)."""

    model_events: list[ModelEvent]
    is_single_session: bool = False
    session_properties: SessionProperties | None = None


class EventBatch(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of ``POST /events/batch`` (classic field names)."""

    events: list[Event]
    is_single_session: bool = False
    session_properties: SessionProperties | None = None


class BatchResponse(msgspec.Struct, kw_only=True):
    """The body of a batch route's answer; a 500 may carry ``errors`` (partial success)."""

    event_ids: list[str | None] = msgspec.field(default_factory=list)
    success: bool = True
    session_id: str | None = None
    errors: list[Any] | None = None
