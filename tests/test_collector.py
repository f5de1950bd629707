"""The collector over HTTP: routes, validation, auth, duplicates, orphans, faults, persistence.

Each rule the collector enforces is the real API's, as ``reference/honeyhive-api-behaviour.md``
and the data-plane spec describe it; the official SDK's view is in ``test_official_sdk``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from hh_exporter.collector import Collector, Faults, parse_script

from .conftest import DATA, TOKEN, http_json

SEED = json.loads((DATA / "seed_model_batch.json").read_text())


def model_event(**over: object) -> dict[str, object]:
    ev: dict[str, object] = dict(
        project="p", model="gpt-4o", provider="openai",
        messages=[{"role": "user", "content": "hi"}],
        response={"role": "assistant", "content": "yo"}, duration=5, usage={"total_tokens": 2},
    )
    ev.update(over)
    return ev


async def test_seed_example_is_accepted_as_is(collector: Collector) -> None:
    """The API docs' model batch example is accepted and creates its session."""
    status, body = await http_json(collector.url, "/events/model/batch", "POST", SEED)
    assert status == 200, body
    assert body["success"] is True
    assert len(body["event_ids"]) == 1
    assert body["session_id"] == "caf77ace-3417-4da4-944d-f4a0688f3c23"
    _, props = await http_json(collector.url, f"/sessions/{body['session_id']}")
    assert props["session_name"] == "Playground Session"
    assert props["user_properties"] == {"user": "google-oauth2|111840237613341303366"}
    _, events = await http_json(collector.url, f"/sessions/{body['session_id']}/events")
    assert events["events"][0]["tool_choice"] == "none"


async def test_model_batch_keeps_client_ids_in_order(collector: Collector) -> None:
    """event_ids come back in request order; client ids are kept, missing ones generated."""
    ids = [str(uuid.uuid4()) for _ in range(3)]
    evs = [model_event(event_id=ids[0]), model_event(), model_event(event_id=ids[2])]
    status, body = await http_json(collector.url, "/events/model/batch", "POST",
                                   {"model_events": evs, "is_single_session": False})
    assert status == 200
    assert body["event_ids"][0] == ids[0] and body["event_ids"][2] == ids[2]
    uuid.UUID(body["event_ids"][1])
    assert "session_id" not in body


async def test_alias_fields_single_session_and_session(collector: Collector) -> None:
    """The newer aliases single_session and session work like the classic names."""
    sid = str(uuid.uuid4())
    body = {"model_events": [model_event()], "single_session": True,
            "session": {"session_id": sid, "session_name": "alias"}}
    status, resp = await http_json(collector.url, "/events/model/batch", "POST", body)
    assert status == 200 and resp["session_id"] == sid
    _, props = await http_json(collector.url, f"/sessions/{sid}")
    assert props["session_name"] == "alias"


async def test_session_properties_merge_into_existing_session(collector: Collector) -> None:
    """A second single-session batch merges its properties into the session."""
    sid = str(uuid.uuid4())
    for props in ({"session_name": "s", "metadata": {"a": 1}}, {"metadata": {"b": 2}}):
        body = {"model_events": [model_event()], "is_single_session": True,
                "session_properties": {"session_id": sid, **props}}
        status, _ = await http_json(collector.url, "/events/model/batch", "POST", body)
        assert status == 200
    _, merged = await http_json(collector.url, f"/sessions/{sid}")
    assert merged["session_name"] == "s"
    assert merged["metadata"] == {"a": 1, "b": 2}


