"""What instrumenting costs: ``python benchmarks/integrations.py [--calls 2000]``.

1. The wrapper's own CPU per call: the real answers of the local stand-in of the OpenAI
   and Anthropic HTTP APIs (``tests/llm_standin.py``), recorded once and replayed to the
   wrapper in a loop (the client objects as the libraries parsed them, a stream as its
   parsed chunks), so the figure is the wrapper alone, mapping the request and the answer
   and logging the event, with the event's delivery to the collector (``none`` mode, in
   another process) included. Floor: ``log_model_event`` of the same event by hand,
   delivered the same way.
2. Whole calls to the stand-in (in another process), bare and wrapped: CPU of this process
   per call, median of alternating rounds. A bare call costs 1-3 ms of client CPU (httpx,
   pydantic), so the difference is within that figure's noise: section 1 is the measure,
   this one shows it in proportion.
3. ``@exporter.trace`` on a function that does nothing, against the bare function.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import anthropic  # noqa: E402
import openai  # noqa: E402
from anthropic.types import RawMessageStreamEvent  # noqa: E402
from openai.types.chat import ChatCompletionChunk  # noqa: E402
from run import TOKEN, start_sink  # noqa: E402

from hh_exporter import Exporter  # noqa: E402
from hh_exporter.integrations import anthropic as hh_anthropic  # noqa: E402
from hh_exporter.integrations import openai as hh_openai  # noqa: E402
from hh_exporter.integrations._wrap import wrap  # noqa: E402

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Summarise the plot of Hamlet in one line."}]


def start_standin() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.llm_standin"], cwd=ROOT,
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    return proc, line.split("listening on ")[1].split()[0]


async def cpu_per_call(call: Callable[[], Awaitable[Any]], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - t0) / n * 1e6


async def paired(bare: Callable[[], Awaitable[Any]], wrapped: Callable[[], Awaitable[Any]],
                 hh: Exporter, calls: int, rounds: int) -> tuple[float, float]:
    """Median CPU us per call over alternating rounds; a wrapped round ends with its
    events delivered (flush), so their delivery is inside its measurement."""
    b, w = [], []
    per = max(1, calls // rounds)
    for _ in range(3):  # warm both paths (connections, caches, imports)
        await bare()
        await wrapped()
    await hh.flush()
    for _ in range(rounds):
        b.append(await cpu_per_call(bare, per))
        t0 = time.process_time()
        for _ in range(per):
            await wrapped()
        await hh.flush()
        w.append((time.process_time() - t0) / per * 1e6)
    return statistics.median(b), statistics.median(w)


async def consume(stream: Any) -> None:
    async for _ in stream:
        pass


class ReplayStream(openai.AsyncStream[ChatCompletionChunk]):
    """Recorded chunks as the client library's own stream type (the wrapper checks it)."""

    def __init__(self, items: list[Any]) -> None:  # no HTTP response behind it
        self._items = items

    async def __aiter__(self) -> Any:  # type: ignore[override]
        for item in self._items:
            yield item


class ReplayAnthropic(anthropic.AsyncStream[RawMessageStreamEvent]):
    def __init__(self, items: list[Any]) -> None:
        self._items = items

    async def __aiter__(self) -> Any:  # type: ignore[override]
        for item in self._items:
            yield item


class Resource:
    """A client resource whose ``create`` answers what was recorded, for the wrapper."""

    def __init__(self, answer: Callable[[], Any]) -> None:
        self._answer = answer

    async def create(self, **kwargs: Any) -> Any:
        return self._answer()


