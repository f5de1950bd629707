"""How ``PUT /events`` changes a stored event or session: the spec's field rules, pure.

SPEC-DP ``LegacyUpdateEventRequest`` (and ``UpdateEventRequest``, its v1 twin) describes
each field: ``metadata``, ``feedback``, ``metrics``, ``config`` and ``user_properties`` are
"fields to merge into the event" (each key sent replaces that key, the others stay);
``outputs`` is the "Output object to replace on the event" (``null`` "preserves the existing
outputs"); ``children_ids`` are the "IDs of child events to set (must be non-empty; an empty
array is ignored)"; ``duration`` and ``end_time`` are set.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MERGED", "apply_update"]

#: The fields whose keys are merged into the stored object.
MERGED = frozenset({"metadata", "feedback", "metrics", "config", "user_properties"})


def apply_update(doc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply the fields of an update request (``event_id`` left out) to ``doc`` in place,
    and return it."""
    for key, value in patch.items():
        if value is None:  # outputs: null preserves; the other fields never come as null
            continue
        if key == "children_ids" and not value:
            continue  # an empty array is ignored
        old = doc.get(key)
        if key in MERGED and isinstance(value, dict) and isinstance(old, dict):
            doc[key] = {**old, **value}
        else:
            doc[key] = value
    return doc
