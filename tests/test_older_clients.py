"""The older official clients against the collector: ``honeyhive-logger`` 0.0.11 (beside
the 1.x SDK, it has no dependencies) and ``honeyhive`` 0.2.57 (in an environment of its own:
it pins ``traceloop-sdk==0.42.0``, which cannot sit beside 1.7's OpenTelemetry).

What these clients send and what they make of the answers is theirs, not ours: each call
must come back as the real API answers it (``reference/honeyhive-api-behaviour.md``, "What
the official Python SDK expects back"), and change the stored session or event as SPEC-DP
``LegacyUpdateEventRequest`` says (outputs replaced, the object fields merged).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import honeyhive_logger  # pinned in pyproject.toml's test dependency group
import pytest

from hh_exporter.collector import Collector

from .conftest import TOKEN, http_json

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


async def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kw)


async def events_of(c: Collector, sid: str) -> dict[str, dict[str, Any]]:
    _, body = await http_json(c.url, f"/sessions/{sid}/events")
    return {e["event_id"]: e for e in body["events"]}


async def test_honeyhive_logger_start_log_update(collector: Collector) -> None:
    """``start`` answers the session id, ``log`` the event id; ``update`` of the event and
    of the session (its docstring's first example) both succeed at once (a 404 would make
    the logger retry for 7 s, then raise) and change what is stored."""
    common = {"api_key": TOKEN, "server_url": collector.url}
    sid = await call(honeyhive_logger.start, project="p", session_name="logged",
                     source="test", inputs={"q": "capital?"}, metadata={"stage": "start"},
                     **common)
    assert uuid.UUID(sid)
    eid = await call(honeyhive_logger.log, project="p", session_id=sid, event_name="lookup",
                     event_type="tool", inputs={"q": "capital?"}, outputs={"a": 1, "b": 2},
                     metadata={"k": 1}, **common)
    assert uuid.UUID(eid)
    await call(honeyhive_logger.update, event_id=eid, outputs={"answer": "Paris"},
               metadata={"graded": True}, feedback={"rating": 5}, **common)
    await call(honeyhive_logger.update, event_id=sid, metadata={"status": "completed"},
               outputs={"final": "Paris"}, user_properties={"user": "ada"},
               duration_ms=42, **common)

    ev = (await events_of(collector, sid))[eid]
    assert ev["event_type"] == "tool" and ev["session_id"] == sid
    assert ev["outputs"] == {"answer": "Paris"}  # replaced
    assert ev["metadata"] == {"k": 1, "graded": True} and ev["feedback"] == {"rating": 5}
    _, props = await http_json(collector.url, f"/sessions/{sid}")
    assert props["session_name"] == "logged" and props["inputs"] == {"q": "capital?"}
    assert props["metadata"] == {"stage": "start", "status": "completed"}
    assert props["outputs"] == {"final": "Paris"} and props["duration"] == 42
    assert props["user_properties"] == {"user": "ada"}
    _, stats = await http_json(collector.url, "/stats")
    assert stats["requests"]["PUT /events"] == {"200": 2}
    assert stats["orphan_events"] == 0


LOCK = ROOT / "tests" / "data" / "honeyhive-0.2.57.txt"
SCRIPT = ROOT / "tests" / "clients" / "honeyhive_0_2_57.py"


def old_sdk_python() -> Path:
    """The interpreter of an environment holding ``honeyhive==0.2.57`` and exactly the
    versions of ``LOCK`` (installed without resolving: the resolver alone takes minutes over
    traceloop-sdk's pins). Built once, kept under the gitignored ``.venv-honeyhive-0.2.57``
    and rebuilt when the lock changes."""
    home = ROOT / ".venv-honeyhive-0.2.57"
    python = home / "bin" / "python"
    stamp = home / "lock.sha256"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    if home.exists():
        shutil.rmtree(home)
    # No pip inside (this suite's pip installs into it), no byte-compiling (Python compiles
    # what the script imports): about 25 s on a shared 2-core machine instead of 100.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True,
                   timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-compile", "--disable-pip-version-check",
                    "-r", str(LOCK)], check=True, timeout=300)
    stamp.write_text(digest)
    return python


@pytest.mark.timeout(300)  # the first run builds the environment
async def test_honeyhive_0_2_57_logging_update_and_enrich_session(
    collector: Collector, tmp_path: Path
) -> None:
    """honeyhive 0.2.57 (its own environment): the tracer starts its session, ``create_event``
    and a single-session ``create_model_event_batch`` answer their ids, ``update_event``
    answers 200, and ``enrich_session`` (which swallows a failure) lands in the session:
    outputs replaced, metadata merged."""
    python = await call(old_sdk_python)
    proc = await asyncio.create_subprocess_exec(
        str(python), str(SCRIPT), collector.url, TOKEN,
        # Outside any git checkout: the 0.2.57 tracer adds the cwd's git facts (branch,
        # commit, remote) to the session's metadata when it finds them, which a clone with a
        # remote has and a bare worktree has not; the merge checked below is the API's.
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    out = json.loads(stdout.decode().strip().splitlines()[-1])
    sid = out["session_id"]
    assert uuid.UUID(sid)
    assert out["create_event"]["status"] == 200 and out["create_event"]["success"]
    assert out["model_batch"]["status"] == 200 and len(out["model_batch"]["event_ids"]) == 2
    assert out["update_event"]["status"] == 200

    evs = await events_of(collector, sid)
    eid = out["create_event"]["event_id"]
    assert set(evs) == {eid, *out["model_batch"]["event_ids"]}
    assert evs[eid]["outputs"] == {"answer": "Paris"}  # replaced
    assert evs[eid]["metadata"] == {"k": 1, "graded": True}  # merged
    assert all(evs[m]["event_type"] == "model" and evs[m]["session_id"] == sid
               for m in out["model_batch"]["event_ids"])
    _, props = await http_json(collector.url, f"/sessions/{sid}")
    assert props["session_name"] == "old-sdk"
    assert props["outputs"] == {"final": "Paris"}
    assert props["metadata"] == {"stage": "end", "keep": 1}
    assert props["feedback"] == {"rating": 5} and props["user_properties"] == {"user": "ada"}
    _, stats = await http_json(collector.url, "/stats")
    assert stats["requests"]["PUT /events"] == {"200": 3}
