"""The OpenAI and Anthropic wrappers, with the real client packages against a local stand-in
of their HTTP APIs, and the real collector: nothing inside the client libraries is mocked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest

from hh_exporter import Exporter, SyncExporter, current_span
from hh_exporter.collector import Collector
from hh_exporter.integrations import anthropic as hh_anthropic
from hh_exporter.integrations import openai as hh_openai

from .conftest import ThreadedCollector, assert_balanced, fast_exporter, http_json
from .llm_standin import LLMStandIn


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn() as s:
        yield s


@pytest.fixture
async def hh(collector: Collector) -> AsyncIterator[Exporter]:
    ex = fast_exporter(collector.url)
    await ex.start()
    yield ex
    await ex.aclose()


_open_clients: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _open_clients:
        await _open_clients.pop().close()


def aopenai(llm: LLMStandIn, hh: Any, **kw: Any) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(base_url=llm.url + "/v1", api_key="sk-test", max_retries=0)
    _open_clients.append(client)
    return hh_openai.instrument(client, hh, **kw)


def aanthropic(llm: LLMStandIn, hh: Any, **kw: Any) -> anthropic.AsyncAnthropic:
    client = anthropic.AsyncAnthropic(base_url=llm.url, api_key="sk-test", max_retries=0)
    _open_clients.append(client)
    return hh_anthropic.instrument(client, hh, **kw)


async def session_events(c: Collector, sid: str) -> list[dict[str, Any]]:
    status, body = await http_json(c.url, f"/sessions/{sid}/events")
    assert status == 200, body
    return list(body["events"])


async def all_events(c: Collector, hh: Exporter, sid: str) -> list[dict[str, Any]]:
    await hh.aclose()
    assert_balanced(hh.stats())
    return await session_events(c, sid)


def by_name(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["event_name"]: e for e in events}


# -- the "done when": a traced app with a tool and two model calls -------------------

async def test_traced_chain_with_tool_and_two_model_calls_is_one_tree(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    client = aopenai(llm, hh)

    @hh.trace(event_type="tool")
    async def search(query: str) -> list[str]:
        await asyncio.sleep(0.01)
        return [f"doc about {query}"]

    @hh.trace
    async def answer(question: str) -> str:
        docs = await search(question)
        first = await client.chat.completions.create(
            model="gpt-4o", temperature=0.1, max_tokens=64,
            messages=[{"role": "system", "content": f"use {docs[0]}"},
                      {"role": "user", "content": question}])
        stream = await client.chat.completions.create(
            model="gpt-4o", stream=True,
            messages=[{"role": "user", "content": "and then what"}])
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
        span = current_span()
        assert span is not None and span.session is not None
        answer.session_id = span.session.session_id  # type: ignore[attr-defined]
        return str(first.choices[0].message.content) + " | " + "".join(pieces)

    result = await answer("why is the sky blue")
    assert result == "reply to: why is the sky blue | reply to: and then what"
    sid = answer.session_id  # type: ignore[attr-defined]
    events = await all_events(collector, hh, sid)

    _, stats = await http_json(collector.url, "/stats")
    assert stats["sessions_started"] == 1 and stats["orphan_events"] == 0
    assert stats["duplicate_event_ids"] == 0
    assert len(events) == 4
    chain = by_name(events)["answer"]
    tool = by_name(events)["search"]
    models = [e for e in events if e["event_name"] == "openai.chat.completions"]
    assert len(models) == 2
    plain, streamed = sorted(models, key=lambda e: e["start_time"])

    # The tree: the chain is the session's root; the tool and both calls hang under it.
    assert chain["event_type"] == "chain" and tool["event_type"] == "tool"
    assert chain["parent_id"] == sid
    for child in (tool, plain, streamed):
        assert child["parent_id"] == chain["event_id"]
        assert child["session_id"] == sid
    assert sorted(chain["children_ids"]) == sorted(
        e["event_id"] for e in (tool, plain, streamed))
    assert len({e["event_id"] for e in events}) == 4

    # Inputs, outputs, durations.
    assert chain["inputs"] == {"question": "why is the sky blue"}
    assert chain["outputs"] == {"result": result}
    assert tool["inputs"] == {"query": "why is the sky blue"}
    assert tool["outputs"] == {"result": ["doc about why is the sky blue"]}
    assert tool["duration"] >= 10
    for child in (tool, plain, streamed):
        assert 0 < child["duration"] <= chain["duration"]
        assert chain["start_time"] <= child["start_time"] <= child["end_time"] \
            <= chain["end_time"] + 1

    # The model events, as the stand-in answered them (word counts are its token counts).
    assert plain["model"] == "gpt-4o" and plain["provider"] == "openai"
    assert plain["messages"][1] == {"role": "user", "content": "why is the sky blue"}
    assert plain["response"] == {"role": "assistant", "content": "reply to: why is the sky blue"}
    assert plain["hyperparameters"] == {"temperature": 0.1, "max_tokens": 64}
    assert plain["usage"]["prompt_tokens"] == 8 + 5  # "use doc about ..." + the question
    assert plain["usage"]["completion_tokens"] == 7
    assert plain["usage"]["total_tokens"] == 13 + 7
    assert plain["metadata"]["finish_reason"] == "stop"
    assert streamed["response"] == {"role": "assistant", "content": "reply to: and then what"}
    assert streamed["usage"] == {"prompt_tokens": 3, "completion_tokens": 5,
                                 "total_tokens": 8, "cache_read_input_tokens": 0,
                                 "reasoning_tokens": 0}
    assert "stream_closed_early" not in streamed["metadata"]


async def test_gathered_tasks_keep_their_parent(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    """asyncio.gather runs each call in its own task with a copy of the context: each
    model call still lands under the span that made it."""
    client = aopenai(llm, hh)

    @hh.trace(event_type="tool")
    async def ask(q: str) -> str:
        r = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": q}])
        return str(r.choices[0].message.content)

    async with hh.trace("fan-out") as root:
        await asyncio.gather(*(ask(f"q{i}") for i in range(5)))
    assert root.session is not None
    events = await all_events(collector, hh, root.session.session_id)
    tools = {e["event_id"]: e for e in events if e.get("event_type") == "tool"}
    models = [e for e in events if e["event_name"] == "openai.chat.completions"]
    assert len(tools) == 5 and len(models) == 5
    for m in models:
        parent = tools[m["parent_id"]]
        assert parent["children_ids"] == [m["event_id"]]
        assert parent["inputs"]["q"] == m["messages"][0]["content"]
    root_event = by_name(events)["fan-out"]
    assert sorted(root_event["children_ids"]) == sorted(tools)


# -- OpenAI ----------------------------------------------------------------------------------

async def test_openai_error_is_logged_then_reraised_unchanged(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    client = aopenai(llm, hh)
    bare = openai.AsyncOpenAI(base_url=llm.url + "/v1", api_key="sk-test", max_retries=0)
    session = hh.session(session_name="errors")
    with pytest.raises(openai.BadRequestError) as bare_err:
        await bare.chat.completions.create(model="fail", messages=[])
    async with hh.trace("errs", session=session):
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(
                model="fail", messages=[{"role": "user", "content": "hi"}])
    assert str(err.value) == str(bare_err.value)
    assert err.value.status_code == 400
    events = await all_events(collector, hh, session.session_id)
    model = by_name(events)["openai.chat.completions"]
    assert model["error"].startswith("BadRequestError: ")
    assert "does not exist" in model["error"]
    assert model["metadata"]["status_code"] == 400
    assert model["response"] == {}
    await bare.close()


async def test_openai_responses_plain_and_streamed(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    session = hh.session(session_name="responses")
    client = aopenai(llm, hh, session=session)
    r = await client.responses.create(model="gpt-5", instructions="be brief",
                                      input="hello there", temperature=0.5)
    assert r.output_text == "reply to: hello there"
    kinds = [ev.type async for ev in await client.responses.create(
        model="gpt-5", input=[{"role": "user", "content": "stream me"}], stream=True)]
    assert kinds[-1] == "response.completed"
    events = await all_events(collector, hh, session.session_id)
    assert [e["event_name"] for e in events] == ["openai.responses"] * 2
    plain, streamed = sorted(events, key=lambda e: e["start_time"])
    assert plain["messages"] == [{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": "hello there"}]
    assert plain["response"] == {"role": "assistant", "content": "reply to: hello there"}
    assert plain["hyperparameters"] == {"temperature": 0.5}
    assert plain["usage"]["prompt_tokens"] == 2 and plain["usage"]["completion_tokens"] == 4
    assert streamed["response"]["content"] == "reply to: stream me"
    assert streamed["usage"]["total_tokens"] == 2 + 4
    assert streamed["metadata"]["status"] == "completed"
    for e in events:  # calls outside any span belong to the session given, at its root
        assert e["session_id"] == session.session_id and "parent_id" not in e


async def test_openai_stream_usage_chunk_is_hidden_unless_asked_for(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    session = hh.session()
    client = aopenai(llm, hh, session=session)
    msgs = [{"role": "user", "content": "count"}]
    plain = [c async for c in await client.chat.completions.create(
        model="m", messages=msgs, stream=True)]
    asked = [c async for c in await client.chat.completions.create(
        model="m", messages=msgs, stream=True, stream_options={"include_usage": True})]
    # The caller who did not ask sees the stream the API would give them; the wrapper
    # still asked for usage, and logged it.
    assert all(c.choices for c in plain) and all(c.usage is None for c in plain)
    assert asked[-1].choices == [] and asked[-1].usage is not None
    assert len(asked) == len(plain) + 1
    sent = [body for path, body in llm.requests[-2:]]
    assert sent[0]["stream_options"] == {"include_usage": True}
    events = await all_events(collector, hh, session.session_id)
    assert [e["usage"]["total_tokens"] for e in events] == [1 + 3, 1 + 3]


async def test_openai_stream_closed_early_logs_what_it_carried(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    session = hh.session()
    client = aopenai(llm, hh, session=session)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a long answer please"}], stream=True)
    got = []
    async for chunk in stream:
        got.append(chunk.choices[0].delta.content)
        if len(got) == 3:
            break
    await stream.close()
    await stream.close()  # twice: still one event
    events = await all_events(collector, hh, session.session_id)
    assert len(events) == 1
    (e,) = events
    assert e["metadata"]["stream_closed_early"] is True
    assert e["response"]["content"] == "".join(got)
    assert "error" not in e


def test_sync_openai_client_with_sync_exporter(
    threaded_collector: ThreadedCollector, llm: LLMStandIn
) -> None:
    assert threaded_collector.collector is not None
    url = threaded_collector.collector.url
    with SyncExporter(api_key="test-token-3f9a", project="p", api_url=url, linger=0.02) as hh:
        client = hh_openai.instrument(
            openai.OpenAI(base_url=llm.url + "/v1", api_key="sk", max_retries=0), hh)

        @hh.trace
        def pipeline(topic: str) -> str:
            r = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": topic}],
                tools=[{"type": "function", "function": {"name": "search", "parameters": {}}}],
                tool_choice="auto")
            calls = r.choices[0].message.tool_calls or []
            with client.chat.completions.create(
                    model="gpt-4o", stream=True,
                    messages=[{"role": "user", "content": topic}]) as s:
                text = "".join(c.choices[0].delta.content or "" for c in s)
            out = client.responses.create(model="gpt-5", input=topic)
            span = current_span()
            assert span is not None and span.session is not None
            pipeline.sid = span.session.session_id  # type: ignore[attr-defined]
            return f"{len(calls)} {text} {out.output_text}"

        assert pipeline("tides") == "1 reply to: tides reply to: tides"
        assert hh.flush(10)
        stats = hh.stats()
        client.close()
    assert stats.delivered == stats.accepted == 4
    sid = pipeline.sid  # type: ignore[attr-defined]
    events = threaded_collector.run(session_events(threaded_collector.collector, sid))
    root = by_name(events)["pipeline"]
    children = [e for e in events if e is not root]
    assert sorted(root["children_ids"]) == sorted(e["event_id"] for e in children)
    tool_call = next(e for e in children if e["response"].get("tool_calls"))
    assert tool_call["response"]["tool_calls"][0]["function"]["name"] == "search"
    assert tool_call["tools"][0]["function"]["name"] == "search"
    assert tool_call["tool_choice"] == "auto"
    assert tool_call["metadata"]["finish_reason"] == "tool_calls"


async def test_openai_wrapper_failure_never_breaks_the_call(
    collector: Collector, llm: LLMStandIn
) -> None:
    """A message the exporter cannot encode (an integer JSON carries but msgspec refuses),
    and a closed exporter: the call returns the client's own answer, and the exporter's
    stats stay balanced."""
    hh = fast_exporter(collector.url)
    await hh.start()
    client = aopenai(llm, hh)
    r = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x", "n": 2**70}])
    assert r.choices[0].message.content == "reply to: x"
    r = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == "reply to: x"
    await hh.aclose()
    r = await client.chat.completions.create(model="m", messages=[{"role": "user",
                                                                   "content": "y"}])
    assert r.choices[0].message.content == "reply to: y"
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "z"}], stream=True)
    assert [c async for c in stream][-1].choices[0].finish_reason == "stop"
    s = hh.stats()
    assert s.accepted == s.delivered == 2
    assert_balanced(s)


async def test_openai_stream_chunk_of_unknown_shape_passes_through(
    collector: Collector, hh: Exporter, llm: LLMStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunk the accumulator cannot read (the stand-in's "odd" model sends one without a
    delta) reaches the caller as the client parsed it, and the rest is still logged."""
    session = hh.session()
    client = aopenai(llm, hh, session=session)
    bare = openai.AsyncOpenAI(base_url=llm.url + "/v1", api_key="sk-test", max_retries=0)
    _open_clients.append(bare)
    msgs = [{"role": "user", "content": "odd one"}]
    got = [c.model_dump() async for c in await client.chat.completions.create(
        model="odd", messages=msgs, stream=True)]
    want = [c.model_dump() async for c in await bare.chat.completions.create(
        model="odd", messages=msgs, stream=True)]
    assert got == want
    assert "reading a streamed chunk failed" in caplog.text
    events = await all_events(collector, hh, session.session_id)
    assert events[0]["response"]["content"] == "reply to: odd one"


