"""The one line engine of ``hh-exporter ingest``, for one worker and many: a line's check
against the spec's types, its splices (``event_id``, ``project``, ``usage``), the session it
starts, the redaction of a line, and the rejects file's record."""

from __future__ import annotations

import functools
import gzip
import sys
import typing
from collections import OrderedDict
from collections.abc import Iterator
from typing import IO, Any, Literal

import msgspec

from .._encoding import body_overhead
from .._events import check_uuid
from .._exporter import Exporter
from .._ids import new_id
from .._spool import parse_header
from ..redact import redact_fields, redact_text
from ..wire._models import SessionProperties
from ..wire._start import restart_session, session_start_body
from ..wire._v1 import EVENT_KEYS, event_to_v1, model_to_v1

__all__ = ["first_start", "iter_lines", "prepare", "redact_line", "reject_reason",
           "reject_record", "start_spooled_session"]

Obj = dict[str, Any]


class _Object(msgspec.Struct, gc=False):
    """Any JSON object: checked to be one, its contents skipped rather than built (the line
    goes out as it came; building its messages as dicts cost a fifth of the decode)."""


_ABSENT = msgspec.Raw()  # no JSON value is empty: an empty Raw means "not on the line"


class _Line(msgspec.Struct, kw_only=True, gc=False):
    """The fields a line is checked on, typed as the spec's ``ModelEvent``/``LegacyEvent``
    type them (a line the API would refuse is rejected here, with its line number); fields
    the spec leaves untyped, and unknown ones, pass through untouched."""

    event_type: Literal["model", "tool", "chain", "session"] | None = None
    parent_id: str | None = None
    event_id: str | None = None
    session_id: str | None = None
    children_ids: list[str] | None = None
    project: str | None = None
    project_id: str | None = None
    source: str | None = None
    event_name: str | None = None
    model: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    provider: str | None = None
    messages: list[_Object] | None = None
    response: msgspec.Raw = _ABSENT
    duration: float | None = None
    usage: _Object | None = None
    hyperparameters: _Object | None = None
    inputs: _Object | None = None
    outputs: _Object | None = None
    metadata: _Object | None = None
    config: _Object | None = None
    feedback: _Object | None = None
    metrics: _Object | None = None
    user_properties: _Object | None = None
    start_time: float | None = None
    end_time: float | None = None
    session_properties: Obj | None = None
    session: Obj | None = None
    #: UNSET when absent; None when null, the one null the API takes (see prepare).
    error: str | msgspec.UnsetType | None = msgspec.UNSET


_decode_line = msgspec.json.Decoder(_Line).decode


