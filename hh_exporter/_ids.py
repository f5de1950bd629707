"""Cheap, valid version-4 UUID strings for client-side event and session ids.

``str(uuid.uuid4())`` costs about as much as encoding a whole event, because it makes one
``os.urandom`` call and builds a ``UUID`` object per id. Here random bytes are drawn in bulk
and formatted 512 ids at a time, so the hot path pays for one ``list.pop()``.
The ids stay cryptographically random (``os.urandom``), which matters: ids are the dedup key
on the server, so two processes must never share a stream.
"""

from __future__ import annotations

import os

__all__ = ["new_id"]

_BLOCK = 512
# The variant nibble of an RFC 4122 UUID is 10xx in binary: map any hex digit onto 8, 9, a, b.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_pool: list[str] = []


def _refill() -> None:
    raw = os.urandom(16 * _BLOCK).hex()
    v = _VARIANT
    _pool.extend(
        f"{raw[i:i + 8]}-{raw[i + 8:i + 12]}-4{raw[i + 13:i + 16]}-"
        f"{v[raw[i + 16]]}{raw[i + 17:i + 20]}-{raw[i + 20:i + 32]}"
        for i in range(0, len(raw), 32)
    )


def new_id() -> str:
    """Return a new random version-4 UUID as a lowercase string.

    Thread-safe: ``list.pop`` is atomic, and two threads refilling at once only draw extra ids.
    """
    try:
        return _pool.pop()
    except IndexError:
        _refill()
        return _pool.pop()


def _forget_after_fork() -> None:
    # A child that kept the parent's pool would hand out the parent's next ids: duplicates.
    _pool.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
