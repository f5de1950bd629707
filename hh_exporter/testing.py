"""Test helpers for users' own code: an in-memory transport instead of a network.

``MemoryTransport(handler)`` calls ``handler(path, body)`` for each request; the handler
(sync or async) returns a :class:`Response`, or raises a :class:`~hh_exporter.TransportError`
to act as a dropped connection. With no handler every request gets the 200 the API would
give (:func:`ok_answer`). Every request is recorded in ``requests``::

    transport = MemoryTransport()
    async with Exporter(api_key="k", project="p", transport=transport) as hh:
        hh.log_model_event(...)
    assert transport.events() == [...]
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ._transport import Response

__all__ = ["MemoryTransport", "Response", "ok_answer"]

Handler = Callable[[str, bytes], "Response | Awaitable[Response]"]


def ok_answer(path: str, body: bytes) -> Response:
    """The 200 the HoneyHive API gives to ``body`` on ``path``.

    A batch is answered ``{"event_ids": [...], "success": true}`` with the ids it carried;
    ``/session/start`` and ``/v1/sessions`` with the session's ``session_id``.
    """
    obj = msgspec.json.decode(body)
    if path in ("/session/start", "/v1/sessions"):
        sid = (obj.get("session") or {} if path == "/session/start" else obj).get("session_id")
        return Response(200, msgspec.json.encode({"session_id": sid, "event_id": sid}))
    events = obj.get("model_events") or obj.get("events") or []
    ids = [e.get("event_id") for e in events]
    return Response(200, msgspec.json.encode({"event_ids": ids, "success": True}))


class MemoryTransport:
    """A :class:`~hh_exporter.Transport` that keeps requests in memory."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        #: ``(path, body)`` of every request, in order.
        self.requests: list[tuple[str, bytes]] = []
        self.closed = False

    async def post(self, path: str, body: bytes) -> Response:
        """Record the request and answer it through the handler."""
        self.requests.append((path, body))
        if self.handler is None:
            return ok_answer(path, body)
        result = self.handler(path, body)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, Response)
        return result

    async def aclose(self) -> None:
        """Mark the transport closed."""
        self.closed = True

    def bodies(self) -> list[dict[str, Any]]:
        """Every request body, decoded."""
        return [msgspec.json.decode(body) for _, body in self.requests]

    def events(self) -> list[dict[str, Any]]:
        """Every event sent, in request order (repeats included when requests were retried)."""
        out: list[dict[str, Any]] = []
        for body in self.bodies():
            out.extend(body.get("model_events") or body.get("events") or [])
        return out

    def sessions(self) -> list[dict[str, Any]]:
        """The session of every ``POST /session/start`` or ``/v1/sessions``, in order."""
        out: list[dict[str, Any]] = []
        for path, body in self.requests:
            if path == "/session/start":
                out.append(msgspec.json.decode(body)["session"])
            elif path == "/v1/sessions":
                out.append(msgspec.json.decode(body))
        return out
