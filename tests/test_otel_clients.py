"""Instrumentations nobody here wrote, through OTel's own exporters, into the collector's
OTLP route: LangChain through OpenInference (beside the rest), and OpenLLMetry's
``traceloop-sdk`` with its OpenAI and Anthropic instrumentations (in a venv of its own: it
cannot sit beside the pinned OTel 1.45.2, see ``tests/venvs.py``). Each app calls the local
LLM stand-in (tools, streaming); the collector must hold every GenAI span as one event of
HoneyHive's type, the app's tree whole, tool results in the chat history and the token
counts the LLM answered."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import TOKEN, ThreadedCollector, http_json
from .llm_standin import LLMStandIn
from .venvs import cached_venv

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn() as s:
        yield s


def session_events(tc: ThreadedCollector, sid: str) -> list[dict[str, Any]]:
    assert tc.collector is not None
    _, body = tc.run(http_json(tc.collector.url, f"/sessions/{sid}/events"))
    return list(body["events"])


def check_whole(events: list[dict[str, Any]], sid: str) -> dict[str, dict[str, Any]]:
    """Every parent exists (an event, or the session); one root under the session."""
    ids = {e["event_id"] for e in events}
    assert len(ids) == len(events), "an event stored twice"
    for e in events:
        assert e["parent_id"] in ids | {sid}, (e["event_name"], "names a missing parent")
    roots = [e for e in events if e["parent_id"] == sid]
    assert len(roots) == 1, [(e["event_type"], e["event_name"]) for e in roots]
    return {e["event_id"]: e for e in events}


def tokens(e: dict[str, Any]) -> tuple[int, int, int]:
    m = e["metadata"]
    return m["prompt_tokens"], m["completion_tokens"], m["total_tokens"]


def test_langchain_through_openinference(threaded_collector: ThreadedCollector,
                                         llm: LLMStandIn) -> None:
    """A LangChain tool-calling app (bind_tools, the tool's ToolMessage, a streamed call)
    instrumented by OpenInference, exported by OTel's OTLP/protobuf exporter."""
    from langchain_core.messages import BaseMessage, HumanMessage
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    c = threaded_collector.collector
    assert c is not None
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=c.url + "/v1/traces", headers={"Authorization": "Bearer " + TOKEN})))
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)

    @tool
    def weather(q: str) -> str:
        """The weather in a city."""
        return "18C, sunny"

    model = ChatOpenAI(model="gpt-4o", base_url=llm.url + "/v1", api_key="sk",  # type: ignore[arg-type]
                       max_retries=0, stream_usage=True)
    usage: list[Any] = []

    def agent(question: str) -> str:
        msgs: list[BaseMessage] = [HumanMessage(question)]
        ai = model.bind_tools([weather]).invoke(msgs)
        msgs.append(ai)
        msgs += [weather.invoke(call) for call in ai.tool_calls]  # ToolMessages
        final = model.bind_tools([weather]).invoke(msgs)
        streamed: Any = None
        for chunk in model.stream([HumanMessage("and then what")]):
            streamed = chunk if streamed is None else streamed + chunk
        usage.extend(m.usage_metadata for m in (ai, final, streamed))
        return f"{final.content} | {streamed.content}"

    try:
        # Inside a web framework's span (no LLM dialect): kept, as the ancestor of LLM work.
        with provider.get_tracer("web").start_as_current_span(
                "GET /ask", attributes={"http.request.method": "GET"}) as outer:
            out = RunnableLambda(agent).invoke("weather in Paris?")
        assert out == "reply to: weather in Paris? | reply to: and then what"
        provider.force_flush()
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    _, st = threaded_collector.run(http_json(c.url, "/stats"))
    assert st["otlp"]["spans_refused"] == 0 and st["otlp"]["events_stored"] == 6
    sid = str(uuid.UUID(int=outer.get_span_context().trace_id))
    events = list(check_whole(session_events(threaded_collector, sid), sid).values())
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["event_type"], []).append(e)
    web, chain = sorted(by_type["chain"], key=lambda e: e["event_name"])
    (tool_ev,) = by_type["tool"]
    models = sorted(by_type["model"], key=lambda e: e["start_time"])
    assert len(models) == 3 and len(events) == 6
    assert web["event_name"] == "GET /ask" and web["parent_id"] == sid
    assert chain["event_name"] == "agent" and chain["parent_id"] == web["event_id"]
    assert all(e["parent_id"] == chain["event_id"] for e in (tool_ev, *models))
    calls, answered, streamed = models
    assert calls["outputs"]["tool_calls"][0]["id"] == "call_1"
    assert answered["inputs"]["chat_history"][-1] == {
        "role": "tool", "content": "18C, sunny", "tool_call_id": "call_1"}
    assert streamed["outputs"]["content"] == "reply to: and then what"
    for ev, u in zip(models, usage, strict=True):
        assert tokens(ev) == (u["input_tokens"], u["output_tokens"], u["total_tokens"])


