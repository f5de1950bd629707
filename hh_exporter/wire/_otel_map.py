"""One span in, one HoneyHive event out: the mapping of ``reference/otel-genai-mapping.md``
§1.3-1.4, pure and typed.

Dialects: HoneyHive's own (``honeyhive_*`` buckets, ``honeyhive.session_id``), OTel GenAI
(``gen_ai.*``, JSON-string or list messages, and the older indexed ``gen_ai.prompt.{i}.*``),
OpenLLMetry (``traceloop.*``) and OpenInference (``openinference.span.kind``, ``llm.*``,
``input.value``). First match wins, in the reference's order. What no rule takes goes to
``metadata``, as HoneyHive's OTLP path does.

The event's id is a UUID derived from the trace and span ids, so a span exported twice
keeps its id; a span's parent is the event of its parent span, or the session for a root.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import msgspec

from ._otlp import SpanData

__all__ = ["CONTEXT_PREFIXES", "GENAI_PREFIXES", "event_id_of", "is_genai", "map_span",
           "session_of"]

_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/hh-exporter/otel-span")
#: Attribute prefixes that make a span an LLM-app span (the rest is HTTP, DB, ...).
GENAI_PREFIXES = ("gen_ai.", "llm.", "openinference.", "traceloop.", "honeyhive")

_OP_TYPES = {"chat": "model", "text_completion": "model", "generate_content": "model",
             "invoke_agent": "chain", "create_agent": "chain", "invoke_workflow": "chain",
             "execute_tool": "tool", "embeddings": "model", "retrieval": "tool"}
# HoneyHive's own table: the official SDK 1.7.0 (tracer/processing/span_processor.py:29-41)
# keeps it "to agree with the mapping HoneyHive applies at ingestion", so embeddings are
# model events and retrieval tool events.
_OI_TYPES = {"LLM": "model", "CHAIN": "chain", "AGENT": "chain", "TOOL": "tool",
             "RETRIEVER": "tool", "EMBEDDING": "tool", "RERANKER": "tool", "GUARDRAIL": "tool",
             "EVALUATOR": "tool", "PROMPT": "tool"}
_TL_TYPES = {"workflow": "chain", "task": "chain", "agent": "chain", "tool": "tool"}
_INDEXED = ("gen_ai.prompt.", "gen_ai.completion.", "llm.input_messages.",
            "llm.output_messages.")
_HYPER = ("temperature", "max_tokens", "top_p", "top_k", "frequency_penalty",
          "presence_penalty", "stop_sequences", "seed")
_HYPER_KEYS = tuple((h, f"gen_ai.request.{h}") for h in _HYPER)
_TOKENS = (  # (metadata names, attribute spellings in priority order)
    (("prompt_tokens", "input_tokens"),
     ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")),
    (("completion_tokens", "output_tokens"),
     ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
      "llm.token_count.completion")),
    (("total_tokens",),
     ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total")),
    (("cache_read_input_tokens",),
     ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
      "llm.token_count.prompt_details.cache_read")),
    (("cache_write_input_tokens",),
     ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens",
      "gen_ai.usage.cache_write_input_tokens", "gen_ai.usage.cache_creation_input_tokens",
      "llm.token_count.prompt_details.cache_write")),  # cache_write.*: the anthropic SDK's
    (("reasoning_tokens",),
     ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
      "llm.token_count.completion_details.reasoning")),
)


_NS_BYTES = _NS.bytes


_META_KEYS = (("gen_ai.response.id", "response_id"), ("gen_ai.response.model", "response_model"),
              ("gen_ai.operation.name", "operation_name"),
              ("openinference.span.kind", "span_kind"), ("traceloop.span.kind", "span_kind"),
              ("gen_ai.agent.name", "agent_name"), ("gen_ai.agent.id", "agent_id"),
              ("gen_ai.tool.call.id", "tool_call_id"), ("user.id", "user_id"),
              ("session.id", "session_id"), ("gen_ai.conversation.id", "conversation_id"))


# Which rule reads an attribute: map_span notes the groups present in its one pass over the
# attributes and runs only their rules (a chat span has 8 attributes; the rules read 60
# keys). Skipping a group whose keys are all absent changes nothing: its rule takes nothing.
_GROUPS: dict[str, tuple[str, ...]] = {
    "model": ("gen_ai.request.model", "llm.model_name"),
    "provider": ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"),
    "hyper": tuple(key for _, key in _HYPER_KEYS),
    "params": ("llm.invocation_parameters",),
    "tools": ("gen_ai.tool.definitions", "llm.tools"),
    "tool": ("gen_ai.tool.name", "gen_ai.tool.description"),
    "system": ("gen_ai.system_instructions",),
    "in_msgs": ("gen_ai.input.messages",),
    "out_msgs": ("gen_ai.output.messages",),
    "args": ("gen_ai.tool.call.arguments", "input.value", "traceloop.entity.input"),
    "result": ("gen_ai.tool.call.result", "output.value", "traceloop.entity.output"),
    "tokens": tuple(k for _, spellings in _TOKENS for k in spellings),
    "cost": ("llm.cost.total", "gen_ai.usage.cost"),
    "meta": tuple(key for key, _ in _META_KEYS),
    "reasons": ("gen_ai.response.finish_reasons",),
    "ttfc": ("gen_ai.response.time_to_first_chunk",),
    "error": ("honeyhive_error",),
    "source": ("honeyhive.source", "traceloop.association.properties.source"),
}
_GROUP_OF = {key: group for group, keys in _GROUPS.items() for key in keys}
# A token count's spelling -> (which count in _TOKENS, its priority among the spellings).
_TOKEN_RANK = {key: (i, j) for i, (_, spellings) in enumerate(_TOKENS)
               for j, key in enumerate(spellings)}
# Ids derived from span data, remembered: the spans of a trace ask for the same ones in
# turn (each child for its parent's event id, each span for its session's). Bounded.
_EVENT_IDS: dict[str, str] = {}  # trace id + span id -> the span's event id
_SESSION_IDS: dict[str, str] = {}  # a session attribute's text -> its canonical UUID
_TRACE_SESSIONS: dict[str, str] = {}  # a trace id -> the id of its session
_REMEMBERED = 4096


def _dashed(x: str) -> str:
    """32 hex digits in the 8-4-4-4-12 form of a UUID."""
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _remember(memo: dict[str, str], key: str, value: str) -> str:
    if len(memo) >= _REMEMBERED:
        memo.clear()
    memo[key] = value
    return value


def event_id_of(trace_id: str, span_id: str) -> str:
    """The event id of a span: the same for every export of it (``uuid5`` of the trace and
    span ids, computed without building UUID objects: it runs for every span)."""
    key = trace_id + span_id
    eid = _EVENT_IDS.get(key)
    if eid is not None:
        return eid
    h = bytearray(hashlib.sha1(_NS_BYTES + key.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return _remember(_EVENT_IDS, key, _dashed(h.hex()))


def _uuid(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    known = _SESSION_IDS.get(v)
    if known is not None:
        return known
    try:
        sid = str(uuid.UUID(v))
    except ValueError:
        return None
    return _remember(_SESSION_IDS, v, sid)


def session_of(span: SpanData) -> str:
    """The span's session: HoneyHive's attributes, else one session per trace."""
    a = span.attributes
    for key in ("honeyhive.session_id", "traceloop.association.properties.session_id",
                "honeyhive_session_id"):
        if key in a:
            sid = _uuid(a[key])
            if sid is not None:
                return sid
    t = span.trace_id  # 32 hex digits: the trace's id, as a UUID
    sid = _TRACE_SESSIONS.get(t)
    if sid is None:
        sid = _remember(_TRACE_SESSIONS, t, _dashed(t))
    return sid


#: Context that tracers copy onto *every* span (OpenLLMetry's association properties, the
#: HoneyHive processor's session and project): it says which session, not that the span
#: is LLM work, so an HTTP or database span carrying it is still not GenAI.
CONTEXT_PREFIXES = ("traceloop.association.properties.", "honeyhive.session_id",
                    "honeyhive.session_name", "honeyhive.project", "honeyhive.source",
                    "honeyhive.parent_id", "honeyhive.session_auto_create")


def is_genai(span: SpanData) -> bool:
    """Whether the span speaks any LLM dialect (else it is HTTP, a database, ...)."""
    return any(k.startswith(GENAI_PREFIXES) and not k.startswith(CONTEXT_PREFIXES)
               for k in span.attributes)


def _json(v: Any) -> Any:
    """A JSON string's value (attributes carry structures as JSON strings, and OpenLLMetry
    its entities' strings as JSON too: ``"\"18C\""``), else ``v``."""
    if isinstance(v, str) and v[:1] in ("[", "{", '"'):
        try:
            return msgspec.json.decode(v)
        except msgspec.DecodeError:
            return v
    return v


