"""The transport seam: one method that POSTs a body, and its aiohttp implementation.

The sender owns policy (batching, retries, splitting); a transport owns I/O only. aiohttp
and asyncio errors are translated here into :class:`~hh_exporter.TransportError` subclasses,
so no aiohttp type leaks into the exporter's API.
"""

from __future__ import annotations

import email.utils
import platform
import time
import urllib.request
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from ._errors import ConnectError, RequestTimeoutError, TransportError
from ._version import __version__

__all__ = ["MAX_ANSWER_BYTES", "AiohttpTransport", "Response", "Transport",
           "parse_retry_after"]

#: The most of an answer's body that is read: an API answer (the event ids of a batch, or a
#: partial success with its errors) is far smaller, and a misbehaving server's 64 MiB error
#: page must not cost 64 MiB per request.
MAX_ANSWER_BYTES = 256 * 1024


class Response:
    """An HTTP answer, reduced to what the sender needs."""

    __slots__ = ("body", "content_type", "retry_after", "status", "url")

    def __init__(self, status: int, body: bytes = b"", retry_after: float | None = None, *,
                 content_type: str | None = None, url: str | None = None) -> None:
        self.status = status
        self.body = body
        #: ``Retry-After`` in seconds from now, if the server sent one.
        self.retry_after = retry_after
        #: The media type answered (lower case, no parameters); None when the transport
        #: does not say (an in-memory one), which is taken as JSON.
        self.content_type = content_type
        #: What answered: the URL without credentials or query (for the log), if known.
        self.url = url

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


@runtime_checkable
class Transport(Protocol):
    """What the exporter needs from an HTTP client.

    ``post`` returns any HTTP answer (error statuses included) and raises
    :class:`~hh_exporter.TransportError` only when there is no answer at all.
    """

    async def post(self, path: str, body: bytes) -> Response:
        """POST ``body`` (JSON) to ``path`` under the API's base URL."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...

    # Optional: ``fresh() -> Transport``, a transport with the same settings and no
    # connections. An exporter inherited across fork() uses it in the child, so that no
    # socket of the parent's is ever written to; without it the transport is kept.


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` (delta-seconds or an HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def user_agent(suffix: str = "") -> str:
    """The User-Agent header naming us, our version and the runtime."""
    ua = (
        f"hh-exporter/{__version__} (python {platform.python_version()}; "
        f"aiohttp {aiohttp.__version__})"
    )
    return f"{ua} {suffix}".strip()


class AiohttpTransport:
    """POSTs over one pooled ``aiohttp.ClientSession``, created on first use.

    TLS certificates are always verified; there is no switch to turn that off.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 4,
        user_agent_suffix: str = "",
        trust_env: bool = True,
    ) -> None:
        self._settings = (base_url, api_key, timeout, max_connections, user_agent_suffix,
                          trust_env)
        self._base_url = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent(user_agent_suffix),
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        # The proxy is looked up once: aiohttp's own trust_env repeats the environment and
        # netrc lookups on every request, which cost ~0.5 ms per request (~1 us per event).
        self._proxy = _env_proxy(self._base_url) if trust_env else None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        parts = urlsplit(self._base_url)
        # For the log: never the credentials a URL may carry, nor a query's.
        self._shown_url = f"{parts.scheme}://{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else "") + parts.path
        # Each route's URL, parsed once: aiohttp parses a str URL on every request.
        self._urls: dict[str, URL] = {}

    def __repr__(self) -> str:
        return f"AiohttpTransport({self._base_url!r})"

    def fresh(self) -> AiohttpTransport:
        """The same transport with no connections (for a forked child)."""
        url, key, timeout, limit, suffix, trust_env = self._settings
        return AiohttpTransport(url, key, timeout=timeout, max_connections=limit,
                                user_agent_suffix=suffix, trust_env=trust_env)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            # A request task unwinding after close must not open a pool nobody will close.
            raise ConnectError(f"the transport to {self._base_url} is closed")
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=30.0, enable_cleanup_closed=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._timeout,
                auto_decompress=True,
                raise_for_status=False,
                # The API sets no cookies we need: a real jar filters and parses them on
                # every request and answer.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def post(self, path: str, body: bytes) -> Response:
        """POST ``body`` to ``base_url + path``; see :class:`Transport`."""
        session = self._get_session()
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base_url + path)
        try:
            # Redirects are not followed: aiohttp would turn a 301/302 POST into a GET without
            # the body, and a captive portal's 200 would then pass for a delivery.
            async with session.post(url, data=body, proxy=self._proxy,
                                    allow_redirects=False) as resp:
                data = await _read_capped(resp, MAX_ANSWER_BYTES)
                status = resp.status
                # Retry-After only matters where the sender may wait: never on a 2xx.
                retry_after = parse_retry_after(resp.headers.get("Retry-After")) if (
                    status >= 300) else None
                return Response(status, data, retry_after, content_type=resp.content_type,
                                url=self._shown_url + path)
        except TimeoutError as exc:
            raise RequestTimeoutError(f"no response from {self._base_url}{path} in time") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise ConnectError(f"connection to {self._base_url} failed: {_safe(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"request to {self._base_url}{path} failed: {_safe(exc)}") from exc

    async def aclose(self) -> None:
        """Close the session and its connections; no request is made after this."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """At most ``cap`` bytes of an answer: a misbehaving server's huge error page must not
    cost memory. The rest is left unread (the connection is then closed, not reused)."""
    chunks: list[bytes] = []
    total = 0
    while total < cap:
        chunk = await resp.content.read(cap - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _env_proxy(base_url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) names for
    ``base_url``, as requests and httpx would pick it; None for a direct connection."""
    parts = urlsplit(base_url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
        return None
    return proxy


def _safe(exc: BaseException) -> str:
    # aiohttp's messages name the host and the error, never request headers; keep the class
    # name so "ServerDisconnectedError" and friends stay recognisable.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
