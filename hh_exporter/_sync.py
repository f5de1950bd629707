"""A facade for synchronous code (scripts, Flask, Celery): the same exporter on its own loop.

:class:`SyncExporter` starts a daemon thread that runs an event loop with an
:class:`~hh_exporter.Exporter` on it. Log calls from any thread hand the encoded event to
that loop; ``flush``/``close`` block for at most their deadline. At interpreter exit an
``atexit`` hook closes it within ``close_timeout``, so a script that forgets still delivers
what it can and never hangs.
"""

from __future__ import annotations

import atexit
from types import TracebackType
from typing import Any, Unpack

from ._encoding import GENERIC_ROUTE, MODEL_ROUTE
from ._errors import ExporterClosedError
from ._events import EventFields, ModelEventFields, SessionFields
from ._exporter import Exporter, in_thread, start_in_thread, stop_thread
from ._session import Session
from ._stats import ExporterStats
from ._trace import TraceMixin

__all__ = ["SyncExporter"]


class SyncExporter(TraceMixin):
    """An :class:`Exporter` for code without an event loop.

    Takes the same arguments as :class:`Exporter`::

        hh = hh_exporter.SyncExporter(project="batch-job")
        hh.log_model_event(model="gpt-4o", provider="openai", messages=m, response=r)
        hh.close()          # or rely on the atexit hook, or use it as a context manager
    """

    def __init__(self, **kwargs: Any) -> None:
        # After fork() (gunicorn --preload, Celery prefork) the child has a copy of this
        # object but not its loop thread: the exporter restarts there, empty, on its own
        # thread at the first log call (see Exporter), and the blocking calls below follow
        # it to whichever thread it runs on.
        self._exporter: Exporter = self._exporter_class(**kwargs)
        start_in_thread(self._exporter, "hh_exporter-sync")
        self._closed = False
        atexit.register(self.close)

    #: What runs on the thread's loop (a subclass may put a StreamExporter there).
    _exporter_class: type[Exporter] = Exporter

    def __repr__(self) -> str:
        return f"<SyncExporter {self._exporter!r}>"

    @property
    def config(self) -> Any:
        """The exporter's :class:`ExporterConfig`."""
        return self._exporter.config

    def session(self, **properties: Unpack[SessionFields]) -> Session:
        """Start a session; its handle may be used from any thread."""
        return self._exporter.session(**properties)

    def log_model_event(
        self, *, session: Session | None = None, **fields: Unpack[ModelEventFields]
    ) -> str:
        """See :meth:`Exporter.log_model_event`; safe from any thread."""
        # `fields` is this call's own dict: handed on as it is, not unpacked into a second.
        return self._exporter._log(MODEL_ROUTE, fields, session)  # type: ignore[arg-type]

    def log_event(self, *, session: Session | None = None, **fields: Unpack[EventFields]) -> str:
        """See :meth:`Exporter.log_event`; safe from any thread."""
        return self._exporter._log(GENERIC_ROUTE, fields, session)  # type: ignore[arg-type]

    def _log(self, route: str, fields: dict[str, Any], session: Session | None) -> str:
        # For our own callers (trace, wrappers, span exporter) that hold a dict of fields.
        return self._exporter._log(route, fields, session)

    def stats(self) -> ExporterStats:
        """A consistent snapshot, taken on the exporter's loop."""
        if self._closed:
            return self._exporter.stats()

        async def snap() -> ExporterStats:
            return self._exporter.stats()

        return in_thread(self._exporter, snap, 10.0)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending, or the deadline; see :meth:`Exporter.flush`."""
        if self._closed:
            raise ExporterClosedError("the exporter is closed")
        deadline = self._exporter.config.close_timeout if timeout is None else timeout
        return in_thread(self._exporter, lambda: self._exporter.flush(deadline), deadline + 5.0)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what can be delivered within ``timeout``, then stop the thread. Idempotent.

        In a forked child it closes the child's own exporter; the parent's events are the
        parent's to deliver."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        deadline = self._exporter.config.close_timeout if timeout is None else timeout
        try:
            in_thread(self._exporter, lambda: self._exporter.aclose(deadline), deadline + 5.0)
        finally:
            stop_thread(self._exporter)

    def __enter__(self) -> SyncExporter:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
