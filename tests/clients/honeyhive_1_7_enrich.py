"""Run by tests/test_official_sdk.py in a process of its own: the 1.7 tracer installs
process-wide OpenTelemetry state (the first tracer's provider is every later tracer's), so
a second tracer in the test process would export through this one's. Starts the tracer's
session, enriches it twice, and prints the session id."""

import sys
import warnings

# The SDK warns about its own internals; as in a user's program, a warning stays a warning.
warnings.simplefilter("ignore", DeprecationWarning)

from honeyhive import HoneyHiveTracer  # noqa: E402

url, key = sys.argv[1], sys.argv[2]
tracer = HoneyHiveTracer.init(api_key=key, server_url=url, session_name="enriched",
                              source="sdk-test")
try:
    tracer.enrich_session(metadata={"stage": "start", "keep": 1}, outputs={"draft": 1})
    tracer.enrich_session(metadata={"stage": "end"}, outputs={"final": "ok"},
                          feedback={"rating": 5}, metrics={"latency_ms": 250},
                          user_properties={"user": "ada"})
finally:
    tracer.shutdown()
print(tracer.session_id)
