"""The sans-I/O buffer, synchronously and with hypothesis."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from hh_exporter._buffer import Buffer, SessionStart
from hh_exporter._encoding import GENERIC_ROUTE, MODEL_ROUTE, batch_body, body_overhead


def make(**kw: object) -> Buffer:
    opts: dict[str, object] = dict(max_events=1000, max_bytes=1 << 20, max_batch_events=10,
                                   max_batch_bytes=4096, linger=1.0)
    opts.update(kw)
    return Buffer(**opts)  # type: ignore[arg-type]


def ev(i: int, size: int = 20) -> bytes:
    return (b'{"i":%d,"p":"' % i).ljust(size - 2, b"x") + b'"}'


def test_a_full_route_is_ready_and_cut_at_once() -> None:
    """Events of one session reaching max_batch_events make a batch before linger."""
    b = make()
    for i in range(10):
        assert b.append(MODEL_ROUTE, "s1", ev(i), now=0.0)
    assert b.ready
    batches = b.take_ready(0.0)
    assert len(batches) == 1 and batches[0].events == [ev(i) for i in range(10)]
    assert b.events == 0 and b.nbytes == 0


def test_linger_releases_every_session_in_mixed_batches() -> None:
    """After linger, all lanes go, packed oldest first into as few batches as fit."""
    b = make(max_batch_events=100)
    for s in range(20):
        b.append(MODEL_ROUTE, f"s{s}", ev(s), now=0.0)
    for i in range(5):
        b.append(MODEL_ROUTE, "big", ev(100 + i), now=0.0)
    assert b.take_ready(0.5) == []
    batches = b.take_ready(1.0)
    assert [len(x) for x in batches] == [25]
    assert batches[0].events[:20] == [ev(s) for s in range(20)]


def test_interleaved_sessions_still_fill_batches() -> None:
    """400 sessions interleaved event by event still leave in full batches of 10."""
    b = make(max_batch_events=10)
    out = []
    for i in range(4000):
        b.append(MODEL_ROUTE, f"s{i % 400}", ev(i), now=0.0)
        out.extend(b.take_ready(0.0))
    assert [len(x) for x in out] == [10] * 400


def test_limit_and_force() -> None:
    """take_ready honours limit; force cuts everything regardless of linger."""
    b = make()
    for i in range(35):
        b.append(GENERIC_ROUTE, None, ev(i), now=0.0)
    assert len(b.take_ready(0.0, limit=1)) == 1
    assert b.ready  # more full batches are waiting
    rest = b.take_ready(0.0, force=True)
    assert sum(map(len, rest)) == 25 and b.events == 0


def test_drop_newest_refuses_and_drop_oldest_evicts() -> None:
    """A full buffer refuses new events, or evicts the oldest under drop_oldest."""
    b = make(max_events=3)
    assert all(b.append(MODEL_ROUTE, None, ev(i), 0.0) for i in range(3))
    assert not b.append(MODEL_ROUTE, None, ev(3), 0.0)
    o = make(max_events=3, drop_oldest=True)
    for i in range(5):
        assert o.append(MODEL_ROUTE, None, ev(i), 0.0)
    assert o.evicted == [ev(0), ev(1)]
    assert o.take_ready(0.0, force=True)[0].events == [ev(2), ev(3), ev(4)]


def test_a_gated_session_is_held_until_released() -> None:
    """A session's events wait for its start, even when forced; release lets them go."""
    b = make()
    b.add_start(SessionStart("s1", b"{}"))
    assert b.ready and b.starts[0].session_id == "s1"
    for i in range(25):
        b.append(MODEL_ROUTE, "s1", ev(i), now=0.0)
    b.append(MODEL_ROUTE, "other", ev(99), now=0.0)
    assert b.events == 26
    assert [x.events for x in b.take_ready(5.0, force=True)] == [[ev(99)]]
    assert b.events == 25 and b.gated("s1")
    b.release("s1", now=5.0)
    assert not b.gated("s1")
    cut = b.take_ready(5.0)  # two full batches at once; the rest waits for linger
    assert [x.events for x in cut] == [[ev(i) for i in range(10)],
                                       [ev(i) for i in range(10, 20)]]
    assert [len(x) for x in b.take_ready(6.0)] == [5]


