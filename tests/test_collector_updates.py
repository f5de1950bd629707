"""The collector's REST routes as the data-plane spec words them: updates of events and of
sessions, ``null`` where the spec types an object or a boolean, empty ids, and the fields
the routes set themselves (issue 23, items 1-7). Each test names the spec's rule it holds.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from hh_exporter.collector import Collector

from .conftest import http_json
from .spec import validator


async def stored(c: Collector, session_id: str) -> list[dict[str, Any]]:
    _, body = await http_json(c.url, f"/sessions/{session_id}/events")
    return body["events"]  # type: ignore[no-any-return]


async def start(c: Collector, **props: Any) -> str:
    status, body = await http_json(c.url, "/session/start", "POST", {"session": props})
    assert status == 200, body
    return str(body["session_id"])


async def put(c: Collector, body: dict[str, Any]) -> tuple[int, Any]:
    return await http_json(c.url, "/events", "PUT", body)


async def test_an_update_of_a_session_id_merges_into_the_session(collector: Collector) -> None:
    """PUT /events on a session's id answers 200 and changes the session (a session is an
    event: every official client enriches a session this way); the started session's
    answer and properties show it."""
    sid = await start(collector, session_name="s", metadata={"a": 1}, outputs={"old": 1})
    status, body = await put(collector, {
        "event_id": sid, "metadata": {"b": 2}, "outputs": {"new": 2},
        "user_properties": {"user": "ada"}, "feedback": {"rating": 5}})
    assert status == 200 and body == {"success": True}
    _, props = await http_json(collector.url, f"/sessions/{sid}")
    assert props["metadata"] == {"a": 1, "b": 2}  # merged
    assert props["outputs"] == {"new": 2}  # replaced
    assert props["user_properties"] == {"user": "ada"} and props["feedback"] == {"rating": 5}
    # Starting it again answers the session event as it now is.
    _, again = await http_json(collector.url, "/session/start", "POST",
                               {"session": {"session_id": sid}})
    assert again["event_id"] == sid and again["outputs"] == {"new": 2}
    assert again["metadata"] == {"a": 1, "b": 2}


async def test_an_update_of_a_session_event_changes_the_event_and_its_session(
    collector: Collector,
) -> None:
    """A session created by an ``event_type: session`` event: the update reaches both the
    stored event and the session's properties."""
    sid = str(uuid.uuid4())
    status, _ = await http_json(collector.url, "/events", "POST", {"event": {
        "event_type": "session", "event_id": sid, "event_name": "root", "inputs": {}}})
    assert status == 200
    assert (await put(collector, {"event_id": sid, "metrics": {"m": 1}}))[0] == 200
    [ev] = await stored(collector, sid)
    assert ev["metrics"] == {"m": 1}
    _, props = await http_json(collector.url, f"/sessions/{sid}")
    assert props["metrics"] == {"m": 1}


async def test_an_update_follows_each_fields_rule(collector: Collector) -> None:
    """SPEC-DP LegacyUpdateEventRequest: outputs replaced (null preserves them), the object
    fields merged key by key, an empty children_ids ignored, a non-empty one set, duration
    and end_time set; an unknown id is a 404."""
    sid = await start(collector)
    eid = str(uuid.uuid4())
    await http_json(collector.url, "/events", "POST", {"event": {
        "event_type": "tool", "event_id": eid, "session_id": sid, "inputs": {},
        "outputs": {"a": 1, "b": 2}, "metadata": {"x": 1, "y": {"deep": 1}},
        "children_ids": ["c1"], "duration": 5}})
    assert (await put(collector, {"event_id": eid, "outputs": {"c": 3},
                                  "metadata": {"y": {"other": 2}}, "children_ids": []}))[0] == 200
    [ev] = await stored(collector, sid)
    assert ev["outputs"] == {"c": 3}
    assert ev["metadata"] == {"x": 1, "y": {"other": 2}}
    assert ev["children_ids"] == ["c1"]
    assert (await put(collector, {"event_id": eid, "outputs": None,
                                  "children_ids": ["c2", "c3"], "duration": 9,
                                  "end_time": 1.5e12}))[0] == 200
    [ev] = await stored(collector, sid)
    assert ev["outputs"] == {"c": 3}  # null preserves the existing outputs
    assert ev["children_ids"] == ["c2", "c3"]
    assert ev["duration"] == 9 and ev["end_time"] == 1.5e12
    status, _ = await put(collector, {"event_id": str(uuid.uuid4()), "metadata": {}})
    assert status == 404


