"""The OTLP route's tree memory against the mapping: ``python benchmarks/otlp_tree.py``.

CPU per span of ``SpanTree.plan`` (which spans of a request are kept, under which parent,
remembered per trace) beside ``map_span`` of the same spans, the floor it rides on: the
route runs both for every span. 40 requests of 500 spans (50 traces of a workflow and 9
chats each), in process, no network; best of 3.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hh_exporter.collector._otlp_tree import SpanTree
from hh_exporter.wire._otel_map import map_span
from hh_exporter.wire._otlp import SpanData

CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 9,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
            {"type": "text", "content": "hi"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "text", "content": "hello"}]}])}


def request(r: int) -> list[SpanData]:
    out = []
    for t in range(50):
        tid = f"{r:016x}{t:016x}"
        out.append(SpanData(tid, f"{0:016x}", None, "wf", 0, 1,
                            {"traceloop.span.kind": "workflow"}))
        out += [SpanData(tid, f"{i:016x}", f"{0:016x}", "chat", 0, 1, CHAT)
                for i in range(1, 10)]
    return out


def main() -> None:
    reqs = [request(r) for r in range(40)]
    n = sum(map(len, reqs))
    plan = mapping = float("inf")
    for _ in range(3):
        tree = SpanTree()
        t0 = time.perf_counter()
        for spans in reqs:
            tree.plan(spans)
        plan = min(plan, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for spans in reqs:
            for sp in spans:
                map_span(sp)
        mapping = min(mapping, time.perf_counter() - t0)
    print(f"{n:,} spans, CPU us per span        us   vs map_span")
    print(f"map_span (the floor)            {mapping / n * 1e6:6.2f}   1.00x")
    print(f"SpanTree.plan                   {plan / n * 1e6:6.2f}   {plan / mapping:.2f}x")


if __name__ == "__main__":
    main()
