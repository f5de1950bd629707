"""OTLP/HTTP trace requests decoded into plain spans: JSON or protobuf; gzip, deflate
(zlib or raw, as clients send it) or none.

What OpenTelemetry exporters send to ``/v1/traces`` (and the official HoneyHive tracer to
``{server_url}/opentelemetry/v1/traces``). JSON per the OTLP spec: ids as hex strings,
enums as names or integers, 64-bit integers as strings, attribute values as ``AnyValue``
objects. Protobuf needs ``opentelemetry-proto`` (extra ``hh-exporter[otel]``).
"""

from __future__ import annotations

import base64
import gzip
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["ENCODINGS", "OTLPError", "SpanData", "Spans", "UnsupportedEncoding",
           "decode_request"]

#: The Content-Encodings a request may come in (the OTel Collector's otlphttp receiver
#: takes these; OTel's Python exporter sends gzip or deflate).
ENCODINGS = ("gzip", "x-gzip", "deflate", "identity", "")

#: The most a decompressed request may hold (a gzip bomb stops here).
MAX_DECOMPRESSED = 64 * 1024 * 1024


class OTLPError(ValueError):
    """A request that is not OTLP: its message says why (answered 400)."""


class UnsupportedEncoding(OTLPError):
    """A Content-Encoding this server does not read (answered 415, as OTLP/HTTP servers
    answer a media they do not take)."""


@dataclass(slots=True)
class SpanData:
    """One span, whatever it came from (OTLP JSON, protobuf, or the SDK's ReadableSpan)."""

    trace_id: str                      # 32 hex digits
    span_id: str                       # 16 hex digits
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status_code: str = "UNSET"         # UNSET, OK, ERROR
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    dropped_attributes: int = 0


_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR", "STATUS_CODE_UNSET": "UNSET",
           "STATUS_CODE_OK": "OK", "STATUS_CODE_ERROR": "ERROR"}


def decode_request(body: bytes, content_type: str, encoding: str = "") -> Spans:
    """The spans of one ``ExportTraceServiceRequest``; OTLPError if it is not one. Spans
    that cannot be read (no ids, a value of the wrong type) are left out and listed in
    :data:`REFUSED` of the returned list (``refused_spans(result)``)."""
    enc = encoding.strip().lower()
    if enc in ("gzip", "x-gzip"):
        # aiohttp's server already inflates gzip request bodies; other hosts may not.
        if body[:2] == b"\x1f\x8b":
            body = _inflate(body, 16 + zlib.MAX_WBITS, "gzip")
    elif enc == "deflate":
        # HTTP's "deflate" is zlib (RFC 9110 §8.4.1.2), but clients send raw deflate too
        # (as browsers learned to accept): a zlib header says which.
        zlib_header = len(body) >= 2 and body[0] & 0x0F == 8 and (
            body[0] << 8 | body[1]) % 31 == 0
        body = _inflate(body, zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS, "deflate")
    elif enc not in ENCODINGS:
        raise UnsupportedEncoding(
            f"unsupported Content-Encoding {encoding!r} (gzip, deflate or identity)")
    if content_type == "application/json":
        try:
            req = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise OTLPError(f"invalid JSON: {exc}") from None
        try:
            return _from_json(req)
        except OTLPError:
            raise
        except (AttributeError, TypeError, ValueError) as exc:  # a shape OTLP does not have
            raise OTLPError(f"not an ExportTraceServiceRequest: {type(exc).__name__}: "
                            f"{str(exc)[:100]}") from None
    if content_type == "application/x-protobuf":
        return _from_protobuf(body)
    raise OTLPError(f"Content-Type must be application/json or application/x-protobuf, "
                    f"got {content_type!r}")


def _inflate(body: bytes, wbits: int, name: str) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, MAX_DECOMPRESSED + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise OTLPError(f"invalid {name} body: {exc}") from None
    if not d.eof and len(out) <= MAX_DECOMPRESSED:
        raise OTLPError(f"invalid {name} body: truncated")
    if len(out) > MAX_DECOMPRESSED:
        raise OTLPError(f"the decompressed body exceeds {MAX_DECOMPRESSED} bytes")
    return out


# -- JSON -----------------------------------------------------------------------------------

