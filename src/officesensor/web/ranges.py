"""Time ranges as the URL names them, and how finely a range is drawn. Pure: no I/O.

A view is ``?range=1h|24h|7d|30d|1y|all`` (relative to now) or ``?start=...&end=...``
(ISO 8601; a time without a zone is UTC). Charts of short ranges show every reading; longer
ones show epoch-aligned buckets of a "nice" width, about ``TARGET_BUCKETS`` of them, which the
store answers from its rollups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: The named ranges, shortest first, as the range picker offers them.
NAMED_RANGES: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "1y": timedelta(days=365),
    "all": None,
}
DEFAULT_RANGE = "24h"
#: Intervals of the statistics table (the selected range is added as "selected").
STAT_INTERVALS = ("1h", "24h", "7d", "30d", "1y")
TARGET_BUCKETS = 1000
#: Bucket widths a chart may use, seconds; all multiples of a minute that tile hours and days.
BUCKET_WIDTHS_S = (
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
)  # fmt: skip
#: Ranges up to this long are drawn reading by reading if they hold at most RAW_LIMIT
#: readings (about the chart's width in pixels: more points than pixels show nothing more);
#: at a 15 s cadence that is up to 6 h. Longer ones are drawn from rollup buckets.
RAW_SPAN = timedelta(hours=24)
RAW_LIMIT = 1_500
#: Earliest and latest times a custom range may name.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9999, 1, 1, tzinfo=UTC)


class RangeError(ValueError):
    """A range parameter is malformed; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True, slots=True)
class TimeRange:
    name: str  # a NAMED_RANGES key, or "custom"
    start: datetime
    end: datetime

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    @property
    def live(self) -> bool:
        """Whether the range ends now, so new readings belong in it."""
        return self.name != "custom"


def parse_time(parameter: str, text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC), as an aware UTC datetime."""
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RangeError(
            parameter, f"{parameter} must be an ISO 8601 time such as 2024-05-01T09:00:00Z"
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    ts = ts.astimezone(UTC)
    if not MIN_TIME <= ts <= MAX_TIME:
        raise RangeError(parameter, f"{parameter} must lie between 1970 and 9999")
    return ts


def parse_range(args: Mapping[str, str], now: datetime, first: datetime | None = None) -> TimeRange:
    """The range a request's query names: ``range``, or ``start`` and ``end``.

    ``first`` is the time of the series' oldest reading, where ``all`` starts.
    """
    name = args.get("range")
    start_text, end_text = args.get("start"), args.get("end")
    if name and (start_text or end_text):
        raise RangeError("range", "give either range or start and end, not both")
    if start_text or end_text:
        if not (start_text and end_text):
            missing = "end" if start_text else "start"
            raise RangeError(missing, "a custom range needs both start and end")
        start, end = parse_time("start", start_text), parse_time("end", end_text)
        if start >= end:
            raise RangeError("end", "end must be later than start")
        return TimeRange("custom", start, end)
    name = name or DEFAULT_RANGE
    if name not in NAMED_RANGES:
        raise RangeError("range", f"range must be one of {', '.join(NAMED_RANGES)}")
    return named_range(name, now, first)


def named_range(name: str, now: datetime, first: datetime | None = None) -> TimeRange:
    length = NAMED_RANGES[name]
    end = now + timedelta(microseconds=1)  # a reading stamped exactly now is included
    if length is None:
        start = first if first is not None and first < end else end - timedelta(hours=24)
        return TimeRange(name, start, end)
    return TimeRange(name, end - length, end)


def bucket_width(span: timedelta, target: int = TARGET_BUCKETS) -> int:
    """The narrowest bucket width giving at most ``target`` buckets over ``span``."""
    seconds = span.total_seconds()
    for width in BUCKET_WIDTHS_S:
        if seconds / width <= target:
            return width
    return int(-(-seconds // target) // 86400 + 1) * 86400  # whole days beyond the table


def gap_threshold_s(step_s: float, cadence_s: float | None) -> float:
    """Points further apart than this are drawn with a gap between them: two missed steps
    (a bucket width, or the sensor's cadence for raw readings), and never less than three
    missed readings."""
    threshold = 2.0 * step_s
    if cadence_s is not None:
        threshold = max(threshold, 3.0 * cadence_s)
    return threshold
