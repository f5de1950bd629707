"""The OTLP route across requests, its encodings, and the span mapping as HoneyHive maps.

A trace comes in pieces (a simple processor sends each span as it ends; children end
first): each test sends the pieces as an exporter would, to the real collector, and checks
after every request that no event names a parent that does not exist.
"""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from typing import Any

import pytest

from hh_exporter.collector._otlp_tree import SpanTree
from hh_exporter.wire._otel_map import event_id_of, map_span
from hh_exporter.wire._otlp import SpanData

from .conftest import TOKEN, ThreadedCollector, http_json
from .test_otel import jspan, otlp_json

TRACE = "5b8efff798038103d269b633813fc60c"
SID = "5b8efff7-9803-8103-d269-b633813fc60c"  # one session per trace
ROOT, WF, CHAT, HTTP, TOOL = ("a000000000000001", "a000000000000002", "a000000000000003",
                              "a000000000000004", "a000000000000005")
WEB = {"http.request.method": "GET", "url.path": "/ask"}  # a web framework's span
CHAT_ATTRS = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
              "gen_ai.usage.input_tokens": 9, "gen_ai.usage.output_tokens": 4}


async def send(url: str, *spans: dict[str, Any]) -> None:
    status, body = await http_json(url, "/v1/traces", "POST",
                                   raw=json.dumps(otlp_json(list(spans))).encode())
    assert status == 200 and body == {}, body


async def events(url: str) -> dict[str, dict[str, Any]]:
    """The session's events by name, after checking that every parent exists."""
    _, body = await http_json(url, f"/sessions/{SID}/events")
    evs = body["events"]
    ids = {e["event_id"] for e in evs}
    for e in evs:
        assert e["parent_id"] in ids | {SID}, (e["event_name"], "names a missing parent")
    return {e["event_name"]: e for e in evs}


async def otlp_stats(url: str) -> dict[str, Any]:
    return dict((await http_json(url, "/stats"))[1]["otlp"])


async def test_ancestors_that_come_later_are_linked_when_they_come(collector: Any) -> None:
    """Simple-processor order: the LLM call, then its workflow, then the web root, each in
    its own request. Each child waits under the session, then names its parent when that
    is stored; the web root, an ancestor of LLM work, is kept as a chain."""
    url = collector.url
    await send(url, jspan(CHAT, WF, "chat", CHAT_ATTRS))
    got = await events(url)
    assert got["chat"]["parent_id"] == SID  # its parent has not come: the session meanwhile
    await send(url, jspan(WF, ROOT, "workflow", {"traceloop.span.kind": "workflow"}))
    got = await events(url)
    assert got["chat"]["parent_id"] == got["workflow"]["event_id"]
    assert got["workflow"]["parent_id"] == SID
    await send(url, jspan(ROOT, None, "GET /ask", WEB))
    got = await events(url)
    assert got["GET /ask"]["event_type"] == "chain" and got["GET /ask"]["parent_id"] == SID
    assert got["workflow"]["parent_id"] == got["GET /ask"]["event_id"]
    assert got["chat"]["parent_id"] == got["workflow"]["event_id"]
    assert got["GET /ask"]["event_id"] == event_id_of(TRACE, ROOT)
    st = await otlp_stats(url)
    assert st["spans_reparented"] == 2 and st["parents_linked_later"] == 2
    assert st["events_stored"] == 3 and st["spans_not_genai"] == 0


async def test_a_parent_left_out_earlier_is_skipped_to_the_nearest_stored(
        collector: Any) -> None:
    """An HTTP span that ended before its LLM child came is left out (nothing in its
    request descended from it); the child later names the nearest stored ancestor, and a
    child of a left-out root names the session."""
    url = collector.url
    await send(url, jspan(WF, None, "workflow", {"traceloop.span.kind": "workflow"}),
               jspan(HTTP, WF, "POST /search", WEB))
    assert (await otlp_stats(url))["spans_not_genai"] == 1
    await send(url, jspan(CHAT, HTTP, "chat", CHAT_ATTRS))
    got = await events(url)
    assert set(got) == {"workflow", "chat"}
    assert got["chat"]["parent_id"] == got["workflow"]["event_id"]
    assert got["chat"]["metadata"]["parent_span_id"] == HTTP  # the span's own parent, kept
    await send(url, jspan(ROOT, None, "GET /health", WEB))  # a root alone: left out
    await send(url, jspan(TOOL, ROOT, "search", {"gen_ai.operation.name": "execute_tool"}))
    got = await events(url)
    assert got["search"]["parent_id"] == SID and "GET /health" not in got
    st = await otlp_stats(url)
    assert st["spans_reparented"] == 2 and st["parents_linked_later"] == 0
    assert st["spans_not_genai"] == 2


