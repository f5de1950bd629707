"""The apps ``test_prefork`` serves with ``gunicorn -w 2``, chosen by ``HH_APP_MODE``.

Each request logs one model event and answers its ``event_id``; an event logged at import
writes its id to ``HH_IDS_DIR`` (a master that imports the app under ``--preload`` logs one
there, and so does each worker that imports it itself), so the test knows every id that
must be stored, and that each must be stored once.

* ``asgi_lifespan``: FastAPI on uvicorn workers, the exporter made in the lifespan;
* ``asgi_module``: FastAPI, a module-level async Exporter, one event at import;
* ``flask_module``: Flask, a module-level SyncExporter, one event at import;
* ``flask_post_fork``: Flask, a module-level SyncExporter (one event at import) the app does
  not use, and one per worker made in gunicorn's ``post_fork`` hook (``conf.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hh_exporter

MODE = os.environ["HH_APP_MODE"]
OPTS: dict[str, Any] = dict(project="prefork", linger=0.05, close_timeout=10.0)
FIELDS: dict[str, Any] = dict(provider="p", messages=[{"role": "user", "content": "q"}],
                              response={"content": "a"})


def note_import(event_id: str) -> None:
    Path(os.environ["HH_IDS_DIR"], f"import-{os.getpid()}").write_text(event_id)


if MODE.startswith("asgi"):
    from fastapi import FastAPI

    if MODE == "asgi_module":
        HH = hh_exporter.Exporter(**OPTS)
        note_import(HH.log_model_event(model="import", **FIELDS))

        app = FastAPI()
    else:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            global HH
            async with hh_exporter.Exporter(**OPTS) as HH:
                yield

        app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"event_id": HH.log_model_event(model="request", **FIELDS)}
else:
    from flask import Flask

    SYNC = hh_exporter.SyncExporter(**OPTS)
    note_import(SYNC.log_model_event(model="import", **FIELDS))
    WORKER: hh_exporter.SyncExporter | None = None  # set by conf.post_fork
    app = Flask(__name__)

    @app.get("/")
    def index() -> dict[str, str]:
        hh = WORKER if MODE == "flask_post_fork" else SYNC
        assert hh is not None
        return {"event_id": hh.log_model_event(model="request", **FIELDS)}
