"""Celery's prefork pool: a real ``celery worker --pool prefork -c 2`` whose exporter was made
(and used: one event logged at import) in the worker's parent before billiard forked the pool.

Tasks cross processes through kombu's file-system broker and come back through Celery's
file-system result backend, so no broker server runs. Each task logs one model event through
the inherited exporter (a SyncExporter; an async Exporter, in a session per task), or through
one the child made in ``worker_process_init`` (``tests/celery_prefork/app.py``).
``--max-tasks-per-child`` makes billiard replace the pool's children mid-run: a child that
leaves does so with ``os._exit``, past ``atexit``, so what it logged last reaches the API
only through the exporter's hook on the pool's exit path (Celery's signal). The
collector answers after 1.2 s, longer than billiard's one-second pause before that
``os._exit``, so that a child whose events were still buffered or in flight when it left
would lose them here. Then SIGTERM to the worker (warm shutdown): every task succeeded, every
logged event is stored exactly once, the parent's import event included, and none of the
parent's was re-sent by a child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hh_exporter.collector import Faults

from .celery_prefork.conf import settings
from .conftest import TOKEN, ThreadedCollector, http_json

ROOT = Path(__file__).parent.parent
TASKS = 100
PER_CHILD = 30

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the prefork pool needs fork")


@pytest.fixture
def slow_collector() -> Any:
    tc = ThreadedCollector(faults=Faults(latency=1.2))
    tc.start()
    yield tc
    tc.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["sync", "async", "init"])
def test_celery_prefork_worker(slow_collector: ThreadedCollector, tmp_path: Path,
                               mode: str) -> None:
    """Every task succeeds; every event is stored once, the parent's, and those of children
    that billiard replaced mid-run, included."""
    from celery import Celery
    from celery.result import ResultSet

    tc = slow_collector
    assert tc.collector is not None
    env = {**os.environ, "HH_APP_MODE": mode, "HH_CELERY_DIR": str(tmp_path),
           "HH_API_KEY": TOKEN, "HH_API_URL": tc.collector.url, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_prefork.app", "worker",
         "--pool", "prefork", "-c", "2", "--max-tasks-per-child", str(PER_CHILD),
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        client = Celery("hh_celery_client")
        client.conf.update(settings(tmp_path))
        results = ResultSet([client.send_task("tests.celery_prefork.app.log_one", args=(i,))
                             for i in range(TASKS)])
        # join raises the first task's exception: a task that telemetry made fail fails here.
        done = results.join(timeout=60, interval=0.05)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=40)
    finally:
        if worker.returncode is None:
            worker.kill()
            worker.communicate()
    log = err.decode()
    assert worker.returncode == 0, log
    assert "Traceback" not in log and "dropped" not in log, log
    assert all(r.successful() for r in results.results)
    pids = {d["pid"] for d in done}
    # Children were replaced mid-run: each served at most PER_CHILD tasks.
    assert len(pids) >= -(-TASKS // PER_CHILD), pids
    imports = [p.read_text() for p in tmp_path.glob("import-*")]
    assert len(imports) == 1  # the parent's, logged before the pool forked
    assert tc.collector.store is not None
    stored = Counter(tc.run(tc.collector.store.event_ids()))
    assert set(stored.values()) == {1}, "an event was stored twice"
    assert sorted(stored) == sorted([d["event_id"] for d in done] + imports)
    _, stats = tc.run(http_json(tc.collector.url, "/stats"))
    assert stats["orphan_events"] == 0, stats  # every session existed before its events
