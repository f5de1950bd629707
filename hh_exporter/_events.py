"""Building wire events from a log call's keyword arguments, with cheap checks.

This is the hot path's first half: check the names given and the types the API insists on,
fill ids and timestamps into the call's own keyword-argument dict, and encode it once. A bad
value raises :class:`~hh_exporter.EventError` here, at the call site, naming the field.
"""

from __future__ import annotations

import datetime
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal, Required, TypedDict

from ._encoding import encode
from ._errors import EventError
from ._ids import new_id
from .wire._v1 import event_to_v1, model_to_v1, session_to_v1

__all__ = [
    "EventFields",
    "ModelEventFields",
    "SessionFields",
    "check_uuid",
    "describe",
    "encode_event",
    "encode_event_v1",
    "encode_model_event",
    "encode_model_event_v1",
    "encode_session",
    "fast_event",
    "fast_model_event",
]

# The classic API's enum. Sessions are not logged as events: Exporter.session() starts
# them through POST /session/start, as every official client does.
EventType = Literal["model", "tool", "chain"]
_EVENT_TYPES = frozenset(("model", "tool", "chain"))


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
_STR_FIELDS = ("model", "provider", "event_name", "event_type", "source", "session_name",
               "error")
_ID_FIELDS = ("event_id", "session_id", "parent_id")
_NUMBER_FIELDS = ("cost",)
_NUMBER = (int, float)
#: The Python type each field must have; fields absent here (``response``, ``tool_choice``,
#: timestamps, ``duration``) are checked elsewhere or take any JSON value.
_EXPECT: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(_OBJECT_FIELDS, dict),
    **dict.fromkeys(_LIST_FIELDS, (list, tuple)),
    **dict.fromkeys(_STR_FIELDS, str),
    **dict.fromkeys(_ID_FIELDS, (str, uuid.UUID)),
    **dict.fromkeys(_NUMBER_FIELDS, _NUMBER),
}
_TYPE_NAMES = {dict: "an object (dict)", str: "a string", _NUMBER: "a number",
               (str, uuid.UUID): "a UUID string", (list, tuple): "a list"}
_INF = float("inf")
#: Epoch milliseconds between 1973 and 5138: a smaller number is almost surely seconds
#: (``time.time()``), which the API would store as January 1970.
_MS_MIN, _MS_MAX = 100_000_000_000, 100_000_000_000_000
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_uuid_match = _UUID_RE.fullmatch


def _allowed(typed: type) -> dict[str, Any]:
    """Field name -> the type to check it against (None: not checked here)."""
    return {name: _EXPECT.get(name) for name in typed.__annotations__}


_MODEL_ALLOWED = _allowed(ModelEventFields)
_EVENT_ALLOWED = _allowed(EventFields)
_SESSION_ALLOWED = _allowed(SessionFields)
_MODEL_REQUIRED = ("model", "provider", "messages", "response")
_EVENT_REQUIRED = ("event_type", "event_name")


def describe(value: object) -> str:
    """A short, safe description of a caller's value for an error message.

    Only values of plain built-in types are shown (truncated); for anything else the type
    name is given, so a hostile ``__repr__`` never runs on the caller's path.
    """
    t = type(value)
    if t in (int, float, bool, str) or value is None:
        text = repr(value)  # builtin reprs cannot raise (a huge int is capped below)
        return text if len(text) <= 60 else text[:57] + "..."
    return t.__name__ if isinstance(t.__name__, str) else "object"


def check_uuid(name: str, value: object) -> str:
    """A UUID given by the caller, as the lowercase string the API expects, or EventError.

    The API silently replaces an id that is not a UUID, which orphans the events that
    point at it; the official SDKs validate and lowercase, and so do we.
    """
    if type(value) is str and len(value) == 36 and _uuid_match(value):
        return value.lower()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise EventError(f"field {name!r} must be a UUID string, got {describe(value)}")


_MAX_SHAPES = 1024
Checker = Callable[[dict[str, Any]], None]


