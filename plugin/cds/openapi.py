"""An OpenAPI 3.1 description of the CDS Hooks endpoints (discovery, service calls,
feedback), built from the same pydantic models that parse the requests. The routes parse
bodies themselves (to answer with OperationOutcomes), so FastAPI's generated schema does not
show them; this one does, for integrators and for the fuzz test (schemathesis)."""

from __future__ import annotations

from typing import Any

from plugin.cds.models import FeedbackBatch, HookRequest
from plugin.cds.services import SERVICES

_REF = "#/components/schemas/{model}"
_OUTCOME = {"$ref": "#/components/responses/OperationOutcome"}


def _schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in (HookRequest, FeedbackBatch):
        schema = model.model_json_schema(ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def openapi() -> dict[str, Any]:
    errors = {str(s): _OUTCOME for s in (400, 404, 405, 412, 413, 415, 503)}
    unauthorized = {"401": {"description": "JWT missing or invalid (no body)"}}
    service_id = {
        "name": "service_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": sorted(SERVICES)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "dxsafety CDS Hooks service", "version": "2.0.1"},
        "paths": {
            "/cds-services": {
                "get": {
                    "security": [{"jwt": []}],
                    "responses": {"200": {"description": "discovery"}, **unauthorized},
                }
            },
            "/cds-services/{service_id}": {
                "post": {
                    "security": [{"jwt": []}],
                    "parameters": [service_id],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _REF.format(model="HookRequest")}
                            }
                        },
                    },
                    "responses": {"200": {"description": "cards"}, **unauthorized, **errors},
                }
            },
            "/cds-services/{service_id}/feedback": {
                "post": {
                    "security": [{"jwt": []}],
                    "parameters": [service_id],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _REF.format(model="FeedbackBatch")}
                            }
                        },
                    },
                    "responses": {"200": {"description": "stored"}, **unauthorized, **errors},
                }
            },
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "responses": {
                "OperationOutcome": {
                    "description": "a FHIR OperationOutcome",
                    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
                }
            },
        },
    }
