"""Backoff, Retry-After and the retry loop's stops, without a network."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time

import pytest

from hh_exporter import ConnectError
from hh_exporter._retry import RetryableStatus, RetryPolicy, retry_call
from hh_exporter._transport import parse_retry_after

POLICY = RetryPolicy(max_attempts=5, deadline=10.0, backoff_initial=0.5, backoff_max=4.0,
                     retry_after_max=3.0)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10, 10_000])
def test_backoff_is_full_jitter_under_the_cap(attempt: int) -> None:
    """Waits lie in [0, min(max, initial * 2**(n-1))], and huge attempts do not overflow."""
    rng = random.Random(1)
    cap = min(4.0, 0.5 * 2.0 ** min(attempt - 1, 60))
    waits = [POLICY.backoff(attempt, None, rng) for _ in range(200)]
    assert all(0.0 <= w <= cap for w in waits)
    assert max(waits) > cap * 0.8  # jitter spreads over the whole range


def test_retry_after_is_a_clamped_floor() -> None:
    """Retry-After raises the wait to at least its value, clamped to retry_after_max."""
    rng = random.Random(2)
    assert all(POLICY.backoff(1, 2.0, rng) >= 2.0 for _ in range(50))
    assert all(POLICY.backoff(1, 600.0, rng) == 3.0 for _ in range(50))


def test_parse_retry_after() -> None:
    """Delta-seconds and HTTP dates parse; garbage is ignored."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(when) or 0) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(past) == 0.0


async def test_retry_call_stops_after_max_attempts() -> None:
    """A retriable error is retried max_attempts times in all, then re-raised as it was."""
    calls = 0
    retries: list[float] = []

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise ConnectError("refused")

    fast = RetryPolicy(max_attempts=4, deadline=10, backoff_initial=0.0, backoff_max=0.01,
                       retry_after_max=1)
    with pytest.raises(ConnectError, match="refused"):
        await retry_call(fail, fast, on_retry=lambda e, w: retries.append(w))
    assert calls == 4 and len(retries) == 3


async def test_retry_call_gives_up_before_a_sleep_past_the_deadline() -> None:
    """A Retry-After longer than the remaining deadline ends the retries at once."""
    calls = 0

    async def throttled() -> None:
        nonlocal calls
        calls += 1
        raise RetryableStatus(429, 5.0, "slow down")

    policy = RetryPolicy(max_attempts=10, deadline=1.0, backoff_initial=0.0, backoff_max=0.0,
                         retry_after_max=10.0)
    with pytest.raises(RetryableStatus):
        await asyncio.wait_for(retry_call(throttled, policy), 4)  # it would sleep 5 s
    assert calls == 1


async def test_non_retriable_errors_are_not_retried() -> None:
    """An error that is not retriable propagates after one attempt."""
    calls = 0

    async def bug() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    with pytest.raises(ValueError):
        await retry_call(bug, POLICY)
    assert calls == 1


def test_proxy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY is used for the API URL unless NO_PROXY exempts its host."""
    from hh_exporter._transport import _env_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert _env_proxy("https://api.honeyhive.ai") == "http://proxy.internal:3128"
    assert _env_proxy("http://127.0.0.1:8787") is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert _env_proxy("https://api.honeyhive.ai") is None
