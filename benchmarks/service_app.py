"""The FastAPI service ``benchmarks/service.py`` serves with uvicorn, one process per mode.

``HH_SERVICE_MODE``: ``off`` (no telemetry), ``events`` (one model event per request, no
session), ``sessions10``/``sessions1`` (a new session every 10 requests, or every request,
and the request's event in it), ``otel`` (one span per request through OpenTelemetry's
BatchSpanProcessor and its OTLP/HTTP exporter, for reference). Sink: ``HH_API_URL``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

import hh_exporter

MODE = os.environ.get("HH_SERVICE_MODE", "off")
PER_SESSION = {"sessions10": 10, "sessions1": 1}.get(MODE)
FIELDS: dict[str, Any] = dict(
    model="gpt-4o", provider="openai",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    response={"role": "assistant", "content": "Paris."}, duration=812.0,
    usage={"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14})
state: dict[str, Any] = {"n": 0, "session": None}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if MODE == "otel":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=os.environ["HH_API_URL"] + "/v1/traces",
            headers={"Authorization": "Bearer " + os.environ["HH_API_KEY"]})))
        state["tracer"] = provider.get_tracer("service")
        yield
        provider.shutdown()
    elif MODE != "off":
        async with hh_exporter.Exporter(project="service") as hh:
            state["hh"] = hh
            yield
    else:
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def index() -> dict[str, Any]:
    if MODE == "off":
        return {"ok": True}
    if MODE == "otel":
        with state["tracer"].start_as_current_span("chat gpt-4o") as span:
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.usage.input_tokens", 12)
        return {"ok": True}
    hh: hh_exporter.Exporter = state["hh"]
    session = None
    if PER_SESSION is not None:
        if state["n"] % PER_SESSION == 0:
            state["session"] = hh.session(session_name="chat")
        session = state["session"]
    state["n"] += 1
    hh.log_model_event(session=session, **FIELDS)
    return {"ok": True}
