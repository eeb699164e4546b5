"""Ingest benchmark: sustained QoS 1 throughput against two peers, CPU per message, and
publish-to-commit latency, all in one run on this machine.

    .venv/bin/python bench/ingest_throughput.py            # 100,000 messages, 3 runs each
    .venv/bin/python bench/ingest_throughput.py --quick    # smoke run: 10,000 messages, 5 s

Throughput: N messages are pre-queued at a dedicated Mosquitto for an offline persistent
session, then each contestant (in a process of its own, on a fresh broker) drains them:
(a) a bare paho subscriber that only counts, (b) a naive bridge that commits every message,
and ours (Ingest + SqliteStore: validation, batched fsynced commits, ack after commit). The
median of the runs is reported, with ratios ours/(a) and ours/(b), in the same run, because
these machines are noisy. Latency: a publisher sends at a steady rate with its send time in
each reading; ours records when each reading is committed. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import _mosquitto
from _traffic import create_session, make_messages, publish_all, publish_paced

HERE = Path(__file__).resolve().parent
CLIENT_ID = "bench-consumer"
TARGET_VS_BARE = 0.70
TARGET_VS_NAIVE = 3.0
TARGET_P99_MS = 100.0
LABELS = {
    "bare": "(a) bare paho, count only",
    "naive": "(b) naive bridge, commit/msg",
    "ours": "ours: Ingest + SqliteStore",
}
ORDER = ("bare", "ours", "naive")  # interleaved, so a noisy minute hits every contestant


# ----------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _filesystem(path: Path) -> str:
    """The file system type holding ``path`` (tmpfs would make fsync free: worth knowing)."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        mount, fstype = fields[1], fields[2]
        if str(path).startswith(mount) and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def describe_machine(root: Path) -> list[str]:
    return [
        f"machine  : {os.cpu_count()} CPUs ({_cpu_model()}), {_ram_gib():.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"software : Python {platform.python_version()}, "
        f"paho-mqtt {metadata.version('paho-mqtt')}, SQLite {sqlite3.sqlite_version}, "
        f"{_mosquitto.version()}",
        f"data dir : {root} ({_filesystem(root)}); load average at start {os.getloadavg()[0]:.2f}",
    ]


# ----------------------------------------------------------------------------- runs


