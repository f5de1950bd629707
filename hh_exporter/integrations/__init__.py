"""One-line instrumentation of LLM client libraries.

- :mod:`hh_exporter.integrations.openai`: ``instrument(client, exporter)`` for ``openai.OpenAI``
  and ``openai.AsyncOpenAI`` (extra ``hh-exporter[openai]``).
- :mod:`hh_exporter.integrations.anthropic`: the same for ``anthropic.Anthropic`` and
  ``anthropic.AsyncAnthropic`` (extra ``hh-exporter[anthropic]``).
- :mod:`hh_exporter.integrations.otel`: ``HoneyHiveSpanExporter``, for apps instrumented with
  OpenTelemetry (extra ``hh-exporter[otel]``).

Each wrapped client call logs one model event when it ends (a stream: when it is read to its end,
closed, or garbage-collected), under the current ``exporter.trace`` span if there is one.
The wrapper adds no await and no network call to the call, and never changes what the call
returns or raises.
"""
