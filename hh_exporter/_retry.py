"""Retries with backoff: the only module that imports tenacity.

A batch is retried while the error is retriable, up to ``max_attempts`` attempts and never
past its deadline: ``stop_before_delay`` gives up rather than start a sleep that would end
after it. Waits are exponential with full jitter,
``U(0, min(backoff_max, backoff_initial * 2 ** (n - 1)))``, and a server's ``Retry-After``
is a floor on the wait, clamped to ``retry_after_max``. Cancellation (flush and close
deadlines) interrupts a sleep at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import tenacity as _t

from ._errors import HHExporterError

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "RetryableStatus", "retry_call"]

T = TypeVar("T")

#: Statuses that mean "try again later".
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class RetryableStatus(HHExporterError):
    """A response whose status says the request may succeed if repeated. Strictly private."""

    retriable = True

    def __init__(self, status: int, retry_after: float | None, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How one batch is retried. Strictly private; built from the exporter's config."""

    max_attempts: int
    deadline: float
    backoff_initial: float
    backoff_max: float
    retry_after_max: float

    def backoff(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        try:
            cap = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        except OverflowError:
            cap = self.backoff_max
        wait = rng.uniform(0.0, cap)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.retry_after_max))
        return wait


def _is_retriable(exc: BaseException) -> bool:
    return isinstance(exc, HHExporterError) and exc.retriable


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    deadline: float | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await ``fn()`` until it succeeds, raises a non-retriable error, or the policy gives up.

    The last error is re-raised as it was. ``deadline`` (seconds from now) overrides the
    policy's. ``on_retry(error, wait)`` runs before each sleep.
    """
    # The first attempt runs bare: nearly every call succeeds at once, and tenacity's own
    # machinery (inspecting callables, per-attempt state) costs ~40 us per call, which a
    # session start per short session pays in full.
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await fn()
    except BaseException as exc:
        if not _is_retriable(exc) or policy.max_attempts <= 1:
            raise
        first: BaseException = exc
    r = rng or random.Random()
    budget = policy.deadline if deadline is None else deadline
    wait0 = policy.backoff(1, getattr(first, "retry_after", None), r)
    if loop.time() - started + wait0 >= budget:  # as stop_before_delay: never start a
        raise first                               # sleep that would end past the deadline
    if on_retry is not None:
        on_retry(first, wait0)
    await asyncio.sleep(wait0)

    def wait(state: _t.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return policy.backoff(state.attempt_number + 1, retry_after, r)

    def before_sleep(state: _t.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(exc, state.upcoming_sleep)

    retrying = _t.AsyncRetrying(
        stop=_t.stop_any(_t.stop_after_attempt(policy.max_attempts - 1),
                         _t.stop_before_delay(budget - (loop.time() - started))),
        wait=wait,
        retry=_t.retry_if_exception(_is_retriable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(fn)
