"""Anomaly detection evaluation: each detector over the simulator's labelled anomalies,
precision and recall per anomaly kind, at a few thresholds.

    .venv/bin/python bench/anomalies.py                      # 30 days at 15 s, seeds 1-3
    .venv/bin/python bench/anomalies.py --days 7 --seed 10 --seeds 2 --window 10

For each seed and each anomaly kind, SimulatedOffice runs with only that kind injected
(``anomaly_rate_per_day`` per metric, default 2), so every flag in that run is either on that
kind's anomaly or a false alarm; one more run injects all kinds together ("all"). Each metric
is a series of its own (dropped readings are simply absent) and each detector runs over it
in its batch form (the incremental form agrees: tests/unit/test_detectors.py).

What counts:
- An anomaly's *span* is from its first affected sample to ``--grace`` samples after its last
  (default 3): a dropout has no readings of its own, so only the readings after it can show
  it, and a drift or a stuck sensor often only shows when it ends.
- Recall: the share of labelled anomalies with at least one flag on a reading in their span.
- Precision: the share of flags that fall in some anomaly's span. False alarms: the flags
  outside every span, also given per day of data (all three metrics together).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from officesensor.analytics import METHODS, detector
from officesensor.models import to_epoch_us
from officesensor.sensor.simulated import ANOMALY_KINDS, METRICS, InjectedAnomaly, SimulatedOffice

START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Series:
    ts_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    spans: list[tuple[int, int]]  # (first, last) epoch µs, grace included, sorted by start


@dataclass
class Tally:
    anomalies: int = 0
    detected: int = 0
    flags: int = 0
    true_flags: int = 0
    days: float = 0.0

    def add(self, other: Tally) -> None:
        self.anomalies += other.anomalies
        self.detected += other.detected
        self.flags += other.flags
        self.true_flags += other.true_flags
        self.days += other.days


def simulate(
    seed: int, kinds: tuple[str, ...], days: float, interval_s: float, rate: float, grace: int
) -> list[Series]:
    office = SimulatedOffice(seed, anomaly_rate_per_day=rate, anomaly_kinds=kinds)
    count = round(days * 86_400 / interval_s)
    ts: dict[str, list[int]] = {m: [] for m in METRICS}
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    for sample in office.samples(START, interval_s, count):
        stamp = to_epoch_us(sample.ts)
        for metric, value in sample.values.items():
            ts[metric].append(stamp)
            values[metric].append(value)
    grace_us = round(grace * interval_s * 1e6)
    by_metric: dict[str, list[InjectedAnomaly]] = {m: [] for m in METRICS}
    for anomaly in office.anomalies:
        by_metric[anomaly.metric].append(anomaly)
    return [
        Series(
            np.array(ts[m], dtype=np.int64),
            np.array(values[m], dtype=np.float64),
            sorted((to_epoch_us(a.start), to_epoch_us(a.end) + grace_us) for a in by_metric[m]),
        )
        for m in METRICS
    ]


def score(series: Sequence[Series], method: str, window: int, z: float, days: float) -> Tally:
    tally = Tally(days=days)
    chosen = detector(method)
    for one in series:
        flags = one.ts_us[chosen.batch(one.values, window, z).anomaly]
        tally.flags += len(flags)
        tally.anomalies += len(one.spans)
        in_span = np.zeros(len(flags), dtype=bool)
        for first, last in one.spans:
            lo, hi = np.searchsorted(flags, [first, last + 1])
            if hi > lo:
                tally.detected += 1
                in_span[lo:hi] = True
        tally.true_flags += int(in_span.sum())
    return tally


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=30.0, help="simulated days per run (30)")
    parser.add_argument("--seed", type=int, default=1, help="first seed (1)")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (3)")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds per sample (15)")
    parser.add_argument("--rate", type=float, default=2.0, help="anomalies/day/metric (2)")
    parser.add_argument("--window", type=int, default=10, help="W (10, the default setting)")
    parser.add_argument(
        "--z",
        type=float,
        nargs="+",
        default=[2.0, 3.0, 4.0, 6.0, 8.0],
        help="thresholds (2 3 4 6 8)",
    )
    parser.add_argument("--grace", type=int, default=3, help="samples after an anomaly (3)")
    args = parser.parse_args()

    began = time.monotonic()
    groups: list[tuple[str, tuple[str, ...]]] = [(k, (k,)) for k in ANOMALY_KINDS]
    groups.append(("all", ANOMALY_KINDS))
    seeds = range(args.seed, args.seed + args.seeds)
    runs = {
        (name, seed): simulate(seed, kinds, args.days, args.interval, args.rate, args.grace)
        for name, kinds in groups
        for seed in seeds
    }
    header = ["method", "Z", *(f"{name} R / P" for name, _ in groups), "false/day"]
    rows: list[list[str]] = []
    for method in METHODS:
        for z in args.z:
            row = [f"`{method}`", f"{z:g}"]
            for name, _ in groups:
                tally = Tally()
                for seed in seeds:
                    tally.add(score(runs[name, seed], method, args.window, z, args.days))
                recall = _pct(tally.detected, tally.anomalies)
                row.append(f"{recall} / {_pct(tally.true_flags, tally.flags)}")
            row.append(f"{(tally.flags - tally.true_flags) / tally.days:.1f}")  # the "all" run
            rows.append(row)
    anomalies = sum(len(s.spans) for seed in seeds for s in runs["all", seed])
    print(
        f"{args.seeds} seed(s) from {args.seed}, {args.days:g} days at {args.interval:g} s each; "
        f"{args.rate:g} anomalies/day/metric ({anomalies} in the 'all' runs); "
        f"W = {args.window}; grace = {args.grace} samples; took {time.monotonic() - began:.0f} s."
        "\nR = recall (anomalies with a flag in their span), P = precision (flags in a span); "
        "false/day: flags outside every span per day, three metrics, 'all' runs.\n"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