PUT_OBJECTS = ["metadata", "feedback", "metrics", "config", "user_properties",
               "duration", "end_time", "children_ids", "event_id"]


@pytest.mark.parametrize("field", PUT_OBJECTS)
async def test_an_update_with_null_where_the_spec_types_a_value_is_refused(
    collector: Collector, field: str,
) -> None:
    """PUT /events: null is a 400 for every field the spec types without null, and the
    stored event is unchanged."""
    sid = await start(collector)
    eid = str(uuid.uuid4())
    await http_json(collector.url, "/events", "POST", {"event": {
        "event_type": "tool", "event_id": eid, "session_id": sid, "inputs": {},
        "metadata": {"k": 1}}})
    body: dict[str, Any] = {"event_id": eid, "metadata": {"k": 2}, field: None}
    assert not validator("LegacyUpdateEventRequest").is_valid(body)
    status, answer = await put(collector, body)
    assert status == 400 and field in answer["error"], answer
    [ev] = await stored(collector, sid)
    assert ev["metadata"] == {"k": 1}


ENVELOPE_NULLS = [("single_session", None), ("is_single_session", None),
                  ("session_properties", None), ("session", None),
                  ("session_properties", {"session_name": None}),
                  ("session_properties", {"start_time": None}),
                  ("session_properties", {"user_properties": None}),
                  ("session", {"metadata": None})]


@pytest.mark.parametrize(("route", "key", "field", "value"), [
    *((route, key, field, value) for route, key in (("/events/batch", "events"),
                                                    ("/events/model/batch", "model_events"))
      for field, value in ENVELOPE_NULLS),
    # the v1 envelope has neither is_single_session nor session (additionalProperties: false)
    *(("/v1/events/batch", "events", field, value) for field, value in ENVELOPE_NULLS
      if field not in ("is_single_session", "session")),
])
async def test_a_batch_envelope_with_null_where_the_spec_types_an_object_is_refused(
    collector: Collector, route: str, key: str, field: str, value: Any,
) -> None:
    """The envelopes' flags (boolean) and session properties (an object with typed fields):
    null is a 400 and nothing is stored."""
    sid = str(uuid.uuid4())
    ev = {"event_type": "tool", "inputs": {}, "session_id": sid}
    body = {key: [ev], field: value}
    schema = {"/events/batch": "LegacyPostEventBatchRequest",
              "/events/model/batch": "PostModelEventBatchRequest",
              "/v1/events/batch": "PostEventBatchRequest"}[route]
    assert not validator(schema).is_valid(body)
    status, answer = await http_json(collector.url, route, "POST", body)
    assert status == 400, answer
    assert await stored(collector, sid) == []


@pytest.mark.parametrize("route", ["/events", "/events/batch", "/events/model",
                                   "/events/model/batch", "/v1/events", "/v1/events/batch"])
async def test_an_empty_event_id_is_replaced_and_stored_as_answered(
    collector: Collector, route: str,
) -> None:
    """An empty ``event_id`` is no id: the server generates one (SPEC-DP "generates a UUIDv4
    if omitted or if the supplied value is not a valid UUID"), answers it, and stores it
    in the row and in the body alike."""
    sid = await start(collector)
    ev = {"event_type": "tool", "inputs": {}, "session_id": sid, "event_id": ""}
    body: Any = {"/events": {"event": ev}, "/events/model": {"model_event": ev},
                 "/events/batch": {"events": [ev]},
                 "/events/model/batch": {"model_events": [ev]}, "/v1/events": ev,
                 "/v1/events/batch": {"events": [ev]}}[route]
    status, answer = await http_json(collector.url, route, "POST", body)
    assert status == 200, answer
    eid = answer["event_id"] if "event_id" in answer else answer["event_ids"][0]
    assert uuid.UUID(eid)
    [stored_ev] = await stored(collector, sid)
    assert stored_ev["event_id"] == eid
    assert await collector.store.event_ids() == [eid]  # type: ignore[union-attr]


