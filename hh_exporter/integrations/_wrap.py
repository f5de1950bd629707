"""What every client wrapper shares: wrapping a method, recording one call, tapping a stream.

An :class:`Adapter` knows one API (OpenAI chat completions, OpenAI responses, Anthropic
messages): the model event's fields from the request, from the answer, and from a stream's
items. Everything here runs around the user's call and never lets a failure of its own out:
the call's own result or exception always reaches the caller unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._session import Session
from .._trace import ModelCall, error_text, jsonable, warn

if TYPE_CHECKING:  # instrument()'s documented signature; at run time a Sink is enough
    from typing import TypeAlias

    from .._exporter import Exporter
    from .._sync import SyncExporter

    AnyExporter: TypeAlias = Exporter | SyncExporter

__all__ = ["Accumulator", "Adapter", "Recorder", "given", "normalize_usage", "wrap"]


def given(value: Any) -> bool:
    """False for the client libraries' "not given" sentinels (``NOT_GIVEN``, ``omit``)."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def normalize_usage(*, prompt: Any, completion: Any, total: Any = None,
                    cache_read: Any = None, cache_write: Any = None,
                    reasoning: Any = None) -> dict[str, Any]:
    """Token counts under the names HoneyHive reads (``prompt_tokens``, ``completion_tokens``,
    ``total_tokens``), cache and reasoning counts as the provider gave them: reasoning tokens
    are already inside the completion count and are never added on top."""
    usage: dict[str, Any] = {}
    if isinstance(prompt, int):
        usage["prompt_tokens"] = prompt
    if isinstance(completion, int):
        usage["completion_tokens"] = completion
    if isinstance(total, int):
        usage["total_tokens"] = total
    elif isinstance(prompt, int) and isinstance(completion, int):
        usage["total_tokens"] = prompt + completion
    for name, value in (("cache_read_input_tokens", cache_read),
                        ("cache_write_input_tokens", cache_write),
                        ("reasoning_tokens", reasoning)):
        if isinstance(value, int):
            usage[name] = value
    return usage


class Accumulator:
    """Builds a streamed answer from its items."""

    def add(self, item: Any) -> bool:
        """Take one item; return False to hide it from the caller (one the wrapper asked
        for and the caller did not, such as OpenAI's trailing usage chunk)."""
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        """The model event's answer fields so far (``response``, ``usage``, ...)."""
        raise NotImplementedError


