"""OTel's own OTLP/JSON exporter (opentelemetry-exporter-otlp-json-http, in the
otel-1.45.1 venv), run by tests/test_otel_clients.py:
``python otlp_json_app.py COLLECTOR_URL TOKEN none|gzip|deflate``.

A simple processor, so each span goes alone, children first: a web request span, a
workflow, an embeddings span, and a chat span whose input holds a tool call and its
result. Prints one JSON
line: the trace id (32 hex digits).
"""

from __future__ import annotations

import json
import sys

from opentelemetry.exporter.otlp.common.http import Compression
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

collector, token, compression = sys.argv[1:4]
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
    endpoint=collector + "/v1/traces", headers={"Authorization": f"Bearer {token}"},
    compression=Compression(compression))))
tracer = provider.get_tracer("app")
MESSAGES = [
    {"role": "user", "parts": [{"type": "text", "content": "weather in Paris?"}]},
    {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "weather",
                                     "arguments": {"q": "Paris"}}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                "response": "18C, sunny"}]},
]
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 21,
        "gen_ai.usage.output_tokens": 6, "gen_ai.input.messages": json.dumps(MESSAGES),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "18C and sunny."}], "finish_reason": "stop"}])}
EMBED = {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small",
         "gen_ai.usage.input_tokens": 4}
web = tracer.start_as_current_span("GET /ask", attributes={"http.request.method": "GET"})
with web as root, tracer.start_as_current_span(
        "ask", attributes={"gen_ai.operation.name": "invoke_workflow"}):
    with tracer.start_as_current_span("embeddings", attributes=EMBED):
        pass
    with tracer.start_as_current_span("chat gpt-4o", attributes=CHAT):
        pass
provider.shutdown()
print(json.dumps({"trace_id": f"{root.get_span_context().trace_id:032x}"}))
