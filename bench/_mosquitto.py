"""A dedicated Mosquitto for the benchmarks: its own config, temp dir and free port on
127.0.0.1 (never the system broker on 1883), always stopped by the context manager.

Settings that differ from Mosquitto's defaults, and why:

- ``max_queued_messages 0`` (no limit; default 1000) and ``max_queued_bytes 0``: the
  throughput runs pre-queue 100,000 messages for an offline subscriber; on defaults the broker
  would keep 1,000 and drop the rest ("Outgoing messages are being dropped").
- ``max_inflight_messages 1000`` (default 20): how many QoS 1 messages the broker sends
  before it waits for PUBACKs. Ingest acknowledges only after a commit, so with 20 in flight
  no batch could ever hold more than 20 messages and every 20 messages would cost one fsync
  plus one round trip. 1000 lets batches grow to ``ingest.batch_size`` (500).
- ``persistence``: off for the throughput runs (Mosquitto writes its store only at autosave
  and shutdown, not per message, so it is not on the measured path; off keeps 100,000 queued
  messages from being written out on every broker stop). On for the latency run, as a real
  deployment would have it.
- ``set_tcp_nodelay`` is left at its default (false), as in a stock install.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HOST = "127.0.0.1"  # every byte of benchmark traffic stays on the loopback interface


@dataclass(frozen=True)
class Broker:
    port: int
    pid: int
    workdir: Path

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the broker process has used so far."""
        return process_cpu_s(self.pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def version() -> str:
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, check=False).stdout
    first = out.splitlines()[0] if out else "mosquitto (unknown version)"
    return first.replace("mosquitto version", "Mosquitto").strip()


def _config(port: int, workdir: Path, *, persistence: bool) -> str:
    lines = [
        f"listener {port} {HOST}",
        "allow_anonymous true",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {workdir}/",
        "max_queued_messages 0",
        "max_queued_bytes 0",
        "max_inflight_messages 1000",
        f"log_dest file {workdir}/mosquitto.log",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    return "\n".join(lines) + "\n"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def _hand_over(workdir: Path) -> None:
    """Started as root, Mosquitto drops to the ``mosquitto`` user: let that user write its log
    and persistence file in ``workdir`` (the caller makes the directories above traversable)."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    os.chown(workdir, user.pw_uid, user.pw_gid)


def die_with_parent() -> None:
    """Runs in the child before exec: if the benchmark dies, even by SIGKILL, so does the
    broker (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def running_broker(workdir: Path, *, persistence: bool = False) -> Iterator[Broker]:
    """Start Mosquitto with the benchmark configuration; stop it on exit, whatever happens."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(_config(port, workdir, persistence=persistence))
    _hand_over(workdir)
    with (workdir / "mosquitto.out").open("ab") as out:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # safe: no other thread runs here
        )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None:
                log = (workdir / "mosquitto.log").read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited with {proc.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not listen within 10 s")
            time.sleep(0.05)
        yield Broker(port, proc.pid, workdir)
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