def _strict_line() -> type[msgspec.Struct]:
    """``_Line`` with no unknown fields and no nulls (but ``error``'s): the common line
    decodes with it and then needs no scan for the nulls the API refuses (a scan of a
    3.4 KB line costs more than its typed decode); any other line fails it and takes the
    lenient decode and the scan."""
    fields: list[tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(_Line):
        kind = f.type
        args = typing.get_args(kind)
        if f.name != "error" and type(None) in args:
            rest = tuple(a for a in args if a is not type(None))
            kind = rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
        fields.append((f.name, kind, f.default))
    return msgspec.defstruct("_StrictLine", fields, kw_only=True, gc=False,
                             forbid_unknown_fields=True)


_decode_strict = msgspec.json.Decoder(_strict_line()).decode
_NULL = msgspec.Raw(b"null")
_OVERHEAD = body_overhead()


@functools.lru_cache(maxsize=64)
def _project_field(project: str) -> bytes:
    """``"project":"..."``, encoded once per run (every line that lacks one gets it)."""
    return b'"project":' + msgspec.json.encode(project)
_MAX_SESSIONS = 100_000
# Session ids already checked to be canonical (lower-case UUIDs), bounded like `started`.
_canonical_sids: set[str] = set()
_encode = msgspec.json.Encoder().encode


def iter_lines(path: str, offset: int = 0, first: int = 1) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, line)`` of a file, ``-`` (stdin) or a ``.gz`` file, from byte
    ``offset`` (of the uncompressed stream), numbering from ``first``."""
    # Reads are buffered 1 MiB at a time from the page cache: each blocks the loop for far
    # less than a millisecond, so no thread hop is worth its cost here.
    raw: IO[bytes] | gzip.GzipFile
    if path == "-":
        raw = sys.stdin.buffer
    elif path.endswith(".gz"):
        raw = gzip.open(path, "rb")  # noqa: SIM115 - closed in the finally below
    else:
        raw = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed in the finally below
    try:
        if offset:
            raw.seek(offset)  # a .gz file decompresses up to it: slower, but right
        yield from enumerate(raw, first)
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()


def redact_line(line: bytes) -> bytes:
    """The built-in redaction rules over one line, before it is checked: its object's
    fields (:func:`hh_exporter.redact.redact_fields`), or, if it is not a JSON object, its
    text, so that not even the rejects file keeps a secret."""
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return redact_text(line.decode("utf-8", "replace")).encode()
    if not isinstance(obj, dict):
        return line
    return _encode(redact_fields(obj))


def prepare(
    line: bytes, project: str | None, max_bytes: int, v1: bool = False, redact: bool = False
) -> tuple[bytes, bool, str | None, bytes | None]:
    """Validate one line (and, with ``v1``, map it to a strict v1 event: ``_v1``; with
    ``redact``, apply the built-in redaction rules first).

    Returns: (event bytes, generic?, session_id, the session's ``/session/start`` body when
    the line brings its properties).
    """
    if redact:
        line = redact_line(line)
    try:
        # Same attributes as _Line: a line without unknown fields or nulls.
        ev: _Line = _decode_strict(line)  # type: ignore[assignment]
        scan = ev.response == _NULL  # the one top-level null the strict types let in
    except msgspec.ValidationError:  # malformed JSON is refused by either decode alike
        ev, scan = _decode_line(line), True
    generic = ev.event_type is not None
    if not generic and (ev.model is None or ev.provider is None or ev.messages is None
                        or not ev.response):
        missing = [n for n in ("model", "provider", "messages") if getattr(ev, n) is None]
        if not ev.response:
            missing.append("response")
        raise ValueError(f"model event is missing {', '.join(missing)}")
    if ev.duration is not None and ev.duration < 0:
        raise ValueError("duration must be >= 0")
    props_obj = ev.session_properties if ev.session_properties is not None else ev.session
    data = line.strip()
    # The API silently replaces an id that is not a UUID, orphaning what points at it.
    sid = ev.session_id
    fixed: dict[str, str] | None = None  # ids to rewrite (upper case given), if any
    if ev.event_id is None and ev.parent_id is None:  # the common shape, without dicts
        if sid is not None and sid not in _canonical_sids:
            low = check_uuid("session_id", sid)
            if low == sid:  # lines of a session follow each other: check its id once
                if len(_canonical_sids) >= _MAX_SESSIONS:
                    _canonical_sids.clear()
                _canonical_sids.add(sid)
            else:
                fixed, sid = {"session_id": low}, low
    else:
        ids = {n: getattr(ev, n) for n in ("event_id", "session_id", "parent_id")
               if getattr(ev, n) is not None}
        low_ids = {n: check_uuid(n, v) for n, v in ids.items()}
        sid = low_ids.get("session_id")
        if low_ids != ids:
            fixed = low_ids
    # Cheap: a null field would be refused by the API. The common null, "error":null (the
    # one the API takes, and the official clients send), needs no rewrite: only a line
    # with any other "null" text goes the slow way (which checks it exactly). One scan:
    # the typed decode says whether "error" was null.
    nulls = scan and data.count(b"null") > (1 if ev.error is None else 0)
    if props_obj is not None or fixed is not None or nulls:
        # Rare path: the session's properties start the session and leave the event,
        # upper-case ids are lowered as the official SDKs do, and null fields are left out
        # as they do (exclude_none; the spec types them non-null), except error.
        if props_obj is not None:
            try:
                msgspec.convert(props_obj, SessionProperties)
            except msgspec.ValidationError as exc:
                raise ValueError(f"session_properties: {reject_reason(exc)}") from None
        obj = msgspec.json.decode(data)
        obj.pop("session_properties", None)
        obj.pop("session", None)
        if fixed is not None:
            obj.update(fixed)
        if nulls:
            obj = {k: v for k, v in obj.items() if v is not None or k == "error"}
        data = _encode(obj)
    splice: list[bytes] = []
    if ev.event_id is None:
        splice.append(b'"event_id":"%s"' % new_id().encode())
    if ev.project is None and project is not None and not v1:
        splice.append(_project_field(project))
    if not generic:
        if ev.usage is None:
            splice.append(b'"usage":{}')
        if ev.duration is None:
            splice.append(b'"duration":0')
    elif ev.inputs is None:
        splice.append(b'"inputs":{}')
    if splice:
        after = data[1:2]
        # The line's bytes after its "{" go in as a view: one copy of the line, not two.
        rest: bytes | memoryview = memoryview(data)[1:]
        if after.isspace():  # rare: a spaced line
            rest = data[1:].lstrip()
            after = rest[:1]
        data = b"".join((b"{", b",".join(splice), b"," if after != b"}" else b"", rest))
    start = None
    if props_obj is not None:
        psid = props_obj.get("session_id")
        sid = sid or (None if psid is None else check_uuid("session_properties.session_id", psid))
        if sid is None:
            raise ValueError("session_properties need a session_id (on the line or in them)")
        if ev.session_id is None:  # the event must carry the id of the session it opens
            data = b'{"session_id":"' + sid.encode() + b'",' + data[1:]
        start = session_start_body(props_obj, sid, ev.project or project, v1=v1)
    if v1:  # rare path: v1 bodies are strict, so the line is rebuilt
        obj = msgspec.json.decode(data)
        obj.pop("project", None)
        if generic:
            obj = event_to_v1(obj)
        else:
            obj.setdefault("event_name", "Model Completion")
            obj = model_to_v1(obj)
        unknown = sorted(set(obj) - EVENT_KEYS)
        if unknown:
            raise ValueError(f"the v1 API does not take {', '.join(unknown)}")
        data = _encode(obj)
    if len(data) + _OVERHEAD > max_bytes:
        raise ValueError(f"event of {len(data)} bytes exceeds the batch limit of {max_bytes}")
    return data, generic, sid, start


def reject_record(where: str, n: int, reason: str, line: bytes | str) -> str:
    """One line of the rejects file: where, which line, why, and the line itself."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    return _encode({"file": where, "line": n, "reason": reason,
                    "text": text.rstrip("\n")}).decode() + "\n"