@pytest.mark.timeout(600)  # the first run builds the traceloop venv (about a minute)
@pytest.mark.parametrize("mode", ["simple", "batch"])
def test_openllmetry_openai_and_anthropic(threaded_collector: ThreadedCollector,
                                          llm: LLMStandIn, mode: str) -> None:
    """traceloop-sdk 0.62 (its own venv), OpenAI with a tool and its result, OpenAI
    streamed, Anthropic plain and streamed, inside a web span; each processor. With the
    simple one every span comes alone, children first: the tree must still be whole."""
    from .apps.pins import TRACELOOP

    python = cached_venv("otel-1.45.1", TRACELOOP)
    c = threaded_collector.collector
    assert c is not None
    sid = str(uuid.uuid4())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
    run = subprocess.run([str(python), str(HERE / "apps" / "traceloop_app.py"), c.url, TOKEN,
                          llm.url, mode, sid], capture_output=True, text=True, timeout=120,
                         env=env, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["answer"] == "reply to: weather in Paris? | reply to: and then what | " \
        "reply to: stream it"
    _, st = threaded_collector.run(http_json(c.url, "/stats"))
    assert st["otlp"]["spans_refused"] == 0, st["otlp"]
    events = list(check_whole(session_events(threaded_collector, sid), sid).values())
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["event_type"], []).append(e)
    web, wf = sorted(by_type["chain"], key=lambda e: e["event_name"])
    (tool_ev,) = by_type["tool"]
    models = sorted(by_type["model"], key=lambda e: e["start_time"])
    # OpenLLMetry's spans (openai.chat, anthropic.chat), and the anthropic SDK's own
    # (anthropic.messages.create, from its built-in tracing): each GenAI span one event.
    names = [m["event_name"] for m in models]
    assert sorted(names) == ["anthropic.chat"] * 2 + ["anthropic.messages.create"] * 2 + [
        "openai.chat"] * 3 and len(events) == 10, names
    assert web["event_name"] == "GET /ask" and web["parent_id"] == sid
    assert wf["event_name"] == "ask.workflow" and wf["parent_id"] == web["event_id"]
    assert tool_ev["event_name"] == "weather.tool" and tool_ev["parent_id"] == wf["event_id"]
    assert tool_ev["outputs"] == {"message": "18C, sunny"}
    assert all(m["parent_id"] == wf["event_id"] for m in models)
    calls, answered, streamed = (m for m in models if m["event_name"] == "openai.chat")
    claude, claude_streamed = (m for m in models if m["event_name"] == "anthropic.chat")
    sdk_claude, sdk_streamed = (m for m in models
                                if m["event_name"] == "anthropic.messages.create")
    assert {m["config"]["provider"] for m in models} == {"openai", "anthropic"}
    assert calls["outputs"]["tool_calls"][0]["id"] == "call_1"
    assert {"role": "tool", "content": "18C, sunny", "tool_call_id": "call_1"} in \
        answered["inputs"]["chat_history"]
    assert streamed["outputs"]["content"] == "reply to: and then what"
    assert claude["outputs"]["content"] == "reply to: hello claude"
    assert claude_streamed["outputs"]["content"] == "reply to: stream it"
    u_calls, u_answered, u_streamed, u_claude, u_claude_streamed = out["usage"]
    for ev, u in ((calls, u_calls), (answered, u_answered), (streamed, u_streamed),
                  (claude, u_claude), (sdk_claude, u_claude), (sdk_streamed, u_claude_streamed)):
        assert list(tokens(ev)) == u, ev["event_name"]
    # OpenLLMetry 0.62.4 adds message_start's output count to message_delta's, which the
    # API documents as cumulative: its span says one token more than the LLM answered.
    # The event holds what the span says (the SDK's own span above has the right count).
    p, o, _ = u_claude_streamed
    assert tokens(claude_streamed) == (p, o + out["started"][0], p + o + out["started"][0])
    if mode == "simple":  # children came before their parents, and were linked
        assert st["otlp"]["parents_linked_later"] >= 2


@pytest.mark.timeout(600)  # the first run builds the otel-1.45.1 venv
@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_the_otel_sdks_json_exporter(threaded_collector: ThreadedCollector,
                                     compression: str) -> None:
    """OTel's OTLP/JSON exporter (its own venv, beside OpenLLMetry), each compression it
    offers, a simple processor (children first): the tree whole, the embeddings span a
    model event with its total, the tool result in the chat history."""
    from .apps.pins import TRACELOOP

    python = cached_venv("otel-1.45.1", TRACELOOP)
    c = threaded_collector.collector
    assert c is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    run = subprocess.run([str(python), str(HERE / "apps" / "otlp_json_app.py"), c.url, TOKEN,
                          compression], capture_output=True, text=True, timeout=60, env=env,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    sid = str(uuid.UUID(json.loads(run.stdout.strip().splitlines()[-1])["trace_id"]))
    _, st = threaded_collector.run(http_json(c.url, "/stats"))
    assert st["requests"]["/v1/traces"] == {"200": 4}, st["requests"]
    got = {e["event_name"]: e for e in check_whole(
        session_events(threaded_collector, sid), sid).values()}
    assert {n: e["event_type"] for n, e in got.items()} == {
        "GET /ask": "chain", "ask": "chain", "embeddings": "model", "chat gpt-4o": "model"}
    assert got["ask"]["parent_id"] == got["GET /ask"]["event_id"]
    assert got["chat gpt-4o"]["parent_id"] == got["embeddings"]["parent_id"] == \
        got["ask"]["event_id"]
    assert tokens(got["chat gpt-4o"]) == (21, 6, 27)
    assert got["embeddings"]["metadata"]["total_tokens"] == 4
    assert got["chat gpt-4o"]["inputs"]["chat_history"][-1] == {
        "role": "tool", "content": "18C, sunny", "tool_call_id": "call_1"}
    assert st["otlp"]["parents_linked_later"] == 3  # each parent came after its children
