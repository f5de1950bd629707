"""hh_exporter: ship LLM observability events to HoneyHive from asyncio, in the background.

The public API is exactly ``__all__``; every implementation module is private.
"""

from ._config import DEFAULT_API_URL, ExporterConfig, OverflowPolicy
from ._errors import (
    BufferFullError,
    ConfigError,
    ConnectError,
    EventError,
    EventTooLargeError,
    ExporterClosedError,
    HHExporterError,
    RequestTimeoutError,
    TransportError,
)
from ._exporter import Exporter
from ._session import Session
from ._stats import CUT_REASONS, DROP_REASONS, DropNotice, DropReason, ExporterStats
from ._sync import SyncExporter
from ._trace import Span, Trace, current_span
from ._transport import AiohttpTransport, Response, Transport
from ._version import __version__
from .wire._models import SessionProperties

__all__ = [
    "CUT_REASONS",
    "DEFAULT_API_URL",
    "DROP_REASONS",
    "AiohttpTransport",
    "BufferFullError",
    "ConfigError",
    "ConnectError",
    "DropNotice",
    "DropReason",
    "EventError",
    "EventTooLargeError",
    "Exporter",
    "ExporterClosedError",
    "ExporterConfig",
    "ExporterStats",
    "HHExporterError",
    "OverflowPolicy",
    "RequestTimeoutError",
    "Response",
    "Session",
    "SessionProperties",
    "Span",
    "SyncExporter",
    "Trace",
    "Transport",
    "TransportError",
    "__version__",
    "current_span",
]

# Reprs and docs show hh_exporter.Exporter, not hh_exporter._exporter.Exporter.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