def _put(bucket: dict[str, Any], dotted: str, value: Any) -> None:
    """``a.b.c`` = value into nested dicts (the decorators flatten, we fold back)."""
    parts = dotted.split(".") if dotted else ["value"]
    node = bucket
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = node[p] = {}
        node = nxt
    node[parts[-1]] = value


def _lists(node: Any) -> Any:
    """Dicts keyed ``0..n-1`` back into lists: the decorators flatten a list ``r`` into
    ``r.0``, ``r.1``, ..."""
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isascii() and k.isdigit() for k in node) and sorted(map(int, node)) == list(
            range(len(node))):
        return [node[str(i)] for i in range(len(node))]
    return node


def _part_text(p: Any) -> str:
    if not isinstance(p, dict):
        return ""
    if isinstance(p.get("message_content"), dict):  # OpenInference's contents.{j}
        p = p["message_content"]
    t = p.get("content") if isinstance(p.get("content"), str) else p.get("text")
    return t if isinstance(t, str) else ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(p) for p in content)
    return "" if content is None else json.dumps(content)


def _tool_call(c: Any) -> Any:
    """A tool call as the OpenAI shape: OpenInference nests it under ``tool_call``."""
    if isinstance(c, dict) and isinstance(c.get("tool_call"), dict):
        c = c["tool_call"]
    if isinstance(c, dict) and isinstance(c.get("function"), dict):
        return {"id": c.get("id"), "type": "function", "function": c["function"]}
    return c


