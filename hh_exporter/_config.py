"""Exporter configuration: frozen, keyword-only, float seconds, validated at construction.

The environment is read here and nowhere else. An explicit argument always wins over the
environment variable of the official SDK (``HH_API_KEY``, ``HH_API_URL``, ``HH_PROJECT``,
``HH_SOURCE``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import warnings
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from ._errors import ConfigError

__all__ = ["DEFAULT_API_URL", "ApiVersion", "ExporterConfig", "OverflowPolicy", "SessionStartMode"]

DEFAULT_API_URL = "https://api.honeyhive.ai"
OverflowPolicy = Literal["drop_newest", "drop_oldest", "spool"]
SpoolFsync = Literal["segment", "always"]
ApiVersion = Literal["legacy", "v1"]
SessionStartMode = Literal["request", "batch"]
_MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ExporterConfig:
    """Every setting of an :class:`~hh_exporter.Exporter`, with its default.

    Durations are float seconds. Build one with :meth:`from_env` to fill unset values from the
    environment; the constructor alone never reads it.

    Args:
        api_key: Bearer token. Never shown in ``repr``, logs or errors.
        project: Project name, sent on every event and session when set. Optional: the
            HoneyHive cloud takes the project from the API key's scope and ignores it;
            classic and self-hosted backends require it.
        api_url: Base URL; a trailing ``/`` is stripped.
        source: ``source`` of events and sessions, e.g. ``production``.
        api: ``legacy`` (default: ``/session/start``, ``/events/model/batch``,
            ``/events/batch``) or ``v1`` (``/v1/sessions``, ``/v1/events/batch``, strict
            bodies; model fields mapped into the generic ones, see the "v1" page of docs/).
        session_start: How a session is created before its events are stored. ``request``
            (default, what every official client does): ``POST /session/start`` (or
            ``/v1/sessions``), and the session's events wait for its 2xx. ``batch``: the
            session's first events travel in one single-session batch
            (``is_single_session: true``; v1: ``single_session: true``) whose
            ``session_properties`` create it; its later events wait for that answer. A
            session with no events creates no session in this mode. See the "Guarantees"
            page of docs/ (Sessions).
        max_batch_events: A batch closes at this many events.
        max_batch_bytes: A batch body never exceeds this many bytes; a larger event is dropped
            as ``too_large`` when it is logged. Smaller bodies mean less to store twice when
            a retried timeout duplicates a batch.
        linger: A batch closes when its oldest event has waited this long.
        max_in_flight: Concurrent requests (and connections).
        max_buffer_events: Buffered events before the overflow policy applies.
        max_buffer_bytes: Buffered bytes before the overflow policy applies.
        overflow: ``drop_newest`` (default) or ``drop_oldest`` when the buffer is full; both
            count the dropped event as ``queue_full``. ``spool`` writes it to ``spool_dir``
            instead (counted ``spooled``). ``send()`` waits instead.
        max_starts_in_flight: Concurrent ``POST /session/start`` requests, beside the
            batches: many short sessions must not wait for each other's starts. Connections
            are pooled up to ``max_in_flight + max_starts_in_flight`` (aiohttp's and
            httpx's own default pools hold 100).
        request_timeout: Total time for one HTTP request. A request that times out is
            retried, and since the API does not deduplicate, a batch the server did store
            is then stored twice: keep it well above the server's worst answer time.
        max_attempts: Attempts per batch, the first included.
        retry_deadline: Time budget per batch across all attempts.
        backoff_initial: First retry wait (before jitter).
        backoff_max: Cap on one retry wait.
        retry_after_max: Cap on a server's ``Retry-After``.
        breaker_threshold: Consecutive failed requests that open the circuit breaker
            (0 turns it off).
        breaker_cooldown: How long an open breaker pauses sending before one probe request.
        close_timeout: Default deadline of ``aclose()`` and of ``flush()``.
        spool_dir: A directory for the durable spool. Events cut by a ``flush``/``aclose``
            deadline (and, with ``overflow="spool"``, those the full buffer cannot take) are
            written there as segment files (counted ``spooled``) instead of dropped; an
            exporter started on the same directory replays them (counted ``replayed``), and
            so can ``hh-exporter ingest``.
        spool_max_bytes: The most the spool directory may hold; past it, events are dropped
            as ``spool_failed``, as they are when the disk is full.
        spool_fsync: ``segment`` (default): fsync each segment when it is closed; ``always``:
            after every write too.
        trust_env: Honour ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment,
            as requests and httpx do.
        user_agent_suffix: Appended to the ``User-Agent`` header.
        metrics: Publish health metrics through ``opentelemetry-api`` when it is installed
            (``HH_EXPORTER_METRICS_ENABLED=true``); see ``docs/metrics.md``.
    """

    api_key: str = dataclasses.field(repr=False)
    project: str | None = None
    api_url: str = DEFAULT_API_URL
    source: str = "dev"
    api: ApiVersion = "legacy"
    session_start: SessionStartMode = "request"
    max_batch_events: int = 500
    max_batch_bytes: int = 1 * _MiB
    linger: float = 1.0
    max_in_flight: int = 4
    max_buffer_events: int = 100_000
    max_buffer_bytes: int = 64 * _MiB
    overflow: OverflowPolicy = "drop_newest"
    max_starts_in_flight: int = 64
    request_timeout: float = 30.0
    max_attempts: int = 8
    retry_deadline: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    breaker_threshold: int = 10
    breaker_cooldown: float = 5.0
    close_timeout: float = 10.0
    spool_dir: str | None = None
    spool_max_bytes: int = 1024 * _MiB
    spool_fsync: SpoolFsync = "segment"
    trust_env: bool = True
    user_agent_suffix: str = ""
    metrics: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise ConfigError("api_key is required: pass api_key=... or set HH_API_KEY")
        if self.project is not None and (
            not isinstance(self.project, str) or not self.project.strip()
        ):
            raise ConfigError(f"project must be a non-empty string or None, got "
                              f"{self.project!r}")
        url = self.api_url.rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"api_url must be an http(s) URL, got {url!r}")
        object.__setattr__(self, "api_url", url)
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            warnings.warn(
                f"api_url {url!r} is plain http to a non-loopback host: the API key "
                "would cross the network unencrypted",
                UserWarning,
                stacklevel=4,
            )
        for name in ("max_batch_events", "max_in_flight", "max_buffer_events", "max_attempts",
                     "max_starts_in_flight"):
            _positive_int(name, getattr(self, name))
        _positive_int("max_batch_bytes", self.max_batch_bytes, minimum=256)
        _positive_int("max_buffer_bytes", self.max_buffer_bytes, minimum=self.max_batch_bytes)
        _positive_int("breaker_threshold", self.breaker_threshold, minimum=0)
        for name in ("request_timeout", "retry_deadline", "backoff_max", "retry_after_max",
                     "close_timeout"):
            _positive_float(name, getattr(self, name))
        for name in ("linger", "backoff_initial", "breaker_cooldown"):
            _positive_float(name, getattr(self, name), allow_zero=True)
        if self.api not in ("legacy", "v1"):
            raise ConfigError(f"api must be 'legacy' or 'v1', got {self.api!r}")
        if self.session_start not in ("request", "batch"):
            raise ConfigError(f"session_start must be 'request' or 'batch', got "
                              f"{self.session_start!r}")
        if self.overflow not in ("drop_newest", "drop_oldest", "spool"):
            raise ConfigError(f"overflow must be 'drop_newest', 'drop_oldest' or 'spool', got "
                              f"{self.overflow!r}")
        if self.overflow == "spool" and not self.spool_dir:
            raise ConfigError("overflow='spool' needs spool_dir")
        if self.spool_fsync not in ("segment", "always"):
            raise ConfigError(f"spool_fsync must be 'segment' or 'always', got "
                              f"{self.spool_fsync!r}")
        _positive_int("spool_max_bytes", self.spool_max_bytes, minimum=self.max_batch_bytes)

    def __repr__(self) -> str:
        # dataclass(repr=False) on the field already hides it; spelling it out keeps it so.
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"ExporterConfig(api_key='***', {shown})"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ExporterConfig:
        """Build a config from keyword arguments, filling gaps from the environment.

        ``None`` arguments count as not given.
        """
        env = os.environ if environ is None else environ
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown configuration option(s): {', '.join(sorted(unknown))}")
        for name, var in (("api_key", "HH_API_KEY"), ("api_url", "HH_API_URL"),
                          ("project", "HH_PROJECT"), ("source", "HH_SOURCE"),
                          ("api", "HH_API_VERSION"), ("session_start", "HH_SESSION_START")):
            if name not in given and env.get(var):
                given[name] = env[var]
        if "metrics" not in given and env.get("HH_EXPORTER_METRICS_ENABLED"):
            given["metrics"] = env["HH_EXPORTER_METRICS_ENABLED"].strip().lower() in (
                "1", "true", "yes", "on")
        given.setdefault("api_key", "")
        return cls(**given)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _positive_float(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = v == v and v != float("inf") and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
