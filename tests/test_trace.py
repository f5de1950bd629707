"""exporter.trace: decorator and context manager, sync and async, generators, nesting across
tasks and threads, errors, and hostile arguments. The tree is read back from the collector;
the hypothesis test uses the in-memory transport (it is about the call site only)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hh_exporter import Exporter, Span, SyncExporter, current_span
from hh_exporter.collector import Collector
from hh_exporter.testing import MemoryTransport

from .conftest import assert_balanced, fast_exporter, http_json


@pytest.fixture
async def hh(collector: Collector) -> AsyncIterator[Exporter]:
    ex = fast_exporter(collector.url)
    await ex.start()
    yield ex
    await ex.aclose()


async def tree(c: Collector, hh: Exporter, root: Span) -> dict[str, dict[str, Any]]:
    """The root's session by event name (the last of each name), once all was delivered."""
    return {e["event_name"]: e for e in await events_of(c, hh, root)}


async def events_of(c: Collector, hh: Exporter, root: Span) -> list[dict[str, Any]]:
    assert root.session is not None
    if not hh.closed:
        await hh.aclose()
    assert_balanced(hh.stats())
    assert hh.stats().delivered == hh.stats().accepted
    _, body = await http_json(c.url, f"/sessions/{root.session.session_id}/events")
    return list(body["events"])


def assert_child(parent: dict[str, Any], child: dict[str, Any]) -> None:
    assert child["parent_id"] == parent["event_id"]
    assert child["event_id"] in parent["children_ids"]
    assert child["session_id"] == parent["session_id"]


async def test_sync_functions_methods_and_errors(collector: Collector, hh: Exporter) -> None:
    class Calc:
        @hh.trace(event_type="tool")
        def add(self, a: int, b: int = 2, **extra: Any) -> int:
            return a + b

        @hh.trace("explode", event_type="tool")
        def boom(self) -> None:
            raise KeyError("missing")

    calc = Calc()
    boom_error = None
    with hh.trace("root", inputs={"why": "test"}, metadata={"v": 1}) as root:
        assert calc.add(1, b=5, note="n") == 6
        try:
            calc.boom()
        except KeyError as exc:
            boom_error = exc
        root.set_outputs(answer=42)
    assert isinstance(boom_error, KeyError) and boom_error.args == ("missing",)
    t = await tree(collector, hh, root)
    r, add, boom = t["root"], t["add"], t["explode"]
    assert r["parent_id"] == root.session.session_id  # type: ignore[union-attr]
    assert r["inputs"] == {"why": "test"} and r["outputs"] == {"answer": 42}
    assert r["metadata"] == {"v": 1}
    assert add["inputs"] == {"a": 1, "b": 5, "note": "n"}  # no self; **extra flattened
    assert add["outputs"] == {"result": 6} and "error" not in add
    assert boom["error"] == "KeyError: 'missing'" and boom["outputs"] == {}
    for child in (add, boom):
        assert_child(r, child)
        assert child["event_type"] == "tool"


async def test_the_traced_exception_is_the_callers_own(hh: Exporter) -> None:
    class Mine(Exception):
        pass

    err = Mine("x")

    @hh.trace
    async def fails() -> None:
        raise err

    with pytest.raises(Mine) as got:
        await fails()
    assert got.value is err


async def test_generators_record_their_items_and_early_close(
    collector: Collector, hh: Exporter
) -> None:
    @hh.trace
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    @hh.trace
    async def letters() -> AsyncIterator[str]:
        for ch in "abc":
            await asyncio.sleep(0)
            yield ch

    @hh.trace(event_type="tool")
    def consumer_step(x: int) -> int:
        return x

    with hh.trace("root") as root:
        assert [consumer_step(x) for x in numbers(3)] == [0, 1, 2]
        partial = numbers(10)
        assert next(partial) == 0
        partial.close()
        assert [c async for c in letters()] == ["a", "b", "c"]
    events = await events_of(collector, hh, root)
    t = {e["event_name"]: e for e in events}
    # The generator objects both show up as `numbers`: tell them apart by their outputs.
    gens = [e for e in events if e["event_name"] == "numbers"]
    full = next(e for e in gens if e["metadata"]["yielded"] == 3)
    cut = next(e for e in gens if e["metadata"]["yielded"] == 1)
    assert full["outputs"] == {"result": [0, 1, 2]} and "closed_early" not in full["metadata"]
    assert cut["metadata"]["closed_early"] is True and "error" not in cut
    assert t["letters"]["outputs"] == {"result": ["a", "b", "c"]}
    # The consumer's own steps are not filed under the generator it reads from.
    steps = [e for e in events if e["event_name"] == "consumer_step"]
    assert len(steps) == 3
    for s in steps:
        assert s["parent_id"] == t["root"]["event_id"]


