"""A producer process for the stream tests: ``python -m tests.stream_producer URL STREAM
SESSIONS EVENTS OUT``. Logs SESSIONS sessions of EVENTS model events each through a
StreamExporter, flushes, and writes the event ids it got (one per line) and its stats."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from hh_exporter.streams import StreamExporter


async def main(url: str, stream: str, sessions: int, events: int, out: str) -> None:
    ids: list[str] = []
    async with StreamExporter(redis_url=url, stream=stream, project="fleet", linger=0.02,
                              max_batch_events=100) as hh:
        for s in range(sessions):
            session = hh.session(session_name=f"{out}-{s}")
            for i in range(events):
                ids.append(await session.send_model_event(
                    model="gpt-4o", provider="openai",
                    messages=[{"role": "user", "content": f"q{s}-{i}"}],
                    response={"role": "assistant", "content": "a"}, duration=3))
            await asyncio.sleep(0)
        assert await hh.flush(60)
        stats = hh.stats()
    Path(out).write_text("\n".join(ids))  # noqa: ASYNC240 - the run is over
    print(json.dumps({"accepted": stats.accepted, "delivered": stats.delivered,
                      "dropped": stats.dropped_total, "sessions": stats.sessions_started}))


if __name__ == "__main__":
    url, stream, sessions, events, out = sys.argv[1:6]
    asyncio.run(main(url, stream, int(sessions), int(events), out))
