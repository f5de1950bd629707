"""Log every OpenAI call as a HoneyHive model event: ``instrument(client, exporter)``.

::

    client = instrument(openai.AsyncOpenAI(), hh)
    await client.chat.completions.create(model="gpt-4o", messages=[...])   # logged

Wraps ``chat.completions.create`` and ``responses.create`` of that one client (sync or
async; ``AzureOpenAI`` too), streams included: a stream's event is logged when it is read
to its end, closed, or garbage-collected, with the assembled answer and its usage. For
usage in a chat stream the wrapper asks for ``stream_options={"include_usage": True}``
and hides the extra usage-only chunk from a caller who did not ask for it
(``stream_usage=False`` leaves the request alone). An error is logged with ``error`` and
re-raised unchanged.

Not wrapped: ``with_raw_response``/``with_streaming_response``, the ``.stream()`` and
``.parse()`` helpers, and clients made later by ``client.with_options()`` (instrument
those too).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

import openai

from .._session import Session
from .._trace import jsonable
from ._wrap import Accumulator, Adapter, given, json_list, normalize_usage, unwrap, wrap

if TYPE_CHECKING:
    from ._wrap import AnyExporter

__all__ = ["instrument", "uninstrument"]

_C = TypeVar("_C", bound="openai.OpenAI | openai.AsyncOpenAI")

# Request arguments that are not hyperparameters: mapped to their own fields, or the
# client's own transport options.
_COMMON = frozenset({
    "model", "tools", "tool_choice", "stream", "stream_options", "metadata", "user", "store",
    "extra_headers", "extra_query", "extra_body", "timeout", "response_format",
})
_CHAT_NOT_HYPER = _COMMON | {"messages", "functions", "function_call"}
_RESPONSES_NOT_HYPER = _COMMON | {"input", "instructions", "previous_response_id",
                                  "include", "text", "prompt", "conversation",
                                  "background"}


def _request_common(kwargs: dict[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": str(kwargs.get("model") or "unknown")}
    hyper = {k: jsonable(v) for k, v in kwargs.items() if k not in skip and given(v)}
    if hyper:
        fields["hyperparameters"] = hyper
    tools = kwargs.get("tools")
    if given(tools):
        fields["tools"] = json_list(tools)
    if given(kwargs.get("tool_choice")):
        fields["tool_choice"] = jsonable(kwargs["tool_choice"])
    fmt = kwargs.get("response_format")
    if given(fmt):
        fmt = jsonable(fmt)
        fields["response_format"] = fmt if isinstance(fmt, dict) else {"type": fmt}
    meta: dict[str, Any] = {}
    for key in ("metadata", "user"):
        if given(kwargs.get(key)):
            meta[f"request_{key}"] = jsonable(kwargs[key])
    if meta:
        fields["metadata"] = meta
    return fields


def _chat_usage(u: Any) -> dict[str, Any]:
    if u is None:
        return {}
    pd = getattr(u, "prompt_tokens_details", None)
    cd = getattr(u, "completion_tokens_details", None)
    return normalize_usage(
        prompt=u.prompt_tokens, completion=u.completion_tokens, total=u.total_tokens,
        cache_read=getattr(pd, "cached_tokens", None),
        reasoning=getattr(cd, "reasoning_tokens", None))


def _answer_meta(result: Any, request_model: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    rid = getattr(result, "id", None)
    if isinstance(rid, str):
        meta["response_id"] = rid
    model = getattr(result, "model", None)
    if isinstance(model, str) and model != request_model:
        meta["response_model"] = model
    return meta


class _Chat(Adapter):
    event_name = "openai.chat.completions"

    def __init__(self, provider: str, stream_usage: bool) -> None:
        self.provider = provider
        self._stream_usage = stream_usage

    def prepare(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if not self._stream_usage or kwargs.get("stream") is not True:
            return kwargs
        opts = kwargs.get("stream_options")
        opts = dict(opts) if isinstance(opts, dict) else {}
        if "include_usage" in opts:  # the caller decided
            return kwargs
        opts["include_usage"] = True
        return {**kwargs, "stream_options": opts}

    def request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        fields = _request_common(kwargs, _CHAT_NOT_HYPER)
        fields["messages"] = json_list(kwargs.get("messages") or [])
        return fields

    def answer(self, result: Any) -> dict[str, Any]:
        choices = result.choices or []
        meta = _answer_meta(result, None)
        out: dict[str, Any] = {"usage": _chat_usage(result.usage), "metadata": meta}
        if choices:
            out["response"] = choices[0].message.model_dump(mode="json", exclude_none=True)
            meta["finish_reason"] = choices[0].finish_reason
            if len(choices) > 1:
                meta["choices"] = [c.message.model_dump(mode="json", exclude_none=True)
                                   for c in choices]
        fp = getattr(result, "system_fingerprint", None)
        if isinstance(fp, str):
            meta["system_fingerprint"] = fp
        return out

    def stream(self, result: Any, kwargs: dict[str, Any]) -> Accumulator | None:
        if not isinstance(result, (openai.Stream, openai.AsyncStream)):
            return None
        opts = kwargs.get("stream_options")
        asked = isinstance(opts, dict) and "include_usage" in opts
        return _ChatStream(hide_usage=self._stream_usage and not asked)


class _ChatStream(Accumulator):
    def __init__(self, hide_usage: bool) -> None:
        self._hide_usage = hide_usage
        self._role = "assistant"
        self._content: list[str] = []
        self._refusal: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self._usage: Any = None
        self._finish: str | None = None
        self._id: str | None = None
        self._model: str | None = None

    def add(self, chunk: Any) -> bool:
        self._id = chunk.id or self._id
        self._model = chunk.model or self._model
        if chunk.usage is not None:
            self._usage = chunk.usage
        for c in chunk.choices:
            if c.index != 0:
                continue
            d = c.delta
            if d.role:
                self._role = d.role
            if d.content:
                self._content.append(d.content)
            if getattr(d, "refusal", None):
                self._refusal.append(d.refusal)
            for tc in d.tool_calls or ():
                slot = self._tools.setdefault(tc.index, {
                    "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                if tc.id:
                    slot["id"] = tc.id
                fn = tc.function
                if fn is not None:
                    slot["function"]["name"] += fn.name or ""
                    slot["function"]["arguments"] += fn.arguments or ""
            if c.finish_reason:
                self._finish = c.finish_reason
        return not (self._hide_usage and not chunk.choices and chunk.usage is not None)

    def fields(self) -> dict[str, Any]:
        response: dict[str, Any] = {"role": self._role, "content": "".join(self._content)}
        if self._refusal:
            response["refusal"] = "".join(self._refusal)
        if self._tools:
            response["tool_calls"] = [self._tools[i] for i in sorted(self._tools)]
        meta: dict[str, Any] = {}
        if self._id:
            meta["response_id"] = self._id
        if self._model:
            meta["response_model"] = self._model
        if self._finish:
            meta["finish_reason"] = self._finish
        return {"response": response, "usage": _chat_usage(self._usage), "metadata": meta}


def _responses_usage(u: Any) -> dict[str, Any]:
    if u is None:
        return {}
    idt, odt = getattr(u, "input_tokens_details", None), getattr(u, "output_tokens_details", None)
    return normalize_usage(
        prompt=u.input_tokens, completion=u.output_tokens, total=u.total_tokens,
        cache_read=getattr(idt, "cached_tokens", None),
        reasoning=getattr(odt, "reasoning_tokens", None))


def _response_fields(result: Any) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in result.output or ():
        kind = getattr(item, "type", None)
        if kind == "message":
            text += [getattr(p, "text", "") for p in item.content
                     if getattr(p, "type", None) == "output_text"]
        elif kind == "function_call":
            calls.append({"id": item.call_id, "type": "function",
                          "function": {"name": item.name, "arguments": item.arguments}})
    response: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if calls:
        response["tool_calls"] = calls
    meta = _answer_meta(result, None)
    status = getattr(result, "status", None)
    if isinstance(status, str):
        meta["status"] = status
    out: dict[str, Any] = {"response": response, "usage": _responses_usage(result.usage),
                           "metadata": meta}
    err = getattr(result, "error", None)
    if err is not None:
        out["error"] = json.dumps(jsonable(err))
    return out


class _Responses(Adapter):
    event_name = "openai.responses"

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        fields = _request_common(kwargs, _RESPONSES_NOT_HYPER)
        messages: list[Any] = []
        if given(kwargs.get("instructions")):
            messages.append({"role": "system", "content": jsonable(kwargs["instructions"])})
        inp = kwargs.get("input")
        if isinstance(inp, str):
            messages.append({"role": "user", "content": inp})
        elif given(inp):
            messages += json_list(inp)
        fields["messages"] = messages
        text = kwargs.get("text")
        if isinstance(text, dict) and isinstance(text.get("format"), dict):
            fields["response_format"] = jsonable(text["format"])
        return fields

    def answer(self, result: Any) -> dict[str, Any]:
        return _response_fields(result)

    def stream(self, result: Any, kwargs: dict[str, Any]) -> Accumulator | None:
        if not isinstance(result, (openai.Stream, openai.AsyncStream)):
            return None
        return _ResponsesStream()


class _ResponsesStream(Accumulator):
    def __init__(self) -> None:
        self._response: Any = None
        self._text: list[str] = []

    def add(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "response.output_text.delta":
            self._text.append(event.delta)
        elif kind in ("response.created", "response.in_progress", "response.completed",
                      "response.incomplete", "response.failed"):
            self._response = event.response
        return True

    def fields(self) -> dict[str, Any]:
        r = self._response
        if r is not None and r.output:
            return _response_fields(r)
        out: dict[str, Any] = {"response": {"role": "assistant",
                                            "content": "".join(self._text)}}
        if r is not None:
            out["metadata"] = _answer_meta(r, None)
        return out


def instrument(client: _C, exporter: AnyExporter, *, session: Session | None = None,
               provider: str | None = None, stream_usage: bool = True) -> _C:
    """Log each ``chat.completions.create`` and ``responses.create`` call of ``client``.

    Args:
        client: An ``openai.OpenAI`` or ``openai.AsyncOpenAI`` (Azure clients too); wrapped
            in place, and returned.
        exporter: An :class:`~hh_exporter.Exporter` or :class:`~hh_exporter.SyncExporter`.
        session: The session of calls made outside any ``exporter.trace`` span (inside one,
            the span's session and parent win). None: such calls carry no session.
        provider: The event's ``provider``; by default ``"azure"`` for Azure clients,
            else ``"openai"``.
        stream_usage: Ask chat streams for their usage (see the module's docs).

    Instrumenting twice is harmless; :func:`uninstrument` undoes it.
    """
    if isinstance(client, openai.AsyncOpenAI):
        is_async = True
    elif isinstance(client, openai.OpenAI):
        is_async = False
    else:
        raise TypeError(f"instrument takes an openai.OpenAI or openai.AsyncOpenAI client, "
                        f"got {type(client).__name__}")
    if session is not None and type(session) is not Session:
        raise TypeError("session must be a Session from Exporter.session()")
    if provider is None:
        provider = "azure" if isinstance(client, (openai.AzureOpenAI,
                                                  openai.AsyncAzureOpenAI)) else "openai"
    wrap(client.chat.completions, "create", _Chat(provider, stream_usage), exporter, session,
         is_async)
    wrap(client.responses, "create", _Responses(provider), exporter, session, is_async)
    return client


def uninstrument(client: openai.OpenAI | openai.AsyncOpenAI) -> None:
    """Undo :func:`instrument` on ``client``."""
    unwrap(client.chat.completions, "create")
    unwrap(client.responses, "create")
