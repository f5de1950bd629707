"""Log every Anthropic call as a HoneyHive model event: ``instrument(client, exporter)``.

::

    client = instrument(anthropic.AsyncAnthropic(), hh)
    await client.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=[...])

Wraps ``messages.create`` (``stream=True`` too) and ``messages.stream`` of that one client,
sync or async. A stream's event is logged when it is read to its end, closed, or (for
``messages.stream``) when its ``with`` block exits, with the assembled message and usage.
An error is logged with ``error`` and re-raised unchanged.

Token counts: ``prompt_tokens`` is Anthropic's ``input_tokens`` as given (it excludes
cached tokens); the cache reads and writes are kept beside it, never added in.

Not wrapped: ``with_raw_response``/``with_streaming_response``, the beta namespace, and
clients made later by ``client.with_options()``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

import anthropic
from anthropic.lib.streaming import AsyncMessageStreamManager, MessageStreamManager

from .._session import Session
from .._trace import error_text, jsonable, warn
from ._wrap import (
    Accumulator,
    Adapter,
    Recorder,
    given,
    json_list,
    normalize_usage,
    unwrap,
    wrap,
)

if TYPE_CHECKING:
    from ._wrap import AnyExporter

__all__ = ["instrument", "uninstrument"]

_C = TypeVar("_C", bound="anthropic.Anthropic | anthropic.AsyncAnthropic")

_NOT_HYPER = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "stream", "metadata",
    "extra_headers", "extra_query", "extra_body", "timeout", "output_format",
    "workspace_id", "user_profile_id", "diagnostics", "container",
})


def _usage(u: Any) -> dict[str, Any]:
    if u is None:
        return {}
    return normalize_usage(
        prompt=getattr(u, "input_tokens", None), completion=getattr(u, "output_tokens", None),
        cache_read=getattr(u, "cache_read_input_tokens", None),
        cache_write=getattr(u, "cache_creation_input_tokens", None))


def _answer(blocks: list[dict[str, Any]], message: dict[str, Any],
            usage: dict[str, Any]) -> dict[str, Any]:
    """The event's answer fields from a message's content blocks (as dicts) and its
    ``id``/``stop_reason``/``model``: shared by whole messages and assembled streams."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    other: list[Any] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "text":
            text.append(b.get("text") or "")
        elif kind == "tool_use":
            # A whole message has the parsed `input`; a stream, the JSON text it streamed.
            args = b.get("partial_json") or json.dumps(b.get("input") or {})
            calls.append({"id": b.get("id"), "type": "function",
                          "function": {"name": b.get("name"), "arguments": args}})
        else:  # thinking, server tools...: kept as given
            other.append(b)
    response: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if calls:
        response["tool_calls"] = calls
    meta: dict[str, Any] = {}
    if other:
        meta["content_blocks"] = other
    for key, name in (("id", "response_id"), ("stop_reason", "stop_reason"),
                      ("model", "response_model")):
        if isinstance(message.get(key), str):
            meta[name] = message[key]
    return {"response": response, "usage": usage, "metadata": meta}


def _message_fields(message: Any) -> dict[str, Any]:
    """A ``Message`` (or a stream's snapshot of one) as the event's answer fields."""
    blocks = [b if isinstance(b, dict) else {} for b in (
        jsonable(block) for block in message.content or ())]
    ids = {k: getattr(message, k, None) for k in ("id", "stop_reason", "model")}
    return _answer(blocks, ids, _usage(message.usage))


class _Messages(Adapter):
    provider = "anthropic"
    event_name = "anthropic.messages"

    def request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {"model": str(kwargs.get("model") or "unknown")}
        messages: list[Any] = []
        system = kwargs.get("system")
        if given(system):
            messages.append({"role": "system", "content": jsonable(system)})
        messages += json_list(kwargs.get("messages") or [])
        fields["messages"] = messages
        hyper = {k: jsonable(v) for k, v in kwargs.items() if k not in _NOT_HYPER and given(v)}
        if hyper:
            fields["hyperparameters"] = hyper
        if given(kwargs.get("tools")):
            fields["tools"] = json_list(kwargs["tools"])
        if given(kwargs.get("tool_choice")):
            fields["tool_choice"] = jsonable(kwargs["tool_choice"])
        if given(kwargs.get("metadata")):
            fields["metadata"] = {"request_metadata": jsonable(kwargs["metadata"])}
        return fields

    def answer(self, result: Any) -> dict[str, Any]:
        return _message_fields(result)

    def stream(self, result: Any, kwargs: dict[str, Any]) -> Accumulator | None:
        if isinstance(result, (anthropic.Stream, anthropic.AsyncStream)):
            return _RawStream()
        return None

    def tap(self, result: Any, rec: Recorder, is_async: bool) -> Any:
        if isinstance(result, MessageStreamManager):
            return _ManagerTap(result, rec)
        if isinstance(result, AsyncMessageStreamManager):
            return _AsyncManagerTap(result, rec)
        return None


