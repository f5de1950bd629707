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

This module is pure: it imports the standard library and msgspec only, does no I/O and
knows nothing of the exporter, so the collector (which may import ``wire/`` and this module
only) applies the same rules on its OTLP route.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

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

# One alternation, one scan per string. Each match must start where its run starts (the
# look-behinds): without them a long run of word characters is rescanned from every
# position, quadratic in its length. The email's domain is a run of labels each ending in a
# dot, so it splits one way only. A card number must stand alone: digits inside an id (a
# numeric UUID's groups) are not a card. The bearer scheme is matched as headers spell it
# (Bearer, bearer, BEARER), which lets the cheap test below stay a superset.
_PATTERN = re.compile(
    r"(?P<email>(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,})"
    r"|(?P<bearer>(?<![A-Za-z0-9_])(?:[Bb]earer|BEARER)[ \t]+[A-Za-z0-9\-._~+/]+=*)"
    r"|(?P<api_key>(?<![A-Za-z0-9_])sk-(?:ant-)?[A-Za-z0-9_\-]{16,})"
    r"|(?P<card>(?<![\w\-])[0-9](?:[ \-]?[0-9]){12,18}(?![\w\-]))"
)
# Most strings hold none of the patterns: these tests (substring searches, and one simple
# character-class scan for 13 digits) reject them at a few ns a character.
_DIGITS = re.compile(r"[0-9](?:[ \-]?[0-9]){12}")
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
    boundary), which makes it idempotent. Most text fails the cheap tests first (shorter
    than the shortest match, ``a@b.co``; no ``@``, ``sk-``, ``earer``, 13 digits) and comes
    back as it is.
    """
    if len(text) < 6 or not ("@" in text or "sk-" in text or "earer" in text or "EARER" in text
            or _DIGITS.search(text) is not None):
        return text
    while True:
        new = _PATTERN.sub(_replace, text)
        if new == text:
            return new
        text = new


# Key names repeat across events ("role", "content", "type"): their verdicts are cached.
_key_marks: dict[str, str | None] = {}


def _key_mark(key: object) -> str | None:
    """The marker that replaces the value under ``key``, or None if it is not a secret's."""
    if type(key) is str:
        try:
            return _key_marks[key]
        except KeyError:
            pass
    if not isinstance(key, str):
        return None
    name = key.lower().replace("-", "_")
    mark = f"[REDACTED:{name}]" if name in SECRET_KEYS else None
    if len(_key_marks) < 4096 and type(key) is str:  # bounded: keys may be data
        _key_marks[key] = mark
    return mark


def redact_value(value: Any, _depth: int = 0) -> Any:
    """Redact ``value``: strings by pattern, dict values by key name, recursively.

    Dicts, lists and tuples come back as new objects (plain ``dict``/``list``); anything
    else (numbers, ``None``, objects the encoder will judge) comes back as is.
    """
    t = type(value)
    # Exact types first: an isinstance() against an ABC costs more than the rest of a node.
    if t is str:
        return redact_text(value)
    if t is int or t is float or t is bool or value is None:
        return value
    if _depth >= MAX_DEPTH:
        if t is dict or t is list or t is tuple or isinstance(value, Mapping | list | tuple):
            return "[REDACTED:too_deep]"
        return value
    if t is dict or (t is not list and isinstance(value, Mapping)):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            mark = _key_mark(k)
            out[k] = redact_value(v, _depth + 1) if mark is None else mark
        return out
    if t is list or t is tuple or isinstance(value, list | tuple):
        return [redact_value(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


# What any match of the rules needs somewhere in an event's JSON: a superset test, so that a
# clean event (the common case) costs one encode and a few C-speed passes over its bytes,
# not a walk of every node (a regex per pattern costs 10-40 ns a byte; these, about 1).
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ-", b"abcdefghijklmnopqrstuvwxyz_")
_DIGIT_MAP = bytes.maketrans(b"0123456789", b"0000000000")
_THIRTEEN = b"0" * 13
# Secret key names, quoted, in the lower-cased JSON: one regex with a literal first byte
# (the quote), half the cost of a substring search per name.
_KEY_HINT = re.compile(b'"(?:' + b"|".join(
    re.escape(k.encode()) for k in sorted(SECRET_KEYS, key=len, reverse=True)) + b')"')
_json = msgspec.json.Encoder()


def _clean(fields: dict[str, Any]) -> bool:
    """Whether nothing in the non-identity fields can match a rule (False: walk them)."""
    try:
        blob = _json.encode({k: v for k, v in fields.items() if k not in IDENTITY_FIELDS})
    except Exception:  # noqa: BLE001 - not JSON as it is (a cycle, a type): walk it
        return False
    if b"@" in blob or b"sk-" in blob:
        return False
    low = blob.translate(_LOWER)
    if b"bearer" in low or _KEY_HINT.search(low) is not None:
        return False
    # A card is 13+ digits with single separators between: with every digit as 0 and the
    # separators deleted, 13 zeros in a row would remain (a superset: numbers only a space
    # apart merge too, which costs a walk, never a miss).
    return _THIRTEEN not in blob.translate(_DIGIT_MAP, b" -")


def redact_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The built-in rules over one event's or session's fields (see the module's doc).

    Fields in :data:`IDENTITY_FIELDS` are kept; the others are redacted by
    :func:`redact_value`, a field named like a secret (``authorization=``) removed whole.
    Returns ``fields`` itself when nothing in it can match, else a new dict.
    """
    if _clean(fields):
        return fields
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k in IDENTITY_FIELDS:
            out[k] = v
        else:
            mark = _key_mark(k)
            out[k] = redact_value(v) if mark is None else mark
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
