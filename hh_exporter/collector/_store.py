"""Event storage: SQLite (a file or ``:memory:``) written by one thread, or nothing at all.

The SQLite store owns one connection in one writer thread. Requests hand it work through a
queue and await the result; the thread takes everything queued, runs it in one transaction
and commits once (group commit), so many concurrent requests cost one fsync. A request is
answered only after its transaction committed: nothing acknowledged with a 200 can be
missing after a clean stop. ``event_id`` is the primary key; a re-sent event is counted as
a duplicate and not stored again. Sessions merge their properties (JSON merge patch).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["EventRow", "NullStore", "SQLiteStore", "Store", "open_store"]

#: (event_id, session_id, event_type, route, body JSON)
EventRow = tuple[str, "str | None", str, str, bytes]
#: (session_id, properties JSON)
SessionRow = tuple[str, bytes]

_SCHEMA = """
-- rowid is the arrival order; body is the event's JSON exactly as it was sent.
CREATE TABLE IF NOT EXISTS events (
    event_id   TEXT NOT NULL UNIQUE,
    session_id TEXT,
    event_type TEXT NOT NULL,
    route      TEXT NOT NULL,
    body       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_session ON events(session_id);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    properties TEXT NOT NULL
);
"""


class Store(Protocol):
    """Where the collector puts validated events."""

    #: Whether event bodies are kept (the collector skips extracting them otherwise).
    keeps_bodies: bool

    async def write(self, events: list[EventRow], sessions: list[SessionRow]) -> int:
        """Store events and upsert sessions; return how many events were duplicates."""
        ...

    async def session_events(self, session_id: str) -> list[bytes]:
        """Stored event bodies of a session, in arrival order."""
        ...

    async def session(self, session_id: str) -> bytes | None:
        """A session's merged properties, or None."""
        ...

    async def counts(self) -> tuple[int, int]:
        """(events stored, sessions stored)."""
        ...

    async def event_ids(self) -> list[str]:
        """Every stored event_id, in arrival order."""
        ...

    async def close(self) -> None:
        """Commit and release everything. Idempotent."""
        ...


class NullStore:
    """Validates and counts only (``--db none``), for raw-speed runs. Nothing is kept."""

    keeps_bodies = False

    def __init__(self) -> None:
        self.events = 0

    async def write(self, events: list[EventRow], sessions: list[SessionRow]) -> int:
        """Count the events; nothing is stored and nothing is a duplicate."""
        self.events += len(events)
        return 0

    async def session_events(self, session_id: str) -> list[bytes]:
        """Always empty: nothing is stored."""
        return []

    async def session(self, session_id: str) -> bytes | None:
        """Always None: nothing is stored."""
        return None

    async def counts(self) -> tuple[int, int]:
        """Events counted; no sessions are kept."""
        return self.events, 0

    async def event_ids(self) -> list[str]:
        """Always empty: nothing is stored."""
        return []

    async def close(self) -> None:
        """Nothing to release."""


_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class SQLiteStore:
    """SQLite in WAL mode behind one writer thread with group commit."""

    keeps_bodies = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hh-collector-sqlite", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        self._closed = False

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash; only power loss can
            # take the last transactions, which is the right trade for a development server.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the constructor
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        stop = False
        while not stop:
            jobs = [self._jobs.get()]
            while True:  # group commit: take everything already queued
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            if None in jobs:
                stop = True
                jobs = [j for j in jobs if j is not None]
            results: list[tuple[_Job, Any, BaseException | None]] = []
            conn.execute("BEGIN")
            for job in jobs:
                assert job is not None
                # A savepoint per job: one failing request must not leave half its rows in
                # the transaction that commits the others.
                conn.execute("SAVEPOINT job")
                try:
                    value = job[0](conn)
                except Exception as exc:  # noqa: BLE001 - handed to the awaiting request
                    conn.execute("ROLLBACK TO job")
                    results.append((job, None, exc))
                else:
                    results.append((job, value, None))
                conn.execute("RELEASE job")
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                results = [(job, None, exc) for job, _, _ in results]
            for (_, fut, loop), value, err in results:
                try:
                    loop.call_soon_threadsafe(_settle, fut, value, err)
                except RuntimeError:  # that loop is closed: nobody waits for this answer
                    pass
        conn.close()

    async def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._closed:
            raise RuntimeError("the store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((fn, fut, loop))
        return await fut

    async def write(self, events: list[EventRow], sessions: list[SessionRow]) -> int:
        """Insert events (ignoring known ids) and merge sessions; return the duplicates."""

        def job(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO events(event_id, session_id, event_type, route, body)"
                " VALUES (?, ?, ?, ?, ?)", events)
            inserted = conn.total_changes - before
            if sessions:
                conn.executemany(
                    "INSERT INTO sessions(session_id, properties) VALUES (?, ?) "
                    "ON CONFLICT(session_id) DO UPDATE SET "
                    "properties = json_patch(properties, excluded.properties)",
                    [(sid, props.decode()) for sid, props in sessions],
                )
            return len(events) - inserted

        return int(await self._call(job))

    async def session_events(self, session_id: str) -> list[bytes]:
        """Stored bodies of a session's events, in arrival order."""

        def job(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT body FROM events WHERE session_id = ? ORDER BY rowid", (session_id,)
            ).fetchall()
            return [bytes(r[0]) for r in rows]

        result: list[bytes] = await self._call(job)
        return result

    async def session(self, session_id: str) -> bytes | None:
        """A session's merged properties."""

        def job(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT properties FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            return None if row is None else str(row[0]).encode()

        result: bytes | None = await self._call(job)
        return result

    async def counts(self) -> tuple[int, int]:
        """(events stored, sessions stored)."""

        def job(conn: sqlite3.Connection) -> tuple[int, int]:
            n = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            s = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
            return int(n), int(s)

        result: tuple[int, int] = await self._call(job)
        return result

    async def event_ids(self) -> list[str]:
        """Every stored event_id, in arrival order."""

        def job(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT event_id FROM events ORDER BY rowid")]

        result: list[str] = await self._call(job)
        return result

    async def close(self) -> None:
        """Let queued work commit, then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)


def _settle(fut: asyncio.Future[Any], value: Any, err: BaseException | None) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(value)


def open_store(db: str) -> Store:
    """``none`` for a counting-only store; ``:memory:`` or a path for SQLite."""
    if db == "none":
        return NullStore()
    return SQLiteStore(db)
