"""The sans-I/O buffer, synchronously and with hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hh_exporter._buffer import Buffer
from hh_exporter._encoding import GENERIC_ROUTE, MODEL_ROUTE, body_overhead


def make(**kw: object) -> Buffer:
    opts: dict[str, object] = dict(max_events=1000, max_bytes=1 << 20, max_batch_events=10,
                                   max_batch_bytes=4096, linger=1.0, session_batch_min_events=4)
    opts.update(kw)
    return Buffer(**opts)  # type: ignore[arg-type]


def ev(i: int, size: int = 20) -> bytes:
    return (b'{"i":%d,"p":"' % i).ljust(size - 2, b"x") + b'"}'


def test_full_lane_is_ready_and_cut_as_single_session_batch() -> None:
    """A session lane that reaches max_batch_events is cut with its properties hoisted."""
    b = make()
    for i in range(10):
        assert b.append(MODEL_ROUTE, "s1", b'{"session_id":"s1"}', ev(i), now=0.0)
    assert b.ready
    batches = b.take_ready(0.0)
    assert len(batches) == 1 and batches[0].session_properties == b'{"session_id":"s1"}'
    assert batches[0].events == [ev(i) for i in range(10)]
    assert b.events == 0 and b.nbytes == 0


def test_linger_releases_small_sessions_as_one_mixed_batch() -> None:
    """After linger, small session lanes pack into one mixed batch; big ones go alone."""
    b = make(max_batch_events=100)
    for s in range(20):
        b.append(MODEL_ROUTE, f"s{s}", b"{}", ev(s), now=0.0)
    for i in range(5):
        b.append(MODEL_ROUTE, "big", b'{"big":1}', ev(100 + i), now=0.0)
    assert b.take_ready(0.5) == []
    batches = b.take_ready(1.0)
    kinds = sorted((x.session_properties is None, len(x)) for x in batches)
    assert kinds == [(False, 5), (True, 20)]


def test_limit_and_force() -> None:
    """take_ready honours limit; force cuts everything regardless of linger."""
    b = make()
    for i in range(35):
        b.append(GENERIC_ROUTE, None, None, ev(i), now=0.0)
    assert len(b.take_ready(0.0, limit=1)) == 1
    assert b.ready  # more full batches are waiting
    rest = b.take_ready(0.0, force=True)
    assert sum(map(len, rest)) == 25 and b.events == 0


def test_drop_newest_refuses_and_drop_oldest_evicts() -> None:
    """A full buffer refuses new events, or evicts the oldest under drop_oldest."""
    b = make(max_events=3)
    assert all(b.append(MODEL_ROUTE, None, None, ev(i), 0.0) for i in range(3))
    assert not b.append(MODEL_ROUTE, None, None, ev(3), 0.0)
    o = make(max_events=3, drop_oldest=True)
    for i in range(5):
        assert o.append(MODEL_ROUTE, None, None, ev(i), 0.0)
    assert o.evicted == 2
    assert o.take_ready(0.0, force=True)[0].events == [ev(2), ev(3), ev(4)]


events_strategy = st.lists(
    st.tuples(st.sampled_from([MODEL_ROUTE, GENERIC_ROUTE]),
              st.sampled_from([None, "a", "b", "c", "d"]),
              st.integers(min_value=10, max_value=900),
              st.booleans(),   # take after this append?
              st.floats(min_value=0, max_value=3)),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(events=events_strategy, max_batch=st.integers(1, 20), drop_oldest=st.booleans(),
       max_events=st.integers(5, 200))
def test_invariants(
    events: list[tuple[str, str | None, int, bool, float]], max_batch: int, drop_oldest: bool,
    max_events: int,
) -> None:
    """Each event comes out once, order holds per session, and every limit holds."""
    b = make(max_events=max_events, max_bytes=20_000, max_batch_events=max_batch,
             max_batch_bytes=2048, drop_oldest=drop_oldest, session_batch_min_events=3)
    props = {s: b'{"session_id":"%s"}' % s.encode() for s in "abcd"}
    accepted: dict[bytes, tuple[str, str | None]] = {}
    out: list[tuple[str, str | None, bytes]] = []
    evicted_total = 0
    now = 0.0

    def take(force: bool) -> None:
        for batch in b.take_ready(now, force=force):
            assert 1 <= len(batch) <= max_batch
            size = sum(map(len, batch.events)) + len(batch) - 1
            assert len(batch) == 1 or size + body_overhead(batch.session_properties) <= 2048
            assert batch.nbytes == sum(map(len, batch.events))
            for e in batch.events:
                out.append((batch.route, batch.session_id, e))

    for i, (route, sid, size, do_take, dt) in enumerate(events):
        now += dt
        data = ev(i, size)
        if b.append(route, sid, props.get(sid or ""), data, now):
            accepted[data] = (route, sid)
        evicted_total += b.evicted
        b.evicted = 0
        assert b.events <= max_events and b.nbytes <= 20_000
        if do_take:
            take(False)
    take(True)
    assert b.events == 0 and b.nbytes == 0
    emitted = [e for _, _, e in out]
    assert len(emitted) == len(set(emitted))                      # at most once
    assert len(emitted) + evicted_total == len(accepted)          # exactly once, or evicted
    for route, sid, e in out:                                     # right lane
        assert accepted[e][0] == route
        assert sid is None or accepted[e][1] == sid
    order = {e: i for i, e in enumerate(accepted)}
    for key in {v for v in accepted.values()}:                    # order per session
        seq = [order[e] for _, _, e in out if accepted[e] == key]
        assert seq == sorted(seq)


def test_small_sessions_adding_up_to_a_batch_go_before_linger() -> None:
    """Many one-event sessions fill a mixed batch at once; the remainder waits for linger."""
    b = make(max_batch_events=10)
    for s in range(25):
        b.append(MODEL_ROUTE, f"s{s}", b"{}", ev(s), now=0.0)
    assert b.ready
    batches = b.take_ready(0.0)
    assert [len(x) for x in batches] == [10, 10]
    assert all(x.session_properties is None for x in batches)
    assert b.events == 5 and not b.ready
    assert [len(x) for x in b.take_ready(1.0)] == [5]


def test_a_big_session_demoted_after_a_cut_is_packed_later() -> None:
    """A session cut below the single-session threshold joins the mixed batches."""
    b = make(max_batch_events=10, session_batch_min_events=4)
    for i in range(12):
        b.append(MODEL_ROUTE, "big", b"{}", ev(i), now=0.0)
    b.append(MODEL_ROUTE, "tiny", b"{}", ev(99), now=0.0)
    first = b.take_ready(0.0)
    assert [len(x) for x in first] == [10]
    rest = b.take_ready(0.0, force=True)
    assert sorted(len(x) for x in rest) == [3] and rest[0].session_properties is None


def test_batch_body_is_valid_json_for_any_size() -> None:
    """Bodies of 0, 1 and many events decode to the envelope the API documents."""
    import msgspec

    from hh_exporter._encoding import batch_body

    for n in (0, 1, 3):
        evs = [b'{"i":%d}' % i for i in range(n)]
        mixed = msgspec.json.decode(batch_body(MODEL_ROUTE, evs, None))
        assert mixed == {"model_events": [{"i": i} for i in range(n)],
                         "is_single_session": False}
        single = msgspec.json.decode(batch_body(GENERIC_ROUTE, evs, b'{"session_id":"s"}'))
        assert single == {"events": [{"i": i} for i in range(n)], "is_single_session": True,
                          "session_properties": {"session_id": "s"}}
