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
    "props_dict",
    "props_session_id",
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


def _no_null(name: str, t: Any, nullable: tuple[str, ...] = ("error",)) -> Any:
    """``T | None`` -> ``T``: the spec types optional fields without ``null`` (absent is
    fine, ``null`` is not), except those it types ``T | null`` (an event's ``error``)."""
    if name in nullable:
        return t
    args = typing.get_args(t)
    if type(None) not in args:
        return t
    rest = tuple(a for a in args if a is not type(None))
    return functools.reduce(operator.or_, rest)


def _struct(name: str, fields: list[tuple[str, Any]], required: dict[str, Any],
            types: dict[str, Any] | None = None, nullable: tuple[str, ...] = ("error",),
            **options: Any) -> Any:
    """A Struct of ``fields``: the ``required`` ones, and the rest optional (absent, never
    ``null`` unless the spec allows it: the ``nullable`` ones)."""
    types = types or {}
    spec = [
        (n, required[n]) if n in required
        else (n, _no_null(n, types.get(n, t), nullable), None)
        for n, t in fields
    ]
    return msgspec.defstruct(name, spec, kw_only=True, **options)


ModelEventStrict = _struct("ModelEventStrict", _MODEL, _STRICT_MODEL)
ModelEventLax = _struct("ModelEventLax", _MODEL, {}, _REAL_MODEL_TYPES)
EventStrict = _struct("EventStrict", _EVENT, _STRICT_EVENT)
EventLax = _struct("EventLax", _EVENT, _REAL_EVENT)


#: ``SessionProperties`` (SPEC-DP), the ``session_properties`` (or its alias ``session``) of a
#: legacy or v1 batch: ``session_name``, ``start_time``, ``user_properties`` and ``metadata``
#: are typed, and typed without ``null``; everything else is ``additionalProperties: {}``,
#: any JSON value (``session_id`` included: a value that is no UUID string names no session,
#: and the server generates one, SPEC-DP:117-118). The other keys a session keeps are read
#: raw, to be stored as sent.
SessionProps = _struct("SessionProps", [
    ("session_name", str | None), ("start_time", float | None),
    ("user_properties", Obj | None), ("metadata", Obj | None),
    *((n, msgspec.Raw | None) for n in ("session_id", "source", "config", "inputs",
                                         "outputs", "error", "metrics", "feedback")),
], {})


def props_dict(props: Any) -> dict[str, Any]:
    """The properties of a ``SessionProps`` as builtins, without the absent or ``null`` ones
    (a session keeps no ``null`` property) and without ``session_id``."""
    out: dict[str, Any] = {}
    if props is None:
        return out
    for name in props.__struct_fields__:
        value = getattr(props, name)
        if isinstance(value, msgspec.Raw):
            value = msgspec.json.decode(value)
        if value is not None and name != "session_id":
            out[name] = value
    return out


def props_session_id(props: Any) -> str | None:
    """The ``session_id`` a ``SessionProps`` names, if it is a string (it may be any JSON
    value, SPEC-DP ``SessionProperties``: ``additionalProperties: {}``)."""
    raw = None if props is None else props.session_id
    if raw is None:
        return None
    value = msgspec.json.decode(raw)
    return value if isinstance(value, str) else None


def _batch(name: str, key: str, item: Any) -> Any:
    """A batch envelope whose events are validated in the same pass as the envelope.

    The envelope's flags and objects may be absent, never ``null``: SPEC-DP types
    ``single_session``/``is_single_session`` ``boolean`` and ``session_properties``/
    ``session`` ``SessionProperties`` (an object), none of them nullable."""
    return _struct(name, [
        (key, list[item]), ("single_session", bool | None),
        ("is_single_session", bool | None),
        ("session_properties", SessionProps | None), ("session", SessionProps | None),
    ], {key: list[item]})


#: Body of ``POST /events/model/batch`` (SPEC-DP ``PostModelEventBatchRequest``); the
#: events stay raw until validated one by one.
ModelBatch = _batch("ModelBatch", "model_events", msgspec.Raw)
#: Body of ``POST /events/batch`` (SPEC-DP ``LegacyPostEventBatchRequest``).
EventBatch = _batch("EventBatch", "events", msgspec.Raw)


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


#: Body of ``PUT /events`` (SPEC-DP ``LegacyUpdateEventRequest``): ``event_id`` required;
#: the rest optional and typed without ``null``, except ``outputs``, which the spec types
#: ``object | null`` ("null preserves the existing outputs").
UpdateEventRequest = _struct("UpdateEventRequest", [
    ("event_id", str), ("metadata", Obj | None), ("feedback", Obj | None),
    ("metrics", Obj | None), ("outputs", Obj | None), ("config", Obj | None),
    ("user_properties", Obj | None), ("duration", float | None), ("end_time", float | None),
    ("children_ids", list[str] | None),
], {"event_id": str}, nullable=("outputs",))


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


#: ``PostEventBatchRequest``: strict envelope and events, validated in one pass; the flag
#: and the properties may be absent, never ``null`` (SPEC-DP types them ``boolean`` and
#: ``SessionProperties``), and the properties are as open as the spec's.
V1Batch = _struct("V1Batch", [
    ("events", list[V1Event]), ("single_session", bool | None),  # type: ignore[valid-type]
    ("session_properties", SessionProps | None),
], {"events": list[V1Event]}, forbid_unknown_fields=True)  # type: ignore[valid-type]

#: The same body, its events left raw (stored as sent).
V1RawBatch = _struct("V1RawBatch", [
    ("events", list[msgspec.Raw]), ("single_session", bool | None),
    ("session_properties", SessionProps | None),
], {"events": list[msgspec.Raw]})


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
