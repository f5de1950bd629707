"""Tracing: ``chain`` and ``tool`` events that nest into a tree, and model calls under them.

The span being traced travels in a :class:`contextvars.ContextVar`, so it is right across
``await``, ``asyncio.gather`` and tasks (each task copies the context it was created in).
A plain ``threading.Thread`` or ``loop.run_in_executor`` starts from an empty context, so
work handed to one is a root of its own; ``asyncio.to_thread`` copies the context, and
``contextvars.copy_context().run`` carries it anywhere else.

An event is logged when its span ends: children end first, so a parent lists every child
that ended before it in ``children_ids``, and every child names its parent in ``parent_id``.
A root span names its session (``parent_id`` = ``session_id``, as the API defaults it).

Telemetry never breaks the traced code: a span whose event cannot be logged (the exporter
closed, a value that cannot be encoded...) logs a warning and the call goes on unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar, Token
from typing import Any, Literal, TypeVar, cast, overload

import msgspec

from ._encoding import GENERIC_ROUTE, MODEL_ROUTE
from ._ids import new_id
from ._session import Session, Sink

__all__ = ["ModelCall", "Span", "Trace", "TraceMixin", "current_span", "jsonable", "make_trace"]

log = logging.getLogger("hh_exporter.trace")

F = TypeVar("F", bound=Callable[..., Any])
SpanType = Literal["chain", "tool"]

#: Yielded values kept in a traced generator's outputs; the count is always kept.
MAX_YIELDS = 1000

_current: ContextVar[Span | None] = ContextVar("hh_exporter_span", default=None)


def current_span() -> Span | None:
    """The span being traced in this context, or None."""
    return _current.get()


# -- values ---------------------------------------------------------------------------------

def _hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return f"<{type(obj).__name__}>"


def jsonable(value: Any) -> Any:
    """``value`` as JSON-safe built-ins: pydantic models dumped, dataclasses, datetimes and
    the like as msgspec converts them, anything else as ``"<TypeName>"``. Never raises."""
    try:
        return msgspec.to_builtins(value, enc_hook=_hook, str_keys=True)
    except Exception:  # noqa: BLE001 - a hostile __getattr__, a cycle, a deep nest
        try:
            return f"<{type(value).__name__}>"
        except Exception:  # noqa: BLE001
            return "<object>"


def error_text(exc: BaseException) -> str:
    """``"TypeName: message"`` for an exception, never raising."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__
        text = ""
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


_warned: set[str] = set()


def warn(what: str, exc: BaseException) -> None:
    """Log a telemetry failure: a warning the first time for each kind, debug after."""
    key = f"{what}:{type(exc).__name__}"
    level = logging.DEBUG if key in _warned else logging.WARNING
    if len(_warned) < 256:
        _warned.add(key)
    log.log(level, "hh_exporter: %s failed, the call goes on without it: %s", what,
            error_text(exc))


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- spans ----------------------------------------------------------------------------------

