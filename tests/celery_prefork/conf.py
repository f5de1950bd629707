"""Celery settings shared by the worker (``app.py``) and the test's client: a broker and a
result backend on the file system, so tasks cross processes without a server."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def settings(root: Path) -> dict[str, Any]:
    """The configuration for a worker and its client sharing the directory ``root``."""
    box, done, results = root / "broker", root / "processed", root / "results"
    control = root / "control"
    for folder in (box, done, results, control):
        folder.mkdir(parents=True, exist_ok=True)
    return dict(
        broker_url="filesystem://",
        # The producer writes where the consumer reads; a short poll keeps the test lean.
        broker_transport_options={"data_folder_in": str(box), "data_folder_out": str(box),
                                  "processed_folder": str(done), "store_processed": False,
                                  # Its fanout tables, never in the working directory.
                                  "control_folder": str(control),
                                  "polling_interval": 0.02},
        broker_connection_retry_on_startup=True,
        result_backend=f"file://{results}",
        # Remote control needs a fanout exchange the file-system broker has no use for here.
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
    )