async def test_a_session_event_with_an_empty_session_id_is_its_own_session(
    collector: Collector,
) -> None:
    """A session event whose session_id is "" is the session named by its event_id, in the
    row, the body and the sessions table."""
    eid = str(uuid.uuid4())
    status, _ = await http_json(collector.url, "/events", "POST", {"event": {
        "event_type": "session", "event_id": eid, "session_id": "", "inputs": {}}})
    assert status == 200
    [ev] = await stored(collector, eid)
    assert ev["session_id"] == eid and ev["event_id"] == eid
    assert eid in await collector.store.started_sessions()  # type: ignore[union-attr]


@pytest.mark.parametrize("route", ["/events/batch", "/v1/events/batch"])
async def test_a_single_session_envelope_with_an_empty_session_id(
    collector: Collector, route: str,
) -> None:
    """single_session with session_properties.session_id "" (no UUID): the session the
    answer names is the one the events are stored under, their bodies included."""
    body = {"events": [{"event_type": "tool", "inputs": {}, "session_id": ""},
                       {"event_type": "chain", "inputs": {}}],
            "single_session": True, "session_properties": {"session_id": ""}}
    status, answer = await http_json(collector.url, route, "POST", body)
    assert status == 200, answer
    sid = answer["session_id"]
    assert uuid.UUID(sid)
    evs = await stored(collector, sid)
    assert [e["event_id"] for e in evs] == answer["event_ids"]
    assert all(e["session_id"] == sid for e in evs)


@pytest.mark.parametrize("sent", [None, "tool", "chain", "model"])
@pytest.mark.parametrize("batch", [False, True])
async def test_the_model_routes_store_event_type_model(
    collector: Collector, sent: str | None, batch: bool,
) -> None:
    """The legacy model routes set ``event_type: "model"`` server-side (SPEC-DP:585): the
    stored body says so, whatever the body was sent with."""
    sid = await start(collector)
    ev: dict[str, Any] = {"session_id": sid, "model": "m", "inputs": {}}
    if sent is not None:
        ev["event_type"] = sent
    route, body = (("/events/model/batch", {"model_events": [ev]}) if batch
                   else ("/events/model", {"model_event": ev}))
    status, answer = await http_json(collector.url, route, "POST", body)
    assert status == 200, answer
    [stored_ev] = await stored(collector, sid)
    assert stored_ev["event_type"] == "model" and stored_ev["model"] == "m"


@pytest.mark.parametrize("session_id", [123, {"a": 1}, ["x"], True, None])
async def test_v1_session_properties_are_as_open_as_the_spec(
    collector: Collector, session_id: Any,
) -> None:
    """SPEC-DP SessionProperties: ``additionalProperties: {}``; a session_id that is not a
    string (null included) is accepted, names no session, and the server generates one;
    other unknown properties are accepted too."""
    body = {"events": [{"event_type": "tool", "inputs": {}}], "single_session": True,
            "session_properties": {"session_id": session_id, "session_name": "n",
                                   "anything": [1, None]}}
    assert validator("PostEventBatchRequest").is_valid(body)
    status, answer = await http_json(collector.url, "/v1/events/batch", "POST", body)
    assert status == 200, answer
    sid = answer["session_id"]
    assert uuid.UUID(sid)
    [ev] = await stored(collector, sid)
    assert ev["event_id"] == answer["event_ids"][0] and ev["session_id"] == sid
    _, props = await http_json(collector.url, f"/sessions/{sid}")
    assert props["session_name"] == "n"
