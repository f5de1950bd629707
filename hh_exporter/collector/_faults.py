"""Fault injection: what the collector does to an ingestion request instead of serving it.

A :class:`Faults` value is set at start (CLI flags) and replaced at run time through
``PUT /_control/faults``. For each ingestion request, in this order:

1. ``max_body_bytes``: a larger body gets 413;
2. the ``script``, consumed one entry per request, then normal service;
3. ``drop_rate``: the connection is closed without an answer;
4. ``error_rate``: an error status drawn from ``error_statuses``;
5. ``latency``: a delay before the request is served (``session_latency`` more for
   ``POST /session/start``, to show what waits for a slow session start).

Script entries: ``503`` (a status), ``429@2`` (with ``Retry-After: 2``), ``200`` (serve
normally), ``drop`` (close the connection), ``partial`` (store the first half of the batch,
answer 500 with ``event_ids`` and ``errors``, as the API documents), ``hang`` (never answer).
Random draws use one ``random.Random(seed)``, so a seeded run repeats exactly.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

__all__ = ["Action", "Faults", "parse_script"]


class Action(msgspec.Struct, frozen=True):
    """One scripted answer: ``kind`` is ``status``, ``serve``, ``drop``, ``partial`` or ``hang``."""

    kind: str
    status: int = 200
    retry_after: float | None = None


class Faults(msgspec.Struct, kw_only=True):
    """Fault settings. All off by default."""

    script: list[str] = msgspec.field(default_factory=list)
    error_rate: float = 0.0
    error_statuses: list[int] = msgspec.field(default_factory=lambda: [500, 502, 503])
    seed: int | None = None
    latency: float = 0.0
    session_latency: float = 0.0
    max_body_bytes: int | None = None
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {v}")
        for name in ("latency", "session_latency"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for entry in self.script:
            parse_entry(entry)  # fail now, not on the request that reaches it


def parse_entry(entry: str) -> Action:
    """Parse one script entry (see the module docstring)."""
    text = entry.strip().lower()
    if text in ("drop", "partial", "hang"):
        return Action(text)
    status_text, _, ra_text = text.partition("@")
    try:
        status = int(status_text)
        retry_after = float(ra_text) if ra_text else None
    except ValueError:
        raise ValueError(
            f"bad fault script entry {entry!r}: use a status like 503 or 429@2, or "
            "drop, partial, hang"
        ) from None
    if not 100 <= status <= 599:
        raise ValueError(f"bad fault script entry {entry!r}: status out of range")
    return Action("serve" if status == 200 else "status", status, retry_after)


def parse_script(text: str) -> list[str]:
    """Split ``"503,503,429@2,200"`` into entries, validating each."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    for e in entries:
        parse_entry(e)
    return entries


class FaultState:
    """The live fault settings and the position in the script. Strictly private."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.set(faults or Faults())

    def set(self, faults: Faults) -> None:
        """Replace the settings; the script restarts from its first entry."""
        self.faults = faults
        self._script = [parse_entry(e) for e in faults.script]
        self._pos = 0
        self._rng = random.Random(faults.seed)

    def describe(self) -> dict[str, Any]:
        """The settings and how much of the script is left."""
        out: dict[str, Any] = msgspec.to_builtins(self.faults)
        out["script_remaining"] = self.faults.script[self._pos:]
        return out

    def decide(self, body_size: int) -> Action:
        """What to do with the next ingestion request."""
        f = self.faults
        if f.max_body_bytes is not None and body_size > f.max_body_bytes:
            return Action("status", 413)
        if self._pos < len(self._script):
            action = self._script[self._pos]
            self._pos += 1
            if action.kind != "serve":
                return action
        if f.drop_rate and self._rng.random() < f.drop_rate:
            return Action("drop")
        if f.error_rate and self._rng.random() < f.error_rate:
            return Action("status", self._rng.choice(f.error_statuses))
        return Action("serve")
