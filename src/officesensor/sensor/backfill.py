"""Write weeks or months of simulated history straight into a store, through the same
validation path as live messages (each reading is encoded as our sensor would publish it and
parsed back by ``payload.parse_message``), in large transactions, with a progress bar."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TextIO

from officesensor.analytics import DEFAULT_METHOD, DEFAULT_WINDOW, DEFAULT_Z
from officesensor.live import LiveAnalytics, write_and_flag
from officesensor.models import Reading, Rejection
from officesensor.payload import encode_reading, parse_message
from officesensor.sensor.simulated import Sample, SimulatedOffice, readings_of
from officesensor.store import Store

BATCH = 20_000


def history(
    office: SimulatedOffice, span: timedelta, interval_s: float, now: datetime
) -> tuple[Iterator[Sample], int]:
    """The office's samples from ``now - span`` on, and how many of them lie in the past.
    Backfill takes those; a live sensor can go on with the same iterator, seamlessly."""
    samples = office.samples(now - span, interval_s)
    return samples, int(span.total_seconds() // interval_s)


def backfill(
    store: Store,
    samples: Iterator[Sample],
    count: int,
    *,
    sensor: str,
    progress: TextIO | None = sys.stderr,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    window: int = DEFAULT_WINDOW,
    z_threshold: float = DEFAULT_Z,
    method: str = DEFAULT_METHOD,
) -> tuple[int, int]:
    """Store the next ``count`` samples' readings, and record the anomalies the live
    z-score would have flagged among them. Returns (stored, rejected)."""
    now = clock()
    analytics = LiveAnalytics(store, window, z_threshold, method)
    stored = rejected = 0
    batch: list[Reading] = []
    bar = _ProgressBar(count, progress)
    for done, sample in enumerate(itertools.islice(samples, count), start=1):
        for reading in readings_of(sample, sensor=sensor):
            topic, payload = encode_reading(reading, UTC)
            parsed = parse_message(topic, payload, now=now, sensor_tz=UTC)
            if isinstance(parsed, Rejection):
                rejected += 1
            else:
                batch.extend(parsed)
        if len(batch) >= BATCH:
            stored += write_and_flag(store, batch, analytics).stored
            batch.clear()
            bar.update(done)
    stored += write_and_flag(store, batch, analytics).stored
    bar.update(count, final=True)
    return stored, rejected


class _ProgressBar:
    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.started = time.monotonic()

    def update(self, done: int, *, final: bool = False) -> None:
        if self.stream is None:
            return
        share = min(done / self.total, 1.0)
        filled = int(share * 30)
        elapsed = time.monotonic() - self.started
        self.stream.write(
            f"\rbackfill [{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} "
            f"{done:,}/{self.total:,} samples {elapsed:5.1f} s"
        )
        if final:
            self.stream.write("\n")
        self.stream.flush()
