"""A circuit breaker: after repeated failures, pause sending, then probe with one request.

``closed``: requests go. After ``threshold`` consecutive failed requests it turns ``open``:
no request goes until ``cooldown`` has passed. Then it is ``half_open``: exactly one request
(the probe) goes; success closes it, failure opens it again. Meanwhile events keep buffering
under the buffer's bounds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]

log = logging.getLogger("hh_exporter")


class CircuitBreaker:
    """Strictly private; owned by the sender."""

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.state = "closed"
        self.failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._changed = asyncio.Event()

    @property
    def blocking(self) -> bool:
        """Whether a new request would have to wait."""
        if self.state == "closed":
            return False
        if self.state == "open":
            return self._clock() < self._opened_at + self.cooldown
        return self._probing

    def reopen_in(self) -> float | None:
        """Seconds until an open breaker lets a probe through, or None if not open."""
        if self.state != "open":
            return None
        return max(0.0, self._opened_at + self.cooldown - self._clock())

    async def acquire(self) -> None:
        """Wait until a request may go. Cancellation interrupts the wait."""
        while True:
            if self.state == "closed":
                return
            if self.state == "open":
                left = self._opened_at + self.cooldown - self._clock()
                if left <= 0:
                    self.state = "half_open"
                    self._probing = True
                    log.info("hh_exporter: circuit breaker half-open, sending one probe request")
                    return
                await self._wait(left)
            elif not self._probing:
                self._probing = True
                return
            else:
                await self._wait(None)

    async def _wait(self, timeout: float | None) -> None:
        self._changed.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass

    def release(self) -> None:
        """Give back a request slot whose request was cancelled before any answer."""
        if self._probing:
            self._probing = False
            self._changed.set()

    def record(self, ok: bool) -> None:
        """Record the outcome of a request that :meth:`acquire` let through."""
        if ok:
            if self.state != "closed":
                log.info("hh_exporter: circuit breaker closed, the API answers again")
            self.state = "closed"
            self.failures = 0
        else:
            self.failures += 1
            if self.state == "half_open" or (
                self.threshold and self.failures >= self.threshold and self.state == "closed"
            ):
                if self.state == "closed":
                    log.warning(
                        "hh_exporter: circuit breaker open after %d consecutive failed requests;"
                        " pausing %.1fs", self.failures, self.cooldown,
                    )
                self.state = "open"
                self._opened_at = self._clock()
        self._probing = False
        self._changed.set()
