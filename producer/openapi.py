"""What the HTTP API answers: its response models and its OpenAPI 3.1 document.

The document is assembled from the pydantic models' JSON Schemas (requests from
:mod:`producer.requests`, responses here), so it cannot drift from what the
handlers in :mod:`producer.api` validate and send.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from producer.bodies import MAX_BODY, MAX_DEPTH
from producer.fleet import FleetStatus
from producer.requests import REQUEST_TYPES
from producer.settings import REVOKE_SCOPES, STATUS_SCOPE
from producer.tracker import EventStatus

__all__ = [
    "MAX_WAIT",
    "ErrorResponse",
    "PublishedResponse",
    "StatusResponse",
    "openapi_document",
]

MAX_WAIT = 30.0
"""The longest ``wait`` (seconds) a status request may ask for."""


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PublishedResponse(_Out):
    """202: the broker acknowledged the revocation."""

    event_id: uuid.UUID
    type: str
    topic: str
    partition: int
    offset: int
    published_at: datetime
    status_url: str


class StatusResponse(_Out):
    """Which instances applied an event, whether every expected one did, and the fleet."""

    status: EventStatus
    expected: list[str] = Field(
        description="Services the answer was checked against (default: configured, else "
        "every service of the fleet)."
    )
    missing: list[str] = Field(
        description="Expected services not there yet: too few instances applied it, or one "
        "of their instances has not (live, silent or refusing it)."
    )
    silent: list[str] = Field(
        default_factory=list,
        description="service/instance of expected instances that stopped sending watermarks "
        "without having applied it.",
    )
    in_force: bool | None = Field(
        description="Every expected instance applied it (None: nothing expected, no fleet)."
    )
    latency_ms: float | None = Field(
        default=None, description="When the last expected instance applied it (ms after publish)."
    )
    fleet: FleetStatus | None = Field(
        default=None,
        description="Every instance known from watermarks: engine, live or silent, applied "
        "through and lag per partition, last seen.",
    )


class ErrorResponse(_Out):
    error: str = Field(
        description="A stable code: unauthorized, forbidden, invalid_request, "
        "broker_unavailable, not_found, bad_request, body_too_large."
    )
    message: str
    field: str | None = None
    published: bool | None = Field(default=None, description="Set on 503: always false.")


def openapi_document() -> dict[str, Any]:
    """An OpenAPI 3.1 document assembled from the pydantic models' JSON Schemas."""
    models: list[type[BaseModel]] = [
        *REQUEST_TYPES.values(),
        PublishedResponse,
        StatusResponse,
        ErrorResponse,
    ]
    _, defs = models_json_schema(
        [(m, "validation") for m in models[:-3]] + [(m, "serialization") for m in models[-3:]],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = defs.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def error(description: str, **headers: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": ref(ErrorResponse)}},
        }
        if headers:
            out["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
        return out

    auth_errors = {
        "401": error(
            "Missing or unknown bearer token.", **{"WWW-Authenticate": "Bearer challenge"}
        ),
        "403": error("The token lacks the scope.", **{"WWW-Authenticate": "Bearer challenge"}),
    }
    paths: dict[str, Any] = {}
    for kind, model in REQUEST_TYPES.items():
        paths[f"/v1/revocations/{kind}"] = {
            "post": {
                "operationId": f"revoke_{kind}",
                "summary": (model.__doc__ or kind).strip().splitlines()[0],
                "security": [{"bearer": [REVOKE_SCOPES[kind]]}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(model)}},
                },
                "responses": {
                    "202": {
                        "description": "Acknowledged by the broker (acks=all).",
                        "content": {"application/json": {"schema": ref(PublishedResponse)}},
                    },
                    "400": error(
                        f"The body is not JSON, or nested deeper than {MAX_DEPTH} levels."
                    ),
                    "413": error(f"The body is larger than {MAX_BODY} bytes (never read whole)."),
                    **auth_errors,
                    "422": error("The body is not a valid request; `field` names the field."),
                    "503": error(
                        "The broker is unavailable; nothing was published.",
                        **{"Retry-After": "Seconds to wait before retrying"},
                    ),
                },
            }
        }
    paths["/v1/revocations/{event_id}"] = {
        "get": {
            "operationId": "revocation_status",
            "summary": "Which services applied a revocation, and when.",
            "security": [{"bearer": [STATUS_SCOPE]}],
            "parameters": [
                {
                    "name": "event_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                },
                {
                    "name": "services",
                    "in": "query",
                    "required": False,
                    "description": "Comma-separated services to check (default: configured, "
                    "else every instance of every service the watermarks show).",
                    "schema": {"type": "string"},
                },
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "description": f"Seconds to wait for it to be in force (at most {MAX_WAIT:g}).",
                    "schema": {"type": "number", "minimum": 0},
                },
            ],
            "responses": {
                "200": {
                    "description": "What the watermarks and receipts say, and the fleet.",
                    "content": {"application/json": {"schema": ref(StatusResponse)}},
                },
                **auth_errors,
                "422": error("event_id is not a UUID, or services/wait are out of bounds."),
                "503": error("The broker is unavailable."),
            },
        }
    }
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness.",
            "security": [],
            "responses": {
                "200": {
                    "description": "The process is up.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "status": {"type": "string"},
                                    "publisher": {"type": "string"},
                                    "tracker": {"type": "string"},
                                },
                            }
                        }
                    },
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "revocast",
            "version": "1",
            "description": "Publish revocations and see where they are in force.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Tokens and scopes come from REVOCAST_API_TOKENS: "
                    + ", ".join(sorted({*REVOKE_SCOPES.values(), "revoke:*", STATUS_SCOPE})),
                }
            },
        },
    }