async def wrapper_alone(hh: Exporter, session: Any, o: Any, a: Any, n: int
                        ) -> list[tuple[str, float]]:
    """Section 1: CPU us per call of the wrapper on recorded answers, delivery included."""
    chat = await o.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.2)
    chunks = [c async for c in await o.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True})]
    resp = await o.responses.create(model="gpt-5", input="Summarise Hamlet in one line.")
    msg = await a.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES[1:])
    events = [e async for e in await a.messages.create(
        model="claude-x", max_tokens=64, messages=MESSAGES[1:], stream=True)]
    cases: list[tuple[str, Any, Any, dict[str, Any]]] = [
        ("openai chat.completions.create", hh_openai._Chat("openai", True), lambda: chat,
         dict(model="gpt-4o", messages=MESSAGES, temperature=0.2)),
        (f"openai chat, stream ({len(chunks)} chunks)", hh_openai._Chat("openai", True),
         lambda: ReplayStream(chunks), dict(model="gpt-4o", messages=MESSAGES, stream=True)),
        ("openai responses.create", hh_openai._Responses("openai"), lambda: resp,
         dict(model="gpt-5", input="Summarise Hamlet in one line.")),
        ("anthropic messages.create", hh_anthropic._Messages(), lambda: msg,
         dict(model="claude-x", max_tokens=64, messages=MESSAGES[1:])),
        (f"anthropic, stream ({len(events)} events)", hh_anthropic._Messages(),
         lambda: ReplayAnthropic(events),
         dict(model="claude-x", max_tokens=64, messages=MESSAGES[1:], stream=True)),
    ]
    out = []
    for label, adapter, answer, kwargs in cases:
        res = Resource(answer)
        wrap(res, "create", adapter, hh, session, True)

        async def call(res: Resource = res, kwargs: dict[str, Any] = kwargs) -> None:
            r = await res.create(**kwargs)
            if kwargs.get("stream"):
                await consume(r)

        await call()
        await hh.flush()
        t0 = time.process_time()
        for _ in range(n):
            await call()
        await hh.flush()
        out.append((label, (time.process_time() - t0) / n * 1e6))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    llm, llm_url = start_standin()
    sink, sink_url = start_sink("none")
    try:
        hh = Exporter(api_key=TOKEN, project="bench", api_url=sink_url)
        await hh.start()
        session = hh.session(session_name="bench")
        o_bare = openai.AsyncOpenAI(base_url=llm_url + "/v1", api_key="sk", max_retries=0)
        o_wrap = hh_openai.instrument(
            openai.AsyncOpenAI(base_url=llm_url + "/v1", api_key="sk", max_retries=0), hh,
            session=session)
        a_bare = anthropic.AsyncAnthropic(base_url=llm_url, api_key="sk", max_retries=0)
        a_wrap = hh_anthropic.instrument(
            anthropic.AsyncAnthropic(base_url=llm_url, api_key="sk", max_retries=0), hh,
            session=session)

        def chat(c: Any) -> Callable[[], Awaitable[Any]]:
            return lambda: c.chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                     temperature=0.2)

        def chat_stream(c: Any) -> Callable[[], Awaitable[Any]]:
            async def go() -> None:
                await consume(await c.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, stream=True))
            return go

        def claude(c: Any) -> Callable[[], Awaitable[Any]]:
            return lambda: c.messages.create(model="claude-x", max_tokens=64,
                                             messages=MESSAGES[1:], system="be terse")

        alone = await wrapper_alone(hh, session, o_bare, a_bare, args.calls * 5)

        rows = []
        for label, make, bare_c, wrap_c in (
                ("openai chat.completions.create", chat, o_bare, o_wrap),
                ("openai chat, stream=True", chat_stream, o_bare, o_wrap),
                ("anthropic messages.create", claude, a_bare, a_wrap)):
            b, w = await paired(make(bare_c), make(wrap_c), hh, args.calls, args.rounds)
            rows.append((label, b, w))

        # The floor: logging the same event by hand (what the wrapper builds), delivered.
        r = await o_bare.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        fields = dict(model="gpt-4o", provider="openai", messages=MESSAGES,
                      response=r.choices[0].message.model_dump(exclude_none=True),
                      usage=r.usage.model_dump(exclude_none=True) if r.usage else {},
                      hyperparameters={"temperature": 0.2}, duration=1.0)
        n = args.calls * 5
        await hh.flush()
        t0 = time.process_time()
        for _ in range(n):
            hh.log_model_event(session=session, **fields)  # type: ignore[arg-type]
        await hh.flush()
        log_us = (time.process_time() - t0) / n * 1e6

        # @trace on a function that does nothing.
        def noop(x: int) -> int:
            return x

        traced = hh.trace(noop)
        t0 = time.process_time()
        for i in range(n):
            noop(i)
        bare_fn = (time.process_time() - t0) / n * 1e6
        with hh.trace("bench-root"):
            t0 = time.process_time()
            for i in range(n):
                traced(i)
            await hh.flush()
            traced_fn = (time.process_time() - t0) / n * 1e6

        print(f"\n{'1. the wrapper alone, CPU us per call':<44}{'wrapped':>9}{'floor':>9}"
              f"{'ratio':>8}")
        for label, us in alone:
            print(f"{'  ' + label:<44}{us:>9.1f}{log_us:>9.1f}{us / log_us:>7.1f}x")
        print(f"{'  floor: log_model_event by hand, delivered':<44}{log_us:>9.1f}")
        print(f"\n{'2. whole calls, CPU us per call':<44}{'bare':>9}{'wrapped':>9}{'added':>9}")
        for label, b, w in rows:
            print(f"{'  ' + label:<44}{b:>9.1f}{w:>9.1f}{w - b:>9.1f}")
        print(f"\n{'3. @trace on a no-op function, CPU us':<44}{'bare':>9}{'traced':>9}"
              f"{'added':>9}")
        print(f"{'  (event logged and delivered)':<44}{bare_fn:>9.2f}{traced_fn:>9.1f}"
              f"{traced_fn - bare_fn:>9.1f}")
        await hh.aclose()
        stats = hh.stats()
        for c in (o_bare, o_wrap, a_bare, a_wrap):
            await c.close()
        print(f"events delivered {stats.delivered:,} of {stats.accepted:,} accepted, "
              f"dropped {stats.dropped_total}")
    finally:
        assert llm.stdin is not None
        llm.stdin.close()
        llm.wait(10)
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
