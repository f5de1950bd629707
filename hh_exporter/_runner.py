"""An event loop of our own in a daemon thread: where an exporter runs when nobody gives it one.

Three users: :class:`~hh_exporter.SyncExporter` (sync code has no loop), an exporter
inherited across ``fork()`` that is used in the child (its parent's loop and thread do not
exist there), and the ``atexit`` flush of an exporter that was never started.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """Runs an event loop forever in a daemon thread, started at construction."""

    def __init__(self, name: str = "hh_exporter-loop") -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        """Whether the loop runs in this process (a forked child has the object, not the
        thread)."""
        return self.pid == os.getpid() and self.thread.is_alive() and not self.loop.is_closed()

    def current(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.get_ident() == self.thread.ident

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run ``coro`` on the loop and block for its result (at most ``timeout`` seconds)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def wrap(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and await its result from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and join the thread; the loop is closed once the thread ended."""
        if not self.alive:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()
