"""``hh-exporter ingest``: JSONL files to the API through the exporter's backpressure path.

Each line is a model event in the API's own shape, or a generic event when it has
``event_type``. A line may carry ``session_id`` and ``session_properties`` (or ``session``).
Valid lines are sent as the bytes they are, with ``event_id`` (and ``project``, when one is
configured and the line has none) spliced in when missing, so nothing is encoded twice. The
first line that brings a session's properties starts the session with
``POST /session/start``; the session's events wait for it. A bad line is reported with its
file and line number, written to the rejects file with a reason, and skipped.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import sys
import time
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import msgspec

from .._encoding import body_overhead
from .._errors import BufferFullError
from .._events import check_uuid, restart_session, session_start_body
from .._exporter import Exporter
from .._ids import new_id
from .._models import SessionProperties
from .._spool import is_header, parse_header
from .._v1 import EVENT_KEYS, event_to_v1, model_to_v1
from ..redact import redact_fields, redact_text
from ._checkpoint import Tracker
from ._progress import Progress

__all__ = ["IngestResult", "close_within", "first_start", "iter_lines", "reject_record",
           "run_ingest"]

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
    #: UNSET when absent; None when null, the one null the API takes (see _prepare).
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


@dataclass
class IngestResult:
    """Counts of an ingest run. ``lines == sent + rejected`` unless interrupted."""

    lines: int = 0
    sent: int = 0
    rejected: int = 0
    #: Lines not read because an earlier run settled them (a checkpoint).
    skipped: int = 0
    sessions: int = 0
    interrupted: bool = False
    abort_reason: str | None = None
    elapsed: float = 0.0
    stats: Any = None


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


def _prepare(
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
                raise ValueError(f"session_properties: {_reason(exc)}") from None
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


async def close_within(exporter: Exporter, timeout: float, stop: asyncio.Event,
                       now: asyncio.Event, left: Callable[[float], float]) -> None:
    """Flush and close ``exporter`` within ``timeout``, or by ``left(timeout)`` seconds
    once ``stop`` is set (a signal: its deadline counts from the signal, not from here);
    ``now`` closes at once. What is cut is counted by the exporter (``shutdown``)."""
    if not stop.is_set():
        flush = asyncio.ensure_future(exporter.flush(timeout))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((flush, stopped), return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not flush.done():  # a stop during the final flush: its deadline applies
            flush.cancel()
            await asyncio.gather(flush, return_exceptions=True)
    close = asyncio.ensure_future(exporter.aclose(left(timeout) if stop.is_set() else 0.0))
    at_once = asyncio.ensure_future(now.wait())
    await asyncio.wait((close, at_once), return_when=asyncio.FIRST_COMPLETED)
    at_once.cancel()
    if not close.done():
        close.cancel()  # its cleanup counts what is left as shutdown, without waiting
        await asyncio.gather(close, return_exceptions=True)


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


def _start_spooled_session(line: bytes, exporter: Exporter | None, project: str | None,
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


def _reason(exc: Exception) -> str:
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


async def run_ingest(
    files: list[str], exporter: Exporter | None, *, project: str | None, rejects: IO[str],
    dry_run: bool = False, progress: bool = True, max_event_bytes: int = 1024 * 1024,
    stop: asyncio.Event | None = None, refused: asyncio.Event | None = None,
    v1: bool = False, tracker: Tracker | None = None, redact: bool = False,
) -> IngestResult:
    """Send every valid line of ``files``; ``exporter`` may be None with ``dry_run``.

    ``project`` is spliced into lines that carry none (each line's own wins; None: none).
    The first line that brings a session's properties starts the session
    (``POST /session/start``) before any of its events leave. ``stop`` (Ctrl-C) and
    ``refused`` (the API refused the key) end the run early; the line being sent then is
    counted as not read. With a ``tracker`` (whose ``on_settled`` the exporter calls), each
    file resumes where an earlier run left it, and the checkpoint follows this run.
    """
    track = tracker or Tracker(None)
    res = IngestResult()
    # Sessions started by this run, bounded: a file of millions of sessions must not hold
    # them all. A session evicted here and brought again by a later line is started again;
    # the API merges a second start into the same session.
    started: OrderedDict[str, None] = OrderedDict()
    t0 = time.perf_counter()
    send = exporter.send_encoded if exporter is not None and not dry_run else None
    offer = exporter.offer_encoded if send is not None and exporter is not None else None

    def halted() -> bool:
        if stop is not None and stop.is_set():
            res.interrupted = True
            return True
        if refused is not None and refused.is_set():
            # Every further line would be refused too: stop reading, say why.
            res.interrupted = True
            res.abort_reason = "the API refused the API key"
            return True
        return False

    async def put(data: bytes, generic: bool, sid: str | None) -> bool:
        """Queue one event, waiting for space; False once told to stop.

        The timeout only applies while the buffer is full, so a stop request is seen within
        half a second even when nothing drains; the common case is one await.
        """
        assert send is not None
        while not halted():
            try:
                await send(data, generic=generic, session_id=sid, timeout=0.5)
                return True
            except BufferFullError:
                continue
        return False

    with Progress("ingest", None, enabled=progress) as bar:
        for path in files:
            if path == "-" and tracker is not None and tracker.checkpoint is not None:
                print("<stdin> cannot resume: it is read from the start and not "
                      "checkpointed", file=sys.stderr)
            # stdin is read from the start every time: it is not checkpointed.
            ft, offset, first, note, skip = track.begin(path)
            if note:
                print(note, file=sys.stderr)
            res.skipped += first
            if skip:
                continue
            settled_before = ft.settled_before if ft.ahead else None
            for n, line in iter_lines(path, offset, first + 1):
                start = offset
                offset += len(line)
                if settled_before is not None and settled_before(n):
                    # Settled by an earlier run beyond its prefix: not sent again.
                    res.skipped += 1
                    ft.settled_line(offset, n)
                    continue
                if line.isspace():  # a blank line (a file's lines are never empty)
                    ft.settled_line(offset, n)
                    continue
                if is_header(line):  # a spool segment's header: start its session, if any
                    _start_spooled_session(line, exporter if send is not None else None,
                                           project, v1)
                    ft.settled_line(offset, n)
                    continue
                res.lines += 1
                try:
                    data, generic, sid, start_body = _prepare(line, project, max_event_bytes,
                                                              v1, redact)
                except (msgspec.DecodeError, ValueError, TypeError) as exc:
                    reason = _reason(exc)
                    res.rejected += 1
                    where = "<stdin>" if path == "-" else path
                    print(f"{where}:{n}: rejected: {reason}", file=sys.stderr)
                    rejects.write(reject_record(where, n, reason,
                                                redact_line(line) if redact else line))
                    rejects.flush()  # a killed run must not lose the reasons it reported
                    ft.settled_line(offset, n)
                    continue
                if start_body is not None and sid is not None and first_start(started, sid):
                    res.sessions += 1
                    if exporter is not None and not dry_run:
                        exporter.start_session_encoded(sid, start_body)
                if offer is not None:
                    track.sending(ft, start, offset, n, data)
                    # The common case, when the buffer has room, makes no coroutine at all.
                    if not offer(data, generic, sid) and not await put(data, generic, sid):
                        track.not_sent(data)
                        res.lines -= 1  # not sent: counted as never read
                        break
                res.sent += 1
                # Every line: a send that waited for room (the common case against a slow
                # API) would otherwise hide a Ctrl-C for thousands of lines.
                if halted():
                    break
                if res.lines % 2000 == 0:
                    bar.update(res.sent)
                    await asyncio.sleep(0)
            else:
                track.end_file(ft)
            if res.interrupted:
                break
        bar.update(res.sent, "flushing")
    res.elapsed = time.perf_counter() - t0
    return res
