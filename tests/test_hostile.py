"""Hostile values through the public logging API: an id or an EventError, never anything else.

Every item of the hardening issue about values has a regression test here, and a hypothesis
test throws values of every kind at every field of every log call, against the real collector,
then checks that the worker lived, the stats add up and every stored event validates against
the data-plane spec's schema.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hh_exporter import EventError, ExporterClosedError, SyncExporter
from hh_exporter.collector import Collector

from .conftest import TOKEN, assert_balanced, fast_exporter, http_json, model_fields
from .spec import validator


class RaisingRepr:
    """Every way of looking at it raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    __str__ = __repr__

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"getattr {name}")


class RaisingClass:
    """Even isinstance() fails on it."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("__class__")


class RaisingDump:
    """Looks like a pydantic model whose model_dump raises."""

    def model_dump(self, **kw: Any) -> Any:
        raise ValueError("dump")


class RaisingDumpHostile:
    """Its model_dump raises an error whose own text cannot be made."""

    def model_dump(self, **kw: Any) -> Any:
        raise ValueError(RaisingRepr())


class RaisingTimestamp:
    def timestamp(self) -> float:
        raise OSError("no clock")


class NoTruth:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth value")


def cyclic() -> list[Any]:
    xs: list[Any] = []
    xs.append(xs)
    return xs


def deep(n: int = 100_000) -> list[Any]:
    xs: list[Any] = []
    for _ in range(n):
        xs = [xs]
    return xs


HOSTILE = [RaisingRepr(), RaisingClass(), RaisingDump(), RaisingTimestamp(), NoTruth(),
           object(), cyclic(), deep(), {"k": cyclic()}, [RaisingRepr()], 2**200, -(2**70),
           float("nan"), float("inf"), "\ud800 lone surrogate", b"\xff\xfe", {1, 2},
           "x" * 100_000, {"nested": {"deeper": [1, 2, {"x": float("nan")}]}}, None, True,
           12345, -1, 1.5, "", "not-a-uuid", str(uuid.uuid4()).upper(), time.time(),
           [1, "two"], {"a": 1}, ()]

class H:
    """A placeholder for ``HOSTILE[i]``: hypothesis prints what it generates, and the hostile
    values themselves would break its printing. They are put in just before the call."""

    def __init__(self, i: int) -> None:
        self.i = i

    def __repr__(self) -> str:
        return f"HOSTILE[{self.i}]"


def resolve(value: Any) -> Any:
    if isinstance(value, H):
        return HOSTILE[value.i]
    if type(value) is dict:
        return {k: resolve(v) for k, v in value.items()}
    if type(value) is list:
        return [resolve(v) for v in value]
    return value


json_leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
               | st.integers(0, len(HOSTILE) - 1).map(H))
values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

MODEL_NAMES = ["model", "provider", "messages", "response", "event_name", "usage", "cost",
               "hyperparameters", "template", "template_inputs", "tools", "tool_choice",
               "response_format", "source", "event_id", "session_id", "parent_id",
               "children_ids", "config", "inputs", "outputs", "error", "duration",
               "start_time", "end_time", "metadata", "metrics", "feedback", "user_properties"]
EVENT_NAMES = ["event_type", "event_name", *MODEL_NAMES[13:]]
SESSION_NAMES = ["session_name", "session_id", "source", "inputs", "outputs", "metadata",
                 "user_properties", "metrics", "feedback", "config", "error", "start_time"]
UNKNOWN = ["colour", "project", "model_name", "__class__", ""]


def call_strategy() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    def build(kind: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        names = {"model": MODEL_NAMES, "event": EVENT_NAMES, "session": SESSION_NAMES}[kind]
        base = {"model": model_fields(), "session": {"session_name": "h"},
                "event": {"event_type": "tool", "event_name": "t", "inputs": {}}}[kind]
        overrides = st.dictionaries(st.sampled_from(names + UNKNOWN), values, max_size=4)
        drop = st.lists(st.sampled_from(list(base)), max_size=2)
        return st.tuples(st.just(kind), st.builds(
            lambda o, d: {**{k: v for k, v in base.items() if k not in d}, **o},
            overrides, drop))

    return st.sampled_from(["model", "event", "session"]).flatmap(build)


def make_calls(hh: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Make each call through ``hh`` (an Exporter or a SyncExporter); return the ids."""
    ids: list[str] = []
    session = hh.session(session_name="hostile")
    for kind, shown in calls:
        fields = resolve(shown)
        try:
            if kind == "model":
                ids.append(session.log_model_event(**fields))
            elif kind == "event":
                ids.append(session.log_event(**fields))
            else:
                hh.session(**fields)
        except EventError:
            continue
    return ids


