"""The Redis pipeline (extra ``hh-exporter[redis]``): ``StreamExporter`` and
``SyncStreamExporter`` add batches to a Redis stream, ``Relay`` delivers them to the API as
one consumer of a group. ``redis`` is imported when a stream is first used, not here."""

from ._relay import Relay, RelayStats
from ._stream_exporter import StreamExporter, SyncStreamExporter

__all__ = ["Relay", "RelayStats", "StreamExporter", "SyncStreamExporter"]

# Reprs and docs show hh_exporter.streams.Relay, not hh_exporter.streams._relay.Relay.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