def test_a_failed_session_gives_back_its_events() -> None:
    """discard() returns a gated session's events by route, in order, and frees their
    room."""
    b = make(max_events=5)
    b.add_start(SessionStart("s1", b"{}"))
    for i in range(5):
        assert b.append(GENERIC_ROUTE if i % 2 else MODEL_ROUTE, "s1", ev(i), now=0.0)
    assert not b.append(MODEL_ROUTE, "s2", ev(9), now=0.0)  # held events count in the bound
    held = b.discard("s1")
    assert dict(held) == {MODEL_ROUTE: [ev(0), ev(2), ev(4)], GENERIC_ROUTE: [ev(1), ev(3)]}
    assert b.events == 0 and b.nbytes == 0 and not b.gated("s1")


events_strategy = st.lists(
    st.tuples(st.sampled_from([MODEL_ROUTE, GENERIC_ROUTE]),
              st.sampled_from([None, "a", "b", "c", "d"]),
              st.integers(min_value=10, max_value=900),
              st.sampled_from(["none", "take", "start", "release"]),
              st.floats(min_value=0, max_value=3)),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(events=events_strategy, max_batch=st.integers(1, 20), drop_oldest=st.booleans(),
       max_events=st.integers(5, 200))
def test_invariants(
    events: list[tuple[str, str | None, int, str, float]], max_batch: int, drop_oldest: bool,
    max_events: int,
) -> None:
    """Each event comes out once, order holds per session, no gated event leaves, and every
    limit holds."""
    b = make(max_events=max_events, max_bytes=20_000, max_batch_events=max_batch,
             max_batch_bytes=2048, drop_oldest=drop_oldest)
    accepted: dict[bytes, tuple[str, str | None]] = {}
    out: list[tuple[str, bytes]] = []
    evicted_total = 0
    now = 0.0

    def take(force: bool) -> None:
        gated = {s for s in "abcd" if b.gated(s)}
        for batch in b.take_ready(now, force=force):
            assert 1 <= len(batch) <= max_batch
            size = sum(map(len, batch.events)) + len(batch) - 1
            assert len(batch) == 1 or size + body_overhead() <= 2048
            assert batch.nbytes == sum(map(len, batch.events))
            for e in batch.events:
                assert accepted[e][1] not in gated
                out.append((batch.route, e))

    for i, (route, sid, size, action, dt) in enumerate(events):
        now += dt
        data = ev(i, size)
        if b.append(route, sid, data, now):
            accepted[data] = (route, sid)
        evicted_total += len(b.evicted)
        b.evicted = []
        assert b.events <= max_events and b.nbytes <= 20_000
        if action == "take":
            take(False)
        elif action == "start" and sid is not None and not b.gated(sid):
            b.add_start(SessionStart(sid, b"{}"))
        elif action == "release" and sid is not None:
            b.release(sid, now)
    for s in "abcd":
        b.release(s, now)
    take(True)
    assert b.events == 0 and b.nbytes == 0
    emitted = [e for _, e in out]
    assert len(emitted) == len(set(emitted))                      # at most once
    assert len(emitted) + evicted_total == len(accepted)          # exactly once, or evicted
    for route, e in out:                                          # right route
        assert accepted[e][0] == route
    order = {e: i for i, e in enumerate(accepted)}
    for key in set(accepted.values()):                            # order per session
        seq = [order[e] for _, e in out if accepted[e] == key]
        assert seq == sorted(seq)


def test_batch_body_is_valid_json_for_any_size() -> None:
    """Bodies of 0, 1 and many events decode to the envelope the API documents."""
    for n in (0, 1, 3):
        evs = [b'{"i":%d}' % i for i in range(n)]
        assert msgspec.json.decode(batch_body(MODEL_ROUTE, evs)) == {
            "model_events": [{"i": i} for i in range(n)], "is_single_session": False}
        assert msgspec.json.decode(batch_body(GENERIC_ROUTE, evs)) == {
            "events": [{"i": i} for i in range(n)], "is_single_session": False}