def _checker(allowed: dict[str, Any], required: tuple[str, ...], kind: str) -> Checker:
    """A check of one kind of event's fields, fast for the shapes it has seen before.

    A call site passes the same keyword names in the same order every time, so the names
    are validated once per shape (unknown names, required ones) and remembered with the
    list of fields whose type must be checked; later calls only check those types.

    ``None`` means "not given": the key is removed (the official clients send
    ``exclude_none`` bodies), except ``error``, whose ``null`` is meaningful. A required
    field cannot be None.
    """
    shapes: dict[tuple[str, ...], tuple[tuple[tuple[str, Any], ...], tuple[str, ...]]] = {}
    need = frozenset(required)

    def learn(shape: tuple[str, ...]) -> tuple[tuple[tuple[str, Any], ...], tuple[str, ...]]:
        for name in shape:
            if type(name) is not str or name not in allowed:
                raise EventError(f"unknown field {describe(name)} for {kind}")
        missing = [n for n in required if n not in shape]
        if missing:
            raise EventError(f"{kind} is missing required field(s): {', '.join(missing)}")
        typed = tuple((n, allowed[n]) for n in shape if allowed[n] is not None)
        ids = tuple(n for n in shape if n in _ID_FIELDS or n == "children_ids")
        if len(shapes) >= _MAX_SHAPES:  # keys built on the fly must not grow this forever
            shapes.clear()
        plan = shapes[shape] = (typed, ids)
        return plan

    def check(fields: dict[str, Any]) -> None:
        # msgspec would encode a string `usage` happily and the server would reject the
        # batch later: the types the API insists on are checked here, at the call site.
        shape = tuple(fields)
        plan = shapes.get(shape)
        if plan is None:
            plan = learn(shape)
        typed, ids = plan
        for name, t in typed:
            v = fields[name]
            if not isinstance(v, t):
                if v is None:
                    if name in need:
                        raise EventError(f"field {name!r} is required and cannot be None")
                    if name != "error":
                        del fields[name]
                    continue
                raise EventError(f"field {name!r} must be "
                                 f"{_TYPE_NAMES[t]}, got {describe(v)}")
            if t is _NUMBER and (type(v) is bool or not -_INF < v < _INF):
                raise EventError(f"field {name!r} must be a finite number, got {describe(v)}")
        for name in ids:
            v = fields.get(name)
            if v is None:
                continue
            if name == "children_ids":
                fields[name] = [check_uuid("children_ids", c) for c in v]
            else:
                fields[name] = check_uuid(name, v)

    return check


_check_model = _checker(_MODEL_ALLOWED, _MODEL_REQUIRED, "a model event")
_check_event = _checker(_EVENT_ALLOWED, _EVENT_REQUIRED, "an event")
_check_session = _checker(_SESSION_ALLOWED, (), "a session")


def _ms(name: str, value: Any) -> int:
    if isinstance(value, _NUMBER) and not isinstance(value, bool):
        if not _MS_MIN <= value < _MS_MAX:
            if 0 < value < _MS_MIN // 10:
                raise EventError(f"field {name!r} must be epoch milliseconds; "
                                 f"{describe(value)} looks like seconds (multiply by 1000)")
            raise EventError(f"field {name!r} must be epoch milliseconds, got "
                             f"{describe(value)}")
        return int(value)
    if isinstance(value, datetime.datetime):
        try:
            ms = value.timestamp() * 1000
        except (OverflowError, ValueError, OSError) as exc:
            raise EventError(f"field {name!r}: the datetime has no timestamp: {exc}") from None
        if not _MS_MIN <= ms < _MS_MAX:
            raise EventError(f"field {name!r} is out of range: {describe(value)}")
        return int(ms)
    raise EventError(f"field {name!r} must be epoch milliseconds or a datetime, got "
                     f"{describe(value)}")


def _complete(
    fields: dict[str, Any], project: str | None, source: str, session_id: str | None
) -> str:
    """Fill what the wire needs in place: ids, timestamps, duration, project, source."""
    d = fields.get("duration", 0.0)
    # `not 0 <= d < inf` also catches NaN; type() first keeps the common case to one test.
    if (type(d) is not float and type(d) is not int and (
            isinstance(d, bool) or not isinstance(d, _NUMBER))) or not 0 <= d < _INF:
        raise EventError(f"field 'duration' must be milliseconds >= 0, got {describe(d)}")
    end = fields.get("end_time")
    start = fields.get("start_time")
    end_ms = int(time.time() * 1000) if end is None else _ms("end_time", end)
    fields["start_time"] = end_ms - int(d) if start is None else _ms("start_time", start)
    fields["end_time"] = end_ms
    fields["duration"] = d
    event_id = fields.get("event_id")
    if event_id is None:
        event_id = fields["event_id"] = new_id()
    if project is not None:
        fields["project"] = project
    if session_id is not None:
        fields["session_id"] = session_id
    if "source" not in fields:
        fields["source"] = source
    return event_id


def encode_model_event(
    fields: dict[str, Any], project: str | None, source: str, session_id: str | None
) -> tuple[str, bytes]:
    """Check, complete and encode a model event; return ``(event_id, bytes)``.

    ``fields`` is the call's own ``**kwargs`` dict, completed in place and encoded once: a
    plain dict encodes as fast as a Struct, and building a Struct from 20 keyword arguments
    would cost more than the encode itself.
    """
    _check_model(fields)
    event_id = _complete(fields, project, source, session_id)
    if "usage" not in fields:  # the classic API requires an object
        fields["usage"] = {}
    if "event_name" not in fields:
        fields["event_name"] = "Model Completion"
    return event_id, encode(fields)


