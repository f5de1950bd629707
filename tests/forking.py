"""A program that forks with an exporter, run by ``test_fork`` as a subprocess.

``python forking.py URL TOKEN MODE CHILD`` prints one JSON line for the child and one for the
parent. MODE says how the parent holds its exporter when it forks:

* ``sync``: a started SyncExporter (its loop runs in a thread the child will not have);
* ``preloaded``: an Exporter created at import time, never started (gunicorn --preload);
* ``running``: an Exporter running on the parent's loop, forked from inside a coroutine
  (the child leaves with ``os._exit``, as multiprocessing's children do);
* ``pool``: a started SyncExporter, and a ``multiprocessing`` pool (fork) whose workers log
  through it: they leave through multiprocessing's exit hooks, never through atexit;
* ``imported``: an Exporter created at import time that logged one event there and is
  never started by anyone: the parent leaves (and so does the child, after logging through
  the inherited exporter) counting on the flush at interpreter exit.

CHILD says what the child does: ``exit`` (``sys.exit(0)``, so ``atexit`` hooks run),
``own`` (logs through a new exporter of its own), ``inherited`` (logs through the parent's,
which restarts empty in the child).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
from typing import Any

import hh_exporter

URL, TOKEN, MODE, CHILD = sys.argv[1:5]
FIELDS: dict[str, Any] = dict(model="m", provider="p", messages=[{"role": "user"}],
                              response={"content": "x"})
# A long close_timeout: a child that waited on the parent's loop thread would take 35 s to
# exit, and test_fork gives the whole program 20.
OPTS: dict[str, Any] = dict(api_key=TOKEN, api_url=URL, linger=0.02, close_timeout=30.0)


def say(who: str, **what: Any) -> None:
    print(json.dumps({who: what}), flush=True)


def child_sync(hh: hh_exporter.SyncExporter) -> None:
    if CHILD == "exit":
        sys.exit(0)  # atexit runs the inherited close(): it must return at once
    out: dict[str, Any] = {}
    if CHILD == "inherited":
        out["ids"] = [hh.log_model_event(**FIELDS) for _ in range(3)]
        out["flushed"] = hh.flush(10.0)
        hh.close()
        out["delivered"] = hh.stats().delivered
        out["balanced"] = hh.stats().balanced
    else:
        with hh_exporter.SyncExporter(**OPTS) as own:
            out["ids"] = [own.log_model_event(**FIELDS) for _ in range(3)]
        out["delivered"] = own.stats().delivered
    say("child", **out)
    sys.exit(0)


def parent_sync() -> None:
    hh = hh_exporter.SyncExporter(**OPTS)
    ids = [hh.log_model_event(**FIELDS) for _ in range(5)]
    pid = os.fork()
    if pid == 0:
        child_sync(hh)
    _, status = os.waitpid(pid, 0)
    ids += [hh.log_model_event(**FIELDS) for _ in range(5)]  # the parent goes on
    hh.close()
    say("parent", ids=ids, delivered=hh.stats().delivered,
        child_exit=os.waitstatus_to_exitcode(status))


PRELOADED = hh_exporter.Exporter(**OPTS) if MODE == "preloaded" else None


async def use(hh: hh_exporter.Exporter, n: int) -> tuple[list[str], int]:
    async with hh:
        ids = [hh.log_model_event(**FIELDS) for _ in range(n)]
    return ids, hh.stats().delivered


def parent_preloaded() -> None:
    assert PRELOADED is not None
    pid = os.fork()
    if pid == 0:
        if CHILD == "exit":
            sys.exit(0)
        hh = PRELOADED if CHILD == "inherited" else hh_exporter.Exporter(**OPTS)
        ids, delivered = asyncio.run(use(hh, 3))
        say("child", ids=ids, delivered=delivered)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    ids, delivered = asyncio.run(use(PRELOADED, 5))
    say("parent", ids=ids, delivered=delivered, child_exit=os.waitstatus_to_exitcode(status))


async def parent_running() -> None:
    async with hh_exporter.Exporter(**OPTS) as hh:
        ids = [hh.log_model_event(**FIELDS) for _ in range(5)]
        pid = os.fork()
        if pid == 0:
            # Never touch the parent's loop here: leave as multiprocessing children do.
            out: dict[str, Any] = {}
            if CHILD == "inherited":
                out["ids"] = [hh.log_model_event(**FIELDS) for _ in range(3)]
                # No loop runs in this thread of the child (asyncio knows it forked): a
                # new one may drive the close, which the exporter runs on its own thread.
                asyncio.run(hh.aclose(10.0))
                out["delivered"] = hh.stats().delivered
                out["balanced"] = hh.stats().balanced
            elif CHILD == "own":
                with hh_exporter.SyncExporter(**OPTS) as own:
                    out["ids"] = [own.log_model_event(**FIELDS) for _ in range(3)]
                out["delivered"] = own.stats().delivered
            say("child", **out)
            os._exit(0)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        ids += [hh.log_model_event(**FIELDS) for _ in range(5)]
    say("parent", ids=ids, delivered=hh.stats().delivered,
        child_exit=os.waitstatus_to_exitcode(status))


POOLED: hh_exporter.SyncExporter | None = None


def log_in_worker(_: int) -> str:
    assert POOLED is not None
    return POOLED.log_model_event(**FIELDS)


def parent_pool() -> None:
    global POOLED
    POOLED = hh_exporter.SyncExporter(**OPTS)
    ids = [POOLED.log_model_event(**FIELDS) for _ in range(5)]
    pool = multiprocessing.get_context("fork").Pool(2)
    child_ids = pool.map(log_in_worker, range(3), chunksize=1)
    pool.close()  # the workers leave at once, each delivering what it logged
    pool.join()
    ids += [POOLED.log_model_event(**FIELDS) for _ in range(5)]
    POOLED.close()
    say("child", ids=child_ids, delivered=len(child_ids))  # the store has the last word
    say("parent", ids=ids, delivered=POOLED.stats().delivered, child_exit=0)


IMPORTED = hh_exporter.Exporter(**OPTS) if MODE == "imported" else None
IMPORT_ID = IMPORTED.log_model_event(**FIELDS) if IMPORTED is not None else None


def parent_imported() -> None:
    assert IMPORTED is not None
    pid = os.fork()
    if pid == 0:
        if CHILD == "inherited":
            ids = [IMPORTED.log_model_event(**FIELDS) for _ in range(3)]
            say("child", ids=ids, delivered=3)  # checked in the store: the exit delivers
        elif CHILD == "own":
            with hh_exporter.SyncExporter(**OPTS) as own:
                ids = [own.log_model_event(**FIELDS) for _ in range(3)]
            say("child", ids=ids, delivered=own.stats().delivered)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    # Never started: the flush at interpreter exit delivers the event logged at import.
    say("parent", ids=[IMPORT_ID], delivered=1, child_exit=os.waitstatus_to_exitcode(status))


if MODE == "pool":
    parent_pool()
elif MODE == "imported":
    parent_imported()
elif MODE == "sync":
    parent_sync()
elif MODE == "preloaded":
    parent_preloaded()
else:
    asyncio.run(parent_running())
