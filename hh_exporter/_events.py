"""Building wire events from a log call's keyword arguments, with cheap checks.

This is the hot path's first half: check the few fields whose type the API insists on, fill
ids and timestamps, build the Struct and encode it once. A bad value raises
:class:`~hh_exporter.EventError` here, at the call site, naming the field.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Required, TypedDict

from ._encoding import encode
from ._errors import EventError
from ._ids import new_id
from ._models import Event, ModelEvent, SessionProperties

__all__ = [
    "EventFields",
    "ModelEventFields",
    "SessionFields",
    "encode_event",
    "encode_model_event",
    "encode_session",
    "encode_session_event",
]

EventType = Literal["model", "tool", "chain", "session"]
_EVENT_TYPES = frozenset(("model", "tool", "chain", "session"))


class ModelEventFields(TypedDict, total=False):
    """Keyword arguments of ``log_model_event``; see the README for each field.

    ``start_time``/``end_time`` are epoch milliseconds (or ``datetime``); ``duration`` is
    milliseconds. ``end_time`` defaults to now and ``start_time`` to ``end_time - duration``.
    """

    model: Required[str]
    provider: Required[str]
    messages: Required[list[Any]]
    response: Required[Any]
    duration: float
    usage: dict[str, Any]
    cost: float | None
    error: str | None
    source: str
    event_name: str
    event_id: str
    parent_id: str
    hyperparameters: dict[str, Any]
    template: list[Any]
    template_inputs: dict[str, Any]
    tools: list[Any]
    tool_choice: Any
    response_format: dict[str, Any]
    config: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    children_ids: list[str]
    start_time: Any
    end_time: Any
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    feedback: dict[str, Any]
    user_properties: dict[str, Any]


class EventFields(TypedDict, total=False):
    """Keyword arguments of ``log_event`` (generic ``chain``/``tool``/``model`` events)."""

    event_type: Required[EventType]
    event_name: Required[str]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    config: dict[str, Any]
    duration: float
    error: str | None
    source: str
    event_id: str
    parent_id: str
    children_ids: list[str]
    start_time: Any
    end_time: Any
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    feedback: dict[str, Any]
    user_properties: dict[str, Any]


class SessionFields(TypedDict, total=False):
    """Keyword arguments of ``Exporter.session``: the session's properties."""

    session_name: str
    session_id: str
    source: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    metadata: dict[str, Any]
    user_properties: dict[str, Any]
    metrics: dict[str, Any]
    feedback: dict[str, Any]
    config: dict[str, Any]
    error: str | None
    start_time: Any


_OBJECT_FIELDS = (
    "usage", "hyperparameters", "template_inputs", "response_format", "config", "inputs",
    "outputs", "metadata", "metrics", "feedback", "user_properties",
)
_LIST_FIELDS = ("messages", "template", "tools", "children_ids")
_EXPECT: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(_OBJECT_FIELDS, dict),
    **dict.fromkeys(_LIST_FIELDS, (list, tuple)),
}


def _check(fields: dict[str, Any]) -> None:
    # Cheap type checks on the fields the API types strictly; msgspec would encode a string
    # `usage` happily and the server would reject the whole batch later. Only the given keys
    # are looked at, so an event with few fields costs few checks.
    expect = _EXPECT
    for name, v in fields.items():
        t = expect.get(name)
        if t is not None and v is not None and not isinstance(v, t):
            kind = "a dict" if t is dict else "a list"
            raise EventError(f"field {name!r} must be {kind}, got {type(v).__name__}")


def _ms(name: str, value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")) or value < 0:
            raise EventError(f"field {name!r} must be epoch milliseconds >= 0, got {value!r}")
        return int(value)
    ts = getattr(value, "timestamp", None)
    if callable(ts):
        return int(ts() * 1000)
    raise EventError(f"field {name!r} must be epoch milliseconds or a datetime, got "
                     f"{type(value).__name__}")


def _times(fields: dict[str, Any], duration: float) -> tuple[int, int]:
    end = fields.pop("end_time", None)
    start = fields.pop("start_time", None)
    end_ms = int(time.time() * 1000) if end is None else _ms("end_time", end)
    start_ms = end_ms - int(duration) if start is None else _ms("start_time", start)
    return start_ms, end_ms


def _duration(fields: dict[str, Any]) -> float:
    d = fields.pop("duration", 0.0)
    if isinstance(d, bool) or not isinstance(d, int | float) or not d >= 0 or d == float("inf"):
        raise EventError(f"field 'duration' must be milliseconds >= 0, got {d!r}")
    return d


def encode_model_event(
    fields: dict[str, Any], *, project: str, source: str, session_id: str | None
) -> tuple[str, bytes]:
    """Check, complete and encode a model event; return ``(event_id, bytes)``."""
    _check(fields)
    duration = _duration(fields)
    start, end = _times(fields, duration)
    event_id = fields.pop("event_id", None) or new_id()
    fields.setdefault("usage", {})
    fields.setdefault("source", source)
    fields.setdefault("event_name", "Model Completion")
    try:
        ev = ModelEvent(
            project=project, event_id=event_id, session_id=session_id, duration=duration,
            start_time=start, end_time=end, **fields,
        )
    except TypeError as exc:
        raise EventError(f"invalid model event: {exc}") from None
    return event_id, encode(ev)


def encode_event(
    fields: dict[str, Any], *, project: str, source: str, session_id: str | None
) -> tuple[str, bytes]:
    """Check, complete and encode a generic event; return ``(event_id, bytes)``."""
    _check(fields)
    et = fields.get("event_type")
    if et not in _EVENT_TYPES:
        raise EventError(f"field 'event_type' must be one of {sorted(_EVENT_TYPES)}, got {et!r}")
    duration = _duration(fields)
    start, end = _times(fields, duration)
    event_id = fields.pop("event_id", None) or new_id()
    fields.setdefault("inputs", {})
    fields.setdefault("config", {})
    fields.setdefault("source", source)
    try:
        ev = Event(
            project=project, event_id=event_id, session_id=session_id, duration=duration,
            start_time=start, end_time=end, **fields,
        )
    except TypeError as exc:
        raise EventError(f"invalid event: {exc}") from None
    return event_id, encode(ev)


def encode_session(
    fields: dict[str, Any], *, source: str
) -> tuple[str, SessionProperties, bytes]:
    """Check and encode session properties; return ``(session_id, props, bytes)``."""
    _check(fields)
    session_id = fields.pop("session_id", None) or new_id()
    fields.setdefault("source", source)
    start = fields.pop("start_time", None)
    start_ms = int(time.time() * 1000) if start is None else _ms("start_time", start)
    try:
        props = SessionProperties(session_id=session_id, start_time=start_ms, **fields)
    except TypeError as exc:
        raise EventError(f"invalid session properties: {exc}") from None
    return session_id, props, encode(props)


def encode_session_event(props: SessionProperties, *, project: str) -> bytes:
    """Encode the ``event_type: "session"`` event that announces a session in bulk."""
    sid = props.session_id or new_id()
    start = props.start_time if props.start_time is not None else int(time.time() * 1000)
    ev = Event(
        project=project,
        source=props.source,
        event_name=props.session_name or "session",
        event_type="session",
        event_id=sid,
        session_id=sid,
        config=props.config or {},
        inputs=props.inputs or {},
        outputs=props.outputs,
        error=props.error,
        start_time=start,
        end_time=start,
        duration=0.0,
        metadata=props.metadata,
        feedback=props.feedback,
        metrics=props.metrics,
        user_properties=props.user_properties,
    )
    return encode(ev)
