"""Prometheus text exposition (format 0.0.4) of a few metric families; pure, stdlib only.

The collector's and ``hh-exporter relay``'s ``GET /metrics`` render their figures with it.
It imports nothing of the client (the collector may import ``wire/`` and the pure public
modules only), does no I/O, and follows the OpenTelemetry-to-Prometheus name rules: dots
become underscores, a counter's name ends in ``_total``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

__all__ = ["CONTENT_TYPE", "Family", "prometheus_name", "render"]

#: The ``Content-Type`` of :func:`render`'s output.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


@dataclasses.dataclass(frozen=True, slots=True)
class Family:
    """One metric: its OpenTelemetry-style name (``hh.exporter.queue.size``), its kind, its
    help line and its samples, each a label set and a value."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]]


def prometheus_name(name: str, kind: str) -> str:
    """``hh.exporter.event.exported`` (a counter) -> ``hh_exporter_event_exported_total``."""
    out = _INVALID.sub("_", name)
    if out[:1].isdigit():
        out = "_" + out
    if kind == "counter" and not out.endswith("_total"):
        out += "_total"
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def render(families: Iterable[Family]) -> str:
    """The text exposition of ``families``, one ``# HELP``/``# TYPE`` block each."""
    lines: list[str] = []
    for f in families:
        name = prometheus_name(f.name, f.kind)
        lines.append(f"# HELP {name} {f.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        lines.append(f"# TYPE {name} {f.kind}")
        for labels, value in f.samples:
            if labels:
                shown = ",".join(f'{_INVALID.sub("_", k)}="{_label(str(v))}"'
                                 for k, v in labels.items())
                lines.append(f"{name}{{{shown}}} {_value(value)}")
            else:
                lines.append(f"{name} {_value(value)}")
    return "\n".join(lines) + "\n"