class Span:
    """One traced step: a ``chain`` or ``tool`` event, logged when it ends.

    Inside ``with exporter.trace(...) as span:`` the step can add to its event with
    :meth:`set_outputs`, :meth:`set_metadata` and :meth:`set_inputs`.
    """

    __slots__ = ("_exporter", "_parent", "_start_mono", "_token", "children_ids", "config", "ended",
                 "error", "event_id", "event_type", "inputs", "metadata", "name",
                 "outputs", "parent_id", "session", "start_time")

    def __init__(self, exporter: Sink | None, session: Session | None, name: str,
                 event_type: str, parent_id: str | None, parent: Span | None = None) -> None:
        self._exporter = exporter
        self._parent = parent
        #: The session its event belongs to (None when telemetry is off for this span).
        self.session = session
        self.name = name
        self.event_type = event_type
        #: This span's event id, known from the start so children can name it.
        self.event_id = new_id()
        self.parent_id = parent_id
        self.children_ids: list[str] = []
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}
        self.config: dict[str, Any] = {}
        self.error: str | None = None
        self.ended = False
        self.start_time = _now_ms()
        self._start_mono = time.monotonic()
        self._token: Token[Span | None] | None = None

    def __repr__(self) -> str:
        return (f"Span(name={self.name!r}, event_type={self.event_type!r}, "
                f"event_id={self.event_id!r})")

    def set_inputs(self, **inputs: Any) -> None:
        """Add to the event's ``inputs`` (JSON-safe copies of the values)."""
        self.inputs.update({k: jsonable(v) for k, v in inputs.items()})

    def set_outputs(self, **outputs: Any) -> None:
        """Add to the event's ``outputs``."""
        self.outputs.update({k: jsonable(v) for k, v in outputs.items()})

    def set_metadata(self, **metadata: Any) -> None:
        """Add to the event's ``metadata``."""
        self.metadata.update({k: jsonable(v) for k, v in metadata.items()})

    def end(self, error: BaseException | None = None) -> None:
        """Log this span's event (once) and link it into its parent; never raises."""
        if self.ended:
            return
        self.ended = True
        exporter = self._exporter
        if exporter is None or self.session is None:
            return
        duration = (time.monotonic() - self._start_mono) * 1000
        if error is not None:
            self.error = error_text(error)
        fields: dict[str, Any] = {
            "event_type": self.event_type, "event_name": self.name, "inputs": self.inputs,
            "outputs": self.outputs, "event_id": self.event_id, "start_time": self.start_time,
            "end_time": self.start_time + int(duration), "duration": duration,
        }
        if self.parent_id is not None:
            fields["parent_id"] = self.parent_id
        if self.children_ids:
            fields["children_ids"] = self.children_ids
        if self.config:
            fields["config"] = self.config
        if self.metadata:
            fields["metadata"] = self.metadata
        if self.error is not None:
            fields["error"] = self.error
        try:
            exporter._log(GENERIC_ROUTE, fields, self.session)  # our dict: no **kwargs trip
        except Exception as exc:  # noqa: BLE001 - telemetry never breaks the traced code
            warn(f"logging the {self.event_type} event {self.name!r}", exc)
            return
        if self._parent is not None:
            self._parent.children_ids.append(self.event_id)


def _open(exporter: Sink, name: str, event_type: str,
          session: Session | None) -> Span:
    """A new span under the current one, in the right session; never raises."""
    parent = _current.get()
    try:
        if parent is not None and parent._exporter is exporter and parent.session is not None \
                and (session is None or session is parent.session):
            return Span(exporter, parent.session, name, event_type, parent.event_id, parent)
        if session is None:
            # A root span with no session given starts one of its own, named after it.
            session = exporter.session(session_name=name)
        return Span(exporter, session, name, event_type, session.session_id)
    except Exception as exc:  # noqa: BLE001 - e.g. the exporter is closed
        warn(f"starting the span {name!r}", exc)
        return Span(None, None, name, event_type, None)


# -- model calls ----------------------------------------------------------------------------

class ModelCall:
    """A wrapped model call in progress: where it was made (span, session) and when.

    Captured when the call starts, so a streamed answer logged later, wherever the stream
    is read to its end, still lands under the span that made the call.
    """

    __slots__ = ("_exporter", "_parent", "_session", "_start_mono", "ended", "start_time")

    def __init__(self, exporter: Sink, session: Session | None) -> None:
        self._exporter = exporter
        self._session = session
        parent = _current.get()
        self._parent = parent if parent is not None and parent._exporter is exporter \
            and parent.session is not None else None
        self.start_time = _now_ms()
        self._start_mono = time.monotonic()
        self.ended = False

    def end(self, fields: dict[str, Any]) -> None:
        """Log the model event from ``fields`` (once); never raises."""
        if self.ended:
            return
        self.ended = True
        duration = (time.monotonic() - self._start_mono) * 1000
        fields["start_time"] = self.start_time
        fields["end_time"] = self.start_time + int(duration)
        fields["duration"] = duration
        parent = self._parent
        try:  # the adapter's dict, logged as it is (no **kwargs round trip)
            if parent is not None:
                fields["parent_id"] = parent.event_id
                event_id = self._exporter._log(MODEL_ROUTE, fields, parent.session)
                parent.children_ids.append(event_id)
            else:
                self._exporter._log(MODEL_ROUTE, fields, self._session)
        except Exception as exc:  # noqa: BLE001 - telemetry never breaks the user's call
            warn(f"logging the model call to {fields.get('model')!r}", exc)


# -- the decorator and context manager ------------------------------------------------------

