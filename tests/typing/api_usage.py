"""Type-checked by mypy (strict) in CI, never executed: the public API as users write it."""

from __future__ import annotations

import hh_exporter
from hh_exporter.testing import MemoryTransport


async def service(uid: str) -> str:
    async with hh_exporter.Exporter(project="p", transport=MemoryTransport()) as hh:
        chat = hh.session(session_name="chat", user_properties={"user": uid})
        eid: str = chat.log_model_event(
            model="gpt-4o", provider="openai", messages=[{"role": "user", "content": "hi"}],
            response={"role": "assistant", "content": "yo"}, duration=812.0,
            usage={"total_tokens": 3},
        )
        chat.log_event(event_type="tool", event_name="search", inputs={"q": 1})
        await hh.send_model_event(model="m", provider="p", messages=[], response={}, timeout=1.0)
        ok: bool = await hh.flush(5.0)
        stats: hh_exporter.ExporterStats = hh.stats()
        assert ok and stats.balanced
        return eid


def script() -> None:
    with hh_exporter.SyncExporter(project="p", transport=MemoryTransport()) as hh:
        hh.log_model_event(model="m", provider="p", messages=[], response={})