def check_stats(st_: Any, ids: list[str]) -> None:
    assert_balanced(st_)
    assert st_.dropped_total == 0 and st_.accepted == st_.delivered == len(ids)


async def run_calls(url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    async with fast_exporter(url) as hh:
        ids = make_calls(hh, calls)
        assert not hh.closed  # the worker never died
        assert await hh.flush(5)
    check_stats(hh.stats(), ids)
    return ids


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(calls=st.lists(call_strategy(), min_size=1, max_size=12))
def test_hostile_values_get_an_id_or_event_error(calls: list[tuple[str, dict[str, Any]]]
                                                  ) -> None:
    """Any values in any field: an id or EventError, never anything else; the worker lives,
    the stats add up, and every stored event validates against the spec's schema."""

    async def main() -> None:
        async with Collector(token=TOKEN) as c:
            ids = await run_calls(c.url, calls)
            assert c.store is not None
            stored = await c.store.event_ids()
            assert sorted(stored) == sorted(ids)
            _, stats = await http_json(c.url, "/stats")
            assert stats["events_rejected"] == 0 and stats["orphan_events"] == 0
            for sid in {s for s in await c.store.started_sessions()}:
                for body in await c.store.session_events(sid):
                    event = msgspec.json.decode(body)
                    schema = "ModelEvent" if "model" in event else "LegacyEvent"
                    validator(schema).validate(event)

    asyncio.run(main())


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(calls=st.lists(call_strategy(), min_size=1, max_size=12))
def test_hostile_values_through_the_sync_exporter(
    collector_url: str, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    """The same through a SyncExporter: calls from this thread, the loop in another."""
    with SyncExporter(api_key=TOKEN, api_url=collector_url, linger=0.01) as hh:
        ids = make_calls(hh, calls)
        assert hh.flush(5)
    check_stats(hh.stats(), ids)


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, 12345, "not-a-uuid", "", None, NoTruth()])
async def test_a_bad_session_id_is_refused_and_the_exporter_lives(
    collector: Collector, value: object
) -> None:
    """A session_id that is not a UUID is an EventError at session(); nothing is counted and
    the exporter goes on (it once killed the worker and broke the stats)."""
    async with fast_exporter(collector.url) as hh:
        if value is None:
            s = hh.session(session_id=None)  # type: ignore[arg-type]  # None: not given
            assert uuid.UUID(s.session_id)
        else:
            with pytest.raises(EventError, match="session_id"):
                hh.session(session_id=value)  # type: ignore[arg-type]
            with pytest.raises(EventError, match="session_id"):
                hh.log_model_event(**model_fields(), session_id=value)  # type: ignore[arg-type]
        hh.log_model_event(**model_fields())
        assert await hh.flush(5)
        st = hh.stats()
        assert st.delivered == 1 and st.accepted == 1 and not hh.closed
        assert_balanced(st)


async def test_ids_are_lowercased(collector: Collector) -> None:
    """Upper-case UUIDs (and uuid.UUID objects) are accepted and sent lowercase."""
    sid, eid, pid = uuid.uuid4(), str(uuid.uuid4()).upper(), str(uuid.uuid4()).upper()
    async with fast_exporter(collector.url) as hh:
        s = hh.session(session_id=str(sid).upper())
        assert s.session_id == str(sid)
        got = s.log_model_event(**model_fields(), event_id=eid, parent_id=pid,
                                children_ids=[sid])  # type: ignore[list-item]
        assert got == eid.lower()
        assert await hh.flush(5)
    _, events = await http_json(collector.url, f"/sessions/{sid}/events")
    ev = events["events"][0]
    assert ev["event_id"] == eid.lower() and ev["parent_id"] == pid.lower()
    assert ev["children_ids"] == [str(sid)]