async def test_one_request_in_any_order_keeps_its_tree(collector: Any) -> None:
    """Within one request the order of spans does not matter: the child first, its
    non-GenAI ancestor (kept as a chain) last."""
    url = collector.url
    await send(url, jspan(CHAT, WF, "chat", CHAT_ATTRS),
               jspan(WF, ROOT, "workflow", {"traceloop.span.kind": "workflow"}),
               jspan(ROOT, None, "GET /ask", WEB))
    got = await events(url)
    assert got["GET /ask"]["event_type"] == "chain"
    assert got["workflow"]["parent_id"] == got["GET /ask"]["event_id"]
    assert got["chat"]["parent_id"] == got["workflow"]["event_id"]
    st = await otlp_stats(url)
    assert st["spans_reparented"] == 0 and st["parents_linked_later"] == 0


def span(trace: str, sid: str, parent: str | None, attrs: dict[str, Any]) -> SpanData:
    return SpanData(trace_id=trace, span_id=sid, parent_span_id=parent, name=sid,
                    start_ns=0, end_ns=1, attributes=attrs)


def test_the_memory_is_bounded_and_forgets_to_the_safe_side() -> None:
    """Traces beyond the bound are forgotten, least recently used first; a child whose
    trace was forgotten stays under its session (an event that exists) when its parent
    comes: the parent is then not kept and nothing is re-pointed."""
    tree = SpanTree(max_traces=2, max_spans=100)
    t1, t2, t3 = "1" * 32, "2" * 32, "3" * 32
    plan = tree.plan([span(t1, CHAT, WF, CHAT_ATTRS)])
    assert plan.store[0].reparented and plan.store[0].parent_id != event_id_of(t1, WF)
    tree.plan([span(t2, CHAT, None, CHAT_ATTRS)])
    tree.plan([span(t3, CHAT, None, CHAT_ATTRS)])  # t1, least recently used, goes
    assert len(tree) == 2
    late = tree.plan([span(t1, WF, None, WEB)])
    assert late.updates == [] and late.store == [] and late.not_genai == 1
    # The span bound: one trace holding more than max_spans ids is forgotten whole.
    small = SpanTree(max_traces=10, max_spans=3)
    small.plan([span(t1, f"{i:016x}", None, WEB) for i in range(5)])
    assert len(small) == 0


@pytest.mark.parametrize("encoding,pack", [
    ("deflate", zlib.compress),  # RFC 9110's deflate: zlib
    ("deflate", lambda b: zlib.compress(b, wbits=-15)),  # raw deflate, as some clients send
    ("gzip", gzip.compress),
    ("identity", lambda b: b),
    ("", lambda b: b),
])
async def test_encodings_the_otel_collector_takes(collector: Any, encoding: str,
                                                  pack: Any) -> None:
    raw = json.dumps(otlp_json([jspan(CHAT, None, "chat", CHAT_ATTRS)])).encode()
    headers = {"Content-Encoding": encoding} if encoding else {}
    status, body = await http_json(collector.url, "/v1/traces", "POST", raw=pack(raw),
                                   headers=headers)
    assert status == 200 and body == {}
    assert (await otlp_stats(collector.url))["events_stored"] == 1


@pytest.mark.parametrize("encoding", ["compress", "lz4", "snappy"])
async def test_an_unknown_encoding_answers_415(collector: Any, encoding: str) -> None:
    raw = json.dumps(otlp_json([jspan(CHAT, None, "chat", CHAT_ATTRS)])).encode()
    status, body = await http_json(collector.url, "/v1/traces", "POST", raw=raw,
                                   headers={"Content-Encoding": encoding})
    assert status == 415 and encoding in body["message"]
    assert (await otlp_stats(collector.url))["events_stored"] == 0


# -- the mapping, as HoneyHive's own ---------------------------------------------------------

