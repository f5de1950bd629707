"""OpenTelemetry spans to HoneyHive events, at the exporter's price: ``HoneyHiveSpanExporter``.

::

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(HoneyHiveSpanExporter(hh)))
    OpenAIInstrumentor().instrument(tracer_provider=provider)   # any GenAI instrumentation

Each span is mapped (``hh_exporter.wire._otel_map``: OTel GenAI, OpenLLMetry, OpenInference and
HoneyHive's own attributes) to one event handed to an :class:`~hh_exporter.Exporter` or
:class:`~hh_exporter.SyncExporter`; ``export()`` returns once the events are accepted, never
waiting on the network. Sessions are started before their events: the session a span
names (``honeyhive.session_id``), else one per trace.

Spans of no LLM dialect (HTTP, databases) are left out unless they are ancestors of one
that speaks it (``include_non_genai=True`` keeps them all). Every span is counted in
:attr:`HoneyHiveSpanExporter.stats`: exported, not GenAI, refused (could not be mapped or
encoded), truncated (the SDK had dropped attributes: raise
``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``).

The contrib ``opentelemetry-instrumentation-openai-v2`` puts message content in log events
by default, which a span exporter does not see. Put it on the spans:
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` and
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only``.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._encoding import GENERIC_ROUTE
from .._errors import ExporterClosedError
from .._exporter import Exporter
from .._session import Session
from .._sync import SyncExporter
from .._trace import warn
from ..wire._otel_map import is_genai, map_span
from ..wire._otlp import SpanData

__all__ = ["HoneyHiveSpanExporter", "span_data"]

_MAX_REMEMBERED = 100_000


def _plain(attrs: Any) -> dict[str, Any]:
    """Attributes as a plain dict, sequences as lists (the mapping reads, never writes it).

    The SDK hands a ``MappingProxyType`` over its ``BoundedAttributes``, whose every read
    takes a lock: iterating that cost more than mapping the span. An ended span's
    ``BoundedAttributes`` is immutable, so its inner dict is read directly when there is
    one (``_plain_of_span``), and copied only when a value is a tuple."""
    d = getattr(attrs, "_dict", None)
    if type(d) is not dict:
        if not attrs:  # None, or empty (BoundedAttributes' len takes its lock: not asked)
            return {}
        d = dict(attrs)
    for v in d.values():
        if type(v) is tuple:
            return {k: list(v) if type(v) is tuple else v for k, v in d.items()}
    return d


def _plain_of_span(span: Any) -> dict[str, Any]:
    # ReadableSpan.attributes wraps `_attributes` in a MappingProxyType: go to the source
    # when this SDK version has it, else through the public property.
    raw = getattr(span, "_attributes", None)
    if raw is not None and type(getattr(raw, "_dict", None)) is dict:
        return _plain(raw)
    return _plain(span.attributes)


_resources: dict[int, tuple[Any, dict[str, Any]]] = {}


def _resource(res: Any) -> dict[str, Any]:
    """A resource's attributes, converted once per resource (one per provider)."""
    hit = _resources.get(id(res))
    if hit is not None and hit[0] is res:
        return hit[1]
    attrs = _plain(res.attributes)
    if len(_resources) > 64:
        _resources.clear()
    _resources[id(res)] = (res, attrs)
    return attrs


def span_data(span: ReadableSpan) -> SpanData:
    """An SDK span as the mapping's plain span."""
    ctx = span.context
    parent = span.parent
    status = span.status
    scope = span.instrumentation_scope
    return SpanData(
        trace_id=f"{ctx.trace_id:032x}", span_id=f"{ctx.span_id:016x}",
        parent_span_id=f"{parent.span_id:016x}" if parent is not None else None,
        name=span.name, start_ns=span.start_time or 0, end_ns=span.end_time or 0,
        attributes=_plain_of_span(span),
        events=[(e.name, _plain(e.attributes)) for e in span.events] if span.events else [],
        status_code=status.status_code.name, status_message=status.description or "",
        resource=_resource(span.resource), scope=scope.name if scope else "",
        dropped_attributes=span.dropped_attributes)


