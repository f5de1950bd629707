"""StreamExporter: the exporter's pipeline, with a Redis stream where the API would be."""

from __future__ import annotations

import os
from typing import Any

from .._errors import ConfigError
from .._exporter import Exporter
from .._sync import SyncExporter
from ._stream import RedisTransport

__all__ = ["DEFAULT_STREAM", "StreamExporter", "SyncStreamExporter"]

DEFAULT_STREAM = "hh:events"


class StreamExporter(Exporter):
    """An :class:`Exporter` whose batches go to a Redis stream instead of the API.

    ``hh-exporter relay`` processes read the stream in a consumer group and deliver to the
    API; see the "Fleets" page of docs/ for when to use which. Everything else is the
    exporter's: ``session()``, ``log_model_event``, ``log_event``, ``trace``, ``flush``,
    ``aclose``, stats and the same guarantees, with "delivered" meaning "in the stream".
    A session's start is added ahead of its events, as the API would see it.

    Args:
        redis_url: ``redis://[:password@]host:port/db`` (or ``rediss://``); defaults to
            ``HH_REDIS_URL``.
        stream: The stream's key.
        stream_maxlen: Refuse to add to a stream this long (entries, i.e. batches): the
            exporter backs off and retries, so a stalled relay pool slows producers down
            instead of Redis trimming entries no relay has read. None: no bound.
        session_ttl: Seconds a session's start body is kept for relays that meet its
            events without its start.
        **kwargs: The :class:`Exporter`'s settings. ``api_key`` is not needed: producers
            never talk to the API (the relays hold the key).
    """

    def __init__(self, *, redis_url: str | None = None, stream: str = DEFAULT_STREAM,
                 stream_maxlen: int | None = 10_000, session_ttl: float = 86_400.0,
                 **kwargs: Any) -> None:
        if "transport" in kwargs:
            raise TypeError("StreamExporter makes its own transport: pass redis_url= and "
                            "stream= instead")
        url = redis_url or os.environ.get("HH_REDIS_URL")
        if not url:
            raise ConfigError("redis_url is required: pass redis_url=... or set HH_REDIS_URL")
        if kwargs.get("config") is None:
            # Producers need no API key; a placeholder keeps the config's check meaningful
            # for the exporters that do.
            kwargs.setdefault("api_key", os.environ.get("HH_API_KEY") or "unused-by-streams")
        timeout = kwargs.get("request_timeout", 10.0)
        transport = RedisTransport(url, stream, maxlen=stream_maxlen, session_ttl=session_ttl,
                                   timeout=timeout)
        super().__init__(transport=transport, **kwargs)
        self.stream = stream


class SyncStreamExporter(SyncExporter):
    """A :class:`StreamExporter` for code without an event loop (Celery, scripts): the
    :class:`SyncExporter` API, same arguments as :class:`StreamExporter`."""

    _exporter_class = StreamExporter
