"""Typed msgspec decoders for the ingestion routes: the real API's rules, or the classic ones.

By default (the real API today) a model event requires nothing (SPEC-DP ``ModelEvent``: the
route sets ``event_type`` itself) and a generic event requires ``event_type`` and ``inputs``
(SPEC-DP ``LegacyPostEventRequestEvent``; the classic "Could not create event due to
missing inputs" partial failure, CLASSIC:287-310); ``project`` is never required (SPEC-DP:
"ignored by server"). Strict mode enforces the classic API's required sets (CLASSIC:1717-1725
and 1578-1585) and its ``model|tool|chain`` enum (CLASSIC:1515-1519). Types are checked in
both, and unknown fields are accepted in both, as the API does. Both variants are generated
from one field table, so they cannot drift apart.
"""

from __future__ import annotations

import functools
import operator
import typing
from typing import Any, Literal

import msgspec

__all__ = [
    "EventBatch",
    "EventRequest",
    "ModelBatch",
    "ModelEventRequest",
    "SessionProps",
    "SessionStartRequest",
    "UpdateEventRequest",
    "V1Batch",
    "V1Event",
    "V1RawBatch",
    "V1Session",
    "batch_decoder",
    "event_decoder",
    "format_error",
]

Obj = dict[str, Any]
EventType = Literal["model", "tool", "chain", "session"]
ClassicEventType = Literal["model", "tool", "chain"]


class AnyObject(msgspec.Struct):
    """Any JSON object. Decoding into an empty Struct checks "is an object" and skips the
    contents without building Python objects: validation is as strict as the API's, and
    several times cheaper than materialising every nested message."""


# Event fields are validated with these; the stored body is the raw JSON, never re-encoded.
Ob = AnyObject

# (name, type); every field is optional unless a strict set names it.
_COMMON: list[tuple[str, Any]] = [
    ("project", str | None), ("project_id", str | None), ("source", str | None),
    ("event_name", str | None), ("event_id", str | None), ("session_id", str | None),
    ("parent_id", str | None), ("children_ids", list[str] | None), ("config", Ob | None),
    ("inputs", Ob | None), ("outputs", Ob | None), ("error", str | None),
    ("start_time", float | None), ("end_time", float | None), ("duration", float | None),
    ("metadata", Ob | None), ("feedback", Ob | None), ("metrics", Ob | None),
    ("user_properties", Ob | None),
]
_MODEL: list[tuple[str, Any]] = [
    *_COMMON,
    ("event_type", EventType | None), ("model", str | None), ("model_name", str | None),
    ("model_version", str | None), ("provider", str | None), ("messages", list[Ob] | None),
    ("response", msgspec.Raw), ("usage", Ob | None), ("cost", float | None),
    ("hyperparameters", Ob | None), ("template", list[Ob] | None),
    ("template_inputs", Ob | None), ("tools", list[Ob] | None), ("tool_choice", msgspec.Raw),
    ("response_format", Ob | None),
]
_EVENT: list[tuple[str, Any]] = [*_COMMON, ("event_type", EventType | None)]

_STRICT_MODEL = {
    "project": str, "model": str, "provider": str, "messages": list[Ob], "response": msgspec.Raw,
    "duration": float, "usage": Ob,
}
_STRICT_EVENT = {
    "project": str, "event_type": ClassicEventType, "event_name": str, "source": str,
    "config": Ob, "inputs": Ob, "duration": float,
}
_REAL_EVENT = {"event_type": EventType, "inputs": Ob}


#: The data-plane spec types these model fields as anything (``messages`` items included,
#: ``items: {}``); the classic spec typed them, and strict mode keeps its types.
_REAL_MODEL_TYPES: dict[str, Any] = {
    "messages": list[msgspec.Raw] | None, "cost": msgspec.Raw, "template": msgspec.Raw,
    "template_inputs": msgspec.Raw, "tools": msgspec.Raw, "response_format": msgspec.Raw,
}


def _no_null(name: str, t: Any) -> Any:
    """``T | None`` -> ``T``: the spec types optional fields without ``null`` (absent is
    fine, ``null`` is not), except ``error``, which it types ``string | null``."""
    if name == "error":
        return t
    args = typing.get_args(t)
    if type(None) not in args:
        return t
    rest = tuple(a for a in args if a is not type(None))
    return functools.reduce(operator.or_, rest)


def _struct(name: str, fields: list[tuple[str, Any]], required: dict[str, Any],
            types: dict[str, Any] | None = None, **options: Any) -> Any:
    """A Struct of ``fields``: the ``required`` ones, and the rest optional (absent, never
    ``null`` unless the spec allows it)."""
    types = types or {}
    spec = [
        (n, required[n]) if n in required else (n, _no_null(n, types.get(n, t)), None)
        for n, t in fields
    ]
    return msgspec.defstruct(name, spec, kw_only=True, **options)


ModelEventStrict = _struct("ModelEventStrict", _MODEL, _STRICT_MODEL)
ModelEventLax = _struct("ModelEventLax", _MODEL, {}, _REAL_MODEL_TYPES)
EventStrict = _struct("EventStrict", _EVENT, _STRICT_EVENT)
EventLax = _struct("EventLax", _EVENT, _REAL_EVENT)


class SessionProps(msgspec.Struct, kw_only=True):
    """``session_properties`` (or its alias ``session``) of a batch; all optional."""

    session_name: str | None = None
    source: str | None = None
    session_id: str | None = None
    config: Obj | None = None
    inputs: Obj | None = None
    outputs: Obj | None = None
    error: str | None = None
    user_properties: Obj | None = None
    metrics: Obj | None = None
    feedback: Obj | None = None
    metadata: Obj | None = None
    start_time: float | None = None