async def test_openai_messages_generator_is_sent_and_logged(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    session = hh.session()
    client = aopenai(llm, hh, session=session)
    gen = ({"role": "user", "content": w} for w in ["one", "two"])
    r = await client.chat.completions.create(model="m", messages=gen)
    assert r.choices[0].message.content == "reply to: two"
    events = await all_events(collector, hh, session.session_id)
    assert [m["content"] for m in events[0]["messages"]] == ["one", "two"]


def test_instrument_twice_and_uninstrument(llm: LLMStandIn) -> None:
    client = openai.OpenAI(base_url=llm.url + "/v1", api_key="sk")
    hh = SyncExporter(api_key="k", api_url="http://127.0.0.1:9")
    try:
        hh_openai.instrument(client, hh)
        first = client.chat.completions.create
        hh_openai.instrument(client, hh)
        assert client.chat.completions.create is first
        hh_openai.uninstrument(client)
        assert getattr(client.chat.completions.create, "__hh_wrapped__", None) is None
        with pytest.raises(TypeError, match=r"openai\.OpenAI"):
            hh_openai.instrument(object(), hh)  # type: ignore[arg-type]
    finally:
        hh.close(0)
        client.close()


# -- Anthropic -------------------------------------------------------------------------------

async def test_anthropic_create_stream_and_helper(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    client = aanthropic(llm, hh)
    async with hh.trace("claude") as root:
        m = await client.messages.create(
            model="claude-x", max_tokens=50, stop_sequences=["END"], system="be kind",
            messages=[{"role": "user", "content": "hi claude"}])
        raw = await client.messages.create(
            model="claude-x", max_tokens=50, stream=True,
            messages=[{"role": "user", "content": "stream it"}])
        kinds = [ev.type async for ev in raw]
        async with client.messages.stream(
                model="claude-x", max_tokens=50,
                messages=[{"role": "user", "content": "helper please"}]) as s:
            final = await s.get_final_message()
    assert m.content[0].text == "reply to: hi claude"  # type: ignore[union-attr]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].text == "reply to: helper please"  # type: ignore[union-attr]
    assert root.session is not None
    events = await all_events(collector, hh, root.session.session_id)
    models = sorted((e for e in events if e["event_name"] == "anthropic.messages"),
                    key=lambda e: e["start_time"])
    assert len(models) == 3
    assert sorted(by_name(events)["claude"]["children_ids"]) == sorted(
        e["event_id"] for e in models)
    created, streamed, helper = models
    assert created["provider"] == "anthropic" and created["model"] == "claude-x"
    assert created["messages"] == [{"role": "system", "content": "be kind"},
                                   {"role": "user", "content": "hi claude"}]
    assert created["hyperparameters"] == {"max_tokens": 50, "stop_sequences": ["END"]}
    assert created["response"] == {"role": "assistant", "content": "reply to: hi claude"}
    assert created["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6,
                                "cache_read_input_tokens": 0, "cache_write_input_tokens": 0}
    assert created["metadata"]["stop_reason"] == "end_turn"
    assert streamed["response"]["content"] == "reply to: stream it"
    assert streamed["usage"]["prompt_tokens"] == 2
    assert streamed["usage"]["completion_tokens"] == 4
    assert streamed["metadata"]["stop_reason"] == "end_turn"
    assert helper["response"]["content"] == "reply to: helper please"
    assert helper["usage"]["completion_tokens"] == 4
    for e in models:
        assert "stream_closed_early" not in e["metadata"]


async def test_anthropic_error_and_early_exit(
    collector: Collector, hh: Exporter, llm: LLMStandIn
) -> None:
    session = hh.session()
    client = aanthropic(llm, hh, session=session)
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model="fail", max_tokens=5, messages=[])
    with pytest.raises(anthropic.BadRequestError):
        async with client.messages.stream(model="fail", max_tokens=5, messages=[]) as s:
            pass
    async with client.messages.stream(
            model="claude-x", max_tokens=5,
            messages=[{"role": "user", "content": "cut me short"}]) as s:
        async for ev in s:
            if ev.type == "content_block_delta":
                break
    events = await all_events(collector, hh, session.session_id)
    errors = [e for e in events if "error" in e]
    assert len(errors) == 2
    assert all(e["error"].startswith("BadRequestError") for e in errors)
    (cut,) = (e for e in events if "error" not in e)
    assert cut["metadata"]["stream_closed_early"] is True
    assert cut["response"]["content"] == "reply"


def test_sync_anthropic(threaded_collector: ThreadedCollector, llm: LLMStandIn) -> None:
    assert threaded_collector.collector is not None
    url = threaded_collector.collector.url
    with SyncExporter(api_key="test-token-3f9a", api_url=url, linger=0.02) as hh:
        session = hh.session()
        client = hh_anthropic.instrument(
            anthropic.Anthropic(base_url=llm.url, api_key="sk", max_retries=0), hh,
            session=session)
        client.messages.create(model="c", max_tokens=5,
                               messages=[{"role": "user", "content": "sync one"}])
        with client.messages.stream(model="c", max_tokens=5,
                                    messages=[{"role": "user", "content": "sync two"}]) as s:
            assert s.get_final_text() == "reply to: sync two"
        assert hh.flush(10)
        client.close()
    events = threaded_collector.run(session_events(threaded_collector.collector,
                                                   session.session_id))
    assert sorted(e["response"]["content"] for e in events) == [
        "reply to: sync one", "reply to: sync two"]


def test_stand_in_speaks_for_the_bare_clients(llm: LLMStandIn) -> None:
    """The stand-in itself, through the uninstrumented clients (what the tests above
    compare against)."""
    o = openai.OpenAI(base_url=llm.url + "/v1", api_key="sk", max_retries=0)
    a = anthropic.Anthropic(base_url=llm.url, api_key="sk", max_retries=0)
    try:
        r = o.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
        assert r.usage is not None and r.usage.total_tokens == 1 + 3
        m = a.messages.create(model="c", max_tokens=5,
                              messages=[{"role": "user", "content": "q"}])
        assert m.usage.output_tokens == 3
        assert json.loads(json.dumps(llm.requests[-1][1]))["max_tokens"] == 5
    finally:
        o.close()
        a.close()


async def test_what_the_wrappers_and_trace_send_is_valid_per_the_spec(llm: LLMStandIn) -> None:
    """Held against the data-plane spec, not our collector: every body the exporter sends
    for traced steps and wrapped calls (tools, hyperparameters, streams, errors, Anthropic)
    validates against the spec's request schema for its route."""
    from hh_exporter.testing import MemoryTransport

    from .spec import check_request

    transport = MemoryTransport()
    async with Exporter(api_key="k", project="p", transport=transport) as hh:
        oa, an = aopenai(llm, hh), aanthropic(llm, hh)

        @hh.trace(event_type="tool")
        async def lookup(q: str) -> dict[str, Any]:
            return {"q": q, "hits": [1, 2]}

        async with hh.trace("pipeline", metadata={"v": 1}) as span:
            await lookup("x")
            await oa.chat.completions.create(
                model="gpt-4o", temperature=0.2, max_tokens=10,
                messages=[{"role": "user", "content": "q"}],
                tools=[{"type": "function", "function": {"name": "s", "parameters": {}}}],
                tool_choice="auto", response_format={"type": "text"})
            async for _ in await oa.chat.completions.create(
                    model="gpt-4o", stream=True, messages=[{"role": "user", "content": "s"}]):
                pass
            await oa.responses.create(model="gpt-5", input="r", instructions="i")
            with pytest.raises(openai.BadRequestError):
                await oa.chat.completions.create(model="fail", messages=[])
            await an.messages.create(model="c", max_tokens=5, system="sys",
                                     messages=[{"role": "user", "content": "a"}])
            span.set_outputs(done=True)
    assert hh.stats().delivered == 7
    assert transport.requests
    for path, body in transport.requests:
        check_request(path, json.loads(body))
