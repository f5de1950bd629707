"""The wire formats, pure (no I/O, no exporter): the API's request and response Structs, the
v1 mapping, OTLP decoding and the OTel GenAI span mapping. The collector imports only this
room of the client."""

from ._models import (
    BatchResponse,
    Event,
    EventBatch,
    ModelEvent,
    ModelEventBatch,
    SessionProperties,
    SessionStartRequest,
)
from ._otel_map import is_genai, map_span
from ._otlp import OTLPError, SpanData, decode_request

__all__ = [
    "BatchResponse",
    "Event",
    "EventBatch",
    "ModelEvent",
    "ModelEventBatch",
    "OTLPError",
    "SessionProperties",
    "SessionStartRequest",
    "SpanData",
    "decode_request",
    "is_genai",
    "map_span",
]

# Reprs and docs show hh_exporter.wire.ModelEvent, not hh_exporter.wire._models.ModelEvent
# (SessionProperties, also in the top-level __all__, ends up "hh_exporter": that loop runs last).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