@contextlib.contextmanager
def contestant_process(
    spec: dict[str, Any], workdir: Path, prefix: list[str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start one contestant process; it is stopped on exit, whatever happens meanwhile."""
    spec = {**spec, "workdir": str(workdir), "result": str(workdir / "result.json")}
    command = [*(prefix or []), sys.executable, str(HERE / "_contestants.py"), json.dumps(spec)]
    with (workdir / "contestant.log").open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=_mosquitto.die_with_parent,  # safe: no other thread runs here
        )
    try:
        yield proc
    finally:
        _mosquitto.stop_process(proc)


def wait_result(proc: subprocess.Popen[bytes], workdir: Path, timeout_s: float) -> dict[str, Any]:
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"contestant still running after {timeout_s:.0f} s") from None
    result_file = workdir / "result.json"
    log = (workdir / "contestant.log").read_text(errors="replace")[-2000:]
    if not result_file.exists():
        raise RuntimeError(f"contestant exited with {proc.returncode} and no result:\n{log}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    if not result.get("ok"):
        shown = {k: v for k, v in result.items() if k != "latencies_ms"}
        raise RuntimeError(f"contestant failed: {shown}\n{log}")
    return result


def throughput_run(
    contestant: str,
    messages: list[tuple[str, bytes]],
    workdir: Path,
    args: argparse.Namespace,
    prefix: list[str] | None = None,
) -> dict[str, Any]:
    """Fresh broker, session created, N messages queued while offline, then one drain."""
    workdir.mkdir(parents=True)
    count = len(messages)
    timeout_s = 60 + count / (500 if contestant == "naive" else 1000)
    with _mosquitto.running_broker(workdir / "broker", persistence=False) as broker:
        create_session(broker.port, CLIENT_ID, args.protocol)
        prequeue_s = publish_all(broker.port, args.protocol, messages)
        broker_cpu0 = broker.cpu_s()
        spec = {
            "contestant": contestant,
            "port": broker.port,
            "protocol": args.protocol,
            "client_id": CLIENT_ID,
            "messages": count,
            "timeout_s": timeout_s,
            "ingest_env": _ingest_env(args),
        }
        with contestant_process(spec, workdir, prefix) as proc:
            result = wait_result(proc, workdir, timeout_s + 60)
        result["broker_cpu_s"] = broker.cpu_s() - broker_cpu0
    result["prequeue_s"] = prequeue_s
    result["rate"] = count / result["elapsed_s"]
    return result


def latency_run(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Ours against a steady publisher; latency = commit time - the reading's send time."""
    workdir.mkdir(parents=True)
    count = round(args.latency_rate * args.latency_s)
    timeout_s = args.latency_s + 60
    with _mosquitto.running_broker(workdir / "broker", persistence=True) as broker:
        spec = {
            "contestant": "ours-latency",
            "port": broker.port,
            "protocol": args.protocol,
            "client_id": CLIENT_ID + "-latency",
            "messages": count,
            "timeout_s": timeout_s,
            "ready": str(workdir / "ready"),
            "ingest_env": _ingest_env(args),
        }
        with contestant_process(spec, workdir) as proc:
            deadline = time.monotonic() + 60
            while not (workdir / "ready").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    break  # wait_result says why
                time.sleep(0.05)
            else:
                publish_paced(broker.port, args.protocol, args.latency_rate, args.latency_s)
            return wait_result(proc, workdir, timeout_s + 30)


def _ingest_env(args: argparse.Namespace) -> dict[str, str]:
    return {"OFFICESENSOR_INGEST_BATCH_SIZE": str(args.batch_size)} if args.batch_size else {}


# ----------------------------------------------------------------------------- report


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def report(results: dict[str, list[dict[str, Any]]], count: int) -> tuple[float, float]:
    print()
    print(f"Throughput, {count:,} pre-queued QoS 1 messages, median of {len(results['ours'])} runs")
    header = f"{'contestant':<30} {'msg/s':>8}   {'runs (msg/s)':<26} {'CPU s/1k':>9} {'broker':>7}"
    print(header)
    print("-" * len(header))
    medians = {}
    for name in ORDER:
        runs = results[name]
        medians[name] = statistics.median(r["rate"] for r in runs)
        cpu = statistics.median(r["cpu_s"] for r in runs) / count * 1000
        broker_cpu = statistics.median(r["broker_cpu_s"] for r in runs) / count * 1000
        each = " ".join(f"{r['rate']:>8,.0f}" for r in runs)
        print(
            f"{LABELS[name]:<30} {medians[name]:>8,.0f}   {each:<26} {cpu:>9.4f} {broker_cpu:>7.4f}"
        )
    vs_bare = medians["ours"] / medians["bare"]
    vs_naive = medians["ours"] / medians["naive"]
    print("(CPU s/1k: the contestant process's CPU seconds per 1,000 messages during the drain;")
    print(" broker: Mosquitto's CPU seconds per 1,000 messages over the same run.)")
    print()
    print(
        f"ours / (a) = {vs_bare:.3f}   target >= {TARGET_VS_BARE:.2f}   "
        f"{_verdict(vs_bare >= TARGET_VS_BARE)}"
    )
    print(
        f"ours / (b) = {vs_naive:.2f}    target >= {TARGET_VS_NAIVE:.1f}    "
        f"{_verdict(vs_naive >= TARGET_VS_NAIVE)}"
    )
    return vs_bare, vs_naive


def report_latency(result: dict[str, Any], args: argparse.Namespace) -> float:
    latencies = sorted(result["latencies_ms"])
    p = {pct: percentile(latencies, pct) for pct in (50, 95, 99)}
    print()
    print(
        f"Latency, publish -> committed (ours, durable commits), {args.latency_rate:g} msg/s "
        f"for {args.latency_s:g} s = {len(latencies):,} readings"
    )
    print(
        f"p50 {p[50]:.1f} ms   p95 {p[95]:.1f} ms   p99 {p[99]:.1f} ms   "
        f"max {latencies[-1]:.1f} ms   target p99 < {TARGET_P99_MS:.0f} ms   "
        f"{_verdict(p[99] < TARGET_P99_MS)}"
    )
    busy = result["cpu_s"] / result["elapsed_s"] * 100
    print(f"(the ingest process used {busy:.1f} % of one CPU over the latency run)")
    return p[99]


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages per drain")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contestant (median)")
    parser.add_argument("--latency-s", type=float, default=20.0, help="latency run length")
    parser.add_argument("--latency-rate", type=float, default=100.0, help="latency msg/s")
    parser.add_argument("--quick", action="store_true", help="10,000 messages, 5 s latency")
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version")
    parser.add_argument("--batch-size", type=int, help="ingest.batch_size for ours")
    parser.add_argument("--tmpdir", type=Path, help="where brokers and databases live")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, DBs)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="after the measured runs, drain once more under py-spy and write ours' "
        "collapsed stacks to FILE (not counted in the figures)",
    )
    parser.add_argument("--py-spy", default="py-spy", help="py-spy executable for --profile")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.latency_s = 10_000, 5.0
    if args.messages < 1 or args.repeat < 1 or args.latency_s <= 0 or args.latency_rate <= 0:
        parser.error("--messages, --repeat, --latency-s and --latency-rate must be positive")
    return args


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, root: Path) -> int:
    for line in describe_machine(root):
        print(line)
    messages = make_messages(args.messages)
    size = sum(len(p) for _, p in messages) / len(messages)
    print(
        f"workload : {args.messages:,} QoS 1 messages ({size:.0f}-byte JSON payloads on "
        f"office/metrics/<Metric>), pre-queued for an offline persistent session (MQTT "
        f"{args.protocol}); {args.repeat} runs per contestant, each on a fresh broker"
    )
    print(
        "broker   : dedicated Mosquitto on 127.0.0.1, max_inflight_messages 1000, "
        "max_queued_messages 0, persistence off (throughput) / on (latency)"
    )
    print()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in ORDER}
    for repeat in range(1, args.repeat + 1):
        for name in ORDER:
            r = throughput_run(name, messages, root / f"{name}-{repeat}", args)
            results[name].append(r)
            rows = f", {r['rows']:,} rows" if "rows" in r else ""
            print(
                f"run {repeat}/{args.repeat}  {LABELS[name]:<30} {r['rate']:>8,.0f} msg/s  "
                f"({r['elapsed_s']:.2f} s, CPU {r['cpu_s']:.2f} s, broker CPU "
                f"{r['broker_cpu_s']:.2f} s{rows}; pre-queued in {r['prequeue_s']:.1f} s)",
                flush=True,
            )
    vs_bare, vs_naive = report(results, args.messages)
    latency = latency_run(root / "latency", args)
    p99 = report_latency(latency, args)
    if args.profile:
        prefix = [args.py_spy, "record", "--format", "raw", "--threads", "--rate", "250",
                  "--output", str(args.profile.resolve()), "--"]  # fmt: skip
        r = throughput_run("ours", messages, root / "profile", args, prefix=prefix)
        print(f"\nprofiled run (not counted): {r['rate']:,.0f} msg/s; stacks in {args.profile}")
    met = vs_bare >= TARGET_VS_BARE and vs_naive >= TARGET_VS_NAIVE and p99 < TARGET_P99_MS
    print(f"\nall targets met: {'yes' if met else 'no'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop brokers and contestants on SIGTERM too
    root = Path(tempfile.mkdtemp(prefix="officesensor-bench-", dir=args.tmpdir))
    root.chmod(0o711)  # the broker, once it drops root, must reach its directory inside
    try:
        return run(args, root)
    except KeyboardInterrupt:
        print("\ninterrupted: brokers and contestants stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
