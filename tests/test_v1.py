"""The opt-in v1 API mode: strict bodies, held against the data-plane spec's v1 schemas.

The spec (``tests/data/honeyhive-openapi.yaml``) gives ``StartSessionRequest`` and
``PostEventBatchRequest``/``PostEventRequest`` with ``additionalProperties: false``; every body
the exporter sends in v1 mode is validated against them with ``jsonschema`` (not against our
own Structs), and the collector's v1 routes are checked to refuse what the spec refuses.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

import hh_exporter
from hh_exporter.collector import Collector
from hh_exporter.testing import MemoryTransport

from .conftest import TOKEN, assert_balanced, fast_exporter, http_json, model_fields
from .spec import validator

V1_SCHEMAS = {"/v1/sessions": "StartSessionRequest", "/v1/events/batch": "PostEventBatchRequest"}


def check_v1_bodies(transport: MemoryTransport) -> None:
    assert transport.requests
    for path, body in transport.requests:
        assert path in V1_SCHEMAS, path  # nothing goes to a legacy route
        validator(V1_SCHEMAS[path]).validate(msgspec.json.decode(body))


async def test_every_v1_body_validates_against_the_spec() -> None:
    """Sessions, model events with every field, generic events, sessionless events: each body
    is a valid StartSessionRequest or PostEventBatchRequest."""
    transport = MemoryTransport()
    async with hh_exporter.Exporter(api_key="k", project="ignored-in-v1", api="v1",
                                    transport=transport) as hh:
        s = hh.session(session_name="v1", metadata={"k": 1}, user_properties={"u": "x"},
                       inputs={"q": 1})
        s.log_model_event(
            **model_fields(), event_name="chat", cost=0.002, error=None,
            hyperparameters={"temperature": 0.2}, template=[{"role": "system"}],
            template_inputs={"name": "x"}, tools=[{"type": "function"}], tool_choice="auto",
            response_format={"type": "text"}, metadata={"m": 1}, metrics={"score": 1},
            feedback={"ok": True}, user_properties={"u": 1}, parent_id=s.session_id,
            children_ids=[str(uuid.uuid4())], config={"seed": 7})
        s.log_event(event_type="tool", event_name="search", inputs={"q": "x"})
        hh.log_model_event(**{**model_fields(), "response": "plain text"})
        hh.log_event(event_type="chain", event_name="c")
    check_v1_bodies(transport)
    assert transport.requests[0][0] == "/v1/sessions"


async def test_model_fields_map_where_honeyhive_renders_them() -> None:
    """The README's mapping table, field by field."""
    transport = MemoryTransport()
    async with hh_exporter.Exporter(api_key="k", api="v1", transport=transport) as hh:
        hh.log_model_event(
            model="gpt-4o", provider="openai", messages=[{"role": "user", "content": "hi"}],
            response={"role": "assistant", "content": "yo"}, duration=812,
            usage={"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
            cost=0.01, error="boom", hyperparameters={"temperature": 0.5},
            tools=[{"type": "function"}], tool_choice="auto", template_inputs={"n": 1},
            config={"temperature": 0.9}, metadata={"team": "a"})
    (ev,) = transport.events()
    assert ev["event_type"] == "model" and ev["event_name"] == "Model Completion"
    assert ev["config"] == {"model": "gpt-4o", "provider": "openai", "temperature": 0.9,
                           "tools": [{"type": "function"}], "tool_choice": "auto"}
    assert ev["inputs"] == {"chat_history": [{"role": "user", "content": "hi"}],
                           "template_inputs": {"n": 1}}
    assert ev["outputs"] == {"role": "assistant", "content": "yo"}
    assert ev["metadata"] == {"team": "a", "prompt_tokens": 9, "completion_tokens": 5,
                             "total_tokens": 14}
    assert ev["metrics"] == {"cost": 0.01}
    assert ev["error"] == "boom" and ev["duration"] == 812
    assert ev["end_time"] - ev["start_time"] == 812
    assert "project" not in ev and "model" not in ev and "usage" not in ev


async def test_v1_sessions_refuse_what_v1_cannot_carry() -> None:
    """StartSessionRequest has no metrics, feedback or error: EventError at the call."""
    async with hh_exporter.Exporter(api_key="k", api="v1", transport=MemoryTransport()) as hh:
        with pytest.raises(hh_exporter.EventError, match="metrics"):
            hh.session(session_name="s", metrics={"a": 1})


async def test_the_v1_mode_against_the_collector(collector: Collector) -> None:
    """Sessions start on /v1/sessions, events go to /v1/events/batch; everything is stored
    once, 0 orphans, and /stats tells the generations apart."""
    async with fast_exporter(collector.url, api="v1") as hh:
        sessions = [hh.session(session_name=f"s{i}") for i in range(20)]
        ids = [s.log_model_event(**model_fields(i)) for i, s in enumerate(sessions * 5)]
        ids.append(sessions[0].log_event(event_type="tool", event_name="t", inputs={}))
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 101 and st.sessions_started == 20 and st.unconfirmed == 0
        assert_balanced(st)
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0 and stats["duplicate_event_ids"] == 0
    assert stats["events_received_by_api"] == {"legacy": 0, "v1": 101}
    assert set(stats["requests"]) == {"/v1/sessions", "/v1/events/batch"}
    assert sorted(await collector.store.event_ids()) == sorted(ids)  # type: ignore[union-attr]


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/v1/events/batch", {"events": [{"event_type": "tool", "inputs": {}, "project": "p"}]},
     "events[0]: object contains unknown field project"),
    ("/v1/events/batch", {"events": [{"event_type": "model", "inputs": {}, "model": "m"}]},
     "events[0]: object contains unknown field model"),
    ("/v1/events/batch", {"events": [{"event_type": "tool"}]},
     "events[0]: object missing required field inputs"),
    ("/v1/events/batch", {"events": [], "is_single_session": False},
     "object contains unknown field is_single_session"),
    ("/v1/sessions", {"session": {"session_name": "wrapped"}},
     "object contains unknown field session"),
    ("/v1/sessions", {"session_name": "s", "project": "p"},
     "object contains unknown field project"),
])
async def test_the_collectors_v1_routes_are_as_strict_as_the_spec(
    collector: Collector, path: str, body: dict[str, Any], message: str
) -> None:
    """What the spec's v1 schemas refuse, the collector refuses with a 400 naming it; and
    the spec's own validator agrees that each body is invalid."""
    schema = V1_SCHEMAS[path]
    assert not validator(schema).is_valid(body)
    status, resp = await http_json(collector.url, path, "POST", body)
    assert status == 400 and message in resp["error"]


