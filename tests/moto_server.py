"""moto's DynamoDB in server mode, over real HTTP, for the tests and the benchmark.

``start_moto`` runs ``python -m moto.server`` on a free 127.0.0.1 port as a subprocess,
waits until it answers, and returns a handle whose ``stop`` ends it. ``fake_aws_env`` makes
credentials for it at run time (random, never written anywhere), so boto3's default chain
finds them in the environment and nothing can reach AWS by accident.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_aws_env() -> dict[str, str]:
    """Environment for boto3's default chain: fresh random credentials, a region, and no
    shared config or credentials file (so a developer's real profile is never used)."""
    return {
        "AWS_ACCESS_KEY_ID": "test" + secrets.token_hex(8),
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass
class MotoServer:
    port: int
    proc: subprocess.Popen[Any]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def store_url(self, table: str, **params: str) -> str:
        query = "&".join(
            f"{key}={value}"
            for key, value in {"region": REGION, "endpoint_url": self.endpoint, **params}.items()
        )
        return f"dynamodb://{table}?{query}"

    def stop(self, timeout_s: float = 5) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # werkzeug's server ignores SIGTERM
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1) as reply:
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start_moto(timeout_s: float = 30) -> MotoServer:
    """Start moto's server on a free port and wait until it answers HTTP."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **fake_aws_env()},
    )
    server = MotoServer(port, proc)
    deadline = time.monotonic() + timeout_s
    while not _answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"moto server did not answer on port {port}")
        time.sleep(0.1)
    return server


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    server = start_moto()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def aws_environment(environ: MutableMapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Put fake credentials into ``environ`` (os.environ by default) while the block runs."""
    target = os.environ if environ is None else environ
    env = fake_aws_env()
    saved = {key: target.get(key) for key in env}
    target.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
