"""The Redis Streams leg: what producers add to a stream, and how the relay reads it back.

A stream entry is one batch body exactly as the API would receive it (``r``: its route,
``b``: the body), or one session start (``r``: ``/session/start`` or ``/v1/sessions``,
``b``: the start body). The producer is the ordinary exporter pipeline with
:class:`RedisTransport` behind the transport seam: the sender holds a session's events
until its start was added, so the start's entry is always ahead of its events' entries.

Adding is one Lua script, atomic in Redis:

- with a bound (``stream_maxlen``), an add to a stream already that long is refused, and
  the transport waits for room (then answers 503 and the exporter backs off and retries):
  backpressure, never a silent trim of entries no relay has read (``MAXLEN ~`` rides along
  as Redis's own bound);
- a session start also stores its body under ``{stream}:session:{id}`` (with a TTL), so a
  relay that meets a session's events without having read its start entry (another relay
  took it, or died with it) can start the session itself. Starting a session twice with the
  same ``session_id`` is harmless: the API merges it and answers the existing session
  (``reference/honeyhive-api-behaviour.md``, "POST /session/start answers the full session
  event"; SPEC-DP ``/v1/sessions``);
- a session's first batch from a producer with ``session_start="batch"`` (a single-session
  body) stores the start body its ``session_properties`` make, the same way: a relay
  creates the session from it, by its own ``session_start`` mode.

The session key carries the stream's name as a hash tag, so in Redis Cluster both keys of a
script live in one slot.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from .._encoding import GENERIC_ROUTE, MODEL_ROUTE, SESSION_ROUTE, V1_ROUTE, V1_SESSION_ROUTE
from .._errors import ConfigError, ConnectError, RequestTimeoutError, TransportError
from .._transport import Response
from ..wire._start import start_session_id

__all__ = ["BATCH_ROUTES", "START_ROUTES", "RedisTransport", "envelope_start", "session_key",
           "split_batch"]

START_ROUTES = frozenset((SESSION_ROUTE, V1_SESSION_ROUTE))
BATCH_ROUTES = frozenset((MODEL_ROUTE, GENERIC_ROUTE, V1_ROUTE))

# KEYS[1]: the stream; KEYS[2]: the session key (starts and first batches only).
# ARGV: maxlen (0: none), route, body, session TTL in seconds, the session's start body.
_ADD = """
local maxlen = tonumber(ARGV[1])
if maxlen > 0 and redis.call('XLEN', KEYS[1]) >= maxlen then
  return false