async def test_a_v1_session_answers_the_session_event(collector: Collector) -> None:
    """POST /v1/sessions answers PostSessionStartResponse and is idempotent on session_id."""
    sid = str(uuid.uuid4())
    for meta in ({"a": 1}, {"b": 2}):
        status, ans = await http_json(collector.url, "/v1/sessions", "POST",
                                      {"session_id": sid, "metadata": meta})
        assert status == 200 and ans["session_id"] == ans["event_id"] == sid
    assert ans["metadata"] == {"a": 1, "b": 2} and ans["org_id"] and ans["project_id"]


async def test_ingest_in_v1_mode(collector: Collector, tmp_path: Path) -> None:
    """hh-exporter ingest --api v1 maps legacy-shaped lines to v1 and starts sessions on
    /v1/sessions; nothing reaches a legacy route."""
    import asyncio
    import os
    import sys

    example = Path(__file__).parent.parent / "examples" / "events.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hh_exporter", "ingest", str(example), "--api", "v1",
        "--api-url", collector.url, "--no-progress", "--rejects", str(tmp_path / "r.jsonl"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HH_API_KEY": TOKEN, "HH_PROJECT": "ignored"})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, out.decode() + err.decode()  # two bad lines, on purpose
    assert "delivered     5" in out.decode()
    _, stats = await http_json(collector.url, "/stats")
    assert set(stats["requests"]) == {"/v1/sessions", "/v1/events/batch"}
    assert stats["orphan_events"] == 0
    sid = "0b6f2f9e-8d3c-4c43-9a53-4f9d6f7c1a10"
    _, events = await http_json(collector.url, f"/sessions/{sid}/events")
    for ev in events["events"]:
        validator("PostEventRequest").validate(ev)
        assert json.dumps(ev)  # stored as sent


async def test_v1_400s_are_bisected_so_only_the_bad_event_is_dropped(
    collector: Collector,
) -> None:
    """The v1 route answers 400 for a whole batch with one invalid event (the spec documents
    400 there); bisection isolates it. The bad event can only come pre-encoded."""
    async with fast_exporter(collector.url, api="v1", linger=5.0) as hh:
        ids = [hh.log_model_event(**model_fields(i)) for i in range(100)]
        bad_id = str(uuid.uuid4())
        await hh.send_encoded(msgspec.json.encode(
            {"event_type": "tool", "inputs": {}, "event_id": bad_id, "bogus": 1}), generic=True)
        ids += [hh.log_model_event(**model_fields(i)) for i in range(100, 200)]
        assert await hh.flush(10)
        st = hh.stats()
        assert st.delivered == 200 and st.dropped["rejected"] == 1
        assert "bogus" in (st.last_error or "")
    stored = await collector.store.event_ids()  # type: ignore[union-attr]
    assert sorted(stored) == sorted(ids) and bad_id not in stored