class Trace:
    """What ``exporter.trace(...)`` returns: a decorator, and a context manager (``with``
    and ``async with``) whose value is the :class:`Span`."""

    __slots__ = ("_event_type", "_exporter", "_name", "_session", "capture_inputs",
                 "capture_outputs", "config", "inputs", "metadata")

    def __init__(self, exporter: Sink, name: str | None, event_type: SpanType,
                 session: Session | None, *, inputs: dict[str, Any] | None,
                 metadata: dict[str, Any] | None, config: dict[str, Any] | None,
                 capture_inputs: bool, capture_outputs: bool) -> None:
        if event_type not in ("chain", "tool"):
            raise ValueError(f"event_type must be 'chain' or 'tool', got {event_type!r}")
        if session is not None and type(session) is not Session:
            raise TypeError("session must be a Session from Exporter.session()")
        self._exporter = exporter
        self._name = name
        self._event_type = event_type
        self._session = session
        self.inputs = inputs
        self.metadata = metadata
        self.config = config
        self.capture_inputs = capture_inputs
        self.capture_outputs = capture_outputs

    def _start(self, name: str) -> Span:
        span = _open(self._exporter, name, self._event_type, self._session)
        try:
            if self.inputs:
                span.set_inputs(**self.inputs)
            if self.metadata:
                span.set_metadata(**self.metadata)
            if self.config:
                span.config.update(jsonable(self.config))
        except Exception as exc:  # noqa: BLE001 - e.g. non-string keys
            warn(f"recording the span {name!r}", exc)
        span._token = _current.set(span)
        return span

    @staticmethod
    def _stop(span: Span, error: BaseException | None) -> None:
        token, span._token = span._token, None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # ended in another context than it began: leave it be
                pass
        span.end(error)

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> Span:
        return self._start(self._name or "trace")

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        span = _current.get()
        if span is not None:
            self._stop(span, exc)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator -------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"trace decorates a function, got {type(fn).__name__}")
        name = self._name or getattr(fn, "__name__", None) or "trace"
        bind = _binder(fn) if self.capture_inputs else None
        wrapped: Callable[..., Any]
        if inspect.isasyncgenfunction(fn):
            wrapped = self._async_gen(fn, name, bind)
        elif inspect.isgeneratorfunction(fn):
            wrapped = self._gen(fn, name, bind)
        elif inspect.iscoroutinefunction(fn):
            wrapped = self._coro(fn, name, bind)
        else:
            wrapped = self._func(fn, name, bind)
        return functools.wraps(fn)(wrapped)  # type: ignore[return-value]

    def _begin(self, name: str, bind: Binder | None, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Span:
        span = self._start(name)
        if bind is not None:
            try:
                span.inputs.update(bind(args, kwargs))
            except Exception as exc:  # noqa: BLE001
                warn(f"recording the inputs of {name!r}", exc)
        return span

    def _result(self, span: Span, value: Any) -> None:
        if self.capture_outputs:
            span.outputs["result"] = jsonable(value)

    def _func(self, fn: Callable[..., Any], name: str, bind: Binder | None) -> Callable[..., Any]:
        def traced(*args: Any, **kwargs: Any) -> Any:
            span = self._begin(name, bind, args, kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._stop(span, exc)
                raise
            self._result(span, result)
            self._stop(span, None)
            return result
        return traced

    def _coro(self, fn: Callable[..., Any], name: str, bind: Binder | None) -> Callable[..., Any]:
        async def traced(*args: Any, **kwargs: Any) -> Any:
            span = self._begin(name, bind, args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._stop(span, exc)
                raise
            self._result(span, result)
            self._stop(span, None)
            return result
        return traced

    def _gen(self, fn: Callable[..., Any], name: str, bind: Binder | None) -> Callable[..., Any]:
        trace = self

        def traced(*args: Any, **kwargs: Any) -> Iterator[Any]:
            # The span is current only while the generator runs, not between its yields,
            # so the consumer's own spans are not filed under it.
            span = trace._begin(name, bind, args, kwargs)
            trace._detach(span)
            items: list[Any] = []
            count = 0
            gen = fn(*args, **kwargs)
            error: BaseException | None = None
            try:
                while True:
                    token = _current.set(span)
                    try:
                        item = next(gen)
                    except StopIteration:
                        break
                    finally:
                        _current.reset(token)
                    count += 1
                    if trace.capture_outputs and count <= MAX_YIELDS:
                        items.append(jsonable(item))
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                gen.close()
                trace._end_gen(span, items, count, error)
        return traced

    def _async_gen(self, fn: Callable[..., Any], name: str,
                   bind: Binder | None) -> Callable[..., Any]:
        trace = self

        async def traced(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            span = trace._begin(name, bind, args, kwargs)
            trace._detach(span)
            items: list[Any] = []
            count = 0
            agen = fn(*args, **kwargs)
            error: BaseException | None = None
            try:
                while True:
                    token = _current.set(span)
                    try:
                        item = await agen.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        _current.reset(token)
                    count += 1
                    if trace.capture_outputs and count <= MAX_YIELDS:
                        items.append(jsonable(item))
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                await agen.aclose()
                trace._end_gen(span, items, count, error)
        return traced

    @staticmethod
    def _detach(span: Span) -> None:
        token, span._token = span._token, None
        if token is not None:
            _current.reset(token)

    def _end_gen(self, span: Span, items: list[Any], count: int,
                 error: BaseException | None) -> None:
        if isinstance(error, GeneratorExit):  # closed early by its consumer: not a failure
            span.metadata["closed_early"] = True
            error = None
        if self.capture_outputs:
            span.outputs["result"] = items
        span.metadata["yielded"] = count
        span.end(error)


Binder = Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]


def _binder(fn: Callable[..., Any]) -> Binder:
    """A function from a call's arguments to its JSON-safe inputs, by parameter name
    (``self`` and ``cls`` left out)."""
    try:
        sig: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature
        sig = None

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if sig is not None:
            try:
                bound = sig.bind_partial(*args, **kwargs).arguments
            except TypeError:  # the call itself will raise, and say why
                bound = None
            if bound is not None:
                out: dict[str, Any] = {}
                for k, v in bound.items():
                    if k in ("self", "cls"):
                        continue
                    kind = sig.parameters[k].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        out.update({str(kk): jsonable(vv) for kk, vv in v.items()})
                    else:
                        out[k] = jsonable(v)
                return out
        out = {"args": jsonable(args)} if args else {}
        if kwargs:
            out["kwargs"] = jsonable(kwargs)
        return out
    return bind


def make_trace(exporter: Sink, fn: Any, name: str | None, event_type: SpanType,
               session: Session | None, inputs: dict[str, Any] | None,
               metadata: dict[str, Any] | None, config: dict[str, Any] | None,
               capture_inputs: bool, capture_outputs: bool) -> Any:
    """``exporter.trace``: ``@trace``, ``@trace(...)``, ``trace("name")``, ``with trace(...)``."""
    if isinstance(fn, str):
        name, fn = fn, None
    t = Trace(exporter, name, event_type, session, inputs=inputs, metadata=metadata,
              config=config, capture_inputs=capture_inputs, capture_outputs=capture_outputs)
    return t if fn is None else t(fn)


class TraceMixin:
    """``trace()``, written once for both facades (each is a :class:`Sink`)."""

    __slots__ = ()

    @overload
    def trace(self, fn: F, /) -> F: ...

    @overload
    def trace(self, name: str | None = None, /, *, event_type: SpanType = "chain",
              session: Session | None = None, inputs: dict[str, Any] | None = None,
              metadata: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
              capture_inputs: bool = True, capture_outputs: bool = True) -> Trace: ...

    def trace(self, fn: Any = None, /, *, event_type: SpanType = "chain",
              session: Session | None = None, inputs: dict[str, Any] | None = None,
              metadata: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
              capture_inputs: bool = True, capture_outputs: bool = True) -> Any:
        """Trace a step as a ``chain`` or ``tool`` event, nested under the current one.

        A decorator (``@hh.trace``, ``@hh.trace("name", event_type="tool")``) for sync and
        async functions and generators, and a context manager (``with hh.trace("step") as
        span:``, or ``async with``). The event records the call's arguments as ``inputs``,
        the return value (or the items yielded) as ``outputs["result"]``, the exception as
        ``error``, the duration, and ``parent_id``/``children_ids``, so traced steps and
        instrumented model calls inside them form a tree in one session: ``session`` if
        given, else the enclosing span's, else a new session named after the root step.

        Never awaits, and telemetry never breaks the traced code: a failure to log is a
        warning on the ``hh_exporter.trace`` logger.
        """
        return make_trace(cast("Sink", self), fn, None, event_type, session, inputs, metadata,
                          config, capture_inputs, capture_outputs)