def _any_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_any_value(x) for x in (v["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in v:
        return _attrs((v["kvlistValue"] or {}).get("values") or [])
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"]).hex()
    return None


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs or []:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"]] = _any_value(kv.get("value"))
    return out


def _hex_id(v: Any, n: int) -> str | None:
    """An OTLP/JSON id: hex per the spec (some senders use base64, as protobuf's JSON
    mapping would)."""
    if not v:
        return None
    if not isinstance(v, str):
        raise OTLPError(f"an id must be a string, got {type(v).__name__}")
    s = v.lower()
    if len(s) == n and all(c in "0123456789abcdef" for c in s):
        return s
    try:
        raw = base64.b64decode(v, validate=True)
    except ValueError:
        raise OTLPError(f"invalid id {v[:40]!r}") from None
    if len(raw) * 2 != n:
        raise OTLPError(f"invalid id {v[:40]!r}")
    return raw.hex()


class Spans(list[SpanData]):
    """The spans of a request, and why any were refused (one message per span)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []


def _status(code: Any) -> str:
    return _STATUS.get(code, "UNSET") if isinstance(code, (int, str)) else "UNSET"


def _from_json(req: Any) -> Spans:
    if not isinstance(req, dict) or not isinstance(req.get("resourceSpans", []), list):
        raise OTLPError("not an ExportTraceServiceRequest: no resourceSpans list")
    out = Spans()
    for rs in req.get("resourceSpans") or []:
        resource = _attrs(((rs or {}).get("resource") or {}).get("attributes"))
        for ss in (rs or {}).get("scopeSpans") or (rs or {}).get("instrumentationLibrarySpans") \
                or []:
            scope = ((ss or {}).get("scope") or {}).get("name") or ""
            for sp in (ss or {}).get("spans") or []:
                try:
                    out.append(_json_span(sp, resource, str(scope)))
                except (OTLPError, ValueError, TypeError, AttributeError) as exc:
                    out.refused.append(f"{type(exc).__name__}: {str(exc)[:120]}")
    return out


def _json_span(sp: Any, resource: dict[str, Any], scope: str) -> SpanData:
    """One OTLP/JSON span; raises (OTLPError, ValueError...) if it cannot be read."""
    if not isinstance(sp, dict):
        raise OTLPError("a span must be an object")
    trace_id = _hex_id(sp.get("traceId"), 32)
    span_id = _hex_id(sp.get("spanId"), 16)
    if trace_id is None or span_id is None:
        raise OTLPError("a span needs traceId and spanId")
    status = sp.get("status") or {}
    return SpanData(
        trace_id=trace_id, span_id=span_id,
        parent_span_id=_hex_id(sp.get("parentSpanId"), 16),
        name=str(sp.get("name") or ""),
        start_ns=int(sp.get("startTimeUnixNano") or 0),
        end_ns=int(sp.get("endTimeUnixNano") or 0),
        attributes=_attrs(sp.get("attributes")),
        events=[(str(e.get("name") or ""), _attrs(e.get("attributes")))
                for e in sp.get("events") or [] if isinstance(e, dict)],
        status_code=_status(status.get("code", 0)),
        status_message=str(status.get("message") or ""),
        resource=resource, scope=scope,
        dropped_attributes=int(sp.get("droppedAttributesCount") or 0))


# -- protobuf -------------------------------------------------------------------------------

def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return bytes(v.bytes_value).hex()
    return getattr(v, kind)


def _from_protobuf(body: bytes) -> Spans:
    try:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
    except ImportError:
        raise OTLPError("protobuf OTLP needs the opentelemetry-proto package "
                        "(pip install 'hh-exporter[otel]'); JSON works without it") from None
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except DecodeError as exc:
        raise OTLPError(f"invalid protobuf: {exc}") from None
    out = Spans()
    for rs in req.resource_spans:
        resource = {kv.key: _pb_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for sp in ss.spans:
                if len(sp.trace_id) != 16 or len(sp.span_id) != 8:
                    out.refused.append("a span needs a 16-byte traceId and an 8-byte spanId")
                    continue
                out.append(SpanData(
                    trace_id=sp.trace_id.hex(), span_id=sp.span_id.hex(),
                    parent_span_id=sp.parent_span_id.hex() or None, name=sp.name,
                    start_ns=sp.start_time_unix_nano, end_ns=sp.end_time_unix_nano,
                    attributes={kv.key: _pb_value(kv.value) for kv in sp.attributes},
                    events=[(e.name, {kv.key: _pb_value(kv.value) for kv in e.attributes})
                            for e in sp.events],
                    status_code=_STATUS.get(int(sp.status.code), "UNSET"),
                    status_message=sp.status.message, resource=resource,
                    scope=ss.scope.name, dropped_attributes=sp.dropped_attributes_count))
    return out
