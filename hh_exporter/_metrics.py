"""Health metrics of an exporter, named after the OpenTelemetry SDK's self-observability.

With ``metrics=True`` (or ``HH_EXPORTER_METRICS_ENABLED=true``) an exporter registers
observable instruments on the global meter provider of ``opentelemetry-api`` (imported here,
lazily: it is never a dependency of the package). They are read from the exporter's ledger
(:meth:`Exporter.stats`) when the SDK collects, so a log call costs nothing more; only the
two histograms are recorded as requests end, once per batch after its last retry (OTel's
rule: count an export once). The same figures render as Prometheus text
(:func:`families`, for the relay's ``GET /metrics``).

Every instrument carries ``otel.component.type=hh_exporter`` and
``otel.component.name=hh_exporter/<n>`` (``n`` counts exporters in the process).
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ._errors import HHExporterError
from ._prometheus import Family
from ._stats import DROP_REASONS, ExporterStats
from ._transport import Response

__all__ = ["BREAKER_STATES", "ExporterMetrics", "families", "install"]

COMPONENT_TYPE = "hh_exporter"
BREAKER_STATES = ("closed", "half_open", "open")
_numbers = itertools.count()

StatsFn = Callable[[], ExporterStats]


def component_name() -> str:
    """A process-unique name for one exporter, as the OTel SDK names its processors."""
    return f"{COMPONENT_TYPE}/{next(_numbers)}"


def families(st: ExporterStats, *, capacity: int, name: str,
             spool_bytes: int | None = None) -> list[Family]:
    """The observable figures of one snapshot, as metric families (the instruments below
    report exactly these)."""
    c = {"otel.component.type": COMPONENT_TYPE, "otel.component.name": name}
    out = [
        Family("hh.exporter.queue.size", "gauge", "Events in the buffer, waiting for a batch.",
               [(c, st.buffered)]),
        Family("hh.exporter.queue.capacity", "gauge", "The most events the buffer holds.",
               [(c, capacity)]),
        Family("hh.exporter.event.processed", "counter",
               "Events accepted by a log call or send (counted at the hand-off).",
               [(c, st.accepted)]),
        Family("hh.exporter.event.exported", "counter",
               "Events settled: delivered (no error.type) or dropped (error.type: the drop "
               "reason).",
               [(c, st.delivered)] + [({**c, "error.type": r}, st.dropped.get(r, 0))
                                      for r in DROP_REASONS]),
        Family("hh.exporter.event.inflight", "gauge", "Events in requests under way.",
               [(c, st.in_flight_events)]),
        Family("hh.exporter.request.inflight", "gauge", "Requests under way.",
               [(c, st.in_flight_requests)]),
        Family("hh.exporter.breaker.state", "gauge",
               "1 for the circuit breaker's current state, 0 for the others.",
               [({**c, "state": s}, int(st.breaker == s)) for s in BREAKER_STATES]),
    ]
    if spool_bytes is not None:
        out.append(Family("hh.exporter.spool.size", "gauge", "Bytes in the spool directory.",
                          [(c, spool_bytes)]))
    return out


class ExporterMetrics:
    """The instruments of one exporter. ``record_operation`` is the sender's hook."""

    def __init__(self, stats: StatsFn, *, capacity: int, spool_bytes: Callable[[], int] | None,
                 meter_provider: Any = None) -> None:
        from opentelemetry import metrics  # lazy: only with metrics on

        from ._version import __version__

        self.name = component_name()
        self._attrs = {"otel.component.type": COMPONENT_TYPE, "otel.component.name": self.name}
        # A weak reference: the global provider must not keep a closed exporter alive.
        ref = weakref.WeakMethod(stats) if hasattr(stats, "__self__") else (lambda: stats)
        self._stats: Callable[[], StatsFn | None] = ref
        self._capacity = capacity
        self._spool_bytes = spool_bytes
        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter("hh_exporter", __version__)
        self._observation = metrics.Observation
        self._cache: tuple[float, list[Family]] = (-1.0, [])
        for fam in families(_EMPTY, capacity=capacity, name=self.name,
                            spool_bytes=0 if spool_bytes else None):
            make = (meter.create_observable_counter if fam.kind == "counter"
                    else meter.create_observable_up_down_counter)
            if fam.name == "hh.exporter.breaker.state":
                make = meter.create_observable_gauge
            make(fam.name, callbacks=[self._callback(fam.name)],
                 unit=_UNITS.get(fam.name, "{event}"), description=fam.help)
        self._duration = meter.create_histogram(
            "hh.exporter.operation.duration", unit="s",
            description="Time to deliver one batch, retries included.")
        self._batch = meter.create_histogram(
            "hh.exporter.batch.size", unit="{event}", description="Events per batch sent.")

    def _families(self) -> list[Family]:
        # One snapshot per collection, shared by every instrument's callback.
        now = time.monotonic()
        if now - self._cache[0] > 0.05:
            fn = self._stats()
            if fn is None:
                return []
            spool = self._spool_bytes() if self._spool_bytes is not None else None
            self._cache = (now, families(fn(), capacity=self._capacity, name=self.name,
                                         spool_bytes=spool))
        return self._cache[1]

    def _callback(self, name: str) -> Callable[[Any], Iterator[Any]]:
        def observe(options: Any) -> Iterator[Any]:
            for fam in self._families():
                if fam.name == name:
                    for labels, value in fam.samples:
                        yield self._observation(value, dict(labels))
        return observe

    def record_operation(self, seconds: float, events: int,
                         got: Response | HHExporterError) -> None:
        """One batch's delivery ended (after its last retry)."""
        attrs: dict[str, Any] = dict(self._attrs)
        if isinstance(got, Response):
            attrs["http.response.status_code"] = got.status
            if got.status >= 300:
                attrs["error.type"] = str(got.status)
        else:
            status = getattr(got, "status", None)
            if status is not None:
                attrs["http.response.status_code"] = status
            attrs["error.type"] = type(got).__name__
        self._duration.record(seconds, attrs)
        self._batch.record(events, self._attrs)


_UNITS = {"hh.exporter.request.inflight": "{request}", "hh.exporter.spool.size": "By",
          "hh.exporter.breaker.state": "1"}
_EMPTY = ExporterStats(
    accepted=0, delivered=0, unconfirmed=0, dropped={}, pending=0, pending_bytes=0, buffered=0,
    in_flight_events=0, in_flight_requests=0, batches_sent=0, requests=0, retries=0, refused=0,
    sessions_started=0, sessions_failed=0, sessions_pending=0, session_mismatches=0,
    replayed=0, spool_torn=0, breaker="closed", last_error=None)


def install(stats: StatsFn, *, capacity: int, spool_bytes: Callable[[], int] | None = None
            ) -> ExporterMetrics:
    """Register an exporter's instruments on the global meter provider.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed.
    """
    return ExporterMetrics(stats, capacity=capacity, spool_bytes=spool_bytes)
