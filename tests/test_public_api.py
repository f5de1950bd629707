"""The public surface: exactly __all__, sorted, with the version from metadata."""

from __future__ import annotations

import importlib.metadata
import uuid

import hh_exporter
import hh_exporter.wire
from hh_exporter._ids import new_id


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name once, sorted as ruff sorts it."""
    # public modules and subpackages
    subpackages = {"cli", "collector", "integrations", "redact", "streams", "testing", "wire"}
    public = {n for n in dir(hh_exporter) if not n.startswith("_")} - subpackages
    assert set(hh_exporter.__all__) - {"__version__"} == public
    assert len(hh_exporter.__all__) == len(set(hh_exporter.__all__))


def test_version_matches_package_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert hh_exporter.__version__ == importlib.metadata.version("hh-exporter")


def test_public_classes_show_the_package_name() -> None:
    """Reprs say hh_exporter.Exporter, not the private module."""
    assert hh_exporter.Exporter.__module__ == "hh_exporter"


def test_ids_are_unique_valid_uuid4() -> None:
    """new_id gives distinct RFC 4122 version-4 UUIDs."""
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == 5000
    for i in ids:  # every one: the block layout puts each digit column in place
        u = uuid.UUID(i)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == i


def test_ids_from_many_threads_never_run_dry() -> None:
    """8 threads drawing ids with the GIL switching as often as it can: every call returns
    an id (a refill raced by the other threads once raised IndexError, which killed a
    logging thread in CI), and no id is handed out twice."""
    import sys
    import threading

    got: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def draw(out: list[str]) -> None:
        try:
            for _ in range(100_000):
                out.append(new_id())
        except BaseException as exc:  # the test reports it below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=draw, args=(g,)) for g in got]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    ids = [i for g in got for i in g]
    assert len(ids) == 800_000 and len(set(ids)) == len(ids)


async def test_what_the_exporter_sends_matches_the_wire_models() -> None:
    """Every body the exporter sends validates against the data-plane spec's request schema
    for its route and decodes into the public wire Structs; a session's start goes before
    any of its events."""
    import msgspec

    from hh_exporter.testing import MemoryTransport

    from .spec import check_request

    transport = MemoryTransport()
    async with hh_exporter.Exporter(api_key="k", project="p", transport=transport) as hh:
        s = hh.session(session_name="wire", metadata={"k": 1}, user_properties=None)
        for _ in range(3):
            s.log_model_event(model="m", provider="p", messages=[{"role": "user"}],
                              response={"content": "x"}, duration=3, usage={"t": 1},
                              cost=None, metadata=None, error=None)
        hh.log_model_event(model="m", provider="p", messages=[], response="text")
        s.log_event(event_type="tool", event_name="t", inputs={"q": 1})
    kinds = set()
    started: set[str] = set()
    for path, body in transport.requests:
        check_request(path, msgspec.json.decode(body))
        if path == "/session/start":
            start = msgspec.json.decode(body, type=hh_exporter.wire.SessionStartRequest)
            assert start.session.session_name == "wire" and start.session.project == "p"
            assert start.session.session_id is not None
            started.add(start.session.session_id)
            continue
        events: list[hh_exporter.wire.ModelEvent] | list[hh_exporter.wire.Event]
        if path == "/events/model/batch":
            batch = msgspec.json.decode(body, type=hh_exporter.wire.ModelEventBatch)
            assert not batch.is_single_session and batch.session_properties is None
            events = batch.model_events
            assert all(e.project == "p" and e.end_time >= e.start_time for e in events)
            kinds.add("model")
        else:
            gen = msgspec.json.decode(body, type=hh_exporter.wire.EventBatch)
            events = gen.events
            kinds.update(e.event_type for e in gen.events)
            assert all(e.outputs == {} for e in gen.events)
        for e in events:
            assert e.session_id is None or e.session_id in started
    assert kinds == {"model", "tool"}
    sent = [ev for ev in transport.events() if ev.get("session_id")]
    assert sent and all("metadata" not in ev and "cost" not in ev for ev in sent)
    assert all(ev["error"] is None for ev in sent if "model" in ev)