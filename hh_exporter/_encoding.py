"""Encoding: one reused msgspec encoder, and batch bodies joined from cached event bytes.

An event is encoded once, when it is logged. A batch body is then ``prefix + b",".join(events)
+ suffix``: nothing is encoded twice, and a body's size is known before it is built.

Values msgspec encodes natively keep its encoding: ``datetime``/``date``/``time`` as RFC 3339
strings, ``UUID`` and ``Decimal`` as strings, ``bytes`` as base64, ``set``/``tuple`` as arrays,
dataclasses and enums by value, and NaN/Infinity as ``null`` (JSON has no spelling for them).
Beyond that, objects with ``model_dump()`` (pydantic v2) or ``dict()`` (pydantic v1) become
objects, and numpy-style scalars with ``item()`` become numbers. Anything else is an
:class:`~hh_exporter.EventError` that names the field.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._errors import EventError

__all__ = [
    "GENERIC_ROUTE",
    "MODEL_ROUTE",
    "SESSION_ROUTE",
    "V1_ROUTE",
    "V1_SESSION_ROUTE",
    "batch_body",
    "body_overhead",
    "encode",
]

MODEL_ROUTE = "/events/model/batch"
GENERIC_ROUTE = "/events/batch"
SESSION_ROUTE = "/session/start"

V1_ROUTE = "/v1/events/batch"
V1_SESSION_ROUTE = "/v1/sessions"

_LEGACY_SUFFIX = b'],"is_single_session":false}'
# route -> (the body's start, its end): v1 rejects the legacy is_single_session alias.
_ENVELOPE = {
    MODEL_ROUTE: (b'{"model_events":[', _LEGACY_SUFFIX),
    GENERIC_ROUTE: (b'{"events":[', _LEGACY_SUFFIX),
    V1_ROUTE: (b'{"events":[', b'],"single_session":false}'),
}
_MAX_OVERHEAD = max(len(a) + len(b) for a, b in _ENVELOPE.values())
# The end of a single-session body, before its ``session_properties`` object and after it.
_SINGLE = {
    MODEL_ROUTE: b'],"is_single_session":true,"session_properties":',
    GENERIC_ROUTE: b'],"is_single_session":true,"session_properties":',
    V1_ROUTE: b'],"single_session":true,"session_properties":',
}


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    as_dict = getattr(obj, "dict", None)
    if callable(as_dict) and hasattr(obj, "__fields__"):
        return as_dict()
    item = getattr(obj, "item", None)
    if callable(item) and type(obj).__module__ == "numpy":
        return item()
    raise TypeError(f"values of type {type(obj).__qualname__} cannot be encoded as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_encode = _encoder.encode


def encode(obj: dict[str, Any]) -> bytes:
    """Encode an event's fields to JSON bytes, or raise :class:`EventError` naming the bad
    field."""
    try:
        return _encode(obj)
    except Exception as exc:  # noqa: BLE001 - a caller's hook may raise anything
        raise EventError(_describe(obj, exc)) from None


def _describe(obj: dict[str, Any], exc: Exception) -> str:
    # Slow path only: find which field fails by encoding each one alone. The message names
    # the error's type and msgspec's own words, never a repr of the caller's value.
    for name, value in obj.items():
        try:
            _encode(value)
        except Exception as field_exc:  # noqa: BLE001 - as above
            return f"field {name!r} cannot be encoded: {_reason(field_exc)}"
    return f"event cannot be encoded: {_reason(exc)}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "it is nested too deeply, or contains itself"
    if isinstance(exc, (TypeError, ValueError, OverflowError)) and type(exc).__module__ in (
        "builtins", "msgspec"
    ):
        try:  # a builtin error's text is str() of its arguments, which may be hostile too
            return str(exc)[:200]
        except Exception:  # noqa: BLE001
            pass
    return f"{type(exc).__name__} raised while encoding it"


def body_overhead(properties: bytes | None = None) -> int:
    """Bytes a batch body adds around its events (commas excluded), on any route; with
    ``properties``, those of a single-session body carrying them."""
    if properties is None:
        return _MAX_OVERHEAD
    return max(len(_ENVELOPE[r][0]) + len(end) for r, end in _SINGLE.items()) + len(
        properties) + 1


def batch_body(route: str, events: list[bytes], properties: bytes | None = None) -> bytes:
    """Join cached event bytes into a batch body for ``route``.

    A batch is mixed (``is_single_session: false``, or v1's ``single_session: false``):
    each event carries its own ``session_id``, and its session exists before the event
    leaves. With ``properties`` (an encoded ``session_properties`` object, its
    ``session_id`` included) it is the single-session body that creates the session
    (``is_single_session: true``, v1 ``single_session: true``): SPEC-DP "When
    ``single_session`` is true, all events share the same session created from
    ``session_properties``".

    The envelope is glued onto the first and last events so the body is built by one join:
    joining first and wrapping after would copy the whole body twice, and the second copy
    of a fresh multi-megabyte buffer costs ten times the first in page faults.
    """
    start, end = _ENVELOPE[route]
    if properties is not None:
        end = _SINGLE[route] + properties + b"}"
    if not events:
        return start + end
    parts = list(events)
    parts[0] = start + parts[0]
    parts[-1] = parts[-1] + end
    return b",".join(parts)