async def test_context_crosses_gather_and_to_thread_but_not_a_plain_thread(
    collector: Collector, hh: Exporter
) -> None:
    seen: dict[str, Span | None] = {}

    @hh.trace(event_type="tool")
    def in_thread(tag: str) -> str:
        return tag

    def plain_thread() -> None:
        seen["plain"] = current_span()

    async with hh.trace("root") as root:
        async with hh.trace("a"):
            await asyncio.gather(asyncio.to_thread(in_thread, "copied"),
                                 asyncio.sleep(0))
        t = threading.Thread(target=plain_thread)
        t.start()
        t.join()
        ctx = contextvars.copy_context()
        t2 = threading.Thread(target=ctx.run, args=(in_thread, "carried"))
        t2.start()
        t2.join()
    assert seen["plain"] is None
    events = await events_of(collector, hh, root)
    got = {e["event_name"]: e for e in events}
    assert_child(got["root"], got["a"])
    (copied,) = (e for e in events if e["inputs"].get("tag") == "copied")
    (carried,) = (e for e in events if e["inputs"].get("tag") == "carried")
    assert_child(got["a"], copied)
    assert_child(got["root"], carried)


async def test_root_spans_start_their_own_session_unless_given_one(
    collector: Collector, hh: Exporter
) -> None:
    with hh.trace("first") as a:
        pass
    with hh.trace("second") as b:
        pass
    session = hh.session(session_name="given")
    with hh.trace("third", session=session) as c, hh.trace("inner") as d:
        pass
    assert a.session is not None and b.session is not None
    assert a.session.session_id != b.session.session_id
    assert c.session is session and d.session is session
    await hh.aclose()
    _, stats = await http_json(collector.url, "/stats")
    assert stats["sessions_started"] == 3 and stats["orphan_events"] == 0
    _, s1 = await http_json(collector.url, f"/sessions/{a.session.session_id}")
    assert s1["session_name"] == "first"


async def test_a_closed_exporter_never_breaks_the_traced_code(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    hh = fast_exporter(collector.url)
    await hh.start()
    await hh.aclose()

    @hh.trace
    def still_works(x: int) -> int:
        return x * 2

    assert still_works(21) == 42
    with hh.trace("cm") as span:
        span.set_outputs(x=1)
    assert "the call goes on without it" in caplog.text


def test_sync_exporter_trace(collector_url: str) -> None:
    with SyncExporter(api_key="test-token-3f9a", api_url=collector_url, linger=0.02) as hh:
        @hh.trace
        def work() -> int:
            return 1

        with hh.trace("root") as root:
            work()
        assert hh.flush(10)
        s = hh.stats()
    assert s.accepted == s.delivered == 2
    assert root.children_ids and root.session is not None


def test_bad_trace_arguments_say_so() -> None:
    hh = Exporter(api_key="k", api_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="event_type"):
        hh.trace("x", event_type="model")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Session"):
        hh.trace("x", session="not a session")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates a function"):
        hh.trace()(42)  # type: ignore[type-var]


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
hostile = (json_values | st.builds(Hostile) | st.builds(object) | st.binary()
           | st.integers(min_value=2**64) | st.sets(st.integers(), max_size=3)
           | st.dictionaries(st.integers(), st.text(), max_size=3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(hostile, max_size=4), kwargs=st.dictionaries(
    st.text(min_size=1).filter(str.isidentifier), hostile, max_size=3), result=hostile)
def test_hostile_arguments_and_results_never_break_the_call(
    args: list[Any], kwargs: dict[str, Any], result: Any
) -> None:
    transport = MemoryTransport()
    hh = Exporter(api_key="k", transport=transport)

    async def main() -> Any:
        await hh.start()

        @hh.trace
        def f(*a: Any, **k: Any) -> Any:
            return result

        got = f(*args, **kwargs)
        await hh.aclose()
        return got

    assert asyncio.run(main()) is result
    s = hh.stats()
    assert s.accepted == s.delivered == 1 and s.sessions_started == 1
    assert_balanced(s)
    (event,) = transport.events()
    assert event["event_name"] == "f"
