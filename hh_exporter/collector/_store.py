"""Event storage: SQLite (a file or ``:memory:``) written by one thread, or nothing at all.

The SQLite store owns one connection in one writer thread. Requests hand it work through a
queue and await the result; the thread takes everything queued, runs it in one transaction
and commits once (group commit), so many concurrent requests cost one fsync. A request is
answered only after its transaction committed: nothing acknowledged with a 200 can be
missing after a clean stop. Like the real API, a re-sent ``event_id`` is stored again and
counted as a duplicate (``--dedup`` stores it once). An event whose session was never
started is stored under a session created for it and counted as an orphan. Sessions merge
their properties (JSON merge patch).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from ._update import apply_update

__all__ = ["EventRow", "NullStore", "SQLiteStore", "SessionRow", "Store", "WriteResult",
           "open_store"]

#: (event_id, session_id, event_type, route, body JSON)
EventRow = tuple[str, "str | None", str, str, bytes]
#: (session_id, properties JSON): a session started by this request.
SessionRow = tuple[str, bytes]
#: (duplicate event ids, orphan events) of one write.
WriteResult = tuple[int, int]

_VERSION = 2
_SCHEMA = """
-- rowid is the arrival order; body is the event's JSON exactly as it was sent. event_id
-- is not unique: the real API stores a re-sent event again (unless --dedup).
CREATE TABLE IF NOT EXISTS events (
    event_id   TEXT NOT NULL,
    session_id TEXT,
    event_type TEXT NOT NULL,
    route      TEXT NOT NULL,
    body       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_session ON events(session_id);
-- Every event_id ever received, to count duplicates whatever the mode.
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
-- started: 1 once POST /session/start (or a session event, or a single-session envelope)
-- created or merged it; 0 while it exists only because an event named it (auto-created).
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    properties TEXT NOT NULL,
    started    INTEGER NOT NULL DEFAULT 1
);
"""


class Store(Protocol):
    """Where the collector puts validated events."""

    #: Whether event bodies are kept (the collector skips extracting them otherwise).
    keeps_bodies: bool

    async def write(self, events: list[EventRow], sessions: list[SessionRow]) -> WriteResult:
        """Start sessions, then store events; return (duplicate ids, orphan events).

        An orphan is an event whose ``session_id`` names no started session: it is stored
        under a session created for it, as the real API does.
        """
        ...

    async def start_session(self, session_id: str, properties: bytes) -> bytes:
        """Create a session or merge into it; return its merged properties."""
        ...

    async def update_event(self, event_id: str, patch: bytes) -> bool:
        """Apply an update to the stored event(s) and the session with this id; False if
        there is neither."""
        ...

    async def set_parents(self, parents: list[tuple[str, str]]) -> int:
        """Set the ``parent_id`` of stored events, given as (event_id, parent_id); return
        how many rows changed. (The OTLP route links a child to an ancestor that came in
        a later request; this is not ``PUT /events``, whose rules the spec sets.)"""
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
        """Every stored event_id, in arrival order (repeats included)."""
        ...

    async def started_sessions(self) -> list[str]:
        """Ids of the sessions that were started, not only auto-created."""
        ...

    async def session_ids(self) -> list[str]:
        """Ids of every stored session, started or auto-created for an orphan event (both
        exist, and ``PUT /events`` on either id updates it)."""
        ...

    async def close(self) -> None:
        """Commit and release everything. Idempotent."""
        ...


class NullStore:
    """Validates and counts only (``--db none``), for raw-speed runs. Nothing is kept but
    the ids of started sessions, so orphan events are still counted."""

    keeps_bodies = False

    def __init__(self) -> None:
        self.events = 0
        self._started: set[str] = set()

    async def write(self, events: list[EventRow], sessions: list[SessionRow]) -> WriteResult:
        """Count the events and their orphans; duplicates are not tracked here."""
        started = self._started
        started.update(sid for sid, _ in sessions)
        self.events += len(events)
        return 0, sum(1 for e in events if e[1] is not None and e[1] not in started)

    async def start_session(self, session_id: str, properties: bytes) -> bytes:
        """Remember the session; its properties are not kept."""
        self._started.add(session_id)
        return properties

    async def update_event(self, event_id: str, patch: bytes) -> bool:
        """Nothing is stored, so nothing can be updated."""
        return False

    async def set_parents(self, parents: list[tuple[str, str]]) -> int:
        """Nothing is stored, so nothing changes."""
        return 0

    async def session_events(self, session_id: str) -> list[bytes]:
        """Always empty: nothing is stored."""
        return []

    async def session(self, session_id: str) -> bytes | None:
        """Always None: nothing is stored."""
        return None

    async def counts(self) -> tuple[int, int]:
        """Events counted and sessions started."""
        return self.events, len(self._started)

    async def event_ids(self) -> list[str]:
        """Always empty: nothing is stored."""
        return []

    async def started_sessions(self) -> list[str]:
        """The sessions started so far."""
        return sorted(self._started)

    async def session_ids(self) -> list[str]:
        """The sessions started so far (auto-created ones are not kept)."""
        return sorted(self._started)

    async def close(self) -> None:
        """Nothing to release."""


_encode = msgspec.json.Encoder().encode
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]
_UPSERT_SESSION = (
    "INSERT INTO sessions(session_id, properties, started) VALUES (?, ?, 1) "
    "ON CONFLICT(session_id) DO UPDATE SET "
    "properties = json_patch(properties, excluded.properties), started = 1"
)


class SQLiteStore:
    """SQLite in WAL mode behind one writer thread with group commit.

    With ``dedup`` an ``event_id`` is stored once and re-sends are ignored (counted all the
    same); without, every copy is stored, as the real API does.
    """

    keeps_bodies = True

    def __init__(self, path: str, *, dedup: bool = False) -> None:
        self.path = path
        self.dedup = dedup
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hh-collector-sqlite", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_events = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone()
        if has_events and version != _VERSION:
            conn.close()
            raise RuntimeError(f"{self.path} was written by an older collector (schema "
                               f"{version}, now {_VERSION}): use a new file")
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a process crash; only power loss can
        # take the last transactions, which is the right trade for a development server.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={_VERSION}")
        unique = "UNIQUE " if self.dedup else ""
        # One index per mode; a file first written in the other mode keeps its own index.
        conn.execute(f"CREATE {unique}INDEX IF NOT EXISTS events_by_id_{int(self.dedup)} "
                     "ON events(event_id)")
        return conn

    def _run(self) -> None:
        try:
            conn = self._open()
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

    async def write(self, events: list[EventRow], sessions: list[SessionRow]) -> WriteResult:
        """Start sessions, then insert events; return (duplicate ids, orphan events)."""
        dedup = self.dedup

        def job(conn: sqlite3.Connection) -> WriteResult:
            if sessions:
                conn.executemany(_UPSERT_SESSION,
                                 [(sid, props.decode()) for sid, props in sessions])
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO seen(event_id) VALUES (?)",
                             [(e[0],) for e in events])
            duplicates = len(events) - (conn.total_changes - before)
            conn.executemany(
                f"INSERT {'OR IGNORE ' if dedup else ''}INTO events"
                "(event_id, session_id, event_type, route, body) VALUES (?, ?, ?, ?, ?)",
                events)
            return duplicates, _orphans(conn, events)

        result: WriteResult = await self._call(job)
        return result

    async def start_session(self, session_id: str, properties: bytes) -> bytes:
        """Create or merge a session; return its merged properties."""

        def job(conn: sqlite3.Connection) -> bytes:
            conn.execute(_UPSERT_SESSION, (session_id, properties.decode()))
            row = conn.execute("SELECT properties FROM sessions WHERE session_id = ?",
                               (session_id,)).fetchone()
            return str(row[0]).encode()

        result: bytes = await self._call(job)
        return result

    async def update_event(self, event_id: str, patch: bytes) -> bool:
        """Apply an update (``apply_update``) to the stored event(s) with this id and to the
        session with this id: a session is an event, and ``PUT /events`` on its id changes
        it (BEH "What the official Python SDK expects back")."""
        fields: dict[str, Any] = msgspec.json.decode(patch)

        def job(conn: sqlite3.Connection) -> bool:
            rows = conn.execute("SELECT rowid, body FROM events WHERE event_id = ?",
                                (event_id,)).fetchall()
            conn.executemany("UPDATE events SET body = ? WHERE rowid = ?", [
                (_encode(apply_update(msgspec.json.decode(body), fields)), rowid)
                for rowid, body in rows])
            session = conn.execute("SELECT properties FROM sessions WHERE session_id = ?",
                                   (event_id,)).fetchone()
            if session is not None:
                props = apply_update(msgspec.json.decode(session[0]), fields)
                conn.execute("UPDATE sessions SET properties = ? WHERE session_id = ?",
                             (_encode(props).decode(), event_id))
            return bool(rows) or session is not None

        return bool(await self._call(job))

    async def set_parents(self, parents: list[tuple[str, str]]) -> int:
        """Set ``parent_id`` in the stored bodies of these events (every copy of each)."""

        def job(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "UPDATE events SET body = CAST(json_set(CAST(body AS TEXT), '$.parent_id', ?)"
                " AS BLOB) WHERE event_id = ?", [(pid, eid) for eid, pid in parents])
            return conn.total_changes - before

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

    async def started_sessions(self) -> list[str]:
        """Ids of the sessions that were started, not only auto-created."""

        def job(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute(
                "SELECT session_id FROM sessions WHERE started = 1 ORDER BY session_id")]

        result: list[str] = await self._call(job)
        return result

    async def session_ids(self) -> list[str]:
        """Ids of every stored session, started or auto-created."""

        def job(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute(
                "SELECT session_id FROM sessions ORDER BY session_id")]

        result: list[str] = await self._call(job)
        return result

    async def close(self) -> None:
        """Let queued work commit, then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)


def _orphans(conn: sqlite3.Connection, events: list[EventRow]) -> int:
    """Count the events whose session was never started, creating those sessions as the
    real API does for an event whose session does not exist (``started = 0``)."""
    sids = list({e[1] for e in events if e[1] is not None})
    if not sids:
        return 0
    started: set[str] = set()
    for i in range(0, len(sids), 500):
        chunk = sids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        started.update(r[0] for r in conn.execute(
            f"SELECT session_id FROM sessions WHERE started = 1 AND session_id IN ({marks})",
            chunk))
    missing = [sid for sid in sids if sid not in started]
    if not missing:
        return 0
    conn.executemany("INSERT OR IGNORE INTO sessions(session_id, properties, started) "
                     "VALUES (?, '{}', 0)", [(sid,) for sid in missing])
    gone = set(missing)
    return sum(1 for e in events if e[1] in gone)


def _settle(fut: asyncio.Future[Any], value: Any, err: BaseException | None) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(value)


def open_store(db: str, *, dedup: bool = False) -> Store:
    """``none`` for a counting-only store; ``:memory:`` or a path for SQLite."""
    if db == "none":
        return NullStore()
    return SQLiteStore(db, dedup=dedup)
