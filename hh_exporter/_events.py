"""Building wire events from a log call's keyword arguments, with cheap checks.

This is the hot path's first half: check the names given and the types the API insists on,
fill ids and timestamps into the call's own keyword-argument dict, and encode it once. A bad
value raises :class:`~hh_exporter.EventError` here, at the call site, naming the field.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Required, TypedDict

from ._encoding import encode
from ._errors import EventError
from ._ids import new_id

__all__ = [
    "EventFields",
    "ModelEventFields",
    "SessionFields",
    "encode_event",
    "encode_model_event",
    "encode_session",
    "session_announcement",
]

EventType = Literal["model", "tool", "chain", "session"]
_EVENT_TYPES = frozenset(("model", "tool", "chain", "session"))


class _EventCommon(TypedDict, total=False):
    """Fields every event may carry, model or generic (``event_name`` is declared by each:
    optional on model events, required on generic ones)."""

    source: str
    event_id: str
    session_id: str
    parent_id: str
    children_ids: list[str]
    config: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: str | None
    duration: float
    start_time: Any
    end_time: Any
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    feedback: dict[str, Any]
    user_properties: dict[str, Any]


class ModelEventFields(_EventCommon, total=False):
    """Keyword arguments of ``log_model_event``; see the README for each field.

    ``start_time``/``end_time`` are epoch milliseconds (or ``datetime``); ``duration`` is
    milliseconds. ``end_time`` defaults to now and ``start_time`` to ``end_time - duration``.
    ``session_id`` attaches the event to a session created elsewhere; a session handle's id
    wins over it.
    """

    model: Required[str]
    provider: Required[str]
    messages: Required[list[Any]]
    response: Required[Any]
    event_name: str
    usage: dict[str, Any]
    cost: float | None
    hyperparameters: dict[str, Any]
    template: list[Any]
    template_inputs: dict[str, Any]
    tools: list[Any]
    tool_choice: Any
    response_format: dict[str, Any]


class EventFields(_EventCommon, total=False):
    """Keyword arguments of ``log_event`` (generic ``chain``/``tool``/``model`` events)."""

    event_type: Required[EventType]
    event_name: Required[str]


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
_UNKNOWN = object()
_NUMBER = (int, float)
_INF = float("inf")


def _allowed(typed: type) -> dict[str, Any]:
    """Field name -> the type to check it against (None: not checked here)."""
    return {name: _EXPECT.get(name) for name in typed.__annotations__}


_MODEL_ALLOWED = _allowed(ModelEventFields)
_EVENT_ALLOWED = _allowed(EventFields)
_SESSION_ALLOWED = _allowed(SessionFields)
_MODEL_REQUIRED = ("model", "provider", "messages", "response")
_EVENT_REQUIRED = ("event_type", "event_name")


_MAX_SHAPES = 1024
Checker = Callable[[dict[str, Any]], None]


def _checker(allowed: dict[str, Any], required: tuple[str, ...], kind: str) -> Checker:
    """A check of one kind of event's fields, fast for the shapes it has seen before.

    A call site passes the same keyword names in the same order every time, so the names
    are validated once per shape (unknown names, required ones) and remembered with the
    list of fields whose type must be checked; later calls only check those types.
    """
    shapes: dict[tuple[str, ...], tuple[tuple[str, Any], ...]] = {}

    def learn(shape: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
        for name in shape:
            if name not in allowed:
                raise EventError(f"unknown field {name!r} for {kind}")
        missing = [n for n in required if n not in shape]
        if missing:
            raise EventError(f"{kind} is missing required field(s): {', '.join(missing)}")
        typed = tuple((n, allowed[n]) for n in shape if allowed[n] is not None)
        if len(shapes) >= _MAX_SHAPES:  # keys built on the fly must not grow this forever
            shapes.clear()
        shapes[shape] = typed
        return typed

    def check(fields: dict[str, Any]) -> None:
        # msgspec would encode a string `usage` happily and the server would reject the
        # batch later: the types the API insists on are checked here, at the call site.
        shape = tuple(fields)
        typed = shapes.get(shape)
        if typed is None:
            typed = learn(shape)
        for name, t in typed:
            v = fields[name]
            if v is not None and not isinstance(v, t):
                what = "a dict" if t is dict else "a list"
                raise EventError(f"field {name!r} must be {what}, got {type(v).__name__}")

    return check


_check_model = _checker(_MODEL_ALLOWED, _MODEL_REQUIRED, "a model event")
_check_event = _checker(_EVENT_ALLOWED, _EVENT_REQUIRED, "an event")
_check_session = _checker(_SESSION_ALLOWED, (), "a session")


def _ms(name: str, value: Any) -> int:
    if isinstance(value, _NUMBER) and not isinstance(value, bool):
        if not 0 <= value < _INF:
            raise EventError(f"field {name!r} must be epoch milliseconds >= 0, got {value!r}")
        return int(value)
    ts = getattr(value, "timestamp", None)
    if callable(ts):
        return int(ts() * 1000)
    raise EventError(f"field {name!r} must be epoch milliseconds or a datetime, got "
                     f"{type(value).__name__}")


def _complete(
    fields: dict[str, Any], project: str, source: str, session_id: str | None
) -> str:
    """Fill what the wire needs in place: ids, timestamps, duration, project, source."""
    d = fields.get("duration", 0.0)
    # `not 0 <= d < inf` also catches NaN; type() first keeps the common case to one test.
    if (type(d) is not float and type(d) is not int and (
            isinstance(d, bool) or not isinstance(d, _NUMBER))) or not 0 <= d < _INF:
        raise EventError(f"field 'duration' must be milliseconds >= 0, got {d!r}")
    end = fields.get("end_time")
    start = fields.get("start_time")
    end_ms = int(time.time() * 1000) if end is None else _ms("end_time", end)
    fields["start_time"] = end_ms - int(d) if start is None else _ms("start_time", start)
    fields["end_time"] = end_ms
    fields["duration"] = d
    event_id = fields.get("event_id") or new_id()
    fields["event_id"] = event_id
    fields["project"] = project
    if session_id is not None:
        fields["session_id"] = session_id
    if "source" not in fields:
        fields["source"] = source
    return event_id


def encode_model_event(
    fields: dict[str, Any], project: str, source: str, session_id: str | None
) -> tuple[str, bytes]:
    """Check, complete and encode a model event; return ``(event_id, bytes)``.

    ``fields`` is the call's own ``**kwargs`` dict, completed in place and encoded once: a
    plain dict encodes as fast as a Struct, and building a Struct from 20 keyword arguments
    would cost more than the encode itself.
    """
    _check_model(fields)
    if fields["messages"] is None:
        raise EventError("field 'messages' must be a list, got NoneType")
    event_id = _complete(fields, project, source, session_id)
    if fields.get("usage") is None:  # the classic API requires an object
        fields["usage"] = {}
    if "event_name" not in fields:
        fields["event_name"] = "Model Completion"
    return event_id, encode(fields)


def encode_event(
    fields: dict[str, Any], project: str, source: str, session_id: str | None
) -> tuple[str, bytes]:
    """Check, complete and encode a generic event; return ``(event_id, bytes)``."""
    _check_event(fields)
    et = fields["event_type"]
    if et not in _EVENT_TYPES:
        raise EventError(f"field 'event_type' must be one of {sorted(_EVENT_TYPES)}, got {et!r}")
    event_id = _complete(fields, project, source, session_id)
    if fields.get("inputs") is None:  # required by the API
        fields["inputs"] = {}
    if fields.get("config") is None:
        fields["config"] = {}
    return event_id, encode(fields)


_ANNOUNCED = ("source", "outputs", "error", "metadata", "feedback", "metrics", "user_properties")


def session_announcement(props: Mapping[str, Any], session_id: str, project: str) -> bytes:
    """Encode the ``event_type: "session"`` event that creates a session.

    It is needed when the session's events travel in mixed batches, whose envelope cannot
    carry its properties. ``props`` are the session's properties as sent in an envelope.
    """
    event: dict[str, Any] = {
        "project": project, "event_name": props.get("session_name") or "session",
        "event_type": "session", "event_id": session_id, "session_id": session_id,
        "config": props.get("config") or {}, "inputs": props.get("inputs") or {},
        "duration": 0.0,
    }
    start = props.get("start_time")
    if start is not None:
        event["start_time"] = event["end_time"] = start
    for name in _ANNOUNCED:
        value = props.get(name)
        if value is not None:
            event[name] = value
    return encode(event)


def encode_session(
    fields: dict[str, Any], *, project: str, source: str
) -> tuple[str, bytes, bytes]:
    """Check and encode a session's properties and its announcement event.

    Returns ``(session_id, properties JSON, announcement JSON)``.
    """
    _check_session(fields)
    session_id = fields.get("session_id") or new_id()
    fields["session_id"] = session_id
    if "source" not in fields:
        fields["source"] = source
    start = fields.get("start_time")
    fields["start_time"] = int(time.time() * 1000) if start is None else _ms("start_time", start)
    return session_id, encode(fields), session_announcement(fields, session_id, project)
