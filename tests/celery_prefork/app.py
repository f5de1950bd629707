"""The worker's app: ``celery -A tests.celery_prefork.app worker --pool prefork``.

``HH_APP_MODE`` says how the worker's parent holds its exporter when billiard forks the
pool:

* ``sync``: a module-level :class:`SyncExporter` (started: its loop thread runs in the
  parent only); tasks log through it as the child inherited it (it restarts empty there);
* ``async``: a module-level :class:`Exporter` that nobody starts, used through sessions;
  each task logs in a session of its own;
* ``init``: the same module-level SyncExporter, which tasks leave alone: they log through
  one each child makes in Celery's ``worker_process_init`` (where Celery's documentation
  puts per-child resources), so nothing inherited restarts in the child.

Either way one event is logged at import, in the parent, and its id written to
``HH_CELERY_DIR/import-<pid>``; it reaches the API when the parent exits. Each task logs one
model event and returns its id and the child's pid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

import hh_exporter

from .conf import settings

ROOT = Path(os.environ["HH_CELERY_DIR"])
MODE = os.environ["HH_APP_MODE"]
OPTS: dict[str, Any] = dict(project="celery", linger=0.05, close_timeout=10.0)
FIELDS: dict[str, Any] = dict(provider="p", messages=[{"role": "user", "content": "q"}],
                              response={"content": "a"})

app = Celery("hh_celery")
app.conf.update(settings(ROOT))
OWN: hh_exporter.SyncExporter | None = None  # the child's own, made in worker_process_init

if MODE in ("sync", "init"):
    SYNC = hh_exporter.SyncExporter(**OPTS)
    IMPORT_ID = SYNC.log_model_event(model="import", **FIELDS)

    if MODE == "init":
        @worker_process_init.connect
        def own_exporter(**_: Any) -> None:
            global OWN
            OWN = hh_exporter.SyncExporter(**OPTS)
else:
    ASYNC = hh_exporter.Exporter(**OPTS)
    IMPORT_ID = ASYNC.session(session_name="import").log_model_event(model="import", **FIELDS)
(ROOT / f"import-{os.getpid()}").write_text(IMPORT_ID)


@app.task
def log_one(i: int) -> dict[str, Any]:
    """Log one model event; telemetry must never make the task fail."""
    if MODE in ("sync", "init"):
        hh = SYNC if MODE == "sync" else OWN
        assert hh is not None, "worker_process_init did not run"
        event_id = hh.log_model_event(model="task", **FIELDS)
    else:
        event_id = ASYNC.session(session_name=f"task-{i}").log_model_event(model="task",
                                                                            **FIELDS)
    return {"event_id": event_id, "pid": os.getpid()}
