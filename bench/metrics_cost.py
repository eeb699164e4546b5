"""What one /metrics scrape costs with many series, beside the API call that reads the same.

    .venv/bin/python bench/metrics_cost.py                 # 200 series (ingest.max_series)
    .venv/bin/python bench/metrics_cost.py --series 1000

A SQLite store in a temporary directory gets N series of 100 readings each; the Flask app
(with an Ingest object in the process, not connected, so every ingest family is written)
answers through its test client, in this process, so only the app's own time is measured:

  /metrics      the whole exposition: one store.series() call, ingest, HTTP histograms
  /api/series   the peer: the same store.series() call, rendered as JSON
  /healthz      the floor: a request that touches nothing

Each is asked ``--runs`` times after a warm-up; the medians and /metrics' ratio to
/api/series are printed (ratios, not absolute times: these machines are noisy).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from officesensor.config import load_settings  # noqa: E402
from officesensor.ingest import Ingest  # noqa: E402
from officesensor.models import Reading  # noqa: E402
from officesensor.store.sqlite import SqliteStore  # noqa: E402
from officesensor.web import create_app  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        start = datetime.now(UTC) - timedelta(hours=1)
        for i in range(args.series):
            store.write_many(
                [
                    Reading(
                        f"sensor-{i:04d}", "Temperature", n, start + n * timedelta(seconds=15), 70.0
                    )
                    for n in range(100)
                ]
            )
        settings = load_settings(environ={}).replace(ingest_max_series=max(200, args.series))
        ingest = Ingest(settings, store)
        client = create_app(settings, store, ingest).test_client()
        results = {}
        for path in ("/metrics", "/api/series", "/healthz"):
            for _ in range(20):
                client.get(path)
            times = []
            for _ in range(args.runs):
                began = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - began)
                assert response.status_code == 200, (path, response.status_code)
            results[path] = (statistics.median(times), len(response.data))
        lines = client.get("/metrics").text.count("\n")
        store.close()
    print(f"series: {args.series} (100 readings each), {args.runs} requests per path, median")
    for path, (median_s, size) in results.items():
        print(f"  {path:12s} {median_s * 1000:7.2f} ms  {size:8,d} bytes")
    ratio = results["/metrics"][0] / results["/api/series"][0]
    print(f"/metrics lines: {lines:,d}; /metrics / /api/series = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
