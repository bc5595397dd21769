"""The OpenAPI 3.1 description of ``/api/v1``, served at ``/api/v1/openapi.json``.

Owns: the document only; tests check the live server against it. Limits
come from ``tantra.web.params`` so the description cannot drift from the code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from tantra import __version__
from tantra.store.query import AGGREGATE_FUNCTIONS
from tantra.web import params

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_TIME = {
    "type": "string",
    "description": "ms since the epoch, ISO 8601 (no zone: UTC), `now`,"
    " or relative: -15m, -2h, -7d",
    "examples": ["1764000000000", "2025-11-24T12:00:00Z", "-15m"],
}


_ONE_FUNCTION = "|".join(AGGREGATE_FUNCTIONS)
_FUNCTIONS = f"^({_ONE_FUNCTION})(,({_ONE_FUNCTION}))*$"


def _names(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": f"only these {name}s (repeatable, or comma-separated)",
        "schema": {"type": "array", "items": _NAME, "maxItems": params.MAX_NAMES},
        "style": "form",
        "explode": True,
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


_ERRORS = {
    "400": {
        "description": "a parameter is wrong; `detail` names it",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "503": {
        "description": "no store configured (`no_store`) or the store cannot answer",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
}


@cache
def openapi_document() -> dict[str, Any]:
    reading = {
        "type": "object",
        "required": ["id", "device", "sensor", "value", "ts"],
        "properties": {
            "id": {"type": "integer", "description": "the hub's cursor, increasing"},
            "device": {"type": "string"},
            "sensor": {"type": "string"},
            "value": {"type": ["number", "boolean"]},
            "unit": {"type": "string"},
            "ts": {"type": "integer"},
            "seq": {"type": "integer"},
        },
    }
    bucket = {
        "type": "object",
        "required": ["t"],
        "properties": {
            "t": {"type": "integer", "description": "bucket start, ms since the epoch"},
            **{fn: {"type": ["number", "null"]} for fn in AGGREGATE_FUNCTIONS},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tantra history API",
            "version": __version__,
            "description": "Stored readings of a Tantra hub. See docs/history.md.",
        },
        "paths": {
            "/api/v1/sensors": {
                "get": {
                    "summary": "every stored series with counts and its last reading",
                    "parameters": [_names("device"), _names("sensor")],
                    "responses": {
                        "200": {
                            "description": "one entry per (device, sensor, unit)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Sensor"},
                                    }
                                }
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/readings": {
                "get": {
                    "summary": "raw readings: a JSON page with a `next` cursor, or the whole"
                    " range as CSV / NDJSON",
                    "parameters": [
                        _names("device"),
                        _names("sensor"),
                        _query("from", _TIME, "first time included"),
                        _query("to", _TIME, "first time excluded"),
                        _query(
                            "limit",
                            {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": params.MAX_LIMIT,
                                "default": params.DEFAULT_LIMIT,
                            },
                            "readings per page (JSON only)",
                        ),
                        _query("order", {"type": "string", "enum": ["asc", "desc"]}, "by ts"),
                        _query(
                            "cursor",
                            {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                            "`next` of the previous page (opaque)",
                        ),
                        _query(
                            "format",
                            {"type": "string", "enum": ["json", "csv", "ndjson"]},
                            "csv and ndjson stream the whole range (also chosen by Accept)",
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "readings",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ReadingsPage"}
                                },
                                "text/csv": {"schema": {"type": "string"}},
                                "application/x-ndjson": {"schema": {"type": "string"}},
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/aggregate": {
                "get": {
                    "summary": "epoch-aligned buckets per series (from rollups where possible)",
                    "parameters": [
                        _names("device"),
                        _names("sensor"),
                        _query("from", _TIME, "default: 24 hours before `to`"),
                        _query("to", _TIME, "default: now"),
                        _query(
                            "every",
                            {"type": "string", "pattern": "^(auto|[0-9]{1,12}(ms|s|m|h|d|w))$"},
                            "bucket width, e.g. 1m, or auto (default)",
                        ),
                        _query(
                            "points",
                            {"type": "integer", "minimum": 1, "maximum": params.MAX_BUCKETS},
                            "with every=auto: at most this many buckets (default 1000)",
                        ),
                        {
                            "name": "fn",
                            "in": "query",
                            "description": "functions, comma-separated (default avg,min,max,count)",
                            "schema": {"type": "string", "pattern": _FUNCTIONS},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "series with their non-empty buckets",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Aggregate"}
                                }
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Reading": reading,
                "ReadingsPage": {
                    "type": "object",
                    "required": ["readings", "next"],
                    "properties": {
                        "readings": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Reading"},
                        },
                        "next": {"type": ["string", "null"]},
                    },
                },
                "Sensor": {
                    "type": "object",
                    "required": [
                        "device",
                        "sensor",
                        "unit",
                        "count",
                        "first_ts",
                        "last_ts",
                        "last",
                    ],
                    "properties": {
                        "device": {"type": "string"},
                        "sensor": {"type": "string"},
                        "unit": {"type": ["string", "null"]},
                        "count": {"type": "integer"},
                        "first_ts": {"type": ["integer", "null"]},
                        "last_ts": {"type": ["integer", "null"]},
                        "last": {
                            "oneOf": [{"$ref": "#/components/schemas/Reading"}, {"type": "null"}]
                        },
                    },
                },
                "Aggregate": {
                    "type": "object",
                    "required": ["step", "from", "to", "series"],
                    "properties": {
                        "step": {"type": "integer"},
                        "from": {"type": "integer"},
                        "to": {"type": "integer"},
                        "series": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["device", "sensor", "unit", "buckets"],
                                "properties": {
                                    "device": {"type": "string"},
                                    "sensor": {"type": "string"},
                                    "unit": {"type": ["string", "null"]},
                                    "buckets": {"type": "array", "items": bucket},
                                },
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                },
            }
        },
    }
