"""The exporter's one error tree.

::

    HHExporterError
    ├── ConfigError (also ValueError)     invalid configuration, raised at construction
    ├── EventError (also ValueError)      an event the caller logged is invalid or unencodable
    │   └── EventTooLargeError            larger than a batch may be
    ├── ExporterClosedError               closed or failed
    ├── BufferFullError                   ``send(..., timeout=...)`` found no space in time
    └── TransportError                    a request failed; ``retriable`` says whether to try again
        ├── ConnectError                  the connection failed or was dropped (retriable)
        └── RequestTimeoutError           no answer within the request timeout (retriable)

Retriability is data on the class (``retriable``), never a list of types at the call site.
Messages never contain the API key.
"""

from __future__ import annotations

__all__ = [
    "BufferFullError",
    "ConfigError",
    "ConnectError",
    "EventError",
    "EventTooLargeError",
    "ExporterClosedError",
    "HHExporterError",
    "RequestTimeoutError",
    "TransportError",
]


class HHExporterError(Exception):
    """Base of every error hh_exporter raises."""

    retriable: bool = False


class ConfigError(HHExporterError, ValueError):
    """A configuration value is invalid; raised when the exporter is built."""


class EventError(HHExporterError, ValueError):
    """An event is invalid: a wrong type for a known field, or a value that cannot be encoded.

    Raised at the call site, so the bad value is found where it was made.
    """


class EventTooLargeError(EventError):
    """An event is larger than ``max_batch_bytes`` allows, so no batch could carry it."""


class ExporterClosedError(HHExporterError):
    """The exporter no longer accepts events: closed or failed (an exporter inherited across
    ``fork()`` restarts in the child instead; only its bulk ``offer_encoded`` wants a start)."""


class BufferFullError(HHExporterError):
    """``send()`` waited its whole timeout without finding buffer space."""


class TransportError(HHExporterError):
    """A request did not produce an HTTP response."""

    retriable = True


class ConnectError(TransportError):
    """The connection could not be made, or was dropped before a response."""


class RequestTimeoutError(TransportError):
    """No response arrived within the request timeout."""
