"""Log output for every command: readable text (the default) or one JSON object per line.

``configure_logging`` is called once, by ``cli.main``; every other module only does
``logging.getLogger(__name__)``.

Either way one event is one line that nobody outside can forge: sensor and metric names,
topics and payload excerpts come from devices, and a newline in one must not start a line
that looks like our own. Ingest already escapes what it quotes (``payload.printable``); the
text formatter escapes every control character of the message again (a traceback, which is
ours, keeps its lines), and JSON escapes them by definition.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` (except
#: uvicorn's ``color_message``, the message again with terminal colour codes).
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character (newline, CR, ESC, U+2028, ...) written as
    a Python escape, so it stays on one line and cannot colour or rewrite a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


class TextFormatter(logging.Formatter):
    """The classic format, with the message's control characters escaped."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return self._style._fmt % {**vars(record), "message": escape_controls(record.message)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the exception
    or stack text if any, and every field passed with ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            event["exception"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in event:
                event[key] = value
        # ASCII only: every control and line-separator character is escaped, and any value
        # json cannot write becomes its str().
        return json.dumps(event, ensure_ascii=True, default=str)


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}")


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send every logger's records at ``level`` and above to ``stream`` (stderr) in
    ``log_format`` ("text" or "json"). Called again, it replaces its own handler and leaves
    others (a test runner's) alone."""
    handler = _OurHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)


class _OurHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` installs (so that it can find it again)."""


def uses_json() -> bool:
    """Whether our handler writes JSON (the CLI then logs, rather than prints, its
    announcements, so the output stays one JSON object per line)."""
    return any(
        isinstance(h, _OurHandler) and isinstance(h.formatter, JsonFormatter)
        for h in logging.getLogger().handlers
    )
