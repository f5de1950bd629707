"""The official ``honeyhive`` Python SDK (1.x, its REST client) against our collector.

What we did not write decides here: the SDK's own request models and response parsing. A
call that the real API answers in a way the SDK accepts must be answered so by the collector
too (``reference/honeyhive-api-behaviour.md``, "What the official Python SDK expects back").
The SDK is synchronous (httpx), so its calls run in a thread while the collector serves.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from honeyhive import HoneyHive  # pinned in pyproject.toml's test dependency group
from honeyhive._generated.api_config import HTTPException
from honeyhive._generated.models import (
    LegacyPostEventBatchRequest,
    LegacyPostEventRequest,
    LegacyUpdateEventRequest,
    PostModelEventBatchRequest,
    PostModelEventRequest,
    PostSessionStartResponse,
)
from honeyhive._generated.services import Events_service

from hh_exporter.collector import Collector

from .conftest import TOKEN, http_json

T = TypeVar("T")


async def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kw)


def model_event(session_id: str, parent_id: str | None = None) -> dict[str, Any]:
    # What SDK 1.x sends: no project, no event_id (the server assigns it).
    ev: dict[str, Any] = {
        "session_id": session_id, "model": "gpt-4o", "provider": "openai",
        "messages": [{"role": "user", "content": "hi"}],
        "response": {"role": "assistant", "content": "hello"}, "duration": 12,
        "usage": {"total_tokens": 3},
    }
    if parent_id is not None:
        ev["parent_id"] = parent_id
    return ev


async def test_the_official_sdk_gets_what_the_real_api_answers(collector: Collector) -> None:
    """Sessions, single events with parents, batches, a partial 500 and an update: every
    call returns what SDK 1.x expects, and every event is stored once under its session
    with its parent, the invalid one absent."""
    client = HoneyHive(api_key=TOKEN, base_url=collector.url)
    cfg = client.events._ingestion_api_config

    # 1. Two sessions: the server chooses the first id, the client the second.
    first = await call(client.sessions.start, {"session": {
        "session_name": "server-chosen", "source": "sdk-test", "metadata": {"k": 1}}})
    assert isinstance(first, PostSessionStartResponse)
    chosen = str(uuid.uuid4())
    second = await call(client.sessions.start, {"session": {
        "session_id": chosen, "session_name": "client-chosen",
        "user_properties": {"user": "ada"}}})
    assert second.session_id == second.event_id == chosen
    assert first.session_id == first.event_id and uuid.UUID(first.session_id)
    assert first.org_id and first.workspace_id and first.project_id
    s1, s2 = first.session_id, chosen

    # 2. Single events with parent links: a chain on /events, a model call under it.
    chain = await call(client.events.create, LegacyPostEventRequest(event={
        "session_id": s1, "parent_id": s1, "event_type": "chain", "event_name": "pipeline",
        "inputs": {"q": "capital of France?"}}))
    assert chain.success is True and uuid.UUID(chain.event_id)
    model = await call(Events_service.createModelEventLegacy, cfg, data=PostModelEventRequest(
        model_event=model_event(s1, parent_id=chain.event_id)))
    assert model.success is True and uuid.UUID(model.event_id)

    # 3. A batch and a model batch, in the second session.
    batch = await call(client.events.create_batch, LegacyPostEventBatchRequest(events=[
        {"session_id": s2, "parent_id": s2, "event_type": "tool", "event_name": f"t{i}",
         "inputs": {"i": i}} for i in range(3)]))
    assert batch.success is True and len(batch.event_ids) == 3
    mbatch = await call(Events_service.createModelEventBatchLegacy, cfg,
                        data=PostModelEventBatchRequest(model_events=[
                            model_event(s2, parent_id=s2) for _ in range(2)]))
    assert mbatch.success is True and len(mbatch.event_ids) == 2

    # 4. One invalid event in a batch: SDK 1.x raises on any non-200, and the real API
    # answers the partial 500 (it keeps only the message); the valid events are stored.
    good = [{"session_id": s2, "parent_id": s2, "event_type": "tool", "event_name": "ok",
             "inputs": {"n": n}, "event_id": str(uuid.uuid4())} for n in range(2)]
    bad = {"session_id": s2, "event_type": "tool", "event_name": "no-inputs"}
    with pytest.raises(HTTPException) as caught:
        await call(client.events.create_batch,
                   LegacyPostEventBatchRequest(events=[good[0], bad, good[1]]))
    assert caught.value.status_code == 500  # the errors list is invisible to 1.x callers

    # 5. An update of the chain event.
    assert await call(client.events.update, LegacyUpdateEventRequest(
        event_id=chain.event_id, outputs={"answer": "Paris"}, metadata={"graded": True})) is None

    # What the collector holds: each event once, under its session, with its parent.
    _, e1 = await http_json(collector.url, f"/sessions/{s1}/events")
    _, e2 = await http_json(collector.url, f"/sessions/{s2}/events")
    by_id = {e["event_id"]: e for e in e1["events"] + e2["events"]}
    assert len(by_id) == len(e1["events"]) + len(e2["events"]) == 2 + 3 + 2 + 2
    assert by_id[chain.event_id]["outputs"] == {"answer": "Paris"}
    assert by_id[chain.event_id]["metadata"] == {"graded": True}
    assert by_id[model.event_id]["parent_id"] == chain.event_id
    for eid in [*batch.event_ids, *mbatch.event_ids, *(g["event_id"] for g in good)]:
        assert by_id[eid]["session_id"] == s2 and by_id[eid]["parent_id"] == s2
    assert not any(e.get("event_name") == "no-inputs" for e in by_id.values())
    _, stats = await http_json(collector.url, "/stats")
    assert stats["orphan_events"] == 0 and stats["duplicate_event_ids"] == 0
    _, props = await http_json(collector.url, f"/sessions/{s2}")
    assert props["session_name"] == "client-chosen" and props["user_properties"] == {
        "user": "ada"}
    assert json.loads(json.dumps(props))  # plain JSON


ENRICH = Path(__file__).parent / "clients" / "honeyhive_1_7_enrich.py"


async def test_the_official_sdks_update_and_enrich_session_change_what_is_stored(
    collector: Collector,
) -> None:
    """SDK 1.7's ``HoneyHiveTracer.enrich_session`` (a ``PUT /events`` on the session's id,
    "sessions are events in the backend"; run in a process of its own) and its
    ``events.update`` on an event answer 200 as the real API does, and change the stored
    session and event as SPEC-DP ``LegacyUpdateEventRequest`` says: outputs replaced, the
    object fields merged, an empty ``children_ids`` ignored."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ENRICH), collector.url, TOKEN,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    sid = stdout.decode().strip().splitlines()[-1]
    assert b"Failed to enrich session" not in stdout + stderr
    client = HoneyHive(api_key=TOKEN, base_url=collector.url)
    ev = await call(client.events.create, LegacyPostEventRequest(event={
        "session_id": sid, "parent_id": sid, "event_type": "tool", "event_name": "lookup",
        "inputs": {"q": "x"}, "outputs": {"a": 1, "b": 2}, "metadata": {"k": 1}}))
    assert await call(client.events.update, LegacyUpdateEventRequest(
        event_id=ev.event_id, outputs={"c": 3}, metadata={"graded": True},
        children_ids=[])) is None

    [stored] = [e for e in (await http_json(collector.url, f"/sessions/{sid}/events"))[1][
        "events"] if e["event_id"] == ev.event_id]
    assert stored["outputs"] == {"c": 3}  # replaced, not merged
    assert stored["metadata"] == {"k": 1, "graded": True}
    assert "children_ids" not in stored  # an empty array is ignored
    _, props = await http_json(collector.url, f"/sessions/{sid}")
    assert props["session_name"] == "enriched"  # the tracer's own session start
    assert props["outputs"] == {"final": "ok"}  # replaced
    assert props["metadata"]["stage"] == "end" and props["metadata"]["keep"] == 1  # merged
    assert props["feedback"] == {"rating": 5} and props["metrics"] == {"latency_ms": 250}
    assert props["user_properties"] == {"user": "ada"}
    _, stats = await http_json(collector.url, "/stats")
    assert stats["requests"]["PUT /events"] == {"200": 3}
