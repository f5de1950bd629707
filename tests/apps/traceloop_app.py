"""An OpenLLMetry app, run by tests/test_otel_clients.py in the traceloop venv (no
hh_exporter there): ``python traceloop_app.py COLLECTOR_URL TOKEN LLM_URL simple|batch SID``.

A web request span around a workflow that calls OpenAI with a tool (the tool's result
sent back), streams an OpenAI answer, and calls Anthropic plain and streamed. Prints one
JSON line: the token usage each LLM call answered, in call order, and the output tokens
the streamed Anthropic message's ``message_start`` counted.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["TRACELOOP_TELEMETRY"] = "false"  # no phoning home from a test

import anthropic
import openai
from opentelemetry import trace
from traceloop.sdk import Traceloop
from traceloop.sdk.decorators import tool, workflow
from traceloop.sdk.instruments import Instruments

collector, token, llm, mode, sid = sys.argv[1:6]
Traceloop.init(app_name="tl-app", api_endpoint=collector,
               headers={"Authorization": f"Bearer {token}"}, disable_batch=mode == "simple",
               telemetry_enabled=False, instruments={Instruments.OPENAI, Instruments.ANTHROPIC})
Traceloop.set_association_properties({"session_id": sid})
oa = openai.OpenAI(base_url=llm + "/v1", api_key="sk", max_retries=0)
an = anthropic.Anthropic(base_url=llm, api_key="sk", max_retries=0)
TOOLS = [{"type": "function", "function": {
    "name": "weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
usage: list[list[int]] = []
started: list[int] = []  # a streamed message's output tokens as message_start counts them


@tool(name="weather")
def weather(arguments: str) -> str:
    return "18C, sunny"


@workflow(name="ask")
def ask(question: str) -> str:
    msgs: list[dict[str, object]] = [{"role": "user", "content": question}]
    r1 = oa.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS)  # type: ignore
    call = r1.choices[0].message.tool_calls[0]  # type: ignore[index]
    msgs += [r1.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id,
              "content": weather(call.function.arguments)}]  # type: ignore[union-attr]
    r2 = oa.chat.completions.create(model="gpt-4o", messages=msgs, tools=TOOLS)  # type: ignore
    for r in (r1, r2):
        assert r.usage is not None
        usage.append([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens])
    text = ""
    for chunk in oa.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "and then what"}],
            stream=True, stream_options={"include_usage": True}):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            u = chunk.usage
            usage.append([u.prompt_tokens, u.completion_tokens, u.total_tokens])
    m = an.messages.create(model="claude-test", max_tokens=64,
                           messages=[{"role": "user", "content": "hello claude"}])
    usage.append([m.usage.input_tokens, m.usage.output_tokens,
                  m.usage.input_tokens + m.usage.output_tokens])
    streamed = ""
    with an.messages.stream(model="claude-test", max_tokens=64,
                            messages=[{"role": "user", "content": "stream it"}]) as s:
        for event in s:
            if event.type == "message_start":  # its usage: the output count so far
                started.append(event.message.usage.output_tokens)
            elif event.type == "text":
                streamed += event.text
        final = s.get_final_message()
    usage.append([final.usage.input_tokens, final.usage.output_tokens,
                  final.usage.input_tokens + final.usage.output_tokens])
    return f"{r2.choices[0].message.content} | {text} | {streamed}"


# A web framework's request span around the workflow: no LLM dialect of its own.
with trace.get_tracer("web").start_as_current_span("GET /ask",
                                                   attributes={"http.request.method": "GET"}):
    answer = ask("weather in Paris?")
trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
print(json.dumps({"answer": answer, "usage": usage, "started": started}))
