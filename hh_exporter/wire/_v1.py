"""The v1 API generation: strict bodies for ``POST /v1/sessions`` and ``POST /v1/events/batch``.

The data-plane spec marks the legacy routes deprecated and defines v1 (``PostEventRequest``,
``PostEventBatchRequest``, ``StartSessionRequest``), all ``additionalProperties: false``: no
per-event ``project``, no ``is_single_session``, no model fields. A model call's data goes
into the generic fields instead, where HoneyHive renders it (the event schema's rendering
rules, ``reference/otel-genai-mapping.md`` §1.3-1.4: ``inputs.chat_history``, ``outputs``
``{role, content}``, ``config.model``/``provider``, tokens in ``metadata``, cost in
``metrics``); the table of the "v1" page of docs/ lists every field. ``error`` and
``duration`` stay top level, where v1 has them.
"""

from __future__ import annotations

from typing import Any

from .._errors import EventError

__all__ = ["EVENT_KEYS", "SESSION_KEYS", "event_to_v1", "model_to_v1", "session_to_v1"]

#: ``PostEventRequest``'s properties (``additionalProperties: false``).
EVENT_KEYS = frozenset((
    "project_id", "source", "event_name", "event_type", "event_id", "session_id", "parent_id",
    "children_ids", "config", "inputs", "outputs", "error", "start_time", "end_time",
    "duration", "metadata", "feedback", "metrics", "user_properties",
))
#: ``StartSessionRequest``'s properties (``additionalProperties: false``).
SESSION_KEYS = frozenset((
    "session_id", "session_name", "event_name", "source", "start_time", "end_time",
    "duration", "config", "inputs", "outputs", "metadata", "user_properties", "children_ids",
))

# model-event field -> (v1 object, key in it). ``usage`` is spread into metadata, ``response``
# becomes outputs and ``hyperparameters`` are spread into config: see model_to_v1.
_MOVED = {
    "model": ("config", "model"),
    "provider": ("config", "provider"),
    "messages": ("inputs", "chat_history"),
    "template": ("config", "template"),
    "template_inputs": ("inputs", "template_inputs"),
    "tools": ("config", "tools"),
    "tool_choice": ("config", "tool_choice"),
    "response_format": ("config", "response_format"),
    "cost": ("metrics", "cost"),
}


def _into(event: dict[str, Any], name: str) -> dict[str, Any]:
    obj = event.get(name)
    if obj is None:
        obj = event[name] = {}
    else:
        obj = event[name] = dict(obj)  # never the caller's dict: the event is a snapshot
    return obj


def model_to_v1(fields: dict[str, Any]) -> dict[str, Any]:
    """A completed model event's fields as a v1 ``PostEventRequest`` (``event_type: model``).

    The caller's own ``config``/``inputs``/``outputs``/``metadata``/``metrics`` keys win over
    the moved ones: they were given explicitly.
    """
    event = {k: v for k, v in fields.items() if k in EVENT_KEYS}
    event["event_type"] = "model"
    for name, (target, key) in _MOVED.items():
        if name in fields:
            _into(event, target).setdefault(key, fields[name])
    params = fields.get("hyperparameters")
    if params:
        config = _into(event, "config")
        for key, value in params.items():
            config.setdefault(key, value)
    usage = fields.get("usage")
    if usage:
        metadata = _into(event, "metadata")
        for key, value in usage.items():
            metadata.setdefault(key, value)
    if "response" in fields:
        response = fields["response"]
        outputs = _into(event, "outputs")
        if isinstance(response, dict):
            for key, value in response.items():
                outputs.setdefault(key, value)
        else:
            outputs.setdefault("content", response)
    _into(event, "inputs")
    return event


def event_to_v1(fields: dict[str, Any]) -> dict[str, Any]:
    """A completed generic event as a v1 ``PostEventRequest`` (only ``project`` goes)."""
    fields.pop("project", None)
    return fields


def session_to_v1(fields: dict[str, Any]) -> dict[str, Any]:
    """A session's properties as a v1 ``StartSessionRequest``, or EventError naming what v1
    cannot carry (``StartSessionRequest`` has no ``metrics``, ``feedback`` or ``error``)."""
    extra = sorted(k for k in fields if k not in SESSION_KEYS and k != "project")
    if extra:
        raise EventError(f"the v1 API cannot start a session with {', '.join(extra)}: put "
                         f"them in metadata, or use the legacy API")
    return {k: v for k, v in fields.items() if k != "project"}
