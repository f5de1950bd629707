"""A local stand-in for the OpenAI and Anthropic HTTP APIs, for tests and benchmarks.

It speaks just enough of each API for the official ``openai`` and ``anthropic`` packages to
work unmodified against it: ``POST /v1/chat/completions`` and ``POST /v1/responses``
(OpenAI), ``POST /v1/messages`` (Anthropic), each with and without streaming (server-sent
events as the real services frame them). Answers are deterministic: the reply echoes the
last user message, token counts are word counts, and a request for the model named
``fail`` gets the service's own error body with a 400 (a status the clients do not retry),
and a chat stream for the model named ``odd`` carries one chunk with a choice but no delta.
When the request offers tools and has no tool result yet, the reply calls the first tool.

It runs on 127.0.0.1, port 0, on a loop in its own thread, so synchronous clients can call
it from the test's thread. It records every request body it got in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import web

__all__ = ["LLMStandIn"]

FAIL_MODEL = "fail"
ODD_MODEL = "odd"


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _last_user(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))
    return ""


def _prompt_tokens(messages: list[Any]) -> int:
    return sum(_words(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class LLMStandIn:
    """The stand-in server; ``with LLMStandIn() as s: s.url`` (base URL without ``/v1``)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True, name="llm-standin")

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> LLMStandIn:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the stand-in server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/messages", self._messages)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # -- helpers ---------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        body = await request.json()
        self.requests.append((request.path, body))
        return body

    @staticmethod
    async def _sse(request: web.Request,
                   frames: list[tuple[str | None, Any]]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event, data in frames:
            text = data if isinstance(data, str) else json.dumps(data)
            head = f"event: {event}\n" if event else ""
            await resp.write(f"{head}data: {text}\n\n".encode())
        await resp.write_eof()
        return resp

    # -- OpenAI chat completions -----------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        model = body.get("model", "")
        if model == FAIL_MODEL:
            return web.json_response(
                {"error": {"message": "The model `fail` does not exist", "type":
                           "invalid_request_error", "param": "model", "code": "model_not_found"}},
                status=400)
        messages = body.get("messages") or []
        n_in = _prompt_tokens(messages)
        tools = body.get("tools") or []
        calls_tool = bool(tools) and not any(
            isinstance(m, dict) and m.get("role") == "tool" for m in messages)
        text = "" if calls_tool else f"reply to: {_last_user(messages)}"
        tool_calls = [{"id": "call_1", "type": "function", "function": {
            "name": tools[0]["function"]["name"], "arguments": '{"q": "x"}'}}
        ] if calls_tool else None
        n_out = _words(text) if text else 3
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out,
                 "total_tokens": n_in + n_out,
                 "prompt_tokens_details": {"cached_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0}}
        finish = "tool_calls" if calls_tool else "stop"
        base = {"id": "chatcmpl-standin", "created": 1764547200, "model": f"{model}-2026-01-01",
                "system_fingerprint": "fp_standin"}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None,
                                       "refusal": None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return web.json_response({**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage})
        chunk = {**base, "object": "chat.completion.chunk"}
        frames: list[tuple[str | None, Any]] = [(None, {**chunk, "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
        if model == ODD_MODEL:  # a chunk of a shape no client expects: a choice, no delta
            frames.append((None, {**chunk, "choices": [{"index": 0}]}))
        if tool_calls:
            frames.append((None, {**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, **tool_calls[0]}]}, "finish_reason": None}]}))
        for piece in _pieces(text) if text else []:
            frames.append((None, {**chunk, "choices": [
                {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}))
        frames.append((None, {**chunk, "choices": [
            {"index": 0, "delta": {}, "finish_reason": finish}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append((None, {**chunk, "choices": [], "usage": usage}))
        frames.append((None, "[DONE]"))
        return await self._sse(request, frames)

    # -- OpenAI responses ------------------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        model = body.get("model", "")
        if model == FAIL_MODEL:
            return web.json_response(
                {"error": {"message": "The model `fail` does not exist", "type":
                           "invalid_request_error", "param": "model", "code": "model_not_found"}},
                status=400)
        inp = body.get("input")
        messages = [{"role": "user", "content": inp}] if isinstance(inp, str) else (inp or [])
        text = f"reply to: {_last_user(messages)}"
        n_in, n_out = _prompt_tokens(messages), _words(text)
        item = {"type": "message", "id": "msg_standin", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
        response = {"id": "resp_standin", "object": "response", "created_at": 1764547200,
                    "model": f"{model}-2026-01-01", "status": "completed", "output": [item],
                    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                    "temperature": body.get("temperature", 1.0), "top_p": 1.0,
                    "usage": {"input_tokens": n_in, "output_tokens": n_out,
                              "total_tokens": n_in + n_out,
                              "input_tokens_details": {"cached_tokens": 0},
                              "output_tokens_details": {"reasoning_tokens": 0}}}
        if not body.get("stream"):
            return web.json_response(response)
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        seq = iter(range(1000))
        frames: list[tuple[str | None, Any]] = [
            ("response.created", {"type": "response.created", "response": pending,
                                  "sequence_number": next(seq)}),
            ("response.output_item.added", {
                "type": "response.output_item.added", "output_index": 0,
                "item": {**item, "status": "in_progress", "content": []},
                "sequence_number": next(seq)}),
        ]
        for piece in _pieces(text):
            frames.append(("response.output_text.delta", {
                "type": "response.output_text.delta", "item_id": "msg_standin",
                "output_index": 0, "content_index": 0, "delta": piece, "logprobs": [],
                "sequence_number": next(seq)}))
        frames.append(("response.output_item.done", {
            "type": "response.output_item.done", "output_index": 0, "item": item,
            "sequence_number": next(seq)}))
        frames.append(("response.completed", {"type": "response.completed",
                                              "response": response,
                                              "sequence_number": next(seq)}))
        return await self._sse(request, frames)

    # -- Anthropic messages ----------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        model = body.get("model", "")
        if model == FAIL_MODEL:
            return web.json_response(
                {"type": "error", "error": {"type": "invalid_request_error",
                                            "message": "model: fail is not a model"}},
                status=400)
        messages = body.get("messages") or []
        text = f"reply to: {_last_user(messages)}"
        n_in, n_out = _prompt_tokens(messages), _words(text)
        message = {"id": "msg_standin", "type": "message", "role": "assistant",
                   "model": model, "content": [{"type": "text", "text": text}],
                   "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": n_in, "output_tokens": n_out,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
        if not body.get("stream"):
            return web.json_response(message)
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": n_in, "output_tokens": 1}}
        frames: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]
        for piece in _pieces(text):
            frames.append(("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}}))
        frames += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": n_out}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return await self._sse(request, frames)


if __name__ == "__main__":  # benchmarks run it in a process of its own
    import sys

    with LLMStandIn() as server:
        print(f"listening on {server.url}", flush=True)
        sys.stdin.read()  # until the parent closes our stdin
