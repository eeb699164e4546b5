"""Log formats: one JSON object per line, or text in which a device cannot forge a line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from officesensor.logs import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    escape_controls,
    uses_json,
)

FORGED = "kitchen\n2026-01-01 00:00:00,000 ERROR   officesensor: forged\r\x1b[2Kx\u2028y"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing to a string, formatter chosen by the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("officesensor.test_logs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, stream
    log.removeHandler(handler)
    log.propagate = True


def use(logger_and_stream: tuple[logging.Logger, io.StringIO], formatter: logging.Formatter):
    log, stream = logger_and_stream
    log.handlers[0].setFormatter(formatter)
    return log, stream


def test_json_lines_carry_time_level_logger_message_and_extras(logger):
    log, stream = use(logger, JsonFormatter())
    log.warning("rejected %s on %s", "not_json", FORGED, extra={"sensor": FORGED, "count": 3})
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["level"] == "WARNING"
    assert event["logger"] == "officesensor.test_logs"
    assert event["message"] == f"rejected not_json on {FORGED}"
    assert event["sensor"] == FORGED
    assert event["count"] == 3
    when = datetime.fromisoformat(event["time"])
    assert when.utcoffset() == timedelta(0)
    assert abs(datetime.now(when.tzinfo) - when) < timedelta(minutes=5)
    assert line.isascii()  # every control or separator character is escaped
    assert "exception" not in event


def test_json_lines_carry_the_exception_text(logger):
    log, stream = use(logger, JsonFormatter())
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("it failed")
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["message"] == "it failed"
    assert event["level"] == "ERROR"
    assert event["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad\nthing" in event["exception"]


def test_json_survives_values_it_cannot_encode(logger):
    log, stream = use(logger, JsonFormatter())
    log.info("odd", extra={"what": object(), "when": datetime(2026, 1, 1)})
    event = json.loads(stream.getvalue())
    assert event["what"].startswith("<object object")
    assert event["when"] == "2026-01-01 00:00:00"


def test_text_keeps_a_device_name_on_one_line(logger):
    log, stream = use(logger, TextFormatter())
    log.warning("ingest: rejected message on %s", FORGED)
    output = stream.getvalue()
    assert output.count("\n") == 1
    assert len(output.splitlines()) == 1  # no \r, \u2028 either
    assert "\x1b" not in output
    assert "kitchen\\n2026-01-01" in output
    assert " WARNING officesensor.test_logs: ingest: rejected message on kitchen" in output


def test_text_keeps_the_traceback_lines(logger):
    log, stream = use(logger, TextFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed for %s", "a\nb")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("failed for a\\nb")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain 72.5 °F", "plain 72.5 °F"),
        ("a\nb", "a\\nb"),
        ("tab\there", "tab\\there"),
        ("nul\x00", "nul\\x00"),
        ("ls\u2028", "ls\\u2028"),
        ("c1\x85", "c1\\x85"),
    ],
)
def test_escape_controls(text, shown):
    assert escape_controls(text) == shown


def test_configure_logging_replaces_only_its_own_handler():
    root = logging.getLogger()
    others = list(root.handlers)
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        configure_logging("INFO", "text", first)
        assert not uses_json()
        configure_logging("WARNING", "json", second)
        assert uses_json()
        assert len(root.handlers) == len(others) + 1
        logging.getLogger("officesensor.x").info("dropped: below WARNING")
        logging.getLogger("officesensor.x").warning("kept")
        assert first.getvalue() == ""
        assert json.loads(second.getvalue())["message"] == "kept"
    finally:
        for handler in [h for h in root.handlers if h not in others]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="xml"):
        configure_logging("INFO", "xml")
