"""The collector's aiohttp application: HoneyHive's ingestion routes, validated and stored.

Routes (all need ``Authorization: Bearer <token>``):

* ``POST /session/start``, ``POST /events``, ``POST /events/model``,
  ``POST /events/batch``, ``POST /events/model/batch``, ``PUT /events``: ingestion, as the
  API documents;
* ``POST /v1/sessions``, ``POST /v1/events``, ``POST /v1/events/batch``: the v1 generation,
  validated as strictly as the spec says (``additionalProperties: false``; a bad event is a
  400 naming it);
* ``GET /stats``: requests by route and status, events received and stored, duplicate ids,
  orphan events, bytes;
* ``GET /sessions/{session_id}`` and ``GET /sessions/{session_id}/events``: inspection;
* ``GET``/``PUT /_control/faults``: read or replace the fault settings at run time.

By default it answers as the real API does (each rule cites
``reference/honeyhive-api-behaviour.md`` ("BEH") or the data-plane spec ("SPEC-DP")):

* a re-sent ``event_id`` is stored again (BEH §5 "No dedup"), and counted in
  ``duplicate_event_ids``; ``dedup=True`` stores it once instead;
* an event whose session was never started is stored under a session created for it
  (BEH §1 "Ordering matters"), and counted in ``orphan_events``;
* a batch in which some events are invalid stores the valid ones and answers **500**
  ``{"event_ids": [...], "errors": [...], "success": true}`` (BEH §5, the classic spec's
  "partially created"; SPEC-DP lists only 200 and 500 for the legacy batch routes);
* ``POST /session/start`` creates a session or merges into the one with that id, and
  answers the full session event (SPEC-DP ``PostSessionStartResponse``: ``event_id`` =
  ``session_id``, ``org_id``, ``workspace_id``, ``project_id``; BEH "What the official
  Python SDK expects back");
* a batch with ``is_single_session: true`` (v1: ``single_session: true``) creates its
  session from ``session_properties`` (SPEC-DP ``/v1/events/batch``: "When
  ``single_session`` is true, all events share the same session created from
  ``session_properties``"; BEH §2), with the ``session_id`` those carry (CLASSIC
  ``SessionPropertiesBatch``: "if not set, it will be auto-generated"), and answers it as
  ``session_id`` (``PostEventBatchResponse``; BEH §2: the SDK's live test reads it back).
  Sessions created so are counted in ``sessions_created_by_envelope``; an envelope for a
  session that exists already merges its properties (what the real API does then is not
  documented, BEH §2 "Unknown") and is counted in ``envelopes_for_existing_sessions``;
* events without ``event_id`` get one, returned in the answer; ``project`` is optional
  everywhere (SPEC-DP: "ignored by server"; SDK 1.x never sends it);
* ``PUT /events`` merges the fields of ``LegacyUpdateEventRequest`` into a stored event.

``strict=True`` enforces what the classic API required instead (``project`` and the model
fields; ``event_type`` ``session`` refused in batches, CLASSIC:1515-1519).

Two additions of ours, not rules of the API: ``redact=True`` applies the client's built-in
redaction rules (:mod:`hh_exporter.redact`, a pure module the collector may import beside
the wire formats) to events mapped from OTLP spans, and ``GET /metrics`` serves the figures
of ``GET /stats`` as Prometheus text.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from .._prometheus import CONTENT_TYPE as PROMETHEUS_TYPE
from .._prometheus import Family, render
from ..redact import redact_fields
from ..wire._otel_map import map_span
from ..wire._otlp import OTLPError, UnsupportedEncoding, decode_request
from . import _schema as S
from ._faults import Faults, FaultState
from ._otlp_tree import SpanTree
from ._store import EventRow, SessionRow, Store, open_store

__all__ = ["Collector", "build_app"]

log = logging.getLogger("hh_exporter.collector")

_encode = msgspec.json.Encoder().encode
_SESSION_KEYS = ("session_name", "source", "config", "inputs", "outputs", "error",
                 "user_properties", "metrics", "feedback", "metadata", "start_time")


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encode(obj), status=status, content_type="application/json",
                        headers=headers)


class _Ingest:
    """Per-application state and the ingestion handlers. Strictly private."""

    def __init__(self, store: Store, token: str, strict: bool, faults: FaultState,
                 redact: bool = False) -> None:
        #: The OTLP route applies the client's built-in redaction rules to mapped spans.
        self.redact = redact
        self.store = store
        self.token = f"Bearer {token}".encode()
        self.strict = strict
        self.faults = faults
        self.requests: Counter[tuple[str, int]] = Counter()
        self.events_received = 0
        self.events_rejected = 0
        self.duplicates = 0
        self.orphans = 0
        self.sessionless = 0
        self.sessions_started = 0
        self.sessions_enveloped = 0
        self.envelopes_repeated = 0
        # Sessions created in this run (by a start, a v1 session, or an envelope).
        self._created: set[str] = set()
        self.bytes_received = 0
        self._typed = {
            "/events/model/batch": S.batch_decoder(model=True, strict=strict),
            "/events/batch": S.batch_decoder(model=False, strict=strict),
        }
        self._model = S.event_decoder(model=True, strict=strict)
        self._event = S.event_decoder(model=False, strict=strict)
        self._dec: dict[str, msgspec.json.Decoder[Any]] = {
            "/events/model/batch": msgspec.json.Decoder(S.ModelBatch),
            "/events/batch": msgspec.json.Decoder(S.EventBatch),
            "/events/model": msgspec.json.Decoder(S.ModelEventRequest),
            "/events": msgspec.json.Decoder(S.EventRequest),
            "/session/start": msgspec.json.Decoder(S.SessionStartRequest),
            "PUT /events": msgspec.json.Decoder(S.UpdateEventRequest),
            "/v1/events/batch": msgspec.json.Decoder(S.V1Batch),
            "/v1/events": msgspec.json.Decoder(S.V1Event),
            "/v1/sessions": msgspec.json.Decoder(S.V1Session),
        }
        self._v1_raw = msgspec.json.Decoder(S.V1RawBatch)
        #: Events received by API generation, legacy or v1.
        self.generations: Counter[str] = Counter()
        #: OTLP spans: received, stored as events, left out (not LLM spans), refused (by
        #: why), and those whose attributes the sender had already cut.
        self.otlp: Counter[str] = Counter()
        self.otlp_refused: Counter[str] = Counter()
        #: The spans seen per trace, so that a parent in another request is linked.
        self.span_tree = SpanTree()

    # -- the common envelope of every request ----------------------------------------------

    def wrap(self, route: str, handler: Any, ingest: bool = True) -> Any:
        """Wrap a handler with auth, counting, faults and the content-type check."""

        async def serve(request: web.Request) -> web.StreamResponse:
            status = 500
            try:
                response = await self._guarded(request, handler, ingest)
                status = response.status
                return response
            finally:
                self.requests[(route, status)] += 1

        return serve

    async def _guarded(self, request: web.Request, handler: Any, ingest: bool) -> web.Response:
        auth = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(auth, self.token):
            return _json({"error": "missing or invalid Bearer token", "success": False}, 401)
        if not ingest:
            return await handler(request)  # type: ignore[no-any-return]
        body = await request.read()
        self.bytes_received += len(body)
        action = self.faults.decide(len(body))
        if action.kind == "drop" or action.kind == "hang":
            if action.kind == "hang":
                await asyncio.sleep(3600)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp then writes nothing
        if action.kind == "status":
            headers = None
            if action.retry_after is not None:
                headers = {"Retry-After": f"{action.retry_after:g}"}
            return _json({"error": f"injected fault: HTTP {action.status}", "success": False},
                         action.status, headers)
        f = self.faults.faults
        delay = f.latency + (f.session_latency if request.path == "/session/start" else 0.0)
        if delay:
            await asyncio.sleep(delay)
        ctype = request.content_type
        if ctype != "application/json":
            return _json({"error": f"Content-Type must be application/json, got {ctype!r}",
                          "success": False}, 415)
        try:
            return await handler(body, action.kind == "partial")  # type: ignore[no-any-return]
        except _BadRequest as exc:
            return _json({"error": exc.message, "success": False}, 400)

    def _decode(self, path: str, body: bytes) -> Any:
        try:
            return self._dec[path].decode(body)
        except msgspec.ValidationError as exc:
            raise _BadRequest(S.format_error(exc)) from None
        except msgspec.DecodeError as exc:
            raise _BadRequest(f"invalid JSON: {exc}") from None

    def _validate(self, raw: msgspec.Raw, model: bool, where: str) -> Any:
        try:
            return (self._model if model else self._event).decode(raw)
        except msgspec.ValidationError as exc:
            raise _BadRequest(S.format_error(exc, where)) from None
        except msgspec.DecodeError as exc:
            raise _BadRequest(f"{where}: invalid JSON: {exc}") from None

    # -- batches ------------------------------------------------------------------------------

    async def _batch(self, body: bytes, partial: bool, model: bool) -> web.Response:
        path = "/events/model/batch" if model else "/events/batch"
        key = "model_events" if model else "events"
        # Fast path: one pass validates the envelope and every event. Only when it fails are
        # the events validated one by one, to store the valid ones and name the others.
        errors: list[str] = []
        bad: set[int] = set()
        try:
            req = self._typed[path].decode(body)
            evs: list[Any] = req.model_events if model else req.events
        except msgspec.ValidationError:
            req = self._decode(path, body)  # an envelope error is the whole request's: 400
            evs = []
            for i, raw in enumerate(req.model_events if model else req.events):
                try:
                    evs.append(self._validate(raw, model, f"{key}[{i}]"))
                except _BadRequest as exc:
                    evs.append(None)
                    bad.add(i)
                    errors.append(exc.message)
        except msgspec.DecodeError as exc:
            raise _BadRequest(f"invalid JSON: {exc}") from None
        single = bool(req.single_session if req.single_session is not None
                      else req.is_single_session)
        props = req.session_properties if req.session_properties is not None else req.session
        sessions: list[SessionRow] = []
        batch_sid: str | None = None
        if single:
            # The classic single-session envelope creates the session with the batch; an
            # id that is no UUID ("" included) is replaced (SPEC-DP:117-118).
            batch_sid = _valid_uuid(S.props_session_id(props)) or next(
                (e.session_id for e in evs if e is not None and e.session_id), None) or str(
                uuid.uuid4())
            sessions.append((batch_sid, _props_json(props)))
            self._enveloped(batch_sid)
        elif named := S.props_session_id(props):
            sessions.append((named, _props_json(props)))
        ids = [None if e is None else (e.event_id or str(uuid.uuid4())) for e in evs]
        self.events_received += len(ids)
        self.generations["legacy"] += len(ids)
        self.events_rejected += len(bad)
        def raws() -> list[msgspec.Raw]:
            raw_req = req if bad else self._dec[path].decode(body)
            return raw_req.model_events if model else raw_req.events  # type: ignore[no-any-return]

        rows = self._rows(path, model, evs, ids, raws, batch_sid, sessions)
        stored_ids = [eid for eid in ids if eid is not None]
        if partial and rows:  # an injected partial failure: the first half is stored
            half = len(rows) // 2
            await self._store(rows[:half], sessions)
            errors = [f"Could not create event {eid}: injected partial failure"
                      for eid in stored_ids[half:]]
            stored_ids = stored_ids[:half]
        else:
            await self._store(rows, sessions)
        if errors:
            return _json({"event_ids": stored_ids, "errors": errors, "success": True}, 500)
        out: dict[str, Any] = {"event_ids": stored_ids, "success": True}
        if batch_sid is not None:
            out["session_id"] = batch_sid
        return _json(out)

    def _enveloped(self, sid: str) -> None:
        """Count a single-session envelope: the session it created, or a repeat."""
        if sid in self._created:
            self.envelopes_repeated += 1
        else:
            self._created.add(sid)
            self.sessions_enveloped += 1

    def _rows(self, path: str, model: bool, evs: list[Any], ids: list[str | None],
              raws: Callable[[], list[msgspec.Raw]], batch_sid: str | None,
              sessions: list[SessionRow]) -> list[EventRow]:
        """The stored rows of a batch's valid events (those with an id). ``raws`` gives the
        events' raw JSON, decoded only for a store that keeps bodies."""
        if not self.store.keeps_bodies:  # counted, never kept
            return [(eid, ev.session_id or batch_sid, "", path, b"")
                    for ev, eid in zip(evs, ids, strict=True) if eid is not None]
        return [_row(ev, eid, raw, path, model, batch_sid, sessions)
                for ev, eid, raw in zip(evs, ids, raws(), strict=True) if eid is not None]

    async def _store(self, rows: list[EventRow], sessions: list[SessionRow]) -> None:
        duplicates, orphans = await self.store.write(rows, sessions)
        self.duplicates += duplicates
        self.orphans += orphans
        self.sessionless += sum(1 for r in rows if r[1] is None)

    async def model_batch(self, body: bytes, partial: bool) -> web.Response:
        """``POST /events/model/batch``."""
        return await self._batch(body, partial, model=True)

    async def event_batch(self, body: bytes, partial: bool) -> web.Response:
        """``POST /events/batch``."""
        return await self._batch(body, partial, model=False)

    async def _one(self, body: bytes, model: bool) -> web.Response:
        path = "/events/model" if model else "/events"
        req = self._decode(path, body)
        raw = req.model_event if model else req.event
        ev = self._validate(raw, model, "model_event" if model else "event")
        eid = ev.event_id or str(uuid.uuid4())
        sessions: list[SessionRow] = []
        row = _row(ev, eid, raw, path, model, None, sessions)
        self.events_received += 1
        self.generations["legacy"] += 1
        await self._store([row], sessions)
        return _json({"event_id": eid, "success": True})

    async def model_event(self, body: bytes, partial: bool) -> web.Response:
        """``POST /events/model``."""
        return await self._one(body, model=True)

    async def event(self, body: bytes, partial: bool) -> web.Response:
        """``POST /events``."""
        return await self._one(body, model=False)

    async def update_event(self, body: bytes, partial: bool) -> web.Response:
        """``PUT /events``: apply ``LegacyUpdateEventRequest`` to a stored event, or to a
        session: a session is an event (BEH "What the official Python SDK expects back":
        every official client enriches a session with ``PUT /events`` on its id, and the
        real API answers 200 and merges into the session). How each field changes the
        event is ``_update.apply_update``'s (the spec's field descriptions)."""
        req = self._decode("PUT /events", body)
        patch = {k: v for k, v in msgspec.to_builtins(req).items()
                 if v is not None and k != "event_id"}
        if not await self.store.update_event(req.event_id, _encode(patch)):
            return _json({"error": f"no event with event_id {req.event_id}",
                          "success": False}, 404)
        return _json({"success": True})

    async def session_start(self, body: bytes, partial: bool) -> web.Response:
        """``POST /session/start``: create or merge a session; answer the session event."""
        return await self._start(self._decode("/session/start", body).session)

    async def v1_session(self, body: bytes, partial: bool) -> web.Response:
        """``POST /v1/sessions``: the bare, strict ``StartSessionRequest``; idempotent on
        ``session_id`` (SPEC-DP), answered like the legacy route."""
        return await self._start(self._decode("/v1/sessions", body))

    async def v1_batch(self, body: bytes, partial: bool) -> web.Response:
        """``POST /v1/events/batch``: strict ``PostEventBatchRequest``. An invalid event makes
        the whole request a 400 naming it (the v1 route documents 400 for "invalid event data
        or missing required fields")."""
        path = "/v1/events/batch"
        req = self._decode(path, body)
        sessions: list[SessionRow] = []
        batch_sid: str | None = None
        props = req.session_properties
        if req.single_session:
            batch_sid = _valid_uuid(S.props_session_id(props)) or str(uuid.uuid4())
            sessions.append((batch_sid, _props_json(props)))
            self._enveloped(batch_sid)
        ids: list[str | None] = [e.event_id or str(uuid.uuid4()) for e in req.events]
        self.events_received += len(ids)
        self.generations["v1"] += len(ids)
        rows = self._rows(path, False, req.events, ids,
                          lambda: self._v1_raw.decode(body).events, batch_sid, sessions)
        await self._store(rows, sessions)
        out: dict[str, Any] = {"event_ids": ids, "success": True}
        if batch_sid is not None:
            out["session_id"] = batch_sid
        return _json(out)

    async def v1_event(self, body: bytes, partial: bool) -> web.Response:
        """``POST /v1/events``: one strict ``PostEventRequest``."""
        path = "/v1/events"
        ev = self._decode(path, body)
        eid = ev.event_id or str(uuid.uuid4())
        sessions: list[SessionRow] = []
        row = _row(ev, eid, msgspec.Raw(body), path, False, None, sessions)
        self.events_received += 1
        self.generations["v1"] += 1
        await self._store([row], sessions)
        return _json({"event_id": eid, "success": True})

    async def _start(self, s: Any) -> web.Response:
        if s.session_id is not None and _valid_uuid(s.session_id) is None:
            # The API replaces an id that is not a UUID (SPEC-DP: "generates a UUIDv4 if
            # omitted or if the supplied value is not a valid UUID").
            s.session_id = None
        sid = s.session_id or str(uuid.uuid4())
        props = msgspec.to_builtins(s)
        props = {k: v for k, v in props.items() if v is not None and k != "session_id"}
        merged = msgspec.json.decode(await self.store.start_session(sid, _encode(props)))
        self.sessions_started += 1
        self._created.add(sid)
        return _json(_session_event(sid, {**props, **merged}))

    # -- OTLP ---------------------------------------------------------------------------------

    async def otlp_traces(self, request: web.Request) -> web.Response:
        """``POST /opentelemetry/v1/traces`` (where the official tracer exports) and
        ``/v1/traces``: OTLP/HTTP JSON or protobuf; gzip, deflate or identity (another
        encoding answers 415). Spans become events with the same mapping as the span
        exporter, stored under their session as HoneyHive's backend stores them; spans of
        no LLM dialect that are no ancestor of one are left out, and counted. A parent in
        another request is linked (``_otlp_tree``)."""
        encoding = request.headers.get("Content-Encoding", "")
        try:
            # aiohttp inflates gzip and deflate bodies (zlib or raw) here; anything else
            # arrives as sent, and decode_request answers for it.
            body = await request.read()
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - a body that does not inflate
            return _json({"code": 3, "message": f"invalid {encoding or 'compressed'} body: "
                          f"{type(exc).__name__}"}, 400)
        self.bytes_received += len(body)
        ctype = request.content_type
        inflated = encoding.strip().lower() in ("gzip", "x-gzip", "deflate")
        try:
            spans = decode_request(body, ctype, "identity" if inflated else encoding)
        except UnsupportedEncoding as exc:
            return _json({"code": 3, "message": str(exc)}, 415)
        except OTLPError as exc:
            return _json({"code": 3, "message": str(exc)}, 400)  # 3: INVALID_ARGUMENT
        self.otlp["spans_received"] += len(spans) + len(spans.refused)
        refused: list[str] = list(spans.refused)  # spans that could not even be read
        for why in spans.refused:
            self.otlp_refused[why.split(":", 1)[0]] += 1
        plan = self.span_tree.plan(spans)
        self.otlp["spans_not_genai"] += plan.not_genai
        rows: list[EventRow] = []
        for p in plan.store:
            sp = p.span
            if sp.dropped_attributes:
                self.otlp["spans_truncated"] += 1
            try:
                ev = map_span(sp, ancestor=p.ancestor, parent_id=p.parent_id)
                if self.redact:  # the same rules as the span exporter's exporter
                    ev = redact_fields(ev)
                data = _encode(ev)
            except Exception as exc:  # noqa: BLE001 - one span's fault, not the request's
                why = f"{type(exc).__name__}: {str(exc)[:100]}"
                self.otlp_refused[why] += 1
                refused.append(f"span {sp.span_id}: {why}")
                continue
            self.otlp["spans_reparented"] += p.reparented
            rows.append((ev["event_id"], ev["session_id"], ev["event_type"],
                         "/opentelemetry/v1/traces", data))
        if rows:
            await self._store(rows, [])
        if plan.updates:
            # After this request's rows: a child and its parent may be in the same write.
            await self.store.set_parents(plan.updates)
            self.otlp["parents_linked_later"] += len(plan.updates)
        self.otlp["events_stored"] += len(rows)
        return _otlp_answer(ctype, len(refused), "; ".join(refused[:5]))

    # -- inspection and control ---------------------------------------------------------------

    async def stats(self, request: web.Request) -> web.Response:
        """``GET /stats``."""
        stored, sessions = await self.store.counts()
        by_route: dict[str, dict[str, int]] = {}
        for (route, status), n in sorted(self.requests.items()):
            by_route.setdefault(route, {})[str(status)] = n
        return _json({
            "requests": by_route,
            "events_received": self.events_received,
            "events_received_by_api": {"legacy": self.generations["legacy"],
                                       "v1": self.generations["v1"]},
            "events_rejected": self.events_rejected,
            "events_stored": stored,
            "sessions_stored": sessions,
            "sessions_started": self.sessions_started,
            "sessions_created_by_envelope": self.sessions_enveloped,
            "envelopes_for_existing_sessions": self.envelopes_repeated,
            "duplicate_event_ids": self.duplicates,
            "orphan_events": self.orphans,
            "sessionless_events": self.sessionless,
            "bytes_received": self.bytes_received,
            "otlp": {"spans_received": self.otlp["spans_received"],
                     "events_stored": self.otlp["events_stored"],
                     "spans_not_genai": self.otlp["spans_not_genai"],
                     "spans_truncated": self.otlp["spans_truncated"],
                     # Stored under an ancestor other than their parent span's event (the
                     # parent left out, or not come yet: then the session) ...
                     "spans_reparented": self.otlp["spans_reparented"],
                     # ... and of those, re-pointed when their ancestor came later.
                     "parents_linked_later": self.otlp["parents_linked_later"],
                     "spans_refused": sum(self.otlp_refused.values()),
                     "refused_by_reason": dict(self.otlp_refused)},
        })

    async def metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the figures of ``/stats`` as Prometheus text."""
        stored, sessions = await self.store.counts()
        fams = [Family("hh.collector.requests", "counter", "Requests answered, by route and "
                       "status.", [({"route": r, "status": str(st)}, n)
                                   for (r, st), n in sorted(self.requests.items())])]
        for name, kind, helptext, value in (
            ("events.received", "counter", "Events received.", self.events_received),
            ("events.rejected", "counter", "Events refused as invalid.", self.events_rejected),
            ("events.stored", "gauge", "Events in the store.", stored),
            ("sessions.stored", "gauge", "Sessions in the store.", sessions),
            ("sessions.started", "counter", "Sessions started.", self.sessions_started),
            ("duplicate_event_ids", "counter", "Events stored again under a known id (the "
             "API does not deduplicate).", self.duplicates),
            ("orphan_events", "counter", "Events before their session (auto-created).",
             self.orphans),
            ("bytes.received", "counter", "Request body bytes received.",
             self.bytes_received),
            ("otlp.spans.received", "counter", "OTLP spans received.",
             self.otlp["spans_received"]),
        ):
            fams.append(Family(f"hh.collector.{name}", kind, helptext, [({}, value)]))  # type: ignore[arg-type]
        fams.append(Family("hh.collector.otlp.spans.refused", "counter", "OTLP spans refused, "
                           "by reason.", [({"reason": k}, v)
                                          for k, v in sorted(self.otlp_refused.items())]))
        return web.Response(text=render(fams), headers={"Content-Type": PROMETHEUS_TYPE})

    async def get_session(self, request: web.Request) -> web.Response:
        """``GET /sessions/{session_id}``: merged properties."""
        props = await self.store.session(request.match_info["session_id"])
        if props is None:
            return _json({"error": "no such session", "success": False}, 404)
        return web.Response(body=props, content_type="application/json")

    async def get_session_events(self, request: web.Request) -> web.Response:
        """``GET /sessions/{session_id}/events``: stored events in arrival order."""
        bodies = await self.store.session_events(request.match_info["session_id"])
        return web.Response(body=b'{"events":[' + b",".join(bodies) + b"]}",
                            content_type="application/json")

    async def get_faults(self, request: web.Request) -> web.Response:
        """``GET /_control/faults``."""
        return _json(self.faults.describe())

    async def put_faults(self, request: web.Request) -> web.Response:
        """``PUT /_control/faults``: replace the fault settings (an empty object clears)."""
        try:
            faults = msgspec.json.decode(await request.read(), type=Faults)
        except (msgspec.DecodeError, ValueError) as exc:
            return _json({"error": f"bad fault settings: {exc}", "success": False}, 400)
        self.faults.set(faults)
        return _json(self.faults.describe())


#: Stand-ins for the ids the real API derives from the key's scope (SPEC-DP
#: ``PostSessionStartResponse`` requires them).
_ORG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "hh-exporter-collector/org"))
_WORKSPACE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "hh-exporter-collector/workspace"))


def _session_event(sid: str, props: dict[str, Any]) -> dict[str, Any]:
    """The full session event ``POST /session/start`` answers (``PostSessionStartResponse``)."""
    start = props.get("start_time")
    project = props.get("project") or "default"
    return {
        "event_id": sid, "session_id": sid, "parent_id": None,
        "children_ids": props.get("children_ids") or [], "event_type": "session",
        "event_name": props.get("session_name") or props.get("event_name") or "session",
        "config": props.get("config") or {}, "inputs": props.get("inputs") or {},
        "outputs": props.get("outputs") or {}, "error": props.get("error"),
        "source": props.get("source"), "duration": props.get("duration"),
        "user_properties": props.get("user_properties") or {},
        "metrics": props.get("metrics") or {}, "feedback": props.get("feedback") or {},
        "metadata": props.get("metadata") or {},
        "org_id": _ORG_ID, "workspace_id": _WORKSPACE_ID,
        "project_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hh-exporter-collector/{project}")),
        "start_time": start, "end_time": props.get("end_time", start),
    }


def _row(
    ev: Any, eid: str, raw: msgspec.Raw, path: str, model: bool, batch_sid: str | None,
    sessions: list[SessionRow],
) -> EventRow:
    """The stored row of one validated event; a ``session`` event also starts its session
    (the data model's "a session is itself an event", BEH §1; honeyhive-daemon does this).
    In a single-session batch every event is stored under the batch's session: "all events
    share the same session created from session_properties" (SPEC-DP:473-474)."""
    sid = batch_sid or ev.session_id or None
    etype = "model" if model else (ev.event_type or "chain")
    if etype == "session":
        sid = sid or eid
        sessions.append((sid, _event_session_json(raw)))
    body = bytes(raw)
    # Stored as sent, plus what the server assigned, so that the body says what the row
    # and the answer say: the id it answered with (SPEC-DP: "generates a UUIDv4 if
    # omitted"; an empty id is no id, and is replaced as well), the session of a
    # single-session envelope or of a session event, and on the model routes
    # ``event_type: "model"``, which "the legacy route sets server-side" (SPEC-DP:585).
    assigned: dict[str, str | None] = {}
    if ev.event_id != eid:
        assigned["event_id"] = eid
    if ev.session_id != sid and (sid is not None or ev.session_id == ""):
        assigned["session_id"] = sid
    if model and ev.event_type != "model":
        assigned["event_type"] = "model"
    if assigned:
        present = {"event_id": ev.event_id, "session_id": ev.session_id,
                   "event_type": ev.event_type if model else None}
        if any(present[k] is not None for k in assigned):
            body = _reassign(body, assigned)  # rare: a sent value is replaced
        else:
            body = _splice(body, assigned)
    return (eid, sid, etype, path, body)


def _otlp_answer(ctype: str, rejected: int, message: str) -> web.Response:
    """An ``ExportTraceServiceResponse`` in the request's encoding, with
    ``partial_success`` when spans were refused (as OTLP servers answer)."""
    if ctype == "application/x-protobuf":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        resp = ExportTraceServiceResponse()
        if rejected:
            resp.partial_success.rejected_spans = rejected
            resp.partial_success.error_message = message
        return web.Response(body=resp.SerializeToString(),
                            content_type="application/x-protobuf")
    if rejected:
        return _json({"partialSuccess": {"rejectedSpans": str(rejected),
                                         "errorMessage": message}})
    return _json({})


def _splice(body: bytes, fields: dict[str, str | None]) -> bytes:
    """Prepend ``fields`` (none of them in ``body``) to a JSON object without parsing it."""
    rest = body.strip()[1:].lstrip()
    sep = b"" if rest[:1] == b"}" else b","
    head = b",".join(_encode(k) + b":" + _encode(v) for k, v in fields.items())
    return b"{" + head + sep + rest


def _reassign(body: bytes, fields: dict[str, str | None]) -> bytes:
    """Replace (``None``: remove) keys of a JSON object that already has some of them."""
    doc: dict[str, Any] = msgspec.json.decode(body)
    for key, value in fields.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return _encode(doc)


def _valid_uuid(value: str | None) -> str | None:
    if not value:
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        return None
    return value


def _props_json(props: Any) -> bytes:
    """Session properties of a batch envelope (legacy or v1), without nulls or the id."""
    return _encode(S.props_dict(props))


def _event_session_json(raw: msgspec.Raw) -> bytes:
    # Rare path (one per session event): the full event, for its properties.
    ev = msgspec.json.decode(raw)
    d = {k: ev.get(k) for k in _SESSION_KEYS}
    d["session_name"] = ev.get("event_name")
    return _encode({k: v for k, v in d.items() if v is not None})


INGEST: web.AppKey[_Ingest] = web.AppKey("ingest", _Ingest)


def build_app(
    store: Store, *, token: str, strict: bool = False, faults: Faults | None = None,
    client_max_size: int = 64 * 1024 * 1024, redact: bool = False,
) -> web.Application:
    """Build the collector application around a store."""
    ingest = _Ingest(store, token, strict, FaultState(faults), redact)
    app = web.Application(client_max_size=client_max_size)
    app[INGEST] = ingest
    r = app.router
    for path, handler in (
        ("/session/start", ingest.session_start), ("/events", ingest.event),
        ("/events/batch", ingest.event_batch), ("/events/model", ingest.model_event),
        ("/events/model/batch", ingest.model_batch),
    ):
        r.add_post(path, ingest.wrap(path, handler))
    r.add_put("/events", ingest.wrap("PUT /events", ingest.update_event))
    for path, handler in (
        ("/v1/sessions", ingest.v1_session), ("/v1/events/batch", ingest.v1_batch),
        ("/v1/events", ingest.v1_event),
    ):
        r.add_post(path, ingest.wrap(path, handler))
    for path, getter in (
        ("/stats", ingest.stats), ("/metrics", ingest.metrics),
        ("/sessions/{session_id}", ingest.get_session),
        ("/sessions/{session_id}/events", ingest.get_session_events),
        ("/_control/faults", ingest.get_faults),
    ):
        r.add_get(path, ingest.wrap(path, getter, ingest=False))
    r.add_put("/_control/faults", ingest.wrap("/_control/faults", ingest.put_faults, False))
    for path in ("/opentelemetry/v1/traces", "/v1/traces"):
        r.add_post(path, ingest.wrap(path, ingest.otlp_traces, ingest=False))
    return app


class Collector:
    """A HoneyHive-compatible collector, run in-process on the current event loop.

    ::

        async with Collector(token="t") as c:     # 127.0.0.1, a free port
            ...  # point an exporter at c.url with api_key="t"

    Args:
        token: The Bearer token requests must carry.
        db: ``:memory:`` (default), a file path, or ``none`` (validate and count only).
        host: Address to bind; loopback unless told otherwise.
        port: 0 picks a free port.
        strict: Enforce what the classic API required (``project``, the model fields;
            no ``session`` events in batches) instead of what the real API does today.
        dedup: Store an ``event_id`` once and ignore re-sends, instead of storing every
            copy as the real API does (duplicates are counted either way).
        faults: Initial fault settings.
        redact: Apply :mod:`hh_exporter.redact`'s built-in rules to the events mapped from
            OTLP spans before they are stored (an OTLP sender has no redaction of ours).
    """

    def __init__(
        self, *, token: str, db: str = ":memory:", host: str = "127.0.0.1", port: int = 0,
        strict: bool = False, dedup: bool = False, faults: Faults | None = None,
        redact: bool = False,
    ) -> None:
        self.redact = redact
        self._db = db
        self._token = token
        self.host = host
        self.port = port
        self.strict = strict
        self.dedup = dedup
        self._faults = faults
        self._runner: web.AppRunner | None = None
        self.store: Store | None = None
        self.app: web.Application | None = None

    def __repr__(self) -> str:
        return f"<Collector {self.url if self._runner else 'stopped'} db={self._db!r}>"

    @property
    def url(self) -> str:
        """The base URL it listens on."""
        return f"http://{self.host}:{self.port}"

    @property
    def faults(self) -> FaultState:
        """The live fault state; ``collector.faults.set(Faults(...))`` changes it."""
        assert self.app is not None, "start the collector first"
        state: FaultState = self.app[INGEST].faults
        return state

    async def start(self) -> str:
        """Open the store, bind, serve; return the URL."""
        self.store = await asyncio.to_thread(open_store, self._db, dedup=self.dedup)
        self.app = build_app(self.store, token=self._token, strict=self.strict,
                             faults=self._faults, redact=self.redact)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.url

    async def stop(self) -> None:
        """Stop serving, then commit and close the store. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self.store is not None:
            await self.store.close()

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