def mapped(attrs: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return map_span(span(TRACE, CHAT, None, attrs), **kw)


def test_embeddings_are_model_events_and_retrieval_tool_events() -> None:
    """honeyhive 1.7.0's table (span_processor.py:29-41), "to agree with the mapping
    HoneyHive applies at ingestion"; the SDK lower-cases the name first."""
    emb = mapped({"gen_ai.operation.name": "embeddings",
                  "gen_ai.request.model": "text-embedding-3-small",
                  "gen_ai.usage.input_tokens": 8})
    assert emb["event_type"] == "model"
    assert emb["metadata"]["prompt_tokens"] == 8 and emb["metadata"]["total_tokens"] == 8
    assert "completion_tokens" not in emb["metadata"]
    assert mapped({"gen_ai.operation.name": "retrieval"})["event_type"] == "tool"
    assert mapped({"gen_ai.operation.name": "Embeddings"})["event_type"] == "model"
    assert mapped({"gen_ai.operation.name": "CHAT"})["event_type"] == "model"


def test_untyped_spans_tool_unless_kept_as_an_ancestor() -> None:
    assert mapped({"honeyhive_inputs.x": 1})["event_type"] == "tool"
    assert mapped(WEB, ancestor=True)["event_type"] == "chain"
    # A rule that types the span still wins over the ancestor default.
    assert mapped({"traceloop.span.kind": "tool"}, ancestor=True)["event_type"] == "tool"


def test_tool_results_stay_in_the_chat_history() -> None:
    """The GenAI semconv's tool_call_response part (what OpenLLMetry emits), the indexed
    legacy form and OpenInference's: the tool message keeps its content and tool_call_id."""
    msgs = [
        {"role": "user", "parts": [{"type": "text", "content": "weather in Paris?"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1",
                                         "name": "weather", "arguments": {"city": "Paris"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                    "response": "18C, sunny"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_2",
                                    "response": {"temp": 18}}]},
    ]
    ev = mapped({**CHAT_ATTRS, "gen_ai.input.messages": json.dumps(msgs)})
    hist = ev["inputs"]["chat_history"]
    assert hist[1]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "weather", "arguments": '{"city": "Paris"}'}}]
    assert hist[2] == {"role": "tool", "content": "18C, sunny", "tool_call_id": "call_1"}
    assert hist[3] == {"role": "tool", "content": '{"temp": 18}', "tool_call_id": "call_2"}
    legacy = mapped({**CHAT_ATTRS, "gen_ai.prompt.0.role": "tool",
                     "gen_ai.prompt.0.content": "18C", "gen_ai.prompt.0.tool_call_id": "c9"})
    assert legacy["inputs"]["chat_history"] == [
        {"role": "tool", "content": "18C", "tool_call_id": "c9"}]
    oi = mapped({"openinference.span.kind": "LLM",
                 "llm.input_messages.0.message.role": "tool",
                 "llm.input_messages.0.message.content": "18C",
                 "llm.input_messages.0.message.tool_call_id": "c8"})
    assert oi["inputs"]["chat_history"] == [
        {"role": "tool", "content": "18C", "tool_call_id": "c8"}]


@pytest.mark.parametrize("key", [
    "gen_ai.usage.cache_creation.input_tokens",  # OTel GenAI
    "gen_ai.usage.cache_write.input_tokens",  # the anthropic SDK's own tracing
    "gen_ai.usage.cache_write_input_tokens",  # HoneyHive's (HHSC) and old traceloop
    "gen_ai.usage.cache_creation_input_tokens",  # old traceloop, Anthropic's usage name
    "llm.token_count.prompt_details.cache_write",  # OpenInference
])
def test_every_cache_write_spelling(key: str) -> None:
    ev = mapped({**CHAT_ATTRS, key: 5})
    assert ev["metadata"]["cache_write_input_tokens"] == 5 and key not in ev["metadata"]
    assert ev["metadata"]["total_tokens"] == 13  # the cache is inside input: never added


def test_total_tokens_from_the_parts_given() -> None:
    only_out = mapped({"gen_ai.operation.name": "chat", "gen_ai.usage.output_tokens": 4})
    assert only_out["metadata"]["total_tokens"] == 4
    given = mapped({**CHAT_ATTRS, "gen_ai.usage.total_tokens": 20})
    assert given["metadata"]["total_tokens"] == 20  # as given, never recomputed


