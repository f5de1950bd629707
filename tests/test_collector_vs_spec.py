"""The collector accepts what the data-plane spec accepts, and refuses what it refuses.

Random events (every field of the spec's event schemas, with values of the right type or
not, plus unknown fields) go to the collector; its verdict is compared with ``jsonschema``
validating the same body against the spec. The legacy routes add the rules the route
documentation states on top of the schema (``event_type`` and ``inputs`` required on
``/events/batch`` items); the v1 route's schema is the whole rule.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hh_exporter.collector import Collector

from .conftest import TOKEN, http_json
from .spec import validator

NUMBER = st.integers(-(10**6), 10**15) | st.floats(allow_nan=False, allow_infinity=False)
WRONG = st.sampled_from([None, 1, "x", [1], {"a": 1}, True])
BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=8),
    "object": st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4),
                              max_size=2),
    "number": NUMBER,
    "array": st.lists(st.text(max_size=8), max_size=2),
    "string|null": st.none() | st.text(max_size=8),
}
EVENT_FIELDS = {
    "source": "string", "event_name": "string", "event_id": "string", "session_id": "string",
    "parent_id": "string", "children_ids": "array", "config": "object", "inputs": "object",
    "outputs": "object", "error": "string|null", "start_time": "number", "end_time": "number",
    "duration": "number", "metadata": "object", "feedback": "object", "metrics": "object",
    "user_properties": "object", "project_id": "string",
}


def events() -> st.SearchStrategy[dict[str, Any]]:
    def field(kind: str) -> st.SearchStrategy[Any]:
        return st.one_of(BY_TYPE[kind], WRONG) if kind != "string|null" else BY_TYPE[kind]

    optional = {name: field(kind) for name, kind in EVENT_FIELDS.items() if name != "inputs"}
    # Mostly events with the required fields right, so the other fields decide.
    required = st.fixed_dictionaries({
        "event_type": st.sampled_from(["model", "tool", "chain", "session"]),
        "inputs": BY_TYPE["object"]})
    anything = st.fixed_dictionaries({}, optional={
        "event_type": st.sampled_from(["model", "tool", "chain", "session", "nope"]) | WRONG,
        "inputs": field("object")})
    rest = st.fixed_dictionaries({}, optional={**optional, "unknown_field": st.integers()})
    return st.builds(lambda a, b: {**a, **b}, required | anything, rest)


def legacy_accepts(ev: dict[str, Any]) -> bool:
    """The spec's LegacyEvent schema, plus the route's documented required fields."""
    return (validator("LegacyEvent").is_valid(ev) and "event_type" in ev and "inputs" in ev
            and ev.get("event_type") is not None and ev.get("inputs") is not None)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(events(), min_size=1, max_size=4))
def test_the_collector_judges_events_as_the_spec_does(batch: list[dict[str, Any]]) -> None:
    """Legacy /events/batch: the valid events are stored and only they (the partial 500
    lists them); v1 /v1/events/batch: 200 exactly when the spec's strict schema holds."""

    async def main() -> None:
        async with Collector(token=TOKEN) as c:
            status, resp = await http_json(c.url, "/events/batch", "POST", {"events": batch})
            valid = [legacy_accepts(ev) for ev in batch]
            if all(valid):
                assert status == 200, resp
                assert len(resp["event_ids"]) == len(batch)
            else:
                assert status == 500, resp
                assert len(resp["event_ids"]) == sum(valid)
                assert len(resp["errors"]) == len(batch) - sum(valid)
            body = {"events": batch}
            status, resp = await http_json(c.url, "/v1/events/batch", "POST", body)
            spec_ok = validator("PostEventBatchRequest").is_valid(body)
            assert (status == 200) == spec_ok, (status, resp)

    asyncio.run(main())


MODEL_FIELDS = {**EVENT_FIELDS, "model": "string", "provider": "string", "model_name": "string",
                "model_version": "string", "usage": "object", "hyperparameters": "object"}
ANY = st.none() | st.integers() | st.text(max_size=4) | st.lists(st.integers(), max_size=2) | (
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def model_events() -> st.SearchStrategy[dict[str, Any]]:
    def field(kind: str) -> st.SearchStrategy[Any]:
        return st.one_of(BY_TYPE[kind], WRONG) if kind != "string|null" else BY_TYPE[kind]

    return st.fixed_dictionaries({}, optional={
        **{name: field(kind) for name, kind in MODEL_FIELDS.items()},
        # typed as anything by the spec (messages: an array of anything)
        "messages": st.lists(ANY, max_size=3) | WRONG,
        **{name: ANY for name in ("response", "cost", "template", "template_inputs", "tools",
                                  "tool_choice", "response_format")},
    })


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(model_events(), min_size=1, max_size=4))
def test_the_collector_judges_model_events_as_the_spec_does(
    batch: list[dict[str, Any]]
) -> None:
    """Legacy /events/model/batch: an event is stored exactly when the spec's ModelEvent
    schema holds (the route requires nothing more)."""

    async def main() -> None:
        async with Collector(token=TOKEN) as c:
            status, resp = await http_json(c.url, "/events/model/batch", "POST",
                                           {"model_events": batch})
            valid = [validator("ModelEvent").is_valid(ev) for ev in batch]
            if all(valid):
                assert status == 200, resp
            else:
                assert status == 500, resp
                assert len(resp["event_ids"]) == sum(valid), (resp, valid)

    asyncio.run(main())