class _RawStream(Accumulator):
    """``messages.create(stream=True)``: raw server-sent events, assembled here."""

    def __init__(self) -> None:
        self._message: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] = {}

    def add(self, event: Any) -> bool:
        kind = event.type
        if kind == "message_start":
            m = event.message
            self._message = {"id": m.id, "model": m.model}
            self._usage.update(_usage(m.usage))
        elif kind == "content_block_start":
            self._blocks[event.index] = jsonable(event.content_block)
            if self._blocks[event.index].get("type") == "tool_use":
                self._blocks[event.index]["partial_json"] = ""
        elif kind == "content_block_delta":
            block = self._blocks.setdefault(event.index, {"type": "text", "text": ""})
            d = event.delta
            if d.type == "text_delta":
                block["text"] = block.get("text", "") + d.text
            elif d.type == "input_json_delta":
                block["partial_json"] = block.get("partial_json", "") + d.partial_json
            elif d.type == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + d.thinking
        elif kind == "message_delta":
            if event.delta.stop_reason:
                self._message["stop_reason"] = event.delta.stop_reason
            u = _usage(event.usage)
            # message_delta's counts are cumulative; its prompt count, when sent, is final.
            self._usage.update({k: v for k, v in u.items() if k != "total_tokens"})
        return True

    def fields(self) -> dict[str, Any]:
        usage = dict(self._usage)
        if "prompt_tokens" in usage and "completion_tokens" in usage:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return _answer([self._blocks[i] for i in sorted(self._blocks)], self._message, usage)


def _snapshot_fields(stream: Any) -> tuple[dict[str, Any], bool]:
    """A ``MessageStream``'s message so far, and whether it is complete."""
    try:
        snap = stream.current_message_snapshot
    except AssertionError:  # no message_start yet
        return {"response": {"role": "assistant", "content": ""}}, False
    return _message_fields(snap), snap.stop_reason is not None


def _error_of(exc: BaseException | None) -> BaseException | None:
    return exc if isinstance(exc, anthropic.APIError) else None


class _ManagerTap:
    """``messages.stream(...)``: the request is made on ``with``; logged when it exits."""

    def __init__(self, manager: Any, rec: Recorder) -> None:
        self._manager = manager
        self._rec = rec
        self._stream: Any = None

    def __enter__(self) -> Any:
        try:
            self._stream = self._manager.__enter__()
        except BaseException as exc:
            self._rec.fail(exc)
            raise
        return self._stream

    def __exit__(self, *exc: Any) -> Any:
        self._finish(_error_of(exc[1]))
        return self._manager.__exit__(*exc)

    def _finish(self, error: BaseException | None) -> None:
        if self._rec.ended:
            return
        try:
            fields, complete = _snapshot_fields(self._stream)
            if not complete:
                fields["metadata"]["stream_closed_early"] = True
            if error is not None:
                fields["error"] = error_text(error)
        except Exception as exc:  # noqa: BLE001 - log the request, at least
            warn("recording an anthropic.messages stream", exc)
            fields = {}
        self._rec.done(fields)


class _AsyncManagerTap(_ManagerTap):
    async def __aenter__(self) -> Any:
        try:
            self._stream = await self._manager.__aenter__()
        except BaseException as exc:
            self._rec.fail(exc)
            raise
        return self._stream

    async def __aexit__(self, *exc: Any) -> Any:
        self._finish(_error_of(exc[1]))
        return await self._manager.__aexit__(*exc)


def instrument(client: _C, exporter: AnyExporter, *, session: Session | None = None) -> _C:
    """Log each ``messages.create`` and ``messages.stream`` call of ``client``.

    Args:
        client: An ``anthropic.Anthropic`` or ``anthropic.AsyncAnthropic``; wrapped in
            place, and returned.
        exporter: An :class:`~hh_exporter.Exporter` or :class:`~hh_exporter.SyncExporter`.
        session: The session of calls made outside any ``exporter.trace`` span.

    Instrumenting twice is harmless; :func:`uninstrument` undoes it.
    """
    if isinstance(client, anthropic.AsyncAnthropic):
        is_async = True
    elif isinstance(client, anthropic.Anthropic):
        is_async = False
    else:
        raise TypeError(f"instrument takes an anthropic.Anthropic or anthropic.AsyncAnthropic "
                        f"client, got {type(client).__name__}")
    if session is not None and type(session) is not Session:
        raise TypeError("session must be a Session from Exporter.session()")
    adapter = _Messages()
    wrap(client.messages, "create", adapter, exporter, session, is_async)
    # .stream() makes no request itself (that happens on `with`), so it is wrapped as a
    # plain function even on the async client.
    wrap(client.messages, "stream", adapter, exporter, session, False)
    return client


def uninstrument(client: anthropic.Anthropic | anthropic.AsyncAnthropic) -> None:
    """Undo :func:`instrument` on ``client``."""
    unwrap(client.messages, "create")
    unwrap(client.messages, "stream")