def encode_event(
    fields: dict[str, Any], project: str | None, source: str, session_id: str | None
) -> tuple[str, bytes]:
    """Check, complete and encode a generic event; return ``(event_id, bytes)``."""
    _check_event(fields)
    et = fields["event_type"]
    if et not in _EVENT_TYPES:
        raise EventError(f"field 'event_type' must be one of {sorted(_EVENT_TYPES)}, got "
                         f"{describe(et)}")
    event_id = _complete(fields, project, source, session_id)
    # The classic API requires inputs and config; the official clients (honeyhive-logger,
    # honeyhive-daemon) always send outputs too, which the backend calls "required but
    # nullable".
    if "inputs" not in fields:
        fields["inputs"] = {}
    if "config" not in fields:
        fields["config"] = {}
    if "outputs" not in fields:
        fields["outputs"] = {}
    return event_id, encode(fields)


def encode_model_event_v1(
    fields: dict[str, Any], project: str | None, source: str, session_id: str | None
) -> tuple[str, bytes]:
    """Like :func:`encode_model_event`, as a v1 ``PostEventRequest`` (see ``_v1``)."""
    _check_model(fields)
    event_id = _complete(fields, None, source, session_id)
    if "event_name" not in fields:
        fields["event_name"] = "Model Completion"
    return event_id, encode(model_to_v1(fields))


def encode_event_v1(
    fields: dict[str, Any], project: str | None, source: str, session_id: str | None
) -> tuple[str, bytes]:
    """Like :func:`encode_event`, as a v1 ``PostEventRequest``: no ``project``."""
    event_id, _ = encode_event(fields, None, source, session_id)
    return event_id, encode(event_to_v1(fields))


def encode_session(
    fields: dict[str, Any], *, project: str | None, source: str, v1: bool = False
) -> tuple[str, bytes]:
    """Check a session's properties and encode its start body.

    Returns ``(session_id, body)``. For ``POST /session/start`` the body is
    ``{"session": {...}}`` as every official client sends it, with ``session_id``
    (client-chosen unless given), ``source``, ``start_time`` and, when set, ``project``; with
    ``v1`` it is the bare ``StartSessionRequest`` of ``POST /v1/sessions``, without
    ``project``.
    """
    _check_session(fields)
    session_id = fields.get("session_id")
    if session_id is None:
        session_id = fields["session_id"] = new_id()
    if "source" not in fields:
        fields["source"] = source
    start = fields.get("start_time")
    fields["start_time"] = int(time.time() * 1000) if start is None else _ms("start_time", start)
    if v1:
        return session_id, encode(session_to_v1(fields))
    if project is not None:
        fields["project"] = project
    return session_id, encode({"session": fields})


# -- the compiled fast path -------------------------------------------------------------------
#
# A call site passes the same keyword names every time. For each such shape a function is
# generated once that checks exactly those fields, straight-line, then completes and
# encodes the event: no loop over a table, no layers of calls. It only ever handles the
# happy path: anything unusual (a None to leave out, a value of the wrong type, a number
# that is not finite) goes to the general functions above, untouched, and they raise the
# error that names the field. Both produce the same bytes.

_COMPILED_KINDS: dict[str, tuple[dict[str, Any], tuple[str, ...], Any, tuple[str, ...]]] = {}