end
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[4])
end
if maxlen > 0 then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'r', ARGV[2], 'b', ARGV[3])
end
return redis.call('XADD', KEYS[1], '*', 'r', ARGV[2], 'b', ARGV[3])
"""


def session_key(stream: str, session_id: str) -> str:
    """Where a session's start body is kept, in the stream's Cluster slot."""
    return f"{{{stream}}}:session:{session_id}"


class _ModelBatch(msgspec.Struct):
    model_events: list[msgspec.Raw]


class _EventBatch(msgspec.Struct):
    events: list[msgspec.Raw]


class _EventSession(msgspec.Struct):
    session_id: str | None = None


_decode_model = msgspec.json.Decoder(_ModelBatch).decode
_decode_events = msgspec.json.Decoder(_EventBatch).decode
_decode_sid = msgspec.json.Decoder(_EventSession).decode


# How a single-session body the exporter builds ends (``_encoding.batch_body``): the marker,
# then the ``session_properties`` object, then the body's closing brace. The marker cannot
# occur inside an event: there, its quotes would be escaped.
_ENVELOPE_MARKS = {
    MODEL_ROUTE: b'],"is_single_session":true,"session_properties":',
    GENERIC_ROUTE: b'],"is_single_session":true,"session_properties":',
    V1_ROUTE: b'],"single_session":true,"session_properties":',
}


def envelope_start(route: str, body: bytes) -> tuple[str, bytes] | None:
    """``(session_id, start body)`` of a session's first batch (a single-session body
    whose ``session_properties`` carry the id), or None for a mixed batch."""
    mark = _ENVELOPE_MARKS.get(route)
    if mark is None or not body.endswith(b"}"):
        return None
    at = body.rfind(mark)
    if at < 0:
        return None
    props = body[at + len(mark):-1]
    try:
        sid = _decode_sid(props).session_id
    except msgspec.DecodeError:
        return None
    if sid is None:
        return None
    return sid, props if route == V1_ROUTE else b'{"session":' + props + b"}"


def split_batch(route: str, body: bytes) -> list[tuple[str | None, bytes]]:
    """A batch body back into ``(session_id, event bytes)``; DecodeError if it is not one."""
    raws = _decode_model(body).model_events if route == MODEL_ROUTE else \
        _decode_events(body).events
    out = []
    for raw in raws:
        data = bytes(raw)
        out.append((_decode_sid(data).session_id, data))
    return out


class RedisTransport:
    """A :class:`~hh_exporter.Transport` that adds each body to a Redis stream.

    A 2xx means the body is in the stream (``confirms_whole_body``: every event of it).
    While the stream is full the add waits (up to ``timeout``), then answers 503 (the
    exporter retries with backoff); Redis unreachable raises
    :class:`~hh_exporter.ConnectError` (retried likewise); a command Redis refuses answers
    503 if it may pass (out of memory, loading, a failover) and 400 otherwise.
    """

    confirms_whole_body = True
    #: The exporter made it for itself (StreamExporter): the exporter closes it.
    closed_with_exporter = True

    def __init__(self, redis_url: str, stream: str, *, maxlen: int | None = None,
                 session_ttl: float = 86_400.0, timeout: float = 10.0) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - the extra is missing
            raise ConfigError("the Redis stream needs the redis package: "
                              "pip install 'hh-exporter[redis]'") from None
        if not isinstance(stream, str) or not stream:
            raise ConfigError("stream must be a non-empty string")
        if maxlen is not None and (not isinstance(maxlen, int) or maxlen < 1):
            raise ConfigError(f"stream_maxlen must be a positive integer or None, got {maxlen!r}")
        if session_ttl <= 0:
            raise ConfigError("session_ttl must be > 0")
        self._url = redis_url  # for fresh(); never shown
        self.stream = stream
        self.maxlen = maxlen
        self._ttl = max(1, int(session_ttl))
        self._timeout = timeout
        self._redis: Any = aioredis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._add = self._redis.register_script(_ADD)
        self._closed = False

    @property
    def label(self) -> str:
        """What the exporter's repr shows of it: the stream, never the URL (it may carry
        the Redis password)."""
        return f"stream={self.stream!r}"

    def __repr__(self) -> str:  # the URL may carry a password: never shown
        return f"RedisTransport(stream={self.stream!r}, maxlen={self.maxlen!r})"

    def fresh(self) -> RedisTransport:
        """The same transport with no connections (for a forked child)."""
        return RedisTransport(self._url, self.stream, maxlen=self.maxlen,
                              session_ttl=float(self._ttl), timeout=self._timeout)

    async def post(self, path: str, body: bytes) -> Response:
        """Add ``body`` (a batch, or a session start) to the stream."""
        from redis import exceptions as rx

        if self._closed:
            raise TransportError("the transport is closed")
        keys = [self.stream]
        sid = None
        start = body
        if path in START_ROUTES:
            try:
                sid = start_session_id(body)
            except msgspec.DecodeError:
                return Response(400, b'{"error": "not a session start body"}')
        else:
            first = envelope_start(path, body)
            if first is not None:
                sid, start = first
        if sid is not None:
            keys.append(session_key(self.stream, sid))
        try:
            added = await self._add_waiting(keys, path, body, start)
        except rx.TimeoutError as exc:
            raise RequestTimeoutError(f"Redis did not answer: {type(exc).__name__}") from None
        except rx.ConnectionError as exc:
            raise ConnectError(f"cannot reach Redis: {_safe(exc)}") from None
        except rx.ResponseError as exc:
            text = _safe(exc)
            transient = text.split(" ", 1)[0] in ("OOM", "LOADING", "BUSY", "TRYAGAIN",
                                                    "MASTERDOWN", "READONLY", "CLUSTERDOWN")
            return Response(503 if transient else 400,
                            msgspec.json.encode({"error": f"Redis refused: {text}"}))
        if added is None:
            return Response(503, msgspec.json.encode(
                {"error": f"the stream {self.stream} is full ({self.maxlen} entries)"}))
        if sid is not None:
            return Response(200, msgspec.json.encode({"session_id": sid, "success": True}))
        return Response(200, b'{"success":true}')

    async def _add_waiting(self, keys: list[str], path: str, body: bytes,
                           start: bytes) -> Any:
        """Add, waiting while the stream is full: up to the request timeout, polling from
        10 ms to 250 ms. The sender's request slot is held meanwhile, so the exporter's
        buffer fills and ``send_*`` calls wait: backpressure reaches the producer's code
        instead of attempts running out in a burst of refusals."""
        deadline = time.monotonic() + self._timeout
        delay = 0.01
        while True:
            added = await self._add(keys=keys,
                                    args=[self.maxlen or 0, path, body, self._ttl, start])
            if added is not None or time.monotonic() + delay > deadline or self._closed:
                return added
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def aclose(self) -> None:
        """Close the connections. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._redis.aclose()


def _safe(exc: BaseException) -> str:
    """Redis's message, with anything URL-like (a password) left out."""
    text = str(exc)[:200]
    return "redis error" if "@" in text or "://" in text else text