def test_the_otel_sdks_protobuf_exporter_with_gzip_and_deflate(
        threaded_collector: ThreadedCollector) -> None:
    """OTel's own OTLPSpanExporter (protobuf) with each compression it offers, behind a
    simple processor: each span in its own request, children first. The tree is whole."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    c = threaded_collector.collector
    assert c is not None
    for compression in (Compression.Gzip, Compression.Deflate):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
            endpoint=c.url + "/v1/traces", headers={"Authorization": "Bearer " + TOKEN},
            compression=compression)))
        tracer = provider.get_tracer("app")
        with tracer.start_as_current_span("GET /ask", attributes=WEB) as root, \
                tracer.start_as_current_span("workflow",
                                             attributes={"traceloop.span.kind": "workflow"}), \
                tracer.start_as_current_span("chat", attributes=CHAT_ATTRS):
            pass
        provider.shutdown()
        sid = str(uuid.UUID(int=root.get_span_context().trace_id))
        _, body = threaded_collector.run(http_json(c.url, f"/sessions/{sid}/events"))
        got = {e["event_name"]: e for e in body["events"]}
        assert set(got) == {"GET /ask", "workflow", "chat"}, compression
        assert got["GET /ask"]["event_type"] == "chain" and got["GET /ask"]["parent_id"] == sid
        assert got["workflow"]["parent_id"] == got["GET /ask"]["event_id"]
        assert got["chat"]["parent_id"] == got["workflow"]["event_id"]
        assert got["chat"]["metadata"]["total_tokens"] == 13
    _, st = threaded_collector.run(http_json(c.url, "/stats"))
    assert st["requests"]["/v1/traces"] == {"200": 6}
    assert st["otlp"]["parents_linked_later"] == 4


async def test_context_on_every_span_does_not_make_it_genai(collector: Any) -> None:
    """OpenLLMetry copies its association properties, and HoneyHive's processor the session,
    onto every span: an HTTP span carrying them alone is still left out (and kept, as a
    chain, only when it is an ancestor of LLM work)."""
    ctx = {"traceloop.association.properties.session_id": SID, "honeyhive.session_id": SID,
           "honeyhive.project": "p"}
    await send(collector.url, jspan(HTTP, None, "GET /health", {**WEB, **ctx}),
               jspan(ROOT, None, "GET /ask", {**WEB, **ctx}),
               jspan(CHAT, ROOT, "chat", {**CHAT_ATTRS, **ctx}))
    got = await events(collector.url)
    assert set(got) == {"GET /ask", "chat"} and got["GET /ask"]["event_type"] == "chain"
    assert (await otlp_stats(collector.url))["spans_not_genai"] == 1


def test_openllmetrys_json_encoded_strings_are_decoded() -> None:
    ev = mapped({"traceloop.span.kind": "tool", "traceloop.entity.input": '"Paris"',
                 "traceloop.entity.output": '"18C, sunny"'})
    assert ev["inputs"] == {"value": "Paris"} and ev["outputs"] == {"message": "18C, sunny"}
    assert mapped({"traceloop.span.kind": "tool", "traceloop.entity.output": '"cut'})[
        "outputs"] == {"message": '"cut'}  # not JSON: kept as sent


def test_the_span_exporter_keeps_an_ancestor_as_a_chain(
        threaded_collector: ThreadedCollector) -> None:
    """The span exporter shares the mapping: a web span kept because an LLM span descends
    from it is a chain event; a sibling HTTP span with the session context is left out."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from hh_exporter import SyncExporter
    from hh_exporter.integrations.otel import HoneyHiveSpanExporter

    c = threaded_collector.collector
    assert c is not None
    hh = SyncExporter(api_key=TOKEN, api_url=c.url, linger=0.02)
    span_exporter = HoneyHiveSpanExporter(hh)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("GET /ask", attributes=WEB) as root:
        with tracer.start_as_current_span(
                "GET /health", attributes={**WEB, "traceloop.association.properties.x": "1"}):
            pass
        with tracer.start_as_current_span("chat", attributes=CHAT_ATTRS):
            pass
    provider.shutdown()
    assert span_exporter.stats == {"exported": 2, "not_genai": 1}, span_exporter.stats
    sid = str(uuid.UUID(int=root.get_span_context().trace_id))
    _, body = threaded_collector.run(http_json(c.url, f"/sessions/{sid}/events"))
    got = {e["event_name"]: e for e in body["events"]}
    assert got["GET /ask"]["event_type"] == "chain" and got["GET /ask"]["parent_id"] == sid
    assert got["chat"]["parent_id"] == got["GET /ask"]["event_id"]
