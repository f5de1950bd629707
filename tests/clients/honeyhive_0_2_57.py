"""Run by tests/test_older_clients.py inside an environment holding ``honeyhive==0.2.57``
(it cannot be imported beside 1.7). Drives the client's own logging, update and
enrich_session calls against the URL given, and prints what each call returned, as JSON."""

import json
import sys
import warnings

warnings.simplefilter("ignore")

from honeyhive import HoneyHive, HoneyHiveTracer  # noqa: E402
from honeyhive.models import components, operations  # noqa: E402

url, key = sys.argv[1], sys.argv[2]
out = {}
sdk = HoneyHive(bearer_auth=key, server_url=url)

# The tracer starts its session (POST /session/start) and sets up traceloop; its spans are
# not what this checks, so nothing is traced.
tracer = HoneyHiveTracer(api_key=key, project="p", session_name="old-sdk", source="test",
                         server_url=url, disable_batch=True)
sid = tracer.session_id
out["session_id"] = sid

# Logging: one event on /events, a model batch in a single-session envelope.
res = sdk.events.create_event(request=operations.CreateEventRequestBody(
    event=components.CreateEventRequest(
        project="p", source="test", event_name="lookup", event_type="tool",
        config={}, inputs={"q": "capital?"}, outputs={"a": 1, "b": 2}, duration=5,
        session_id=sid, parent_id=sid, metadata={"k": 1})))
out["create_event"] = {"status": res.status_code, "event_id": res.object.event_id,
                       "success": res.object.success}
res = sdk.events.create_model_event_batch(request=operations.CreateModelEventBatchRequestBody(
    model_events=[components.CreateModelEvent(
        project="p", model="gpt-4o", provider="openai", duration=12,
        messages=[{"role": "user", "content": "hi"}],
        response={"role": "assistant", "content": "hello"},
        usage={"total_tokens": 3}) for _ in range(2)],
    is_single_session=True,
    session_properties=components.SessionPropertiesBatch(session_id=sid)))
out["model_batch"] = {"status": res.status_code, "event_ids": res.object.event_ids,
                      "success": res.object.success}

# Update of the event (outputs replaced, metadata merged).
res = sdk.events.update_event(request=operations.UpdateEventRequestBody(
    event_id=out["create_event"]["event_id"], outputs={"answer": "Paris"},
    metadata={"graded": True}))
out["update_event"] = {"status": res.status_code}

# enrich_session: PUT /events on the session's id; 0.2.57 swallows an error (it prints it),
# so only the stored session tells whether it landed.
tracer.enrich_session(metadata={"stage": "start", "keep": 1}, outputs={"draft": 1})
tracer.enrich_session(metadata={"stage": "end"}, outputs={"final": "Paris"},
                      feedback={"rating": 5}, user_properties={"user": "ada"})
out["enriched"] = True
print(json.dumps(out))
sys.stdout.flush()