def _flatten_message(m: Any) -> dict[str, Any]:
    """A GenAI message (``role`` + ``parts``) as ``{role, content, tool_calls}``."""
    if not isinstance(m, dict):
        return {"role": "user", "content": _text(m)}
    out: dict[str, Any] = {"role": m.get("role", "user")}
    parts = m.get("parts")
    if isinstance(parts, list):
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for p in parts:  # one pass: the text parts, and the tool calls
            if not isinstance(p, dict):
                continue
            kind = p.get("type")
            if kind == "tool_call":
                arguments = p.get("arguments")
                calls.append({"id": p.get("id"), "type": "function", "function": {
                    "name": p.get("name"), "arguments": arguments if isinstance(
                        arguments, str) else json.dumps(arguments)}})
            elif kind == "tool_call_response":
                # The GenAI semconv's ToolCallResponsePart: the tool's result, answering
                # the call ``id`` (OpenAI's shape: a tool message with tool_call_id).
                response = p.get("response", p.get("result"))
                texts.append(response if isinstance(response, str)
                             else "" if response is None else json.dumps(response))
                if p.get("id") is not None:
                    out["tool_call_id"] = p["id"]
            elif kind is None or kind == "text":
                content = p.get("content")
                if isinstance(content, str):
                    texts.append(content)
        out["content"] = "".join(texts)
        if calls:
            out["tool_calls"] = calls
    else:
        content = m.get("content")
        if content is None and m.get("contents") is not None:
            content = _lists(m["contents"])
        out["content"] = _text(content)
        calls = _lists(m.get("tool_calls"))
        if calls:
            out["tool_calls"] = [_tool_call(c) for c in calls] if isinstance(calls, list) \
                else calls
        if m.get("tool_call_id") is not None:  # a tool message: which call it answers
            out["tool_call_id"] = m["tool_call_id"]
    if m.get("finish_reason"):
        out["finish_reason"] = m["finish_reason"]
    return out


def _indexed(a: dict[str, Any], prefix: str, used: set[str]) -> list[dict[str, Any]]:
    """``prefix.{i}.{field}`` attributes as a list of dicts, in index order."""
    rows: dict[int, dict[str, Any]] = {}
    for k, v in a.items():
        if not k.startswith(prefix):
            continue
        head, _, rest = k[len(prefix):].partition(".")
        if not (head.isascii() and head.isdigit()) or not rest:
            continue
        used.add(k)
        _put(rows.setdefault(int(head), {}), rest, v)
    return [rows[i] for i in sorted(rows)]


def _event_type(a: dict[str, Any], ancestor: bool) -> str:
    t = a.get("honeyhive_event_type") or a.get("honeyhive_event_type_raw")
    if isinstance(t, str) and t in ("model", "chain", "tool"):
        return t
    op = a.get("gen_ai.operation.name")
    oi = a.get("openinference.span.kind")
    tl = a.get("traceloop.span.kind")
    # The SDK lower-cases the operation name before its table (span_processor.py:1246).
    t = (_OP_TYPES.get(op) or _OP_TYPES.get(op.lower())) if isinstance(op, str) else None
    if t is None and isinstance(oi, str):
        t = _OI_TYPES.get(oi.upper())
    if t is None and isinstance(tl, str):
        t = _TL_TYPES.get(tl)
    if t is None and (a.get("gen_ai.request.model") or a.get("llm.model_name")):
        t = "model"
    # A span kept only as the ancestor of LLM work groups that work: a chain (reference
    # §1.5 "their ancestors as chain events"); any other untyped span is HoneyHive's
    # default, a tool.
    return t or ("chain" if ancestor else "tool")


