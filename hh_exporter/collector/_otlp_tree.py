"""Which spans of an OTLP request become events, and under which parent: the tree across
requests.

A span exporter sends a trace in pieces: a simple processor sends each span as it ends, a
batch processor whatever ended in its interval. Children end before their parents, so a
workflow's parent (a web framework's root span, say) usually comes in a *later* request,
and a parent that ended first in an *earlier* one. Looking for ancestors only within one
request leaves a child's ``parent_id`` naming an event that never exists.

:class:`SpanTree` remembers, per trace and within bounds, the span ids it stored and those
it left out as not GenAI (with their parents), so that:

* a child names the nearest *stored* ancestor: its parent's event, or, when the parent was
  left out, the first stored span up the chain of left-out ones, or the session for a root;
* a child whose parent was not seen yet is stored under the session (an event that exists)
  and *waits* for it; when that span comes it is stored (as a ``chain`` if it speaks no
  LLM dialect: it groups LLM work, reference §1.5) and the waiting children are re-pointed
  at it (:attr:`Plan.updates`).

A child is so never left pointing at an event that does not exist, whatever the batching.
What a bounded memory forgets (a trace evicted, a parent never exported) leaves children
under their session: the safe side. One limit stays: a span left out *before* an LLM
descendant came cannot be stored afterwards (only its id and parent were kept); the
descendant then names the nearest stored ancestor above it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..wire._otel_map import event_id_of, is_genai, session_of
from ..wire._otlp import SpanData

__all__ = ["Plan", "SpanTree"]

#: Walks up a chain of left-out spans stop here (a cycle sent by a broken client).
_MAX_DEPTH = 256


@dataclass(slots=True)
class _Trace:
    stored: set[str] = field(default_factory=set)
    dropped: dict[str, str | None] = field(default_factory=dict)  # span -> its parent
    waiting: dict[str, list[str]] = field(default_factory=dict)  # unseen span -> children

    def size(self) -> int:
        return len(self.stored) + len(self.dropped) + len(self.waiting)


@dataclass(slots=True)
class Planned:
    """A span to store: whether it is kept only as an ancestor, and its parent event."""

    span: SpanData
    ancestor: bool
    parent_id: str
    reparented: bool  # the parent is not the event of the span's own parent span


@dataclass(slots=True)
class Plan:
    """What one request becomes."""

    store: list[Planned] = field(default_factory=list)
    #: (event id, its new parent_id): events stored earlier under the session because their
    #: ancestor had not come yet, now that it is stored.
    updates: list[tuple[str, str]] = field(default_factory=list)
    not_genai: int = 0


class SpanTree:
    """Bounded memory of the spans seen per trace (least recently used trace forgotten
    first). Not thread-safe: the collector calls it from its event loop, and between
    :meth:`plan` and the store's write nothing else runs."""

    def __init__(self, *, max_traces: int = 10_000, max_spans: int = 500_000) -> None:
        self.max_traces = max_traces
        #: Span ids remembered over all traces (stored, left out, waited for).
        self.max_spans = max_spans
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._spans = 0

    def __len__(self) -> int:
        return len(self._traces)

    def _trace(self, trace_id: str) -> _Trace:
        t = self._traces.get(trace_id)
        if t is None:
            t = self._traces[trace_id] = _Trace()
        else:
            self._traces.move_to_end(trace_id)
        return t

    def _evict(self) -> None:
        while self._traces and (len(self._traces) > self.max_traces
                                or self._spans > self.max_spans):
            _, t = self._traces.popitem(last=False)
            self._spans -= t.size()

    def plan(self, spans: list[SpanData]) -> Plan:
        """Decide, for every span of a request, whether it is stored and under which parent,
        and update the memory as if the plan is carried out."""
        out = Plan()
        keys = [sp.trace_id + sp.span_id for sp in spans]
        by_key = dict(zip(keys, spans, strict=True))
        # Kept: LLM spans, spans earlier children wait for, and their ancestors here.
        keep: set[str] = set()
        genai = [is_genai(sp) for sp in spans]  # asked once per span
        traces = self._traces
        for sp, key, llm in zip(spans, keys, genai, strict=True):
            if key in keep:
                continue
            if not llm:
                t = traces.get(sp.trace_id)
                if t is None or sp.span_id not in t.waiting:
                    continue
            node: SpanData | None = sp
            k = key
            while node is not None and k not in keep:
                keep.add(k)
                parent = node.parent_span_id
                node = by_key.get(node.trace_id + parent) if parent else None
                if node is not None:
                    k = node.trace_id + node.span_id
        before: dict[str, int] = {}  # the size of each trace this request touches
        touched: dict[str, _Trace] = {}
        kept: list[tuple[SpanData, bool, _Trace]] = []
        for sp, key, llm in zip(spans, keys, genai, strict=True):
            # First what this request holds, so that its spans find each other.
            t = touched.get(sp.trace_id)
            if t is None:
                t = touched[sp.trace_id] = self._trace(sp.trace_id)
                before[sp.trace_id] = t.size()
            if key in keep:
                t.stored.add(sp.span_id)
                t.dropped.pop(sp.span_id, None)
                kept.append((sp, llm, t))
            else:
                out.not_genai += 1
                if sp.span_id not in t.stored:
                    t.dropped[sp.span_id] = sp.parent_span_id
        for sp, llm, t in kept:
            parent, waits_for, direct = self._parent(sp, t)
            if waits_for is not None:
                t.waiting.setdefault(waits_for, []).append(event_id_of(sp.trace_id, sp.span_id))
            out.store.append(Planned(sp, not llm, parent, not direct))
            if t.waiting:
                children = t.waiting.pop(sp.span_id, None)
                if children:
                    eid = event_id_of(sp.trace_id, sp.span_id)
                    out.updates.extend((child, eid) for child in children)
        for tid, t in touched.items():
            self._spans += t.size() - before.get(tid, 0)
        self._evict()
        return out

    @staticmethod
    def _parent(sp: SpanData, t: _Trace) -> tuple[str, str | None, bool]:
        """The parent event of a kept span, the unseen span it waits for (if any), and
        whether that parent is the span's own (its parent span's event, or the session
        for a root)."""
        p = sp.parent_span_id
        if not p:
            return session_of(sp), None, True
        if p in t.stored:  # the common case: the parent is stored
            return event_id_of(sp.trace_id, p), None, True
        for _ in range(_MAX_DEPTH):
            if p in t.stored:
                return event_id_of(sp.trace_id, p), None, False
            if p not in t.dropped:
                return session_of(sp), p, False  # not seen yet: the session until it comes
            p = t.dropped[p]
            if not p:
                break
        return session_of(sp), None, False
