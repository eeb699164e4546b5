"""The OpenAPI 3.1 document of the JSON API, /healthz and /metrics.

tests/web/test_web_openapi.py checks every documented response against its schema, so this
document and the handlers cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from officesensor import __version__

_NAME = {"type": "string", "maxLength": 256}
_TS = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC (Z)."}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_COUNT = {"type": "integer", "minimum": 0}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, _ref("Error"))


def _limit(default: int, maximum: int) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "How many items, newest ones.",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


def _schemas() -> dict[str, Any]:
    return {
        "Error": _object(
            {"error": {"type": "string"}, "parameter": {"type": "string"}}, optional=("parameter",)
        ),
        "Reading": _object(
            {"id": {"type": "integer", "minimum": 0}, "ts": _TS, "value": {"type": "number"}}
        ),
        "Series": _object(
            {
                "sensor": _NAME,
                "metric": _NAME,
                "unit": {
                    "type": "string",
                    "description": "Empty when the metric has no known unit.",
                },
                "count": _COUNT,
                "latest": {"oneOf": [_ref("Reading"), {"type": "null"}]},
            }
        ),
        "AnalysedReading": _object(
            {
                "id": {"type": "integer", "minimum": 0},
                "ts": _TS,
                "value": {"type": "number"},
                "mean": {**_NULLABLE_NUMBER, "description": "Mean over the trailing window."},
                "std": {
                    **_NULLABLE_NUMBER,
                    "description": "Sample std; null for a 1-reading window.",
                },
                "z": {
                    **_NULLABLE_NUMBER,
                    "description": "(value - mean) / std; null when std is 0.",
                },
                "anomaly": {"type": "boolean", "description": "|z| >= z_threshold."},
            }
        ),
        "Readings": _object(
            {
                "sensor": {
                    "type": ["string", "null"],
                    "description": "null: no sensor has it yet.",
                },
                "metric": _NAME,
                "unit": {"type": "string"},
                "window": {"type": "integer", "minimum": 2},
                "z_threshold": {"type": "number"},
                "readings": {
                    "type": "array",
                    "items": _ref("AnalysedReading"),
                    "description": "Oldest first.",
                },
            }
        ),
        "Conflict": _object(
            {
                "sensor": _NAME,
                "metric": _NAME,
                "id": {"type": "integer", "minimum": 0},
                "ts": _TS,
                "value": {
                    "type": "number",
                    "description": "The value that lost: a different one "
                    "was already stored under the same key.",
                },
            }
        ),
        "QuarantinedMessage": _object(
            {
                "received": _TS,
                "topic": {"type": "string", "description": "Control characters escaped."},
                "reason": {"type": "string", "description": "A rejection reason code."},
                "detail": {"type": "string"},
                "payload_bytes": _COUNT,
                "payload_preview": {
                    "type": "string",
                    "description": "The payload's first 256 bytes, escaped.",
                },
            }
        ),
        "IngestSnapshot": _object(
            {
                "connected": {"type": "boolean"},
                "received": _COUNT,
                "stored": _COUNT,
                "duplicates": _COUNT,
                "conflicts": _COUNT,
                "rejected": {
                    "type": "object",
                    "additionalProperties": _COUNT,
                    "description": "Rejected messages per reason.",
                },
                "backlog": _COUNT,
                "reconnects": _COUNT,
                "anomalies": _COUNT,
                "last_error": {"type": ["string", "null"]},
                "store_ok": {"type": "boolean"},
            }
        ),
        "Health": _object(
            {
                "status": {"enum": ["ok", "unhealthy"]},
                "reason": {"type": "string"},
                "store": {"type": "string"},
                "ingest": {"type": "string"},
            },
            optional=("reason", "store", "ingest"),
        ),
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Office Sensor API",
            "version": __version__,
            "description": "Readings, rolling statistics and ingest state of the office sensors.",
        },
        "paths": {
            "/api/series": {
                "get": {
                    "summary": "Every (sensor, metric) series with its latest reading.",
                    "responses": {
                        "200": _json("The series.", {"type": "array", "items": _ref("Series")})
                    },
                }
            },
            "/api/readings": {
                "get": {
                    "summary": "The latest readings of one series with trailing-window statistics.",
                    "parameters": [
                        {
                            "name": "metric",
                            "in": "query",
                            "required": True,
                            "schema": _NAME,
                            "description": "Metric name, case-insensitive (Temperature).",
                        },
                        {
                            "name": "sensor",
                            "in": "query",
                            "required": False,
                            "schema": _NAME,
                            "description": "Default: `default` if it has it, else the first.",
                        },
                        _limit(100, 10_000),
                    ],
                    "responses": {
                        "200": _json("The readings, oldest first.", _ref("Readings")),
                        "400": _error(
                            "A parameter is missing or malformed (named in `parameter`)."
                        ),
                        "404": _error("No such metric, or the sensor has none of its readings."),
                    },
                }
            },
            "/api/ingest": {
                "get": {
                    "summary": "Ingest's counters, when ingest runs in this process.",
                    "responses": {
                        "200": _json("The counters.", _ref("IngestSnapshot")),
                        "404": _error("Ingest does not run in this process."),
                    },
                }
            },
            "/api/quarantine": {
                "get": {
                    "summary": "The newest rejected messages (at most 1,000 kept), newest first.",
                    "parameters": [_limit(100, 10_000)],
                    "responses": {
                        "200": _json(
                            "The rejected messages.",
                            {"type": "array", "items": _ref("QuarantinedMessage")},
                        ),
                        "400": _error("`limit` is malformed."),
                        "404": _error("Ingest does not run in this process."),
                    },
                }
            },
            "/api/conflicts": {
                "get": {
                    "summary": "Readings that collided with a different stored one, newest first.",
                    "parameters": [_limit(100, 10_000)],
                    "responses": {
                        "200": _json(
                            "The conflicts.", {"type": "array", "items": _ref("Conflict")}
                        ),
                        "400": _error("`limit` is malformed."),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {"200": _json("OpenAPI 3.1 document.", {"type": "object"})},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Whether the store answers and ingest (if here) is connected.",
                    "responses": {
                        "200": _json("Healthy.", _ref("Health")),
                        "503": _json("Unhealthy; `reason` says why.", _ref("Health")),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format 0.0.4).",
                    "responses": {
                        "200": {
                            "description": "Counters and gauges.",
                            "content": {
                                "text/plain; version=0.0.4": {"schema": {"type": "string"}}
                            },
                        }
                    },
                }
            },
        },
        "components": {"schemas": _schemas()},
    }
