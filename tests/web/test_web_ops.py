"""/healthz and /metrics."""

from __future__ import annotations

import re

import pytest

from officesensor.models import RejectReason

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:\\\\|\\"|\\n|[^"\\\n])*"'
LABEL = rf"[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE}"
SAMPLE = re.compile(
    rf"^(?P<name>{NAME})(?:\{{(?P<labels>{LABEL}(?:,{LABEL})*)?\}})?"
    r" (?P<value>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|NaN|[+-]Inf)$"
)
HELP = re.compile(rf"^# HELP (?P<name>{NAME}) .*$")
TYPE = re.compile(rf"^# TYPE (?P<name>{NAME}) (counter|gauge|histogram|summary|untyped)$")


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples per metric name; fails on any line that is not valid exposition format."""
    assert text.endswith("\n")
    typed: set[str] = set()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            match = HELP.match(line) or TYPE.match(line)
            assert match, f"bad comment line: {line!r}"
            if line.startswith("# TYPE"):
                typed.add(match["name"])
            continue
        match = SAMPLE.match(line)
        assert match, f"bad sample line: {line!r}"
        assert match["name"] in typed, f"sample before its TYPE: {line!r}"
        labels = {
            key: unescape(value[1:-1])
            for key, value in re.findall(rf"([a-zA-Z_][a-zA-Z0-9_]*)=({LABEL_VALUE})", line)
        }
        samples.setdefault(match["name"], []).append((labels, float(match["value"])))
    return samples


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


# ----------------------------------------------------------------------------- /healthz


def test_healthz_ok_without_ingest(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"


def test_healthz_ok_with_connected_ingest(client_with_ingest):
    response = client_with_ingest().get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "store": "ok", "ingest": "connected"}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"connected": False}, "not connected"),
        ({"store_ok": False}, "store"),
    ],
)
def test_healthz_503_when_ingest_is_unwell(client_with_ingest, changes, words):
    response = client_with_ingest(**changes).get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unhealthy"
    assert words in response.json["reason"]


def test_healthz_503_when_the_store_does_not_answer(client, store):
    store.close()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unhealthy"
    assert response.json["reason"].startswith("store")


# ----------------------------------------------------------------------------- /metrics


def test_metrics_without_ingest_has_series_only(client, write_series):
    write_series("Temperature", count=12)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = parse_exposition(response.text)
    assert samples == {
        "officesensor_series_readings": [({"sensor": "default", "metric": "Temperature"}, 12.0)]
    }


def test_metrics_with_ingest_parses_and_counts(client_with_ingest, write_series):
    write_series("Temperature", count=3)
    samples = parse_exposition(client_with_ingest(connected=False).get("/metrics").text)
    single = {name: values[0][1] for name, values in samples.items() if len(values) == 1}
    assert single["officesensor_ingest_received_total"] == 120
    assert single["officesensor_ingest_stored_total"] == 110
    assert single["officesensor_ingest_duplicates_total"] == 4
    assert single["officesensor_ingest_conflicts_total"] == 1
    assert single["officesensor_ingest_backlog"] == 0
    assert single["officesensor_mqtt_connected"] == 0
    assert single["officesensor_mqtt_reconnects_total"] == 2
    assert single["officesensor_anomalies_total"] == 7
    rejected = {
        labels["reason"]: value for labels, value in samples["officesensor_ingest_rejected_total"]
    }
    assert rejected["not_json"] == 3
    assert rejected["out_of_range"] == 2
    assert set(rejected) >= {reason.value for reason in RejectReason}  # zeros included
    assert sum(rejected.values()) == 5


def test_metrics_escapes_label_values(client, write_series):
    awkward = 'a"b\\c\nd°'
    write_series("Humidity", count=2, sensor=awkward)
    text = client.get("/metrics").text
    assert 'sensor="a\\"b\\\\c\\nd°"' in text
    ((labels, value),) = parse_exposition(text)["officesensor_series_readings"]
    assert labels == {"sensor": awkward, "metric": "Humidity"}
    assert value == 2


def test_metrics_of_an_empty_store_is_still_valid(client):
    text = client.get("/metrics").text
    assert parse_exposition(text) == {}
    assert "# TYPE officesensor_series_readings gauge" in text