class HoneyHiveSpanExporter(SpanExporter):
    """An OpenTelemetry ``SpanExporter`` that logs spans as HoneyHive events.

    Args:
        exporter: The :class:`~hh_exporter.Exporter` (its loop runs elsewhere: spans come
            from the BatchSpanProcessor's thread) or :class:`~hh_exporter.SyncExporter`.
        include_non_genai: Keep every span, not only LLM spans and their ancestors.
        session_name: The name of the sessions started for traces that carry none
            (default: the resource's ``service.name``).
    """

    def __init__(self, exporter: Exporter | SyncExporter, *, include_non_genai: bool = False,
                 session_name: str | None = None) -> None:
        if not isinstance(exporter, (Exporter, SyncExporter)):
            raise TypeError("exporter must be an hh_exporter Exporter or SyncExporter")
        self._exporter = exporter
        # The mapping's dict is ours: handed to the log call as it is, not as **kwargs.
        self._log = exporter._log
        self._include_all = include_non_genai
        self._session_name = session_name
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        # Parents of kept spans not seen yet: a parent ends (and is exported) after its
        # children, so it is kept when it comes.
        self._wanted: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        #: Spans by outcome: exported, not_genai, refused, truncated.
        self.stats: Counter[str] = Counter()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Map and hand over ``spans``; returns once they are accepted (no network)."""
        with self._lock:  # the SDK may call from more than one processor
            try:
                for span in spans:
                    self._one(span_data(span))
            except ExporterClosedError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _one(self, sp: SpanData) -> None:
        key = sp.trace_id + sp.span_id
        # The values are None: ask for the key (``pop(key, None) is not None`` never held).
        wanted = key in self._wanted
        if wanted:
            del self._wanted[key]
        if not (self._include_all or wanted or is_genai(sp)):
            self.stats["not_genai"] += 1
            return
        if sp.parent_span_id:
            self._wanted[sp.trace_id + sp.parent_span_id] = None
            if len(self._wanted) > _MAX_REMEMBERED:
                self._wanted.popitem(last=False)
        if sp.dropped_attributes:
            self.stats["truncated"] += 1
        try:
            # Kept only because LLM spans descend from it: a chain grouping their work.
            fields = map_span(sp, ancestor=wanted and not self._include_all
                              and not is_genai(sp))
            # The mapping chose the session; it travels as the Session, which gates the event.
            session = self._session(fields.pop("session_id"), sp)
            self._log(GENERIC_ROUTE, fields, session)
        except ExporterClosedError:
            raise
        except Exception as exc:  # noqa: BLE001 - counted, never the app's problem
            self.stats["refused"] += 1
            warn(f"exporting the span {sp.name!r}", exc)
            return
        self.stats["exported"] += 1

    def _session(self, sid: str, sp: SpanData) -> Session:
        s = self._sessions.get(sid)
        if s is not None:
            self._sessions.move_to_end(sid)
            return s
        name = self._session_name or str(sp.resource.get("service.name") or "otel")
        # Started before its first event; a session the HoneyHive tracer started already
        # is merged by the API, not duplicated.
        s = self._sessions[sid] = self._exporter.session(session_id=sid, session_name=name)
        if len(self._sessions) > _MAX_REMEMBERED:
            self._sessions.popitem(last=False)
        return s

    def _run(self, what: str, timeout: float) -> bool:
        ex = self._exporter
        if what == "flush":
            if isinstance(ex, SyncExporter):
                return ex.flush(timeout)
            return ex.flush_from_thread(timeout)  # its loop runs in another thread
        if isinstance(ex, SyncExporter):
            ex.close(timeout)
        else:
            ex.close_from_thread(timeout)
        return True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver what was exported, within the deadline (the exporter's ``flush``)."""
        return self._run("flush", timeout_millis / 1000)

    def shutdown(self) -> None:
        """Flush and close the exporter, within its ``close_timeout``."""
        timeout = getattr(getattr(self._exporter, "config", None), "close_timeout", 10.0)
        self._run("close", float(timeout))