def map_span(span: SpanData, *, source: str | None = None, ancestor: bool = False,
             parent_id: str | None = None) -> dict[str, Any]:
    """The HoneyHive event of ``span`` (a dict in the ``/events`` shape). Never raises for
    any attribute values; a span without ids is the caller's to refuse.

    ``ancestor``: the span speaks no LLM dialect and is kept because LLM spans descend
    from it (it becomes a ``chain`` unless a rule types it). ``parent_id``: the event to
    hang it under when the caller knows better than the span's own parent (the nearest
    stored ancestor, when the parent was left out)."""
    a = span.attributes
    used: set[str] = set()

    def take(*keys: str) -> Any:
        for k in keys:
            if k in a and a[k] is not None:
                used.add(k)
                return a[k]
        return None

    sid = session_of(span)
    used.update(("honeyhive.session_id", "traceloop.association.properties.session_id",
                 "honeyhive_session_id"))
    eid = event_id_of(span.trace_id, span.span_id)
    parent = parent_id or (event_id_of(span.trace_id, span.parent_span_id)
                           if span.parent_span_id else sid)
    etype = _event_type(a, ancestor)
    used.update(("honeyhive_event_type", "honeyhive_event_type_raw"))
    # The decorators' buckets (honeyhive_inputs.*, ...), which are the event's own fields.
    buckets: dict[str, dict[str, Any]] = {
        "inputs": {}, "outputs": {}, "config": {}, "metadata": {}, "metrics": {},
        "feedback": {}}
    families: set[str] = set()  # the indexed families present (gen_ai.prompt., ...)
    groups: set[str] = set()  # the rules that have attributes to read
    token_keys: list[str] = []  # the token counts' spellings present
    group_of = _GROUP_OF.get
    for k, v in a.items():  # one pass: the decorators' buckets, families and rule groups
        g = group_of(k)
        if g is not None:
            groups.add(g)
            if g == "tokens":
                token_keys.append(k)
        if k.startswith("honeyhive_"):
            head, dot, sub = k[10:].partition(".")
            if head in buckets:
                used.add(k)
                val = _json(v)
                if not dot and isinstance(val, dict):
                    buckets[head].update(val)
                else:
                    _put(buckets[head], sub, val)
        elif k.startswith(_INDEXED):
            families.add(k[:k.index(".", k.index(".") + 1) + 1])
    for b, node in buckets.items():
        if node:
            buckets[b] = {k: _lists(v) for k, v in node.items()}
    inputs, outputs, config, metadata, metrics = (
        buckets["inputs"], buckets["outputs"], buckets["config"], buckets["metadata"],
        buckets["metrics"])

    model = take("gen_ai.request.model", "llm.model_name") if "model" in groups else None
    if model is not None:
        config.setdefault("model", model)
    if "provider" in groups:
        provider = take("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
        if isinstance(provider, str):
            config.setdefault("provider", provider.lower())
    if "hyper" in groups:
        for h, key in _HYPER_KEYS:
            if key in a and a[key] is not None:
                used.add(key)
                config.setdefault(h, a[key])
    if "params" in groups:
        params = _json(take("llm.invocation_parameters"))
        if isinstance(params, dict):
            for k, v in params.items():
                config.setdefault(k, v)
    if "tools" in groups:
        tools = _json(take("gen_ai.tool.definitions", "llm.tools"))
        if tools is not None:
            config.setdefault("tools", tools)
    if etype == "tool" and "tool" in groups:
        for src, dst in (("gen_ai.tool.name", "tool_name"),
                         ("gen_ai.tool.description", "tool_description")):
            v = take(src)
            if v is not None:
                config.setdefault(dst, v)

    # Chat history and the answer (model events).
    history: list[Any] = []
    system = _json(take("gen_ai.system_instructions")) if "system" in groups else None
    if system is not None:
        history.append({"role": "system", "content": _text(system)})
    msgs = _json(take("gen_ai.input.messages")) if "in_msgs" in groups else None
    if isinstance(msgs, list):
        history += [_flatten_message(m) for m in msgs]
    else:
        legacy = _indexed(a, "gen_ai.prompt.", used) if "gen_ai.prompt." in families else []
        if not legacy and "llm.input_messages." in families:
            legacy = [r.get("message", r) for r in _indexed(a, "llm.input_messages.", used)]
        history += [_flatten_message(m) for m in legacy]
    if history:
        inputs.setdefault("chat_history", history)
    out_msgs = _json(take("gen_ai.output.messages")) if "out_msgs" in groups else None
    answer: dict[str, Any] | None = None
    if isinstance(out_msgs, list) and out_msgs:
        answer = _flatten_message(out_msgs[0])
    else:
        legacy = _indexed(a, "gen_ai.completion.", used) \
            if "gen_ai.completion." in families else []
        if not legacy and "llm.output_messages." in families:
            legacy = [r.get("message", r) for r in _indexed(a, "llm.output_messages.", used)]
        if legacy:
            answer = _flatten_message(legacy[0])
    if answer is not None:
        for k, v in answer.items():
            outputs.setdefault(k, v)

    # Inputs and outputs of tools and chains.
    args = _json(take("gen_ai.tool.call.arguments", "input.value", "traceloop.entity.input")) \
        if "args" in groups else None
    used.add("input.mime_type")
    if args is not None and not history:
        if isinstance(args, dict):
            for k, v in args.items():
                inputs.setdefault(k, v)
        else:
            inputs.setdefault("value", args)
    result = _json(take("gen_ai.tool.call.result", "output.value",
                        "traceloop.entity.output")) if "result" in groups else None
    used.add("output.mime_type")
    if result is not None and answer is None:
        outputs.setdefault("message", result)

    # Tokens: as given, never summed with their subsets.
    if token_keys:  # the first spelling present (not None) of each count, in _TOKENS order
        best: dict[int, tuple[int, str]] = {}
        for k in token_keys:
            if a[k] is not None:
                i, j = _TOKEN_RANK[k]
                if i not in best or j < best[i][0]:
                    best[i] = (j, k)
        for i in sorted(best):
            k = best[i][1]
            used.add(k)
            v = a[k]
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                for n in _TOKENS[i][0]:
                    metadata.setdefault(n, v)
    if "total_tokens" not in metadata:
        # Derived from the parts given: an embeddings span has only input tokens.
        parts = [n for n in (metadata.get("prompt_tokens"), metadata.get("completion_tokens"))
                 if isinstance(n, int) and not isinstance(n, bool)]
        if parts:
            metadata["total_tokens"] = sum(parts)
    cost = take("llm.cost.total", "gen_ai.usage.cost") if "cost" in groups else None
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        metrics.setdefault("cost", cost)
    if "meta" in groups:
        for key, name in _META_KEYS:
            if key in a and a[key] is not None:
                used.add(key)
                metadata.setdefault(name, a[key])
    reasons = take("gen_ai.response.finish_reasons") if "reasons" in groups else None
    if isinstance(reasons, list) and reasons:
        metadata.setdefault("finish_reasons", reasons)
        metadata.setdefault("finish_reason", reasons[0])
    ttfc = take("gen_ai.response.time_to_first_chunk") if "ttfc" in groups else None
    if isinstance(ttfc, (int, float)) and not isinstance(ttfc, bool):
        metadata.setdefault("time_to_first_token_ms", ttfc * 1000)

    # Error, source, the OTLP context, and everything no rule took.
    error = take("honeyhive_error") if "error" in groups else None
    if error is None and span.status_code == "ERROR":
        error = span.status_message or None
        if error is None:
            for name, attrs in span.events:
                if name == "exception":
                    error = attrs.get("exception.message") or attrs.get("exception.type")
                    break
        if error is None:
            error = a.get("error.type") or "error"
    src = (take("honeyhive.source", "traceloop.association.properties.source")
           if "source" in groups else None) or source or \
        span.resource.get("deployment.environment.name") or "otel"
    metadata.setdefault("trace_id", span.trace_id)
    metadata.setdefault("span_id", span.span_id)
    if span.parent_span_id:
        metadata.setdefault("parent_span_id", span.parent_span_id)
    if span.scope:
        metadata.setdefault("instrumentor", span.scope)
    for k, v in a.items():
        if k not in used:
            metadata.setdefault(k, v)
    start_ms = span.start_ns // 1_000_000
    end_ms = max(start_ms, span.end_ns // 1_000_000)
    event: dict[str, Any] = {
        "event_id": eid, "session_id": sid, "parent_id": parent, "event_type": etype,
        "event_name": span.name or etype, "source": str(src), "start_time": start_ms,
        "end_time": end_ms, "duration": max(0.0, (span.end_ns - span.start_ns) / 1e6),
        "inputs": inputs, "outputs": outputs, "config": config, "metadata": metadata,
        "metrics": metrics, "feedback": buckets["feedback"],
    }
    if error is not None:
        event["error"] = str(error)
    return event