def _fast_source(shape: tuple[str, ...], kind: str) -> str:
    allowed, _, _, defaults = _COMPILED_KINDS[kind]
    out = ["def fast(fields, project, source, sid):"]
    put = out.append
    assign: list[str] = []
    ids: list[str] = []  # checked after every type, in shape order, as the general path does
    for i, name in enumerate(shape):
        t = allowed[name]
        v = f"v{i}"
        if t is None and name not in ("duration", "start_time", "end_time"):
            continue
        if name in ("duration", "start_time", "end_time"):
            continue  # completed below
        put(f"    {v} = fields[{name!r}]")
        if name == "error":
            put(f"    if {v} is not None and type({v}) is not str and not isinstance({v}, str):")
        elif t is str:
            put(f"    if type({v}) is not str and not isinstance({v}, str):")
        elif t is dict:
            put(f"    if type({v}) is not dict and not isinstance({v}, dict):")
        elif t == (list, tuple) and name != "children_ids":
            put(f"    if type({v}) is not list and not isinstance({v}, (list, tuple)):")
        elif t is _NUMBER:
            put(f"    if (type({v}) is not float and type({v}) is not int) "
                f"or not -_INF < {v} < _INF:")
        elif name == "children_ids":
            put(f"    if type({v}) is not list and not isinstance({v}, (list, tuple)):")
            put("        return slow(fields, project, source, sid)")
            ids.append(f"    {v} = [check_uuid('children_ids', c) for c in {v}]")
            assign.append(f"    fields[{name!r}] = {v}")
            continue
        elif name in _ID_FIELDS:
            put(f"    if type({v}) is not str and not isinstance({v}, (str, _UUID)):")
            put("        return slow(fields, project, source, sid)")
            ids.append(f"    {v} = check_uuid({name!r}, {v})")
            assign.append(f"    fields[{name!r}] = {v}")
            continue
        else:  # a type this generator does not know: the general path decides
            put("    return slow(fields, project, source, sid)")
            continue
        put("        return slow(fields, project, source, sid)")
        if name == "event_type":
            put(f"    if {v} not in _EVENT_TYPES:")
            put("        return slow(fields, project, source, sid)")
    out.extend(ids)
    if "duration" in shape:
        put("    d = fields['duration']")
        put("    if (type(d) is not float and type(d) is not int) or not 0 <= d < _INF:")
        put("        return slow(fields, project, source, sid)")
    else:
        put("    d = 0.0")
    if "end_time" in shape:
        put("    e = fields['end_time']")
        put("    end = int(_time() * 1000) if e is None else _ms('end_time', e)")
    else:
        put("    end = int(_time() * 1000)")
    if "start_time" in shape:
        put("    s = fields['start_time']")
        put("    start = end - int(d) if s is None else _ms('start_time', s)")
    else:
        put("    start = end - int(d)")
    # Nothing was changed above: from here on, the same writes as the general path.
    out.extend(assign)
    put("    fields['start_time'] = start")
    put("    fields['end_time'] = end")
    put("    fields['duration'] = d")
    if "event_id" in shape:
        eid = f"v{shape.index('event_id')}"
        put(f"    eid = {eid}")
    else:
        put("    eid = fields['event_id'] = new_id()")
    put("    if project is not None:")
    put("        fields['project'] = project")
    put("    if sid is not None:")
    put("        fields['session_id'] = sid")
    if "source" not in shape:
        put("    fields['source'] = source")
    for line in defaults:
        put(line)
    put("    return eid, encode(fields)")
    return "\n".join(out)


def _fast(kind: str) -> Callable[[dict[str, Any], str | None, str, str | None],
                                 tuple[str, bytes]]:
    """The compiled encoder of ``kind`` (``model`` or ``event``), dispatching on shape."""
    allowed, required, slow, _ = _COMPILED_KINDS[kind]
    compiled: dict[tuple[str, ...], Any] = {}
    env = {"slow": slow, "_INF": _INF, "_EVENT_TYPES": _EVENT_TYPES, "_time": time.time,
           "_UUID": uuid.UUID,
           "_ms": _ms, "check_uuid": check_uuid, "new_id": new_id, "encode": encode}

    def dispatch(fields: dict[str, Any], project: str | None, source: str,
                 sid: str | None) -> tuple[str, bytes]:
        shape = tuple(fields)
        fn = compiled.get(shape)
        if fn is None:
            if any(type(n) is not str or n not in allowed for n in shape) or any(
                    n not in shape for n in required):
                # An unknown or a missing name: the general path raises, naming it.
                return slow(fields, project, source, sid)  # type: ignore[no-any-return]
            if len(compiled) >= _MAX_SHAPES:  # shapes built on the fly: stay bounded
                compiled.clear()
            scope: dict[str, Any] = {}
            # Our own source, built from allowed field names only (checked just above).
            exec(_fast_source(shape, kind), env, scope)
            fn = compiled[shape] = scope["fast"]
        return fn(fields, project, source, sid)  # type: ignore[no-any-return]

    return dispatch


_COMPILED_KINDS["model"] = (
    _MODEL_ALLOWED, _MODEL_REQUIRED, encode_model_event,
    ("    if 'usage' not in fields:", "        fields['usage'] = {}",
     "    if 'event_name' not in fields:", "        fields['event_name'] = 'Model Completion'"))
_COMPILED_KINDS["event"] = (
    _EVENT_ALLOWED, _EVENT_REQUIRED, encode_event,
    ("    if 'inputs' not in fields:", "        fields['inputs'] = {}",
     "    if 'config' not in fields:", "        fields['config'] = {}",
     "    if 'outputs' not in fields:", "        fields['outputs'] = {}"))

#: ``encode_model_event`` and ``encode_event``, compiled per call shape.
fast_model_event = _fast("model")
fast_event = _fast("event")
