"""OpenTelemetry spans to HoneyHive: ``python benchmarks/otel.py [--spans 20000]``.

1. CPU per span in an app that makes GenAI chat spans (the OTel SDK, BatchSpanProcessor):
   through HoneyHiveSpanExporter into a SyncExporter, against OTel's own OTLP/HTTP exporter
   (protobuf) with the same processor, both delivering to the collector (``none``, its own
   process), beside a floor: the same spans with an exporter that drops them. The SDK's own
   span creation is in every row; "export" is the row minus the floor.
2. The collector's OTLP ingest: spans/s of 500-span OTLP/JSON requests, 4 concurrent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import aiohttp  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from run import TOKEN, start_sink  # noqa: E402

from hh_exporter import SyncExporter  # noqa: E402
from hh_exporter.integrations.otel import HoneyHiveSpanExporter  # noqa: E402

MESSAGES = json.dumps([{"role": "user", "parts": [
    {"type": "text", "content": "Summarise the plot of Hamlet in one line."}]}])
ANSWER = json.dumps([{"role": "assistant", "parts": [
    {"type": "text", "content": "A prince avenges his father and everyone dies."}],
    "finish_reason": "stop"}])


class Drop(SpanExporter):
    """The floor: spans are made and batched, then dropped."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def make_spans(exporter: SpanExporter, n: int, session: str | None = None) -> float:
    """CPU µs per span to make ``n`` chat spans under a workflow span each 10, and export
    them all (force_flush), in this process. With ``session``, every span names it
    (``honeyhive.session_id``, as the HoneyHive tracer's spans do): one session in all,
    instead of one per trace."""
    extra = {"honeyhive.session_id": session} if session else {}
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=n * 2, max_export_batch_size=512, schedule_delay_millis=100))
    tracer = provider.get_tracer("bench")
    t0 = time.process_time()
    for _ in range(0, n, 10):
        with tracer.start_as_current_span("workflow", attributes={
                "gen_ai.operation.name": "invoke_workflow", **extra}):
            for _ in range(9):
                with tracer.start_as_current_span("chat gpt-4o", attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o", "gen_ai.request.temperature": 0.2,
                        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 9,
                        "gen_ai.input.messages": MESSAGES,
                        "gen_ai.output.messages": ANSWER, **extra}):
                    pass
    assert provider.force_flush(120_000)
    cpu = time.process_time() - t0
    provider.shutdown()
    return cpu / n * 1e6


async def otlp_ingest(url: str, spans: int) -> float:
    """spans/s of the collector's OTLP route: 500-span JSON requests, 4 at a time."""
    def req(k: int) -> bytes:
        out = []
        for j in range(500):
            out.append({"traceId": f"{k:032x}", "spanId": f"{j + 1:016x}", "name": "chat",
                        "startTimeUnixNano": "1800000000000000000",
                        "endTimeUnixNano": "1800000000100000000", "attributes": [
                            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                            {"key": "gen_ai.input.messages", "value": {"stringValue": MESSAGES}},
                            {"key": "gen_ai.output.messages", "value": {"stringValue": ANSWER}},
                            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}}]})
        return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": out}]}]}).encode()

    bodies = [req(k + 1) for k in range(max(1, spans // 500))]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        async def post(b: bytes) -> None:
            async with s.post(url + "/v1/traces", data=b, headers=headers) as r:
                assert r.status == 200, await r.text()

        await post(bodies[0])
        sem = asyncio.Semaphore(4)

        async def one(b: bytes) -> None:
            async with sem:
                await post(b)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        took = time.perf_counter() - t0
    return len(bodies) * 500 / took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=20_000)
    args = ap.parse_args()
    n = args.spans
    sink, url = start_sink("none")
    try:
        floor = make_spans(Drop(), n)
        hh = SyncExporter(api_key=TOKEN, api_url=url, max_buffer_events=n * 2,
                          max_buffer_bytes=1 << 30)
        ours_exporter = HoneyHiveSpanExporter(hh)
        ours = make_spans(ours_exporter, n)  # its shutdown flushed and closed the exporter
        st = hh.stats()
        assert st.delivered == st.accepted == n and ours_exporter.stats["exported"] == n, st
        hh1 = SyncExporter(api_key=TOKEN, api_url=url, max_buffer_events=n * 2,
                           max_buffer_bytes=1 << 30)
        one_session = make_spans(HoneyHiveSpanExporter(hh1), n,
                                 session="6f2c1f80-2b4e-4a55-9c1d-3e8e0d4c5a7b")
        assert hh1.stats().delivered == n
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        theirs = make_spans(OTLPSpanExporter(
            endpoint=url + "/v1/traces", headers={"Authorization": f"Bearer {TOKEN}"}), n)
        ingest = asyncio.run(otlp_ingest(url, n * 5))
    finally:
        sink.terminate()
        sink.wait(10)
    print(f"\n{n:,} GenAI chat spans (a workflow span per 9 chats), BatchSpanProcessor")
    print(f"{'CPU us per span, this process':<52}{'total':>8}{'export':>9}{'vs ours':>9}")
    print(f"{'floor: the SDK makes and batches them, then drops':<52}{floor:>8.1f}")
    print(f"{'HoneyHiveSpanExporter -> SyncExporter -> collector':<52}{ours:>8.1f}"
          f"{ours - floor:>9.1f}{1.0:>8.1f}x   (a session started per trace)")
    print(f"{'  the same, spans of one session (as the HH tracer)':<52}{one_session:>8.1f}"
          f"{one_session - floor:>9.1f}{(one_session - floor) / (ours - floor):>8.1f}x")
    print(f"{'OTel OTLPSpanExporter (HTTP, protobuf) -> collector':<52}{theirs:>8.1f}"
          f"{theirs - floor:>9.1f}{(theirs - floor) / (ours - floor):>8.1f}x")
    print(f"\ncollector OTLP/JSON ingest, 500-span requests, 4 concurrent: {ingest:,.0f} spans/s")
    print(f"spans exported {ours_exporter.stats['exported']:,}, delivered {st.delivered:,}")


if __name__ == "__main__":
    main()