async def test_every_route_success_shape(collector: Collector) -> None:
    """Each ingestion route answers with its documented shape."""
    url = collector.url
    status, body = await http_json(url, "/session/start", "POST",
                                   {"session": {"project": "p", "session_name": "n",
                                                "source": "s"}})
    assert status == 200 and uuid.UUID(body["session_id"])
    status, body = await http_json(url, "/events", "POST",
                                   {"event": {"event_type": "tool", "inputs": {"q": 1}}})
    assert status == 200 and body["success"] is True and uuid.UUID(body["event_id"])
    status, body = await http_json(url, "/events/model", "POST", {"model_event": model_event()})
    assert status == 200 and body["success"] is True and body["event_id"]
    status, body = await http_json(url, "/events/batch", "POST", {
        "events": [{"event_type": "chain", "inputs": {}}, {"event_type": "tool", "inputs": {}}],
        "is_single_session": True, "session_properties": {"session_name": "b"}})
    assert status == 200 and len(body["event_ids"]) == 2 and body["session_id"]
    _, stats = await http_json(url, "/stats")
    assert stats["events_stored"] == 4  # session/start makes a session, not an event
    assert stats["sessions_stored"] == 2
    assert stats["requests"]["/events/batch"] == {"200": 1}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/events/model/batch", {"events": []}, "missing required field model_events"),
        ("/events/model/batch", {"model_events": "all"}, "model_events: expected array"),
        ("/events", {"event": {"event_type": "tool", "inputs": []}},
         "event.inputs: expected object, got array"),
        ("/events", {"event": {"event_type": "tool"}}, "missing required field inputs"),
        ("/events/model", {"model_event": model_event(duration="slow")},
         "model_event.duration: expected number, got str"),
        ("/session/start", {"session": {"metadata": 3}}, "session.metadata: expected object"),
    ],
)
async def test_invalid_bodies_get_400_naming_the_problem(
    collector: Collector, path: str, body: object, message: str
) -> None:
    """An invalid request (envelope or single event) gets a 400 saying what and where."""
    status, resp = await http_json(collector.url, path, "POST", body)
    assert status == 400
    assert message in resp["error"]
    _, stats = await http_json(collector.url, "/stats")
    assert stats["events_stored"] == 0


@pytest.mark.parametrize(
    ("path", "key", "bad", "message"),
    [
        ("/events/model/batch", "model_events", model_event(usage="lots"),
         "model_events[3].usage: expected object, got str"),
        ("/events/model/batch", "model_events", model_event(messages="hi"),
         "model_events[3].messages: expected array, got str"),
        ("/events/model/batch", "model_events", model_event(usage=[1]),
         "model_events[3].usage: expected object, got array"),
        ("/events/batch", "events", {"event_type": "nope", "inputs": {}}, "events[3].event_type"),
        ("/events/batch", "events", {"event_type": "tool"}, "missing required field inputs"),
    ],
)
async def test_invalid_events_in_a_batch_get_the_partial_500(
    collector: Collector, path: str, key: str, bad: dict[str, object], message: str
) -> None:
    """Per-event failures on the legacy batch routes answer 500 with the ids created and the
    errors, and the valid events are stored (the classic spec's "partially created"; the
    data-plane spec lists only 200 and 500 for these routes)."""
    good = model_event if key == "model_events" else (
        lambda: {"event_type": "tool", "event_name": "t", "inputs": {}})
    evs = [{**good(), "event_id": str(uuid.uuid4())} for _ in range(5)]
    evs.insert(3, bad)
    status, resp = await http_json(collector.url, path, "POST", {key: evs})
    assert status == 500
    assert resp["success"] is True
    assert resp["event_ids"] == [e["event_id"] for e in evs if e is not bad]
    assert len(resp["errors"]) == 1 and message in resp["errors"][0]
    assert await collector.store.event_ids() == resp["event_ids"]  # type: ignore[union-attr]


async def test_project_is_optional_by_default(collector: Collector) -> None:
    """No route requires project (the data-plane spec: "ignored by server")."""
    ev = model_event()
    del ev["project"]
    status, _ = await http_json(collector.url, "/events/model/batch", "POST",
                                {"model_events": [ev]})
    assert status == 200
    status, _ = await http_json(collector.url, "/events/model", "POST", {"model_event": ev})
    assert status == 200


