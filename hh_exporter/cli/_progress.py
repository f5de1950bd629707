"""Progress display for the CLI: a rich bar on a terminal, plain periodic lines elsewhere.

rich is an optional extra (``pip install 'hh-exporter[cli]'``); without it, or when stderr
is not a terminal (CI logs, pipes), a plain line is printed every couple of seconds.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["Progress", "fmt_dropped"]


class Progress:
    """``with Progress("ingest", total) as p: p.update(done, note)``."""

    def __init__(self, label: str, total: int | None, *, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self._rich: Any = None
        self._task: Any = None
        self._last_plain = 0.0
        self._t0 = time.monotonic()

    def __enter__(self) -> Progress:
        if self.enabled and sys.stderr.isatty():
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:
                pass
            else:
                self._rich = RichProgress(
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]} ev/s"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                    transient=False,
                )
                self._rich.start()
                self._task = self._rich.add_task(self.label, total=self.total, rate="-",
                                                 note="")
        return self

    def update(self, done: int, note: str = "") -> None:
        """Show ``done`` events so far."""
        if not self.enabled:
            return
        elapsed = max(1e-9, time.monotonic() - self._t0)
        rate = f"{done / elapsed:,.0f}"
        if self._rich is not None:
            self._rich.update(self._task, completed=done, rate=rate, note=note)
            return
        now = time.monotonic()
        if now - self._last_plain >= 2.0:
            self._last_plain = now
            of = f"/{self.total:,}" if self.total else ""
            print(f"{self.label}: {done:,}{of} events, {rate} ev/s {note}".rstrip(),
                  file=sys.stderr, flush=True)

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._rich is not None:
            self._rich.stop()


def fmt_dropped(dropped: dict[str, int]) -> str:
    """``reason count, ...`` for the summaries, ``none`` when nothing was dropped."""
    parts = [f"{k} {v:,}" for k, v in dropped.items() if v]
    return ", ".join(parts) if parts else "none"
