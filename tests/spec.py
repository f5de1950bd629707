"""The HoneyHive data-plane spec's JSON schemas, to hold request bodies against.

``data/honeyhive-openapi.yaml`` is a copy of ``shared/reference/honeyhive-openapi.yaml`` (the
python-sdk's ``openapi/dataplane.yaml``), kept here so the suite runs from a clone alone.
OpenAPI 3.1 schemas are JSON Schema 2020-12, so ``jsonschema`` validates against them as is.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).parent / "data" / "honeyhive-openapi.yaml"

#: The request schema of each route the exporter and ingest use.
REQUEST_SCHEMAS = {
    "/session/start": "LegacyStartSessionRequest",
    "/events/batch": "LegacyPostEventBatchRequest",
    "/events/model/batch": "PostModelEventBatchRequest",
    "/events": "LegacyPostEventRequest",
    "/events/model": "PostModelEventRequest",
}


@cache
def _registry() -> Registry:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    return Registry().with_resource(
        "spec", Resource.from_contents(spec, default_specification=DRAFT202012))


@cache
def validator(schema: str) -> jsonschema.Draft202012Validator:
    """A validator of the spec's ``components/schemas/<schema>``."""
    return jsonschema.Draft202012Validator(
        {"$ref": f"spec#/components/schemas/{schema}"}, registry=_registry())


def check_request(path: str, body: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is a valid request for ``path``."""
    validator(REQUEST_SCHEMAS[path]).validate(body)