async def test_strict_mode_requires_what_the_classic_api_did() -> None:
    """strict=True: project and the classic fields are required, messages must be objects,
    and a session event in a batch is refused (the classic enum is model|tool|chain). The
    default mode takes what the data-plane spec takes (messages: ``items: {}``)."""
    async with Collector(token=TOKEN) as c:
        status, _ = await http_json(c.url, "/events/model/batch", "POST",
                                    {"model_events": [model_event(messages=[None, "x"])]})
        assert status == 200
    async with Collector(token=TOKEN, strict=True) as c:
        status, resp = await http_json(c.url, "/events/model/batch", "POST",
                                       {"model_events": [model_event(messages=[None])]})
        assert status == 500 and "messages[0]: expected object" in resp["errors"][0]
        status, resp = await http_json(c.url, "/events/model/batch", "POST",
                                       {"model_events": [{"model": "m"}]})
        assert status == 500 and "missing required field project" in resp["errors"][0]
        session_event = {"project": "p", "event_type": "session", "event_name": "s",
                         "source": "x", "config": {}, "inputs": {}, "duration": 0}
        status, resp = await http_json(c.url, "/events/batch", "POST",
                                       {"events": [session_event]})
        assert status == 500 and "event_type" in resp["errors"][0]
    async with Collector(token=TOKEN) as c:
        status, _ = await http_json(c.url, "/events/model/batch", "POST",
                                    {"model_events": [{"model_name": "m"}]})
        assert status == 200


