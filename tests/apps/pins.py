"""Pins of the venvs the client tests build (tests/venvs.py)."""

#: The venv "otel-1.45.1". OpenLLMetry 0.62.4 needs OTel's 0.66b1 contrib family
#: (opentelemetry-instrumentation-threading has no 0.66b2), so OTel 1.45.1: it cannot sit
#: beside the test group's 1.45.2.
TRACELOOP = [
    "traceloop-sdk==0.62.4",
    "opentelemetry-instrumentation-openai==0.62.4",
    "opentelemetry-instrumentation-anthropic==0.62.4",
    "opentelemetry-instrumentation==0.66b1",
    "opentelemetry-instrumentation-logging==0.66b1",
    "opentelemetry-instrumentation-redis==0.66b1",
    "opentelemetry-instrumentation-requests==0.66b1",
    "opentelemetry-instrumentation-sqlalchemy==0.66b1",
    "opentelemetry-instrumentation-threading==0.66b1",
    "opentelemetry-instrumentation-urllib3==0.66b1",
    "opentelemetry-sdk==1.45.1",
    "openai==3.57.0",
    "anthropic==2.15.0",
    "httpx==0.28.1",  # traceloop.sdk imports it without declaring it
    # OTel's OTLP/JSON exporter is of the same 0.66b1 family: it lives here too.
    "opentelemetry-exporter-otlp-json-http==0.66b1",
]
