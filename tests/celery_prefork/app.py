"""The worker's app: ``celery -A tests.celery_prefork.app worker --pool prefork``.

``HH_APP_MODE`` says how the worker's parent holds its exporter when billiard forks the
pool: ``sync``, a module-level :class:`SyncExporter` (started: its loop thread runs in the
parent only); ``async``, a module-level :class:`Exporter` that nobody starts, used through
sessions. Either way one event is logged at import, in the parent, and its id written to
``HH_CELERY_DIR/import-<pid>``; it reaches the API when the parent exits. Each task logs one
model event (the async variant in a session of its own) through the inherited exporter,
which restarts empty in the pool child, and returns the event's id and the child's pid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery

import hh_exporter

from .conf import settings

ROOT = Path(os.environ["HH_CELERY_DIR"])
MODE = os.environ["HH_APP_MODE"]
OPTS: dict[str, Any] = dict(project="celery", linger=0.05, close_timeout=10.0)
FIELDS: dict[str, Any] = dict(provider="p", messages=[{"role": "user", "content": "q"}],
                              response={"content": "a"})

app = Celery("hh_celery")
app.conf.update(settings(ROOT))

if MODE == "sync":
    SYNC = hh_exporter.SyncExporter(**OPTS)
    IMPORT_ID = SYNC.log_model_event(model="import", **FIELDS)
else:
    ASYNC = hh_exporter.Exporter(**OPTS)
    IMPORT_ID = ASYNC.session(session_name="import").log_model_event(model="import", **FIELDS)
(ROOT / f"import-{os.getpid()}").write_text(IMPORT_ID)


@app.task
def log_one(i: int) -> dict[str, Any]:
    """Log one model event; telemetry must never make the task fail."""
    if MODE == "sync":
        event_id = SYNC.log_model_event(model="task", **FIELDS)
    else:
        event_id = ASYNC.session(session_name=f"task-{i}").log_model_event(model="task",
                                                                            **FIELDS)
    return {"event_id": event_id, "pid": os.getpid()}