async def test_non_json_and_wrong_content_type_are_4xx(collector: Collector) -> None:
    """Malformed JSON is a 400 and a non-JSON content type a 415, never a 500."""
    status, resp = await http_json(collector.url, "/events/model/batch", "POST", raw=b"{nope")
    assert status == 400 and "invalid JSON" in resp["error"]
    status, resp = await http_json(collector.url, "/events/model/batch", "POST", raw=b"a=b",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415


async def test_unknown_fields_are_accepted_and_kept(collector: Collector) -> None:
    """Extra fields pass validation and are stored as sent."""
    sid = str(uuid.uuid4())
    status, _ = await http_json(collector.url, "/events/model/batch", "POST",
                                {"model_events": [model_event(session_id=sid, custom={"k": 1})]})
    assert status == 200
    _, events = await http_json(collector.url, f"/sessions/{sid}/events")
    assert events["events"][0]["custom"] == {"k": 1}


@pytest.mark.parametrize("token", ["wrong", ""])
async def test_wrong_or_missing_token_is_401_and_stores_nothing(
    collector: Collector, token: str
) -> None:
    """A missing or wrong Bearer token gets 401, and nothing is stored."""
    status, resp = await http_json(collector.url, "/events/model/batch", "POST",
                                   {"model_events": [model_event()]}, token=token)
    assert status == 401 and "token" in resp["error"]
    _, stats = await http_json(collector.url, "/stats")
    assert stats["events_stored"] == 0
    assert stats["requests"]["/events/model/batch"] == {"401": 1}


async def test_duplicate_event_ids_are_stored_again_and_counted(collector: Collector) -> None:
    """A re-sent event is stored again, as the real API does (honeyhive-daemon's README:
    "does not enforce event ID uniqueness"), and counted as a duplicate."""
    body = {"model_events": [model_event(event_id=str(uuid.uuid4())) for _ in range(5)]}
    for _ in range(3):
        status, _ = await http_json(collector.url, "/events/model/batch", "POST", body)
        assert status == 200
    _, stats = await http_json(collector.url, "/stats")
    assert stats["events_stored"] == 15
    assert stats["duplicate_event_ids"] == 10


async def test_dedup_mode_stores_an_event_id_once() -> None:
    """dedup=True keeps the old upsert: stored once, re-sends counted."""
    async with Collector(token=TOKEN, dedup=True) as c:
        body = {"model_events": [model_event(event_id=str(uuid.uuid4())) for _ in range(5)]}
        for _ in range(3):
            status, _ = await http_json(c.url, "/events/model/batch", "POST", body)
            assert status == 200
        _, stats = await http_json(c.url, "/stats")
        assert stats["events_stored"] == 5 and stats["duplicate_event_ids"] == 10


async def test_events_before_their_session_are_orphans(collector: Collector) -> None:
    """An event naming a session that was never started is stored under an auto-created
    session and counted; a later start merges into it. Events after the start are not."""
    sid = str(uuid.uuid4())
    status, _ = await http_json(collector.url, "/events/model/batch", "POST",
                                {"model_events": [model_event(session_id=sid)] * 2})
    assert status == 200
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 2
    status, answer = await http_json(collector.url, "/session/start", "POST",
                                     {"session": {"session_id": sid, "session_name": "late"}})
    assert status == 200 and answer["session_id"] == sid
    other = str(uuid.uuid4())
    await http_json(collector.url, "/session/start", "POST", {"session": {"session_id": other}})
    await http_json(collector.url, "/events/model/batch", "POST",
                    {"model_events": [model_event(session_id=other), model_event()]})
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 2 and stats["sessionless_events"] == 1


async def test_session_start_answers_the_full_session_event(collector: Collector) -> None:
    """/session/start answers PostSessionStartResponse: event_id = session_id, org, workspace
    and project ids, the session's fields; a second start merges (SPEC-DP)."""
    sid = str(uuid.uuid4()).upper()
    status, a = await http_json(collector.url, "/session/start", "POST", {"session": {
        "session_id": sid, "session_name": "chat", "metadata": {"a": 1},
        "user_properties": {"u": 1}, "start_time": 1_700_000_000_000}})
    assert status == 200
    for key in ("event_id", "session_id", "org_id", "workspace_id", "project_id"):
        assert isinstance(a[key], str) and a[key], key
    assert a["event_id"] == a["session_id"] == sid and a["event_type"] == "session"
    assert a["event_name"] == "chat" and a["start_time"] == 1_700_000_000_000
    _, b = await http_json(collector.url, "/session/start", "POST",
                           {"session": {"session_id": sid, "metadata": {"b": 2}}})
    assert b["metadata"] == {"a": 1, "b": 2} and b["user_properties"] == {"u": 1}
    _, c = await http_json(collector.url, "/session/start", "POST",
                           {"session": {"session_id": "not-a-uuid"}})
    assert c["session_id"] != "not-a-uuid" and uuid.UUID(c["session_id"])


async def test_put_events_updates_a_stored_event(collector: Collector) -> None:
    """PUT /events merges LegacyUpdateEventRequest fields; an unknown id is a 404."""
    sid, eid = str(uuid.uuid4()), str(uuid.uuid4())
    await http_json(collector.url, "/session/start", "POST", {"session": {"session_id": sid}})
    await http_json(collector.url, "/events", "POST", {"event": {
        "event_id": eid, "session_id": sid, "event_type": "tool", "inputs": {},
        "metadata": {"a": 1}}})
    status, _ = await http_json(collector.url, "/events", "PUT", {
        "event_id": eid, "metadata": {"b": 2}, "outputs": {"ok": True}, "duration": 7})
    assert status == 200
    _, events = await http_json(collector.url, f"/sessions/{sid}/events")
    ev = events["events"][0]
    assert ev["metadata"] == {"a": 1, "b": 2} and ev["outputs"] == {"ok": True}
    assert ev["duration"] == 7
    status, _ = await http_json(collector.url, "/events", "PUT",
                                {"event_id": str(uuid.uuid4()), "metadata": {}})
    assert status == 404


async def test_fault_script_then_normal_service(collector: Collector) -> None:
    """A status script is played one entry per request, with Retry-After, then normal."""
    status, _ = await http_json(collector.url, "/_control/faults", "PUT",
                                {"script": parse_script("503,429@2,200,500")})
    assert status == 200
    seen = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        for _ in range(5):
            async with s.post(collector.url + "/events/model/batch",
                              json={"model_events": [model_event()]}) as r:
                seen.append((r.status, r.headers.get("Retry-After")))
    assert seen == [(503, None), (429, "2"), (200, None), (500, None), (200, None)]
    _, stats = await http_json(collector.url, "/stats")
    assert stats["events_stored"] == 2


async def test_seeded_random_errors_repeat(collector: Collector) -> None:
    """A seeded error rate gives the same statuses on every run."""
    runs = []
    for _ in range(2):
        collector.faults.set(Faults(error_rate=0.5, error_statuses=[502, 503], seed=7))
        statuses = []
        for _ in range(20):
            status, _ = await http_json(collector.url, "/events/model/batch", "POST",
                                        {"model_events": [model_event()]})
            statuses.append(status)
        runs.append(statuses)
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 502, 503}


