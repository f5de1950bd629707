"""Health metrics: the OTel SDK's own in-memory reader sees every instrument, holding the
values of stats() after a run with drops of several reasons; the collector's /metrics
parses with the Prometheus client's own parser."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from hh_exporter import DROP_REASONS, ExporterConfig
from hh_exporter._prometheus import Family, render
from hh_exporter.collector import Collector

from .conftest import assert_balanced, fast_exporter, http_json, model_fields

NAMES = {
    "hh.exporter.queue.size", "hh.exporter.queue.capacity", "hh.exporter.event.processed",
    "hh.exporter.event.exported", "hh.exporter.event.inflight", "hh.exporter.request.inflight",
    "hh.exporter.operation.duration", "hh.exporter.batch.size", "hh.exporter.breaker.state",
    "hh.exporter.spool.size",
}
_READER = InMemoryMetricReader()


@pytest.fixture(scope="module")
def reader() -> InMemoryMetricReader:
    # The global provider can be set once per process; nothing else in the suite sets one.
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    return _READER


def points(reader: InMemoryMetricReader, name: str) -> dict[str, list[Any]]:
    """Data points of metric ``name``, by ``otel.component.name``."""
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for p in m.data.data_points:
                        out.setdefault(p.attributes["otel.component.name"], []).append(p)
    return out


def seen(reader: InMemoryMetricReader) -> set[str]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


async def test_the_reader_sees_every_metric_and_it_equals_stats(
    reader: InMemoryMetricReader, collector: Collector, tmp_path: Any
) -> None:
    def hook(f: dict[str, Any]) -> dict[str, Any] | None:
        name = f.get("event_name")
        if name == "drop":
            return None
        if name == "fail":
            raise RuntimeError("no")
        return f

    hh = fast_exporter(collector.url, metrics=True, redact=hook, max_buffer_events=20,
                       max_batch_bytes=4096, spool_dir=str(tmp_path / "spool"))
    name = hh._metrics.name  # type: ignore[union-attr]  # the test's own exporter
    # Before start: the 20-event buffer fills, the rest is queue_full.
    for i in range(25):
        hh.log_model_event(**model_fields(i))
    async with hh:
        hh.log_model_event(**model_fields(0, size=8000))  # too_large
        for ev in ("drop", "drop", "fail"):
            hh.log_event(event_type="tool", event_name=ev, inputs={})
        assert await hh.flush(5.0)
        st = hh.stats()
        assert {r for r, n in st.dropped.items() if n} == {
            "queue_full", "too_large", "redacted", "redacted_failed"}
        assert seen(reader) >= NAMES

        def value(metric: str, **attrs: str) -> float:
            for p in points(reader, metric)[name]:
                if all(p.attributes.get(k) == v for k, v in attrs.items()) and (
                        "error.type" in attrs or "error.type" not in p.attributes):
                    return p.value  # type: ignore[no-any-return]
            raise AssertionError((metric, attrs))

        assert value("hh.exporter.event.processed") == st.accepted == 29
        assert value("hh.exporter.event.exported") == st.delivered == 20
        for reason in DROP_REASONS:
            assert value("hh.exporter.event.exported", **{"error.type": reason}) == \
                st.dropped[reason]
        assert value("hh.exporter.queue.size") == st.buffered == 0
        assert value("hh.exporter.queue.capacity") == 20
        assert value("hh.exporter.event.inflight") == st.in_flight_events == 0
        assert value("hh.exporter.request.inflight") == st.in_flight_requests == 0
        assert value("hh.exporter.breaker.state", state="closed") == 1
        assert value("hh.exporter.breaker.state", state="open") == 0
        assert value("hh.exporter.spool.size") >= 0
        # The invariant, read from the metrics alone.
        exported = sum(p.value for p in points(reader, "hh.exporter.event.exported")[name])
        assert value("hh.exporter.event.processed") == exported + value(
            "hh.exporter.queue.size") + value("hh.exporter.event.inflight")
        (durations,) = points(reader, "hh.exporter.operation.duration")[name]
        (sizes,) = points(reader, "hh.exporter.batch.size")[name]
        assert durations.count == st.batches_sent and durations.sum > 0
        assert durations.attributes["http.response.status_code"] == 200
        assert sizes.sum == st.delivered
        for p in points(reader, "hh.exporter.queue.size")[name]:
            assert p.attributes["otel.component.type"] == "hh_exporter"
        assert_balanced(st)


def test_the_environment_turns_metrics_on() -> None:
    on = ExporterConfig.from_env({"HH_API_KEY": "k", "HH_EXPORTER_METRICS_ENABLED": "true"})
    off = ExporterConfig.from_env({"HH_API_KEY": "k"})
    assert on.metrics and not off.metrics


async def test_the_collectors_metrics_parse_as_prometheus_text(collector: Collector) -> None:
    async with fast_exporter(collector.url) as hh:
        s = hh.session(session_name="m")
        for i in range(5):
            s.log_model_event(**model_fields(i))
        assert await hh.flush(5.0)
    status, text = await http_json(collector.url, "/metrics")
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    stored = {s.name: s.value for s in fams["hh_collector_events_stored"].samples}
    assert stored["hh_collector_events_stored"] == 5
    assert fams["hh_collector_events_received"].type == "counter"
    routes = {s.labels["route"] for s in fams["hh_collector_requests"].samples}
    assert "/events/model/batch" in routes
    status, _ = await http_json(collector.url, "/metrics", token="wrong")
    assert status == 401


def test_hostile_label_values_survive_the_round_trip() -> None:
    nasty = 'a"b\\c\nd}{,='
    text = render([Family("x.y", "gauge", "help \\ with\nnewline", [({"k": nasty}, 1.5)])])
    (fam,) = text_string_to_metric_families(text)
    assert fam.samples[0].labels == {"k": nasty} and fam.samples[0].value == 1.5
