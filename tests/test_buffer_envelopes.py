"""The buffer's ``session_start="batch"`` lanes: a session's first batch is cut alone and
carries the session; its later events wait for the answer. Synchronous, and hypothesis."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from hh_exporter._buffer import Batch, SessionStart
from hh_exporter._encoding import (
    GENERIC_ROUTE,
    MODEL_ROUTE,
    V1_ROUTE,
    batch_body,
    body_overhead,
)

from .test_buffer import ev, make


def env(sid: str, extra: int = 0) -> SessionStart:
    props = b'{"session_id":"%s","session_name":"n%s"}' % (sid.encode(), b"x" * extra)
    return SessionStart(sid, b'{"session":' + props + b"}", props)


def test_first_events_are_cut_alone_with_their_session_then_held() -> None:
    """The first batch holds only its session's events and carries it; events logged
    after the cut wait until release, then go mixed."""
    b = make(max_batch_events=10)
    b.add_envelope(env("s1"))
    b.append(MODEL_ROUTE, "other", ev(0), now=0.0)
    for i in range(3):
        b.append(MODEL_ROUTE, "s1", ev(i + 1), now=0.0)
    assert b.take_ready(0.5) == [] and b.take_first(0.5) == []  # linger not over
    (first,) = b.take_first(1.0)
    assert first.session is not None and first.session.session_id == "s1"
    assert first.events == [ev(1), ev(2), ev(3)]
    b.append(MODEL_ROUTE, "s1", ev(4), now=1.0)
    assert b.gated("s1")
    (mixed,) = b.take_ready(5.0)
    assert mixed.events == [ev(0)] and mixed.session is None  # s1's later event is held
    b.release("s1", 5.0)
    (later,) = b.take_ready(5.0, force=True)
    assert later.events == [ev(4)] and later.session is None
    assert b.events == 0 and b.nbytes == 0


def test_a_full_first_lane_is_cut_before_linger_and_the_rest_waits() -> None:
    """25 first events and a batch of 10: one first batch of 10 at once, 15 held."""
    b = make(max_batch_events=10)
    b.add_envelope(env("s1"))
    for i in range(25):
        b.append(MODEL_ROUTE, "s1", ev(i), now=0.0)
    assert b.first_ready
    (first,) = b.take_first(0.0)
    assert len(first) == 10 and b.take_first(100.0) == []  # never a second envelope
    assert b.take_ready(100.0, force=True) == []
    b.release("s1", 100.0)
    rest = b.take_ready(100.0, force=True)
    assert [e for x in rest for e in x.events] == [ev(i) for i in range(10, 25)]


def test_events_on_another_route_wait_for_the_first_batch() -> None:
    """The first batch goes on the route of the first event; generic events of the session
    are held until it is answered."""
    b = make()
    b.add_envelope(env("s1"))
    b.append(GENERIC_ROUTE, "s1", ev(0), now=0.0)
    b.append(MODEL_ROUTE, "s1", ev(1), now=0.0)
    (first,) = b.take_first(0.0, force=True)
    assert first.route == GENERIC_ROUTE and first.events == [ev(0)]
    assert b.take_ready(10.0, force=True) == []
    b.release("s1", 10.0)
    (model,) = b.take_ready(10.0, force=True)
    assert model.route == MODEL_ROUTE and model.events == [ev(1)]


def test_a_failed_first_batch_gives_back_everything_held() -> None:
    """``discard`` returns the held events and those of a first lane not cut yet."""
    b = make(max_batch_events=2)
    b.add_envelope(env("s1"))
    b.add_envelope(env("s2"))
    for i in range(5):
        b.append(MODEL_ROUTE, "s1", ev(i), now=0.0)
    b.append(MODEL_ROUTE, "s2", ev(9), now=0.0)
    b.take_first(0.0)  # s1's first batch of 2 is cut; s2 still gathers (not full)
    assert b.discard("s1") == [(MODEL_ROUTE, [ev(2), ev(3), ev(4)])]
    assert b.discard("s2") == [(MODEL_ROUTE, [ev(9)])]
    assert b.events == 0 and b.nbytes == 0 and b.take_first(9.0, force=True) == []


def test_bare_id_events_buffered_before_become_the_first_events() -> None:
    """Events logged with the bare session_id before the session was registered go in its
    first batch, not ahead of it."""
    b = make()
    b.append(MODEL_ROUTE, "s1", ev(0), now=0.0)
    b.add_envelope(env("s1"))
    b.add_envelope(env("s1"))  # known already: left alone
    b.append(MODEL_ROUTE, "s1", ev(1), now=0.0)
    assert b.take_ready(9.0, force=True) == []
    (first,) = b.take_first(9.0)
    assert first.events == [ev(0), ev(1)] and first.session is not None


def test_the_single_session_body_decodes_to_the_documented_envelope() -> None:
    """Legacy routes say ``is_single_session: true``, v1 ``single_session: true``; both
    carry ``session_properties`` as given."""
    props = b'{"session_id":"x","session_name":"n"}'
    evs = [b'{"i":1}', b'{"i":2}']
    assert msgspec.json.decode(batch_body(MODEL_ROUTE, evs, props)) == {
        "model_events": [{"i": 1}, {"i": 2}], "is_single_session": True,
        "session_properties": {"session_id": "x", "session_name": "n"}}
    assert msgspec.json.decode(batch_body(V1_ROUTE, evs, props)) == {
        "events": [{"i": 1}, {"i": 2}], "single_session": True,
        "session_properties": {"session_id": "x", "session_name": "n"}}
    assert len(batch_body(GENERIC_ROUTE, evs, props)) <= (
        sum(map(len, evs)) + len(evs) - 1 + body_overhead(props))


actions = st.lists(
    st.tuples(st.sampled_from([MODEL_ROUTE, GENERIC_ROUTE]),
              st.sampled_from([None, "a", "b", "c", "d"]),
              st.integers(min_value=10, max_value=900),
              st.sampled_from(["none", "take", "register", "answer", "fail"]),
              st.floats(min_value=0, max_value=3)),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(steps=actions, max_batch=st.integers(1, 20), drop_oldest=st.booleans(),
       max_events=st.integers(5, 200), extra=st.integers(0, 600))
def test_invariants(steps: list[tuple[str, str | None, int, str, float]], max_batch: int,
                    drop_oldest: bool, max_events: int, extra: int) -> None:
    """Each event comes out once (or is evicted or discarded), in order per session; a
    registered session's first batch is cut alone, once, within the byte limit with its
    properties, and none of its events leaves in a mixed batch before that batch was
    answered."""
    b = make(max_events=max_events, max_bytes=20_000, max_batch_events=max_batch,
             max_batch_bytes=2048, drop_oldest=drop_oldest)
    accepted: dict[bytes, tuple[str, str | None]] = {}
    out: list[tuple[str, bytes]] = []
    gone = 0
    registered: set[str] = set()
    cut: set[str] = set()       # first batch out
    answered: set[str] = set()  # first batch answered 2xx (released)
    failed: set[str] = set()
    now = 0.0

    def check(batch: Batch) -> None:
        assert 1 <= len(batch) <= max_batch
        assert batch.nbytes == sum(map(len, batch.events))
        size = sum(map(len, batch.events)) + len(batch) - 1
        if batch.session is not None:
            sid = batch.session.session_id
            assert sid in registered and sid not in cut and sid not in failed
            cut.add(sid)
            assert {accepted[e][1] for e in batch.events} == {sid}
            assert len(batch) == 1 or size + body_overhead(batch.session.properties) <= 2048
        else:
            assert len(batch) == 1 or size + body_overhead() <= 2048
            for e in batch.events:
                s = accepted[e][1]
                assert s not in registered or s in answered
        out.extend((batch.route, e) for e in batch.events)

    def take(force: bool) -> None:
        for batch in b.take_ready(now, force=force) + b.take_first(now, force=force):
            check(batch)

    for i, (route, sid, size, action, dt) in enumerate(steps):
        now += dt
        data = ev(i, size)
        if (sid is None or sid not in failed) and b.append(route, sid, data, now):
            accepted[data] = (route, sid)
        gone += len(b.evicted)
        b.evicted = []
        assert b.events <= max_events and b.nbytes <= 20_000
        if action == "take":
            take(False)
        elif action == "register" and sid is not None and sid not in registered:
            registered.add(sid)
            b.add_envelope(env(sid, extra))
        elif action == "answer" and sid in cut and sid not in answered:
            answered.add(sid)
            b.release(sid, now)
        elif action == "fail" and sid in registered and sid not in answered and (
                sid not in failed):
            failed.add(sid)
            gone += sum(len(x) for _, x in b.discard(sid))
    for _ in range(50):  # answer every first batch, until nothing is left
        take(True)
        for s in cut - answered - failed:
            answered.add(s)
            b.release(s, now)
        if b.events == 0:
            break
    assert b.events == 0 and b.nbytes == 0
    emitted = [e for _, e in out]
    assert len(emitted) == len(set(emitted))              # at most once
    assert len(emitted) + gone == len(accepted)           # exactly once, or evicted/discarded
    for route, e in out:
        assert accepted[e][0] == route
    order = {e: i for i, e in enumerate(accepted)}
    for key in set(accepted.values()):
        seq = [order[e] for _, e in out if accepted[e] == key]
        assert seq == sorted(seq)


def test_a_created_session_never_gets_a_second_envelope() -> None:
    """Once its first batch created it, the session's start body brought again (a spool
    segment, a relay's entry) registers nothing: its events go mixed."""
    b = make()
    b.add_envelope(env("s1"))
    b.append(MODEL_ROUTE, "s1", ev(0), now=0.0)
    (first,) = b.take_first(0.0, force=True)
    assert first.session is not None
    b.created("s1")
    b.release("s1", 0.0)
    b.add_envelope(env("s1"))
    b.append(MODEL_ROUTE, "s1", ev(1), now=0.0)
    assert b.take_first(9.0, force=True) == []
    (mixed,) = b.take_ready(9.0, force=True)
    assert mixed.events == [ev(1)] and mixed.session is None