def first_start(started: OrderedDict[str, None], sid: str) -> bool:
    """Whether this run has not started ``sid`` yet (and note it). Bounded: a file of
    millions of sessions must not hold them all; a session evicted here and brought again
    is started again, which the API merges into the same session."""
    if sid in started:
        return False
    started[sid] = None
    if len(started) > _MAX_SESSIONS:
        started.popitem(last=False)
    return True


def start_spooled_session(line: bytes, exporter: Exporter | None, project: str | None,
                           v1: bool) -> None:
    """Start the never-started session a spool segment's header carries (its events follow
    it in the segment), in the start body of the generation this run speaks."""
    try:
        header = parse_header(line)
    except msgspec.DecodeError:
        return
    start_body = header.start_body
    if start_body is None or exporter is None:
        return
    sid, body = restart_session(start_body, project, v1=v1)
    if sid is not None and body is not None:
        exporter.start_session_encoded(sid, body)


def reject_reason(exc: Exception) -> str:
    """``Expected `array | null`, got `str` - at `$.messages``` -> ``messages: expected
    array, got str``."""
    text = str(exc).replace(" | null", "").replace("`float`", "number")
    where = ""
    if " - at `$." in text:
        text, _, where = text.rpartition(" - at `$.")
        where = where.rstrip("`")
    text = text.replace("`", "")
    if text[1:2].islower():  # "Expected ..." reads "expected ...", but "JSON" stays
        text = text[:1].lower() + text[1:]
    return f"{where}: {text}" if where else text
