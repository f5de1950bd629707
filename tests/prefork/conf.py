"""gunicorn settings for the ``flask_post_fork`` app: an exporter of its own per worker."""

from __future__ import annotations

from typing import Any


def post_fork(server: Any, worker: Any) -> None:
    import hh_exporter
    from tests.prefork import apps

    apps.WORKER = hh_exporter.SyncExporter(**apps.OPTS)
