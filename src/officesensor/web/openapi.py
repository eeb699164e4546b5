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


def _numbers(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "number"}, "description": description}


_SERIES_PARAMS: list[dict[str, Any]] = [
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
]
_RANGE_PARAMS: list[dict[str, Any]] = [
    {
        "name": "range",
        "in": "query",
        "required": False,
        "schema": {"enum": ["1h", "24h", "7d", "30d", "1y", "all"], "default": "24h"},
        "description": "A range ending now. Not together with start/end.",
    },
    {
        "name": "start",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": 64},
        "description": "Custom range start, ISO 8601 (no zone: UTC); needs end.",
    },
    {
        "name": "end",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": 64},
        "description": "Custom range end (exclusive), ISO 8601; needs start.",
    },
]
_BAD_PARAMS = "A parameter is missing or malformed (named in `parameter`)."
_NOT_FOUND = "No such metric, or the sensor has none of its readings."


def _range_operation(summary: str, extra: list[dict[str, Any]], ok: dict[str, Any]) -> Any:
    return {
        "get": {
            "summary": summary,
            "parameters": [*_SERIES_PARAMS, *_RANGE_PARAMS, *extra],
            "responses": {"200": ok, "400": _error(_BAD_PARAMS), "404": _error(_NOT_FOUND)},
        }
    }


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
                "online": {
                    "type": ["boolean", "null"],
                    "description": "The sensor's own status (office/status/<sensor>, its "
                    "last will when it drops); null when unknown (the original sensor "
                    "sends none, or ingest runs in another process).",
                },
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
                "start": _TS,
                "end": _TS,
                "readings": {
                    "type": "array",
                    "items": _ref("AnalysedReading"),
                    "description": "Oldest first.",
                },
            },
            optional=("start", "end"),
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
        "Chart": _object(
            {
                "sensor": {"type": ["string", "null"]},
                "metric": _NAME,
                "unit": {"type": "string"},
                "start": _TS,
                "end": _TS,
                "bucket_s": {"type": "integer", "minimum": 60, "description": "Bucket width."},
                "gap_s": {
                    "type": "number",
                    "description": "Buckets further apart than this are separated by a gap "
                    "(no readings): draw a break, do not interpolate.",
                },
                "points": _object(
                    {
                        "t": _numbers("Bucket starts, epoch milliseconds (UTC), oldest first."),
                        "count": {"type": "array", "items": _COUNT},
                        "mean": _numbers("Mean of each bucket."),
                        "min": _numbers("Minimum of each bucket."),
                        "max": _numbers("Maximum of each bucket."),
                    }
                ),
            }
        ),
        "IntervalStats": _object(
            {
                "name": {"enum": ["1h", "24h", "7d", "30d", "1y", "selected"]},
                "start": _TS,
                "end": _TS,
                "count": _COUNT,
                "mean": _NULLABLE_NUMBER,
                "std": {**_NULLABLE_NUMBER, "description": "Sample std (n - 1)."},
                "min": _NULLABLE_NUMBER,
                "q25": _NULLABLE_NUMBER,
                "median": _NULLABLE_NUMBER,
                "q75": _NULLABLE_NUMBER,
                "max": _NULLABLE_NUMBER,
                "coverage": {
                    "type": ["number", "null"],
                    "minimum": 0,
                    "maximum": 1,
                    "description": "Readings present / readings expected at the sensor's "
                    "cadence, between its first reading (or start) and now (or end).",
                },
                "quantile_error": {
                    "type": "number",
                    "minimum": 0,
                    "description": "0 when the quartiles are exact; otherwise the most they "
                    "can differ from the exact ones (metric units): long intervals are "
                    "computed from rollup histograms.",
                },
            }
        ),
        "Stats": _object(
            {
                "sensor": {"type": ["string", "null"]},
                "metric": _NAME,
                "unit": {"type": "string"},
                "cadence_s": {
                    "type": ["number", "null"],
                    "description": "The sensor's usual interval (median of recent ones).",
                },
                "intervals": {"type": "array", "items": _ref("IntervalStats")},
            }
        ),
        "Anomaly": _object(
            {
                "id": {"type": "integer", "minimum": 0},
                "ts": _TS,
                "value": {"type": "number"},
                "mean": _NULLABLE_NUMBER,
                "std": _NULLABLE_NUMBER,
                "z": _NULLABLE_NUMBER,
            }
        ),
        "Anomalies": _object(
            {
                "sensor": {"type": ["string", "null"]},
                "metric": _NAME,
                "unit": {"type": "string"},
                "start": _TS,
                "end": _TS,
                "anomalies": {
                    "type": "array",
                    "items": _ref("Anomaly"),
                    "description": "Newest first.",
                },
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
            "description": "Readings, rolling statistics and ingest state of the office sensors. "
            "When viewer authentication is configured (auth.token or auth.users_file), every "
            "operation but /healthz and /readyz needs `Authorization: Bearer <token>` or a "
            "session cookie from /login, and answers 401 without; docs/security.md.",
        },
        # Either nothing (authentication not configured) or the bearer token.
        "security": [{}, {"bearerAuth": []}],
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
                    "summary": "Readings of one series with trailing-window statistics: the "
                    "latest `limit`, or the first `limit` of a range (range or start/end).",
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
                        *_RANGE_PARAMS,
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
            "/api/chart": _range_operation(
                "A range downsampled to epoch-aligned buckets (min, mean, max, count), "
                "answered from rollups: a year costs about as much as an hour.",
                [
                    {
                        "name": "buckets",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 10, "maximum": 5000},
                        "description": "At most this many buckets (default 1000).",
                    }
                ],
                _json("The buckets; empty buckets are left out.", _ref("Chart")),
            ),
            "/api/stats": _range_operation(
                "Interval statistics (count, mean, std, min, quartiles, max, coverage) of "
                "the last hour, day, week, month and year, and of the selected range.",
                [],
                _json("One entry per interval, the selected range last.", _ref("Stats")),
            ),
            "/api/anomalies": _range_operation(
                "Readings flagged by the live z-score when they arrived, newest first.",
                [_limit(100, 10_000)],
                _json("The anomalies.", _ref("Anomalies")),
            ),
            "/api/export.csv": _range_operation(
                "Every reading of a range as CSV (streamed), with the same statistics as "
                "/api/readings: time,id,value,mean,std,z,anomaly.",
                [],
                {
                    "description": "CSV, oldest first.",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
            ),
            "/api/stream": {
                "get": {
                    "summary": "New readings as Server-Sent Events, as they are stored.",
                    "description": "Each `event: reading` carries a reading as JSON (the "
                    "fields of /api/readings rows plus sensor, metric, unit, lower, upper); "
                    "its `id` is the newest reading time sent (epoch µs). Reconnecting with "
                    "`Last-Event-ID` (or `last_event_id`) first replays what was missed.",
                    "parameters": [
                        {**_SERIES_PARAMS[0], "required": False},
                        _SERIES_PARAMS[1],
                        {
                            "name": "last_event_id",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                            "description": "Resume after this id.",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "An endless event stream.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _error(_BAD_PARAMS),
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
            **_alert_paths(),
            "/api/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {"200": _json("OpenAPI 3.1 document.", {"type": "object"})},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers (nothing else is checked).",
                    "responses": {"200": _json("Alive.", _ref("Health"))},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the store answers and ingest (if here) is connected, "
                    "subscribed, writing and not far behind.",
                    "responses": {
                        "200": _json("Ready.", _ref("Health")),
                        "503": _json("Not ready; `reason` says why.", _ref("Health")),
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
        "components": {
            "schemas": _schemas() | _alert_schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The auth.token setting (OFFICESENSOR_AUTH_TOKEN).",
                }
            },
        },
    }


# ----------------------------------------------------------------------------- alerts

_ALERT_COMMON: dict[str, Any] = {
    "id": {
        "type": "string",
        "pattern": "^[0-9a-f]{16}$",
        "description": "The episode: its firing and resolution share it.",
    },
    "rule": _NAME,
    "kind": {"enum": ["threshold", "anomaly", "stale"]},
    "severity": {"enum": ["warning", "critical"]},
    "sensor": _NAME,
    "metric": _NAME,
    "value": {
        **_NULLABLE_NUMBER,
        "description": "The reading (threshold, anomaly); for stale, seconds of silence.",
    },
    "threshold": {
        **_NULLABLE_NUMBER,
        "description": "The threshold crossed; for stale, the silence allowed (seconds); "
        "null for anomaly.",
    },
    "since": {**_TS, "description": "When the condition began to hold."},
    "suppressed": {
        "type": "boolean",
        "description": "Fired within the rule's cooldown: recorded, not notified.",
    },
}
_PER_CHANNEL = _object({"mqtt": _COUNT, "webhook": _COUNT})


def _alert_schemas() -> dict[str, Any]:
    return {
        "Alert": _object(
            {
                **_ALERT_COMMON,
                "state": {"enum": ["firing", "resolved"]},
                "fired_at": _TS,
                "resolved_at": {"type": ["string", "null"], "format": "date-time"},
                "acknowledged_at": {"type": ["string", "null"], "format": "date-time"},
            }
        ),
        "AlertEvent": _object(
            {
                "seq": {"type": "integer", "minimum": 1, "description": "Order of events."},
                **_ALERT_COMMON,
                "state": {"enum": ["pending", "firing", "resolved", "cancelled", "acknowledged"]},
                "at": _TS,
                "notified": {"type": "boolean", "description": "A notification was sent."},
                "detail": {"type": "string"},
            }
        ),
        "AlertDelivery": _object(
            {
                "pending": _PER_CHANNEL,
                "delivered": _PER_CHANNEL,
                "retries": _PER_CHANNEL,
                "dead_letters": {
                    **_PER_CHANNEL,
                    "description": "Notifications given up on (attempts or age exhausted, or "
                    "refused for good), over the life of the state file.",
                },
                "last_error": {"type": ["string", "null"]},
                "dropped_batches": _COUNT,
            }
        ),
        "Alerts": _object(
            {
                "enabled": {
                    "type": "boolean",
                    "description": "Whether this process evaluates alert rules.",
                },
                "active": {
                    "type": "array",
                    "items": _ref("Alert"),
                    "description": "Firing now, newest first (filtered by sensor and metric).",
                },
                "history": {
                    "type": "array",
                    "items": _ref("AlertEvent"),
                    "description": "Events, newest first.",
                },
                "next_before": {
                    "type": ["integer", "null"],
                    "description": "Pass as `before` for the next (older) page; null: no more.",
                },
                "delivery": _ref("AlertDelivery"),
            }
        ),
    }


def _alert_paths() -> dict[str, Any]:
    return {
        "/api/alerts": {
            "get": {
                "summary": "Alerts firing now, the alert history and delivery counters.",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "enum": ["pending", "firing", "resolved", "cancelled", "acknowledged"]
                        },
                        "description": "Only history events in this state.",
                    },
                    {
                        "name": "sensor",
                        "in": "query",
                        "required": False,
                        "schema": {**_NAME, "minLength": 1},
                        "description": "Only this sensor.",
                    },
                    {
                        "name": "metric",
                        "in": "query",
                        "required": False,
                        "schema": {**_NAME, "minLength": 1},
                        "description": "Only this metric.",
                    },
                    _limit(100, 1000),
                    {
                        "name": "before",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1},
                        "description": "Only events older than this `seq` (see next_before).",
                    },
                ],
                "responses": {
                    "200": _json("The alerts.", _ref("Alerts")),
                    "400": _error(_BAD_PARAMS),
                    "503": _error("The server is shutting down; alerts are not available."),
                },
            }
        },
        "/api/alerts/{episode_id}/ack": {
            "post": {
                "summary": "Acknowledge an alert (once; again changes nothing).",
                "description": "Needs the page's CSRF token in `X-CSRF-Token` unless "
                "authenticated with a bearer token.",
                "parameters": [
                    {
                        "name": "episode_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 64},
                    }
                ],
                "responses": {
                    "200": _json("The alert, acknowledged.", _ref("Alert")),
                    "401": _error("Authentication is configured and the request has none."),
                    "403": _error("The CSRF token is missing or wrong."),
                    "404": _error("There is no such alert."),
                    "503": _error("The server is shutting down; alerts are not available."),
                },
            }
        },
    }
