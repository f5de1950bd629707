"""The compiled per-shape encoders agree with the general ones: the same bytes for every
valid call, the same EventError (naming the same field) for every invalid one."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hh_exporter import EventError
from hh_exporter._events import (
    encode_event,
    encode_model_event,
    fast_event,
    fast_model_event,
)

ID = str(uuid.uuid4())

good = {
    "model": st.text(max_size=8), "provider": st.text(max_size=8),
    "messages": st.lists(st.dictionaries(st.text(max_size=4), st.text(max_size=4),
                                         max_size=2), max_size=2),
    "response": st.one_of(st.none(), st.text(max_size=4), st.dictionaries(
        st.text(max_size=3), st.integers(), max_size=2)),
    "duration": st.one_of(st.integers(0, 10**6), st.floats(0, 1e6)),
    "usage": st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    "cost": st.floats(-1e3, 1e3), "error": st.one_of(st.none(), st.text(max_size=5)),
    "source": st.text(max_size=5), "event_name": st.text(max_size=5),
    "hyperparameters": st.dictionaries(st.text(max_size=3), st.floats(0, 2), max_size=2),
    "tools": st.lists(st.dictionaries(st.text(max_size=3), st.text(max_size=3)), max_size=2),
    "tool_choice": st.text(max_size=4), "metadata": st.dictionaries(
        st.text(max_size=3), st.integers(), max_size=2),
    "event_id": st.just(ID.upper()), "parent_id": st.builds(uuid.uuid4),
    "children_ids": st.lists(st.builds(lambda: str(uuid.uuid4())), max_size=2),
    "start_time": st.integers(1_700_000_000_000, 1_900_000_000_000),
    "end_time": st.integers(1_900_000_000_000, 2_000_000_000_000),
    "inputs": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    "outputs": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    "config": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    "event_type": st.sampled_from(["model", "tool", "chain"]),
    "nonsense": st.integers(),
}
bad = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                st.text(max_size=3), st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                st.just(float("inf")), st.just("not-a-uuid"), st.builds(object))

MODEL_KEYS = ["model", "provider", "messages", "response", "duration", "usage", "cost", "error",
              "source", "event_name", "hyperparameters", "tools", "tool_choice", "metadata",
              "event_id", "parent_id", "children_ids", "start_time", "end_time"]
EVENT_KEYS = ["event_type", "event_name", "inputs", "outputs", "config", "duration", "error",
              "metadata", "event_id", "parent_id", "children_ids", "start_time", "end_time",
              "source"]


def outcome(fn: Any, fields: dict[str, Any], sid: str | None) -> Any:
    # What the caller gave, before the call completes the dict in place (None: not given).
    given_keys = {k for k, v in fields.items() if v is not None}
    try:
        eid, data = fn(fields, "proj", "dev", sid)
    except EventError as exc:
        return ("error", str(exc))
    obj = msgspec.json.decode(data)
    # What each call makes up anew: a fresh id and the clock, unless given.
    for k in ("event_id", "start_time", "end_time"):
        if k not in given_keys or obj.get(k) is None:
            obj.pop(k, None)
    return ("ok", list(obj), obj, eid if "event_id" in given_keys else None)


def fields_strategy(keys: list[str], required: list[str]) -> Any:
    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
        # Now and then a required name is missing (and an unknown one slips in).
        need = required if draw(st.integers(0, 9)) else draw(st.lists(
            st.sampled_from(required), unique=True))
        extra = ["nonsense"] if draw(st.integers(0, 19)) == 0 else []
        names = list(dict.fromkeys([*need, *chosen, *extra]))
        names = draw(st.permutations(names))
        out = {}
        for n in names:
            out[n] = draw(bad) if draw(st.integers(0, 9)) == 0 else draw(good[n])
        return out
    return build()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=fields_strategy(MODEL_KEYS, ["model", "provider", "messages", "response"]),
       sid=st.sampled_from([None, ID]))
def test_model_events_agree(fields: dict[str, Any], sid: str | None) -> None:
    fast = outcome(fast_model_event, dict(fields), sid)
    slow = outcome(encode_model_event, dict(fields), sid)
    if fast[0] == "ok" and slow[0] == "ok":
        assert fast[1] == slow[1]  # the same keys in the same order
        assert fast[2:] == slow[2:]
    else:
        assert fast == slow


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=fields_strategy(EVENT_KEYS, ["event_type", "event_name"]),
       sid=st.sampled_from([None, ID]))
def test_generic_events_agree(fields: dict[str, Any], sid: str | None) -> None:
    fast = outcome(fast_event, dict(fields), sid)
    slow = outcome(encode_event, dict(fields), sid)
    if fast[0] == "ok" and slow[0] == "ok":
        assert fast[1] == slow[1]
        assert fast[2:] == slow[2:]
    else:
        assert fast == slow


def test_the_same_bytes_for_a_fixed_event() -> None:
    """Byte for byte, when nothing is made up (ids and times given)."""
    fields = {"model": "m", "provider": "p", "messages": [], "response": {"a": 1},
              "event_id": ID, "start_time": 1_800_000_000_000, "end_time": 1_800_000_000_500,
              "duration": 500, "cost": 0.1, "error": None}
    assert fast_model_event(dict(fields), "p", "dev", ID) == \
        encode_model_event(dict(fields), "p", "dev", ID)