async def test_latency_is_added(collector: Collector) -> None:
    """Configured latency delays the answer."""
    collector.faults.set(Faults(latency=0.2))
    t0 = time.monotonic()
    status, _ = await http_json(collector.url, "/events/model/batch", "POST",
                                {"model_events": [model_event()]})
    assert status == 200
    assert time.monotonic() - t0 >= 0.2


async def test_max_body_size_answers_413(collector: Collector) -> None:
    """A body over the configured size gets 413 and is not stored."""
    collector.faults.set(Faults(max_body_bytes=1000))
    status, _ = await http_json(collector.url, "/events/model/batch", "POST",
                                {"model_events": [model_event(), model_event(pad="x" * 2000)]})
    assert status == 413
    status, _ = await http_json(collector.url, "/events/model/batch", "POST",
                                {"model_events": [model_event()]})
    assert status == 200


async def test_dropped_connection(collector: Collector) -> None:
    """drop closes the connection without an answer."""
    collector.faults.set(Faults(script=["drop"]))
    with pytest.raises(aiohttp.ClientError):
        await http_json(collector.url, "/events/model/batch", "POST",
                        {"model_events": [model_event()]})
    status, _ = await http_json(collector.url, "/events/model/batch", "POST",
                                {"model_events": [model_event()]})
    assert status == 200


async def test_partial_success_stores_half_and_answers_500(collector: Collector) -> None:
    """partial stores the first half and answers 500 with event_ids and errors."""
    collector.faults.set(Faults(script=["partial"]))
    evs = [model_event(event_id=str(uuid.uuid4())) for _ in range(4)]
    status, body = await http_json(collector.url, "/events/model/batch", "POST",
                                   {"model_events": evs})
    assert status == 500
    assert body["event_ids"] == [e["event_id"] for e in evs[:2]]
    assert len(body["errors"]) == 2
    assert await collector.store.event_ids() == body["event_ids"]  # type: ignore[union-attr]


async def test_bad_fault_settings_are_rejected(collector: Collector) -> None:
    """The control endpoint refuses invalid settings with a 400."""
    status, resp = await http_json(collector.url, "/_control/faults", "PUT", {"script": ["5xx"]})
    assert status == 400 and "5xx" in resp["error"]
    status, resp = await http_json(collector.url, "/_control/faults", "PUT", {"error_rate": 2})
    assert status == 400


async def test_none_store_counts_without_storing() -> None:
    """db='none' validates and counts, and keeps nothing."""
    async with Collector(token=TOKEN, db="none") as c:
        status, _ = await http_json(c.url, "/events/model/batch", "POST",
                                    {"model_events": [model_event(), model_event()]})
        assert status == 200
        status, _ = await http_json(c.url, "/events/model/batch", "POST",
                                    {"model_events": [{"usage": 1}]})
        assert status == 500
        _, stats = await http_json(c.url, "/stats")
        assert stats["events_stored"] == 2


async def test_file_database_survives_stop_and_reopen(tmp_path: Path) -> None:
    """Everything acknowledged with a 200 is in the database after a stop and reopen."""
    db = str(tmp_path / "events.db")
    acked: list[str] = []
    async with Collector(token=TOKEN, db=db) as c:

        async def post(i: int) -> None:
            evs = [model_event(event_id=str(uuid.uuid4())) for _ in range(50)]
            status, body = await http_json(c.url, "/events/model/batch", "POST",
                                           {"model_events": evs})
            if status == 200:
                acked.extend(body["event_ids"])

        await asyncio.gather(*(post(i) for i in range(20)))
    assert len(acked) == 1000
    async with Collector(token=TOKEN, db=db) as c2:
        stored = await c2.store.event_ids()  # type: ignore[union-attr]
        assert set(acked) <= set(stored)
        assert len(stored) == len(set(stored))
        _, stats = await http_json(c2.url, "/stats")
        assert stats["events_stored"] == 1000
