"""Write weeks or months of simulated history straight into a store, through the same
validation path as live messages (each reading is encoded as our sensor would publish it and
parsed back by ``payload.parse_message``), in large transactions, with a progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from officesensor.models import Reading, Rejection
from officesensor.payload import encode_reading, parse_message
from officesensor.sensor.simulated import SimulatedOffice, readings_of
from officesensor.store import Store

BATCH = 20_000


def backfill(
    store: Store,
    office: SimulatedOffice,
    *,
    span: timedelta,
    interval_s: float,
    sensor: str,
    end: datetime | None = None,
    progress: TextIO | None = sys.stderr,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[int, int]:
    """Fill ``span`` of history ending at ``end`` (default: now). Returns (stored, rejected)."""
    now = clock()
    end = end or now
    start = end - span
    count = int(span.total_seconds() // interval_s)
    stored = rejected = 0
    batch: list[Reading] = []
    bar = _ProgressBar(count, progress)
    for done, sample in enumerate(office.samples(start, interval_s, count), start=1):
        for reading in readings_of(sample, sensor=sensor):
            topic, payload = encode_reading(reading, UTC)
            parsed = parse_message(topic, payload, now=now, sensor_tz=UTC)
            if isinstance(parsed, Rejection):
                rejected += 1
            else:
                batch.extend(parsed)
        if len(batch) >= BATCH:
            stored += store.write_many(batch).stored
            batch.clear()
            bar.update(done)
    stored += store.write_many(batch).stored
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
