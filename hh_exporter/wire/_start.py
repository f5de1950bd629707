"""Session start bodies, both generations: built from properties read from a file, read
back for their ``session_id``, rewritten for the other generation, and opened into the
``session_properties`` a session's first batch carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .._encoding import encode
from .._errors import EventError
from ._v1 import session_to_v1

__all__ = ["envelope_properties", "restart_session", "session_start_body", "start_session_id"]


def session_start_body(props: Mapping[str, Any], session_id: str,
                       project: str | None, *, v1: bool = False) -> bytes:
    """The session start body for properties read from a file (``ingest``)."""
    session = {k: v for k, v in props.items() if v is not None}
    session["session_id"] = session_id
    if v1:
        return encode(session_to_v1(session))
    if project is not None and "project" not in session:
        session["project"] = project
    return encode({"session": session})


_LEGACY_START = b'{"session":'


def envelope_properties(start_body: bytes, *, v1: bool) -> bytes:
    """The ``session_properties`` a session's first batch carries, from its start body:
    the ``session`` object of a legacy ``{"session": {...}}`` body (its ``session_id``,
    name, source, user properties, metadata, config, inputs...), or a v1 body as it is.
    Raises ``msgspec.DecodeError`` if it is not a start body."""
    if v1:
        return start_body
    if start_body.startswith(_LEGACY_START) and start_body.endswith(b"}"):
        return start_body[len(_LEGACY_START):-1]  # as encode_session writes it: no copy
    session = msgspec.json.decode(start_body, type=dict[str, msgspec.Raw]).get("session")
    if session is None:
        raise msgspec.DecodeError("not a session start body: no 'session' object")
    return bytes(session)


class _StartSession(msgspec.Struct):
    session_id: str | None = None


class _Start(msgspec.Struct):
    session: _StartSession | None = None
    session_id: str | None = None  # v1: the body is the session itself


_decode_start = msgspec.json.Decoder(_Start).decode


def start_session_id(body: bytes) -> str | None:
    """The ``session_id`` of a start body, legacy (``{"session": {...}}``) or v1 (bare);
    only that field is decoded. Raises ``msgspec.DecodeError`` if it is not one."""
    start = _decode_start(body)
    if start.session is not None:
        return start.session.session_id
    return start.session_id


def restart_session(start_body: bytes, project: str | None, *,
                    v1: bool) -> tuple[str | None, bytes | None]:
    """A stored start body (legacy ``{"session": {...}}`` or v1 bare) as a start body of
    the generation given: ``(session_id, body)``; body None if that generation cannot carry
    the session's properties, both None if it is not a start body at all."""
    try:
        body = msgspec.json.decode(start_body)
    except msgspec.DecodeError:
        return None, None
    props = body.get("session", body) if isinstance(body, dict) else None
    sid = props.get("session_id") if isinstance(props, dict) else None
    if not isinstance(props, dict) or not isinstance(sid, str):
        return None, None
    try:
        return sid, session_start_body(props, sid, project, v1=v1)
    except EventError:
        return sid, None
