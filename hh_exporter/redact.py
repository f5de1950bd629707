"""Redaction rules applied to an event's fields before anything leaves the process.

``Exporter(redact=True)`` runs :func:`redact_fields` on every event's and every session's
fields before they are encoded, so the wire, the spool on disk and a Redis stream never
see the original values. ``redact=callable`` runs your own function instead (see
:data:`Redactor`).

The built-in rules, applied to every string in every field but the identity ones
(:data:`IDENTITY_FIELDS`: ids, names, model, provider, timings), nested dicts and lists
included:

- **key names**: the value under a key such as ``api_key``, ``password`` or
  ``authorization`` (:data:`SECRET_KEYS`, compared lower-cased with ``-`` read as ``_``)
  becomes ``[REDACTED:<key>]``, whatever its type;
- **value patterns**: email addresses, bearer tokens, ``sk-``/``sk-ant-`` keys and card
  numbers that pass the Luhn check become ``[REDACTED:email]``, ``[REDACTED:bearer]``,
  ``[REDACTED:api_key]`` and ``[REDACTED:card]``.

The rules never raise on any value (a structure nested deeper than :data:`MAX_DEPTH` is
replaced whole by ``[REDACTED:too_deep]``: fail closed) and are idempotent: redacting twice
gives what redacting once gave.

This module is pure: it imports the standard library only, does no I/O and knows nothing of
the exporter, so the collector (which may import ``wire/`` and this module only) applies
the same rules on its OTLP route.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "IDENTITY_FIELDS",
    "MAX_DEPTH",
    "SECRET_KEYS",
    "Redactor",
    "redact_fields",
    "redact_text",
    "redact_value",
    "resolve",
]

#: A redaction hook: receives an event's (or a session's) fields as a new dict it may change
#: or replace, returns the fields to encode, or ``None`` to drop the event (counted
#: ``redacted``). An exception drops the event too (counted ``redacted_failed``, logged with
#: the exception's type only).
Redactor = Callable[[dict[str, Any]], dict[str, Any] | None]

#: Fields the built-in rules leave alone: identifiers and labels chosen by code, not by
#: users, that the pipeline itself reads (a rewritten ``session_id`` would orphan events).
IDENTITY_FIELDS: frozenset[str] = frozenset((
    "event_id", "session_id", "parent_id", "children_ids", "project", "source",
    "event_type", "event_name", "session_name", "model", "provider", "duration",
    "start_time", "end_time",
))

#: Key names whose values are removed whatever they hold (lower-cased, ``-`` as ``_``).
SECRET_KEYS: frozenset[str] = frozenset((
    "api_key", "apikey", "x_api_key", "password", "passwd", "pwd", "secret",
    "client_secret", "authorization", "proxy_authorization", "auth", "token",
    "access_token", "refresh_token", "id_token", "auth_token", "session_token",
    "bearer", "cookie", "set_cookie", "private_key", "secret_key", "credentials",
))

#: Nesting deeper than this is replaced whole (cycles included): a walk that stops is
#: better than one that raises ``RecursionError`` and drops the event.
MAX_DEPTH = 64

# One alternation, one scan per string. The email's domain is a run of labels each ending
# in a dot, so the match splits one way only: no catastrophic backtracking. A card number
# must stand alone: digits inside an id (a numeric UUID's groups) are not a card.
_PATTERN = re.compile(
    r"(?P<email>[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,})"
    r"|(?P<bearer>(?i:\bbearer)[ \t]+[A-Za-z0-9\-._~+/]+=*)"
    r"|(?P<api_key>\bsk-(?:ant-)?[A-Za-z0-9_\-]{16,})"
    r"|(?P<card>(?<![\w\-])[0-9](?:[ \-]?[0-9]){12,18}(?![\w\-]))"
)
_MARK = {kind: f"[REDACTED:{kind}]" for kind in ("email", "bearer", "api_key", "card")}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _replace(m: re.Match[str]) -> str:
    kind = m.lastgroup or "secret"
    if kind == "card":
        text = m.group()
        digits = text.replace(" ", "").replace("-", "")
        if not _luhn(digits):
            return text  # an order number, a timestamp: not a card
    return _MARK.get(kind, "[REDACTED]")


def redact_text(text: str) -> str:
    """Replace emails, bearer tokens, ``sk-`` keys and Luhn-valid card numbers in ``text``.

    Repeated until nothing more matches (a replaced match can expose a neighbour, e.g. a word
    boundary), which makes it idempotent; usually one scan finds nothing and returns ``text``.
    """
    if _PATTERN.search(text) is None:
        return text
    while True:
        new = _PATTERN.sub(_replace, text)
        if new == text:
            return new
        text = new


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


def redact_value(value: Any, _depth: int = 0) -> Any:
    """Redact ``value``: strings by pattern, dict values by key name, recursively.

    Dicts, lists and tuples come back as new objects (plain ``dict``/``list``); anything
    else (numbers, ``None``, objects the encoder will judge) comes back as is.
    """
    if isinstance(value, str):
        return redact_text(value)
    if _depth >= MAX_DEPTH:
        if isinstance(value, Mapping | list | tuple):
            return "[REDACTED:too_deep]"
        return value
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if _is_secret_key(k):
                out[k] = f"[REDACTED:{k.lower().replace('-', '_')}]"
            else:
                out[k] = redact_value(v, _depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [redact_value(v, _depth + 1) for v in value]
    return value


def redact_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The built-in rules over one event's or session's fields (see the module's doc).

    Fields in :data:`IDENTITY_FIELDS` are kept; the others are redacted by
    :func:`redact_value`, a field named like a secret (``authorization=``) removed whole.
    """
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k in IDENTITY_FIELDS:
            out[k] = v
        elif _is_secret_key(k):
            out[k] = f"[REDACTED:{k.lower().replace('-', '_')}]"
        else:
            out[k] = redact_value(v)
    return out


def resolve(redact: bool | Redactor | None) -> Redactor | None:
    """The hook an exporter runs for ``redact=``: None (off), the built-in rules (True), or
    the callable given."""
    if redact is None or redact is False:
        return None
    if redact is True:
        return redact_fields
    if callable(redact):
        return redact
    raise TypeError(f"redact must be True, False, None or a callable, got "
                    f"{type(redact).__name__}")
