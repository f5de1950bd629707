"""The exporter against servers that misbehave, written with raw sockets on 127.0.0.1.

Each server breaks HTTP or the API's contract in one way; each test says what the exporter
must count for it. None of these servers is ours: they speak bytes, not aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hh_exporter import Exporter

from .conftest import TOKEN, assert_balanced, model_fields

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


async def read_request(reader: Reader) -> tuple[str, str, bytes]:
    """One HTTP/1.1 request: (method, path, body)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip()
               for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, body


def answer(status: str, body: bytes = b"", extra: str = "",
           ctype: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body


class RawServer:
    """Serves every connection with ``behave(reader, writer, server)``; counts requests."""

    def __init__(self, behave: Callable[[Reader, Writer, RawServer], Awaitable[None]]) -> None:
        self.behave = behave
        self.requests: list[tuple[str, str]] = []
        self.bytes_written = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawServer:
        async def handle(reader: Reader, writer: Writer) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self.behave(reader, writer, self)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                self._tasks.discard(task)

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def exporter(url: str, **kw: Any) -> Exporter:
    opts: dict[str, Any] = dict(
        api_key=TOKEN, api_url=url, linger=0.01, max_attempts=2, request_timeout=0.3,
        backoff_initial=0.01, backoff_max=0.02, retry_after_max=0.1, retry_deadline=5.0,
        close_timeout=5.0, breaker_threshold=0)
    opts.update(kw)
    return Exporter(**opts)


def serve_each(respond: Callable[[int], bytes | None], *, hold: bool = False
               ) -> Callable[[Reader, Writer, RawServer], Awaitable[None]]:
    """Answer each request with ``respond(n)`` (n counts requests); None: write nothing and,
    with ``hold``, keep the connection open forever."""

    async def behave(reader: Reader, writer: Writer, srv: RawServer) -> None:
        while True:
            method, path, _ = await read_request(reader)
            srv.requests.append((method, path))
            data = respond(len(srv.requests))
            if data is None:
                if hold:
                    await asyncio.sleep(3600)
                return
            writer.write(data)
            await writer.drain()

    return behave


N = 5


async def log_and_flush(url: str, **kw: Any) -> Any:
    async with exporter(url, **kw) as hh:
        for i in range(N):
            hh.log_model_event(**model_fields(i))
        await hh.flush(10)
    st = hh.stats()
    assert_balanced(st)
    assert st.pending == 0
    return st


@pytest.mark.parametrize("body", [
    (b"<html><body>Sign in to HoneyHive</body></html>", "text/html; charset=utf-8",
     "text/html"),
    (b"OK", "text/plain", "text/plain"),
    (b'{"status": "received"}', "application/json", "none of event_ids"),
    (b'["ok"]', "application/json", "not the API's"),
])
async def test_a_200_that_is_not_the_api_is_a_failed_attempt(
        body: tuple[bytes, str, str], caplog: pytest.LogCaptureFixture) -> None:
    """A 200 that is not the API's answer (a login page from the web app's address, a
    captive portal's text, JSON without any of the API's keys): the events went nowhere.
    Each attempt fails, as a 5xx would; then every event is dropped as retries_exhausted,
    none counted delivered; one log line says what answered (URL and content type), never
    the key."""
    page, ctype, said = body
    async with RawServer(serve_each(lambda n: answer("200 OK", page, ctype=ctype))) as srv:
        url = srv.url
        with caplog.at_level("WARNING", logger="hh_exporter"):
            st = await log_and_flush(url)
    assert st.delivered == 0 and st.unconfirmed == 0
    assert st.dropped["retries_exhausted"] == N
    # max_attempts=2: every request was tried twice, and the second try counted a retry.
    assert len(srv.requests) == st.requests and st.requests == 2 * st.retries > 0
    lines = [r.getMessage() for r in caplog.records if "not the HoneyHive API" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert f"{url}/events/model/batch answered HTTP 200" in lines[0] and said in lines[0]
    assert TOKEN not in caplog.text and TOKEN not in (st.last_error or "")
    assert said in (st.last_error or "")


async def test_a_200_with_json_content_type_but_a_cut_body_stays_unconfirmed() -> None:
    """``nonjson``: the JSON content type the API sends, a body that does not parse (cut
    short by a proxy). That is the API's answer read badly, not a stranger: delivered and
    counted unconfirmed, not retried (a retry would store the events twice)."""
    async with RawServer(serve_each(lambda n: answer("200 OK", b'{"event_ids": ["a'))) as srv:
        st = await log_and_flush(srv.url)
    assert st.delivered == N and st.unconfirmed == N and st.retries == 0
    assert len(srv.requests) == st.requests


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect",
                                    "308 Permanent Redirect"])
@pytest.mark.parametrize("target", ["/login", "self"])
async def test_redirects_are_not_followed(status: str, target: str) -> None:
    """A 3xx (to a login page, or to itself: a loop) is rejected, never followed: the server
    sees one POST and no GET."""
    async def behave(reader: Reader, writer: Writer, srv: RawServer) -> None:
        while True:
            method, path, _ = await read_request(reader)
            srv.requests.append((method, path))
            where = path if target == "self" else target
            writer.write(answer(status, extra=f"Location: {srv.url}{where}\r\n"))
            await writer.drain()

    async with RawServer(behave) as srv:
        st = await log_and_flush(srv.url)
    assert st.dropped["rejected"] == N and st.delivered == 0
    assert srv.requests == [("POST", "/events/model/batch")]


