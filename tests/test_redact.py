"""Redaction before anything leaves the process: the built-in rules against hostile values,
and the real exporter against the real collector, the spool on disk and a real Redis stream:
the secrets never reach any of them, and a failing hook drops its event, counted."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from hh_exporter import DROP_REASONS, SyncExporter
from hh_exporter.collector import Collector, Faults
from hh_exporter.redact import redact_fields, redact_text, redact_value
from hh_exporter.streams import StreamExporter

from .conftest import TOKEN, assert_balanced, fast_exporter, http_json
from .redis_server import RedisServer

EMAIL = "jane.doe@example.org"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig"
SK = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv"
SECRETS = (EMAIL.encode(), b"eyJhbGciOiJIUzI1NiJ9", b"AbCdEfGhIjKlMnOpQrStUv")
MARKERS = (b"[REDACTED:email]", b"[REDACTED:bearer]", b"[REDACTED:api_key]")


def secret_fields() -> dict[str, Any]:
    """A model event with the three secrets in messages, a tool call's arguments and the
    response."""
    return dict(
        model="gpt-4o", provider="openai", duration=5,
        messages=[
            {"role": "user", "content": f"mail me at {EMAIL}, my key is {SK}"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "fetch", "arguments": f'{{"header": "{BEARER}"}}'}}]},
        ],
        response={"role": "assistant", "content": f"noted {EMAIL}"},
    )


def log_secrets(hh: Any) -> Any:
    s = hh.session(session_name="redacted", user_properties={"email": EMAIL, "key": SK},
                   metadata={"authorization": BEARER})
    s.log_model_event(**secret_fields())
    s.log_event(event_type="tool", event_name="search",
                inputs={"query": f"who is {EMAIL}", "auth": BEARER, "x": f"use {SK}"})
    return s


def assert_clean(blob: bytes) -> None:
    for secret in SECRETS:
        assert secret not in blob, secret
    for marker in MARKERS:
        assert marker in blob, marker


# -- the rules ----------------------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError


json_values = st.recursive(
    st.none() | st.booleans() | st.integers()
    # JSON has no NaN or infinity (msgspec writes them as null); NaN != NaN would make the
    # idempotence check below fail on no redaction at all. test_nan_is_left_alone covers it.
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids,
                                                              max_size=4),
    max_leaves=30,
)
# Text built from the patterns' own pieces, so the hostile neighbours (markers, digits,
# dashes, '@', "Bearer ") meet each other.
pieces = st.sampled_from(["@", ".", "-", " ", "sk-", "ant-", "Bearer ", "bearer\t", "4", "1",
                          "0", "a", "Z", "example.com", "[REDACTED:email]", "_", "=", "x@y.io",
                          "4111111111111111", "sk-aaaaaaaaaaaaaaaaaaaa"])
hostile_text = st.lists(pieces, max_size=30).map("".join) | st.text()


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_rules_never_raise_and_are_idempotent_on_any_json_value(value: Any) -> None:
    once = redact_value(value)
    assert redact_value(once) == once


def test_nan_is_left_alone() -> None:
    """A float that JSON cannot hold passes through the rules untouched, never raising."""
    out = redact_value({"x": [math.nan, math.inf], "password": math.nan})
    assert math.isnan(out["x"][0]) and out["x"][1] == math.inf
    assert isinstance(out["password"], str) and "REDACTED" in out["password"]  # by its key


@settings(max_examples=500, deadline=None)
@given(hostile_text)
def test_text_redaction_is_idempotent_on_hostile_text(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.sampled_from(["", " ", "-"]))
def test_card_numbers_go_by_luhn(body: str, sep: str) -> None:
    card = with_check_digit(body)
    shown = sep.join(card[i:i + 4] for i in range(0, len(card), 4))
    assert redact_text(f"card {shown} ok") == "card [REDACTED:card] ok"
    wrong = card[:-1] + str((int(card[-1]) + 1) % 10)  # one digit off fails the check
    assert redact_text(f"order {wrong}") == f"order {wrong}"


def test_uuids_and_identity_fields_are_left_alone() -> None:
    numeric_uuid = "12345678-1234-4123-8123-123456789012"
    fields = {"session_id": numeric_uuid, "event_name": "x", "metadata": {"id": numeric_uuid},
              "inputs": {"Api-Key": {"nested": 1}, "to": EMAIL}}
    out = redact_fields(fields)
    assert out["session_id"] == numeric_uuid and out["metadata"] == {"id": numeric_uuid}
    assert out["inputs"] == {"Api-Key": "[REDACTED:api_key]", "to": "[REDACTED:email]"}
    assert fields["inputs"]["to"] == EMAIL  # the caller's objects are not changed


def test_a_cycle_or_a_deep_nest_is_replaced_not_raised() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert "[REDACTED:too_deep]" in repr(redact_value(loop))


# -- the real exporter --------------------------------------------------------------------

async def test_secrets_never_reach_the_api_and_the_markers_say_what_went(
    collector: Collector
) -> None:
    async with fast_exporter(collector.url, redact=True) as hh:
        s = log_secrets(hh)
        assert await hh.flush(5.0)
    _, session = await http_json(collector.url, f"/sessions/{s.session_id}")
    _, events = await http_json(collector.url, f"/sessions/{s.session_id}/events")
    assert len(events["events"]) == 2
    blob = json.dumps([session, events]).encode()
    assert_clean(blob)
    assert b"[REDACTED:authorization]" in blob and b"[REDACTED:auth]" in blob
    assert_balanced(hh.stats())


async def test_the_spool_never_sees_the_secrets_with_the_api_down(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    # A port with nothing behind it: every request fails; the close spools everything.
    async with Collector(token=TOKEN) as down:
        url = down.url
    hh = fast_exporter(url, redact=True, spool_dir=str(spool), close_timeout=0.3,
                       max_attempts=10_000, retry_deadline=600.0)
    async with hh:
        log_secrets(hh)
        await asyncio.sleep(0.1)
    st_ = hh.stats()
    assert st_.dropped["spooled"] == 2 and st_.delivered == 0
    blob = b"".join(p.read_bytes() for p in spool.rglob("*") if p.is_file())
    assert_clean(blob)


async def test_the_redis_stream_never_sees_the_secrets(redis_server: RedisServer) -> None:
    async with StreamExporter(redis_url=redis_server.url, stream="r", project="p",
                              linger=0.02, redact=True) as hh:
        log_secrets(hh)
        assert await hh.flush(5.0)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        entries = await client.xrange("r")
        keys = await client.keys("*")
        extra = [await client.get(k) for k in keys if await client.type(k) == b"string"]
    finally:
        await client.aclose()
    blob = b"".join(v for _, fields in entries for v in fields.values())
    blob += b"".join(v for v in extra if v)
    assert len(entries) >= 2
    assert_clean(blob)


async def test_a_raising_hook_drops_its_event_counted_and_logs_no_value(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(fields: dict[str, Any]) -> dict[str, Any] | None:
        text = str(fields.get("inputs", {}))
        if "drop-me" in text:
            return None
        if "boom" in text:
            raise ValueError(f"cannot handle {text}")  # the value must not reach the log
        return fields

    caplog.set_level(logging.DEBUG, logger="hh_exporter")
    async with fast_exporter(collector.url, redact=hook) as hh:
        s = hh.session(session_name="hooked")
        ids = [s.log_event(event_type="tool", event_name="t", inputs={"q": q})
               for q in ("fine", "boom " + EMAIL, "drop-me", "also fine")]
        assert len(set(ids)) == 4
        assert await hh.flush(5.0)
    st_ = hh.stats()
    assert st_.accepted == 4 and st_.delivered == 2
    assert st_.dropped["redacted_failed"] == 1 and st_.dropped["redacted"] == 1
    assert_balanced(st_)
    assert "ValueError" in caplog.text
    assert EMAIL not in caplog.text and "boom" not in caplog.text
    assert {"redacted", "redacted_failed"} <= set(DROP_REASONS)


def test_withheld_events_from_other_threads_are_counted_on_the_loop(
    collector_url: str
) -> None:
    hh = SyncExporter(api_key=TOKEN, project="p", api_url=collector_url, linger=0.02,
                      redact=lambda f: None if f.get("event_name") == "x" else f)

    def work() -> None:
        for i in range(50):
            hh.log_event(event_type="tool", event_name="x" if i % 2 else "y", inputs={})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hh.flush(5.0)
    st_ = hh.stats()
    hh.close()
    assert st_.accepted == 200 and st_.dropped["redacted"] == 100 and st_.delivered == 100
    assert_balanced(st_)


async def test_a_collector_with_a_fault_still_never_sees_the_originals(
    collector: Collector
) -> None:
    """Retries re-send the encoded bytes: the redacted ones (no second copy kept)."""
    collector.faults.set(Faults(script=["503", "503"]))
    async with fast_exporter(collector.url, redact=True) as hh:
        s = log_secrets(hh)
        assert await hh.flush(5.0)
    _, events = await http_json(collector.url, f"/sessions/{s.session_id}/events")
    assert_clean(json.dumps(events).encode())
    assert hh.stats().retries >= 1


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_ingest_redact_cleans_every_line_and_the_rejects_file(
    collector: Collector, tmp_path: Path, workers: str
) -> None:
    import uuid

    from .test_ingest import ingest_cmd, run

    sid = str(uuid.uuid4())
    src = tmp_path / "in.jsonl"
    lines = [
        {"session_id": sid, "session_properties": {"session_name": "s", "user_properties": {
            "email": EMAIL}, "metadata": {"password": "hunter2"}}, **secret_fields()},
        {"session_id": sid, "event_type": "tool", "event_name": "t",
         "inputs": {"q": f"{EMAIL} {SK}", "header": BEARER}},
    ]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines) + f"{{not json {EMAIL}\n")
    code, _, err = await run(ingest_cmd(src, collector.url, tmp_path, "--redact",
                                        "--workers", workers), tmp_path)
    assert code != 0 or "rejected" in err  # the bad line is rejected, the rest sent
    _, session = await http_json(collector.url, f"/sessions/{sid}")
    _, events = await http_json(collector.url, f"/sessions/{sid}/events")
    assert len(events["events"]) == 2
    assert_clean(json.dumps([session, events]).encode())
    assert b"hunter2" not in json.dumps(session).encode()
    rejects = (tmp_path / "rejects.jsonl").read_bytes()
    assert EMAIL.encode() not in rejects and b"[REDACTED:email]" in rejects


def genai_attrs() -> dict[str, Any]:
    return {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.provider.name": "openai",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                {"type": "text", "content": f"I am {EMAIL}, key {SK}"}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                {"type": "text", "content": f"send {BEARER}"}]}])}


async def test_the_otlp_route_applies_the_same_rules() -> None:
    from .test_otel import jspan, otlp_json

    async with Collector(token=TOKEN, redact=True) as c:
        raw = json.dumps(otlp_json([jspan("eee19b7ec3c1b175", None, "chat", genai_attrs())]))
        status, _ = await http_json(c.url, "/v1/traces", "POST", raw=raw.encode())
        assert status == 200
        sid = "5b8efff7-9803-8103-d269-b633813fc60c"
        _, events = await http_json(c.url, f"/sessions/{sid}/events")
    assert len(events["events"]) == 1
    assert_clean(json.dumps(events).encode())


def test_the_span_exporter_applies_the_same_rules(threaded_collector: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from hh_exporter.integrations.otel import HoneyHiveSpanExporter

    c = threaded_collector.collector
    hh = SyncExporter(api_key=TOKEN, api_url=c.url, linger=0.02, redact=True)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(HoneyHiveSpanExporter(hh)))
    with provider.get_tracer("t").start_as_current_span("chat", attributes=genai_attrs()) as sp:
        trace_id = sp.get_span_context().trace_id
    provider.shutdown()  # flushes and closes the exporter it was given
    h = f"{trace_id:032x}"
    sid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    _, events = threaded_collector.run(http_json(c.url, f"/sessions/{sid}/events"))
    assert len(events["events"]) == 1
    assert_clean(json.dumps(events).encode())