@pytest.mark.parametrize(("fields", "message"), [
    ({"model": None}, "'model' is required"),
    ({"provider": 123}, "'provider' must be a string, got 123"),
    ({"event_name": 5}, "'event_name' must be a string"),
    ({"event_id": 12345}, "'event_id' must be a UUID string, got 12345"),
    ({"event_id": "not-a-uuid"}, "'event_id' must be a UUID string"),
    ({"parent_id": NoTruth()}, "'parent_id' must be a UUID string, got NoTruth"),
    ({"start_time": time.time()}, "looks like seconds"),
    ({"end_time": 10.0}, "looks like seconds"),
    ({"start_time": RaisingTimestamp()}, "'start_time' must be epoch milliseconds"),
    ({"cost": True}, "'cost' must be a finite number"),
    ({"cost": math.inf}, "'cost' must be a finite number"),
    ({"metadata": {"x": cyclic()}}, "'metadata' cannot be encoded: it is nested too deeply"),
    ({"metadata": {"x": deep()}}, "'metadata' cannot be encoded"),
    ({"metadata": {"x": RaisingDump()}}, "'metadata' cannot be encoded: dump"),
    ({"metadata": {"x": RaisingDumpHostile()}}, "'metadata' cannot be encoded: ValueError"),
    ({"metadata": {"x": RaisingRepr()}}, "'metadata' cannot be encoded"),
    ({"response": "\ud800"}, "'response' cannot be encoded"),
    ({"duration": RaisingRepr()}, "'duration' must be milliseconds >= 0, got RaisingRepr"),
])
async def test_wrong_types_and_hostile_values_are_event_errors(
    collector: Collector, fields: dict[str, Any], message: str
) -> None:
    """Each raises EventError naming the field, at the call site; nothing reaches the wire."""
    async with fast_exporter(collector.url) as hh:
        with pytest.raises(EventError) as caught:
            hh.log_model_event(**{**model_fields(), **fields})
        assert message in str(caught.value)
        assert await hh.flush(5)
        assert hh.stats().accepted == 0


async def test_event_type_and_session_of_the_wrong_kind(collector: Collector) -> None:
    """An unhashable event_type or a session= that is no Session: EventError, not TypeError
    or AttributeError."""
    async with fast_exporter(collector.url) as hh:
        with pytest.raises(EventError, match="event_type"):
            hh.log_event(event_type=["tool"], event_name="x")  # type: ignore[arg-type]
        with pytest.raises(EventError, match="event_type"):
            hh.log_event(event_type="session", event_name="x")  # type: ignore[arg-type]
        with pytest.raises(EventError, match="session must be a Session"):
            hh.log_model_event(session="abc", **model_fields())  # type: ignore[arg-type]
        with pytest.raises(EventError, match="session must be a Session"):
            await hh.send_model_event(session=RaisingRepr(),  # type: ignore[arg-type]
                                      **model_fields())


async def test_none_means_not_given(collector: Collector) -> None:
    """None-valued optional fields are left out of the event (the official clients send
    exclude_none bodies); error=None stays; generic events get outputs: {}."""
    async with fast_exporter(collector.url) as hh:
        s = hh.session(session_name="nones", metadata=None)
        s.log_model_event(**{**model_fields(), "usage": None}, metadata=None, cost=None,
                          error=None)
        s.log_event(event_type="tool", event_name="t", outputs=None, config=None)
        assert await hh.flush(5)
    _, events = await http_json(collector.url, f"/sessions/{s.session_id}/events")
    model, tool = sorted(events["events"], key=lambda e: e.get("event_type", "model"))
    assert "metadata" not in model and "cost" not in model and model["error"] is None
    assert model["usage"] == {}
    assert tool["outputs"] == {} and tool["config"] == {} and tool["inputs"] == {}
    _, props = await http_json(collector.url, f"/sessions/{s.session_id}")
    assert "metadata" not in props


def test_sync_exporter_hostile_values_raise_in_the_caller(collector_url: str) -> None:
    """On the SyncExporter path too, a bad value is an EventError in the calling thread, never
    an error later in a loop callback after the caller got its id."""
    with SyncExporter(api_key=TOKEN, api_url=collector_url, linger=0.02) as hh:
        with pytest.raises(EventError):
            hh.session(session_id=[1, 2])  # type: ignore[arg-type]
        with pytest.raises(EventError):
            hh.log_model_event(**model_fields(), metadata={"x": cyclic()})
        eid = hh.log_model_event(**model_fields())
        assert hh.flush(5)
        st = hh.stats()
        assert st.accepted == st.delivered == 1 and uuid.UUID(eid)
    with pytest.raises(ExporterClosedError):
        hh.log_model_event(**model_fields())