def _batch(name: str, key: str, item: Any) -> type:
    """A batch envelope whose events are validated in the same pass as the envelope."""
    return msgspec.defstruct(name, [
        (key, list[item]), ("single_session", bool | None, None),
        ("is_single_session", bool | None, None),
        ("session_properties", SessionProps | None, None), ("session", SessionProps | None, None),
    ], kw_only=True)


class ModelBatch(msgspec.Struct, kw_only=True):
    """Body of ``POST /events/model/batch``; events stay raw until validated one by one."""

    model_events: list[msgspec.Raw]
    single_session: bool | None = None
    is_single_session: bool | None = None
    session_properties: SessionProps | None = None
    session: SessionProps | None = None


class EventBatch(msgspec.Struct, kw_only=True):
    """Body of ``POST /events/batch``."""

    events: list[msgspec.Raw]
    single_session: bool | None = None
    is_single_session: bool | None = None
    session_properties: SessionProps | None = None
    session: SessionProps | None = None


class ModelEventRequest(msgspec.Struct, kw_only=True):
    """Body of ``POST /events/model``."""

    model_event: msgspec.Raw


class EventRequest(msgspec.Struct, kw_only=True):
    """Body of ``POST /events``."""

    event: msgspec.Raw


_SESSION: list[tuple[str, Any]] = [
    ("session_id", str | None), ("session_name", str | None), ("event_name", str | None),
    ("source", str | None), ("start_time", float | None), ("end_time", float | None),
    ("duration", float | None), ("config", Obj | None), ("inputs", Obj | None),
    ("outputs", Obj | None), ("metadata", Obj | None), ("user_properties", Obj | None),
    ("children_ids", list[str] | None),
]
#: The ``session`` object of ``POST /session/start`` (``LegacyStartSessionRequestSession``);
#: extra keys allowed (classic clients send ``project``, ``metrics``, ``feedback``, ``error``).
SessionStart = _struct("SessionStart", [
    *_SESSION, ("project", str | None), ("metrics", Obj | None), ("feedback", Obj | None),
    ("error", str | None)], {})


class UpdateEventRequest(msgspec.Struct, kw_only=True):
    """Body of ``PUT /events`` (SPEC-DP ``LegacyUpdateEventRequest``)."""

    event_id: str
    metadata: Obj | None = None
    feedback: Obj | None = None
    metrics: Obj | None = None
    outputs: Obj | None = None
    config: Obj | None = None
    user_properties: Obj | None = None
    duration: float | None = None
    end_time: float | None = None
    children_ids: list[str] | None = None


class SessionStartRequest(msgspec.Struct, kw_only=True):
    """Body of ``POST /session/start``."""

    session: SessionStart  # type: ignore[valid-type]


# -- v1: strict bodies (additionalProperties: false) ------------------------------------------

_V1_EVENT: list[tuple[str, Any]] = [
    (n, t) for n, t in _EVENT if n not in ("project", "event_type", "inputs")
]
V1Event = msgspec.defstruct("V1Event", [
    ("event_type", EventType), ("inputs", Ob), *((n, _no_null(n, t), None) for n, t in _V1_EVENT),
], kw_only=True, forbid_unknown_fields=True)
"""``PostEventRequest``: ``event_type`` and ``inputs`` required, nothing unknown."""


#: ``SessionProperties`` of a v1 batch (extra keys allowed by the spec).
V1SessionProps = _struct("V1SessionProps", [
    ("session_name", str | None), ("session_id", str | None), ("start_time", float | None),
    ("user_properties", Obj | None), ("metadata", Obj | None)], {})


class V1Batch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PostEventBatchRequest``: strict envelope and events, validated in one pass."""

    events: list[V1Event]  # type: ignore[valid-type]
    single_session: bool | None = None
    session_properties: V1SessionProps | None = None  # type: ignore[valid-type]


class V1RawBatch(msgspec.Struct, kw_only=True):
    """The same body, its events left raw (stored as sent)."""

    events: list[msgspec.Raw]
    single_session: bool | None = None
    session_properties: V1SessionProps | None = None  # type: ignore[valid-type]


#: ``StartSessionRequest``: the bare body of ``POST /v1/sessions``, strict.
V1Session = _struct("V1Session", _SESSION, {}, forbid_unknown_fields=True)


def batch_decoder(model: bool, strict: bool) -> msgspec.json.Decoder[Any]:
    """A decoder that validates a whole batch body, envelope and events, in one pass."""
    if model:
        item = ModelEventStrict if strict else ModelEventLax
        return msgspec.json.Decoder(_batch("ModelBatchTyped", "model_events", item))
    item = EventStrict if strict else EventLax
    return msgspec.json.Decoder(_batch("EventBatchTyped", "events", item))


def event_decoder(model: bool, strict: bool) -> msgspec.json.Decoder[Any]:
    """A decoder that validates one event of the given kind and mode."""
    if model:
        return msgspec.json.Decoder(ModelEventStrict if strict else ModelEventLax)
    return msgspec.json.Decoder(EventStrict if strict else EventLax)


def format_error(exc: msgspec.DecodeError, prefix: str = "") -> str:
    """Turn msgspec's ``Expected `object`, got `str` - at `$.usage``` into
    ``model_events[3].usage: expected object, got str``."""
    text = str(exc)
    where = prefix
    if " - at `$" in text:
        text, _, path = text.rpartition(" - at `$")
        where = prefix + path.rstrip("`")
        if not prefix:
            where = where.lstrip(".")
    # JSON has numbers, not floats: say it in the client's terms.
    text = text.replace(" | null", "").replace("`float`", "number").replace("`", "")
    if text:
        text = text[0].lower() + text[1:]
    return f"{where}: {text}" if where else text