class Adapter:
    """One API's mapping to a model event."""

    provider = ""
    event_name = ""

    def prepare(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The request's arguments as they will be sent (the caller's, unless the wrapper
        needs more, such as usage in an OpenAI stream); must not change the caller's dict."""
        return kwargs

    def request(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The model event's fields known from the request."""
        raise NotImplementedError

    def answer(self, result: Any) -> dict[str, Any]:
        """The model event's fields from a complete answer."""
        raise NotImplementedError

    def stream(self, result: Any, kwargs: dict[str, Any]) -> Accumulator | None:
        """An accumulator if ``result`` is a stream, else None."""
        raise NotImplementedError

    def tap(self, result: Any, rec: Recorder, is_async: bool) -> Any:
        """A wrapper to hand the caller instead of ``result`` when the call's answer comes
        later in some other shape (Anthropic's stream manager), else None."""
        return None


class Recorder:
    """One wrapped call: the request's fields, then the answer or the error, logged once."""

    __slots__ = ("_adapter", "_call", "_fields")

    def __init__(self, adapter: Adapter, call: ModelCall, fields: dict[str, Any]) -> None:
        self._adapter = adapter
        self._call = call
        self._fields = fields

    @classmethod
    def begin(cls, adapter: Adapter, exporter: AnyExporter, session: Session | None,
              kwargs: dict[str, Any]) -> Recorder | None:
        try:
            fields = {"provider": adapter.provider, "event_name": adapter.event_name,
                      "response": {}, **adapter.request(kwargs)}
            return cls(adapter, ModelCall(exporter, session), fields)
        except Exception as exc:  # noqa: BLE001 - no telemetry for this call, the call goes on
            warn(f"recording a {adapter.event_name} request", exc)
            return None

    def fail(self, exc: BaseException) -> None:
        """The call raised: log it with ``error`` (the caller then sees the exception)."""
        try:
            self._fields["error"] = error_text(exc)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int):
                self._fields.setdefault("metadata", {})["status_code"] = status
        except Exception as e:  # noqa: BLE001
            warn(f"recording a {self._adapter.event_name} error", e)
        self._call.end(self._fields)

    def done(self, extra: dict[str, Any]) -> None:
        """Log the event with the answer's fields merged in."""
        meta = extra.pop("metadata", None)
        self._fields.update(extra)
        if meta:
            self._fields.setdefault("metadata", {}).update(meta)
        self._call.end(self._fields)

    @property
    def ended(self) -> bool:
        return self._call.ended

    def result(self, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        """What the caller gets: the result itself (logged now), or a stream that logs when
        it ends."""
        try:
            tapped = self._adapter.tap(result, self, is_async)
            if tapped is not None:
                return tapped
            acc = self._adapter.stream(result, kwargs)
            if acc is not None:
                return (AsyncStreamTap if is_async else StreamTap)(result, acc, self)
            extra = self._adapter.answer(result)
        except Exception as exc:  # noqa: BLE001 - an answer we cannot read: log the request
            warn(f"recording a {self._adapter.event_name} answer", exc)
            extra = {"metadata": {"answer_unreadable": type(result).__name__}}
        self.done(extra)
        return result

    def finish_stream(self, acc: Accumulator, error: BaseException | None,
                      complete: bool) -> None:
        if self.ended:
            return
        try:
            extra = acc.fields()
            if not complete:
                extra.setdefault("metadata", {})["stream_closed_early"] = True
            if error is not None:
                extra["error"] = error_text(error)
        except Exception as exc:  # noqa: BLE001
            warn(f"recording a {self._adapter.event_name} stream", exc)
            extra = {}
        self.done(extra)


def _add(acc: Accumulator, item: Any) -> bool:
    try:
        return acc.add(item)
    except Exception as exc:  # noqa: BLE001 - a chunk shape we do not know: show it anyway
        warn("reading a streamed chunk", exc)
        return True


class StreamTap:
    """A client library's stream, passed through item by item; logs the call at its end.

    Everything the stream has besides iteration and closing (``response``, ...) is the
    stream's own, reached through this wrapper.
    """

    def __init__(self, stream: Any, acc: Accumulator, rec: Recorder) -> None:
        self._stream = stream
        self._acc = acc
        self._rec = rec
        self._it: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> StreamTap:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = iter(self._stream)
        while True:
            try:
                item = next(self._it)
            except StopIteration:
                self._rec.finish_stream(self._acc, None, True)
                raise
            except BaseException as exc:
                self._rec.finish_stream(self._acc, exc, False)
                raise
            if _add(self._acc, item):
                return item

    def __enter__(self) -> StreamTap:
        return self

    def __exit__(self, *exc: Any) -> Any:
        self._rec.finish_stream(self._acc, _api_error(exc[1]), False)
        return self._stream.__exit__(*exc)

    def close(self) -> None:
        """Close the stream (and log what it carried so far)."""
        self._rec.finish_stream(self._acc, None, False)
        self._stream.close()

    def __del__(self) -> None:
        # A loop that breaks out of the stream without closing it: log what it carried.
        try:
            self._rec.finish_stream(self._acc, None, False)
        except Exception:  # noqa: BLE001 - never from a finalizer
            pass


class AsyncStreamTap:
    """The async twin of :class:`StreamTap`."""

    def __init__(self, stream: Any, acc: Accumulator, rec: Recorder) -> None:
        self._stream = stream
        self._acc = acc
        self._rec = rec
        self._it: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __aiter__(self) -> AsyncStreamTap:
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = self._stream.__aiter__()
        while True:
            try:
                item = await self._it.__anext__()
            except StopAsyncIteration:
                self._rec.finish_stream(self._acc, None, True)
                raise
            except BaseException as exc:
                self._rec.finish_stream(self._acc, exc, False)
                raise
            if _add(self._acc, item):
                return item

    async def __aenter__(self) -> AsyncStreamTap:
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        self._rec.finish_stream(self._acc, _api_error(exc[1]), False)
        return await self._stream.__aexit__(*exc)

    async def close(self) -> None:
        """Close the stream (and log what it carried so far)."""
        self._rec.finish_stream(self._acc, None, False)
        await self._stream.close()

    def __del__(self) -> None:
        try:
            self._rec.finish_stream(self._acc, None, False)
        except Exception:  # noqa: BLE001
            pass


def _api_error(exc: BaseException | None) -> BaseException | None:
    """An exception leaving a stream's ``with`` block counts against the model call only if
    the client library raised it (its errors carry a ``request`` or ``response``); the
    caller's own errors in the loop body are theirs."""
    if exc is None:
        return None
    return exc if hasattr(exc, "request") or hasattr(exc, "response") else None


def wrap(owner: Any, attr: str, adapter: Adapter, exporter: AnyExporter,
         session: Session | None, is_async: bool) -> None:
    """Replace ``owner.attr`` (a bound method of one client's resource) by its wrapper."""
    orig: Callable[..., Any] = getattr(owner, attr)
    if getattr(orig, "__hh_wrapped__", None) is not None:
        return  # already instrumented

    def before(kwargs: dict[str, Any]) -> tuple[Recorder | None, dict[str, Any]]:
        sent = _materialize(kwargs)
        rec = Recorder.begin(adapter, exporter, session, sent)
        if rec is None:
            return None, sent
        try:
            return rec, adapter.prepare(sent)
        except Exception as exc:  # noqa: BLE001
            warn(f"preparing a {adapter.event_name} request", exc)
            return rec, sent

    if is_async:
        @functools.wraps(orig)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            rec, sent = before(kwargs)
            if rec is None:
                return await orig(*args, **sent)
            try:
                result = await orig(*args, **sent)
            except BaseException as exc:
                rec.fail(exc)
                raise
            return rec.result(result, kwargs, True)
        wrapper: Any = call_async
    else:
        @functools.wraps(orig)
        def call(*args: Any, **kwargs: Any) -> Any:
            rec, sent = before(kwargs)
            if rec is None:
                return orig(*args, **sent)
            try:
                result = orig(*args, **sent)
            except BaseException as exc:
                rec.fail(exc)
                raise
            return rec.result(result, kwargs, False)
        wrapper = call
    wrapper.__hh_wrapped__ = orig
    setattr(owner, attr, wrapper)


#: Request arguments the clients accept as any iterable: read once into a list, which is both
#: sent and logged, so a generator the caller passed is not consumed by the logging.
_ITERABLE_ARGS = ("messages", "input", "tools", "system")


def _materialize(kwargs: dict[str, Any]) -> dict[str, Any]:
    sent = kwargs
    for key in _ITERABLE_ARGS:
        v = kwargs.get(key)
        if v is not None and not isinstance(v, (list, tuple, str, dict, bytes)) \
                and given(v) and hasattr(v, "__iter__"):
            if sent is kwargs:
                sent = dict(kwargs)
            sent[key] = list(v)
    return sent


def unwrap(owner: Any, attr: str) -> None:
    """Put the original method back."""
    fn = owner.__dict__.get(attr)
    if fn is not None and getattr(fn, "__hh_wrapped__", None) is not None:
        delattr(owner, attr)


def json_list(value: Any) -> list[Any]:
    """A request's messages as a JSON-safe list."""
    out = jsonable(value)
    if isinstance(out, list):
        return out
    return [out]
