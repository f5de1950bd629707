"""A local HoneyHive-compatible ingestion server: validate, store in SQLite, inject faults.

It never imports the exporter's internals: it speaks the wire format only.
"""

from ._app import Collector, build_app
from ._faults import Faults, parse_script
from ._store import NullStore, SQLiteStore, Store, open_store

__all__ = [
    "Collector",
    "Faults",
    "NullStore",
    "SQLiteStore",
    "Store",
    "build_app",
    "open_store",
    "parse_script",
]