async def test_a_body_cut_midway_is_retried_then_counted() -> None:
    """Content-Length promises 1000 bytes, 10 arrive, the connection closes: a transport
    error, retried max_attempts times, then retries_exhausted."""
    async def behave(reader: Reader, writer: Writer, srv: RawServer) -> None:
        method, path, _ = await read_request(reader)
        srv.requests.append((method, path))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"event_ids")
        await writer.drain()

    async with RawServer(behave) as srv:
        st = await log_and_flush(srv.url)
    assert st.dropped["retries_exhausted"] == N and len(srv.requests) == 2


async def test_slowloris_times_out() -> None:
    """A status line, then a header byte every 50 ms: the request timeout ends it."""
    async def behave(reader: Reader, writer: Writer, srv: RawServer) -> None:
        method, path, _ = await read_request(reader)
        srv.requests.append((method, path))
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(1000):  # bounded: 50 s at most, far past the 0.3 s timeout
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with RawServer(behave) as srv:
        st = await log_and_flush(srv.url)
    assert st.dropped["retries_exhausted"] == N and len(srv.requests) == 2
    assert "no response" in (st.last_error or "")


@pytest.mark.parametrize("reads", [True, False])
async def test_a_server_that_never_answers_or_never_reads(reads: bool) -> None:
    """Never answering (after reading the request, or without reading it at all): timeouts,
    retries, retries_exhausted; and a flush deadline shorter than that cuts it as shutdown."""
    async def behave(reader: Reader, writer: Writer, srv: RawServer) -> None:
        if reads:
            srv.requests.append((await read_request(reader))[:2])
        await asyncio.sleep(3600)

    async with RawServer(behave) as srv:
        st = await log_and_flush(srv.url)
        assert st.dropped["retries_exhausted"] == N
        async with exporter(srv.url, request_timeout=30.0) as hh:
            for i in range(N):
                hh.log_model_event(**model_fields(i))
            assert await hh.flush(0.3) is False
            cut = hh.stats()
        assert cut.dropped["shutdown"] == N and cut.pending == 0
        assert_balanced(cut)


async def test_a_huge_error_body_is_not_read_whole() -> None:
    """A 500 announcing 64 MiB: the exporter reads a small prefix and hangs up, so the server
    cannot push more than that plus the sockets' buffers; retried, then counted."""
    huge = 64 << 20
    chunk = b"x" * (64 << 10)

    async def behave(reader: Reader, writer: Writer, srv: RawServer) -> None:
        method, path, _ = await read_request(reader)
        srv.requests.append((method, path))
        writer.write(f"HTTP/1.1 500 Internal Server Error\r\nContent-Length: {huge}\r\n"
                     "\r\n".encode())
        for _ in range(huge // len(chunk)):
            writer.write(chunk)
            await writer.drain()
            srv.bytes_written += len(chunk)

    async with RawServer(behave) as srv:
        st = await log_and_flush(srv.url, request_timeout=10.0)
    assert st.dropped["retries_exhausted"] == N and len(srv.requests) == 2
    assert srv.bytes_written < 2 * (16 << 20)  # both attempts: far below 2 x 64 MiB


@pytest.mark.parametrize("value", ["99999999999", "-5", "soon", "Wed, 21 Oct 2099 07:28:00 GMT",
                                   "1e309", "nan"])
async def test_absurd_retry_after_values_are_clamped(value: str) -> None:
    """Retry-After of a thousand years, negative, garbage, a far date, infinity or NaN: the
    wait is clamped to retry_after_max (0.1 s here), the retry goes, and it is delivered."""
    def respond(n: int) -> bytes:
        if n == 1:
            return answer("503 Service Unavailable", b"{}", extra=f"Retry-After: {value}\r\n")
        return answer("200 OK", b'{"event_ids":["a","b","c","d","e"],"success":true}')

    async with RawServer(serve_each(respond)) as srv:
        st = await log_and_flush(srv.url)
    assert st.delivered == N and st.retries == 1 and st.unconfirmed == 0


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 abc Nope\r\n\r\n", b"garbage\r\n\r\n",
                                         b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"])
async def test_a_bad_status_line_is_a_transport_error(status_line: bytes) -> None:
    """An unparseable answer is a transport error: retried, then retries_exhausted."""
    async with RawServer(serve_each(lambda n: status_line)) as srv:
        st = await log_and_flush(srv.url)
    assert st.dropped["retries_exhausted"] == N


async def test_a_web_apps_login_page_for_a_session_start_delivers_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    """``api_url`` set to the web app's address: its login page answers the session start
    too. The session is not started (its events are dropped with it, counted), nothing is
    delivered, and the log names what answered once."""
    page = b"<!doctype html><html><title>HoneyHive</title><body>Log in</body></html>"
    async with RawServer(serve_each(lambda n: answer("200 OK", page, ctype="text/html"))) as srv:
        url = srv.url
        with caplog.at_level("WARNING", logger="hh_exporter"):
            async with exporter(url) as hh:
                s = hh.session(session_name="app")
                for i in range(N):
                    s.log_model_event(**model_fields(i))
                await hh.flush(10)
            st = hh.stats()
    assert_balanced(st)
    assert st.delivered == 0 and st.sessions_started == 0 and st.sessions_failed == 1
    assert st.dropped["session_failed"] == N
    lines = [r.getMessage() for r in caplog.records if "not the HoneyHive API" in r.getMessage()]
    assert len(lines) == 1 and f"{url}/session/start" in lines[0] and "text/html" in lines[0]
    assert TOKEN not in caplog.text
