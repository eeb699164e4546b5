"""Viewer authentication through the real ``officesensor`` command: refusing a network
address without it, a token, the proxy option, the users file that ``auth add-user`` writes,
sign-in over HTTP, and the live stream (served outside Flask) behind the same credentials.
Servers bind 0.0.0.0 and are reached over 127.0.0.1; secrets are made at run time."""

from __future__ import annotations

import http.client
import json
import os
import pty
import re
import secrets
import select
import signal
import stat
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tests.integration.conftest import (
    Broker,
    Publisher,
    Server,
    cli_process,
    free_port,
    port_open,
    run_cli,
    start_mosquitto,
    stop_process,
    wait_for,
)
from tests.integration.test_live_stream import EventStream, reading

pytestmark = pytest.mark.integration

PASSWORD = "a long office password"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    started = start_mosquitto(tmp_path / "mosquitto")
    yield started
    stop_process(started.proc)


def start_exposed(broker: Broker, workdir: Path, **env: str) -> Server:
    """``officesensor serve`` on 0.0.0.0 (all addresses), waited for until ready."""
    port = free_port()
    proc = cli_process(
        ["serve"],
        workdir,
        {
            "OFFICESENSOR_MQTT_URL": broker.url,
            "OFFICESENSOR_MQTT_PROTOCOL": broker.protocol,
            "OFFICESENSOR_MQTT_CLIENT_ID": "officesensor-auth-test",
            "OFFICESENSOR_STORE": f"sqlite:///{workdir / 'office.db'}",
            "OFFICESENSOR_HTTP": f"0.0.0.0:{port}",
            **env,
        },
    )
    server = Server(proc, f"http://127.0.0.1:{port}", workdir)

    def ready() -> bool:
        assert proc.poll() is None, f"serve exited early:\n{server.log()}"
        return server.get("/readyz")[0] == 200

    wait_for(ready, 30, "serve to report ready")
    return server


def stop(server: Server) -> None:
    code = stop_process(server.proc)
    assert code == 0, f"serve exited with {code}:\n{server.log()}"


class Browser:
    """A minimal HTTP client that keeps its cookies (the session's and the CSRF token's) and
    does not follow redirects."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.cookies: dict[str, str] = {}

    @property
    def cookie(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def request(
        self, method: str, path: str, body: dict[str, str] | None = None, **headers: str
    ) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        if self.cookie:
            sent["Cookie"] = self.cookie
        data = None
        if body is not None:
            data = urlencode(body)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
            got = {k.lower(): v for k, v in response.getheaders()}
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    self._keep(value)
        finally:
            connection.close()
        return response.status, got, text

    def _keep(self, set_cookie: str) -> None:
        name, _, value = set_cookie.split(";", 1)[0].partition("=")
        if value:
            self.cookies[name] = value
        else:  # an expired, empty cookie: the server removed it
            self.cookies.pop(name, None)

    def sign_in(self, username: str, password: str, **headers: str) -> int:
        status, _, page = self.request("GET", "/login?next=/humidity", **headers)
        assert status == 200, page[:300]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        form = {"username": username, "password": password, "csrf_token": token.group(1)}
        status, got, _ = self.request("POST", "/login?next=/humidity", form, **headers)
        if status == 302:
            assert got["location"] == "/humidity"
        return status


# ----------------------------------------------------------------------------- refusing


@pytest.mark.parametrize(
    ("command", "how", "named"),
    [
        ("serve", "env", "OFFICESENSOR_HTTP"),
        ("serve", "flag", "--http"),
        ("serve", "toml", "http in {config}"),
        ("demo", "flag", "--http"),
    ],
)
def test_a_network_address_without_auth_is_refused_in_one_line(
    command: str, how: str, named: str, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "office.toml"
    config.write_text(f'http = "[::]:{port}"\n' if how == "toml" else "")
    env = {"OFFICESENSOR_STORE": f"sqlite:///{tmp_path / 'x.db'}"}
    args = [command, "--config", str(config)]
    if how == "env":
        env["OFFICESENSOR_HTTP"] = f"0.0.0.0:{port}"
    elif how == "flag":
        args += ["--http", f"0.0.0.0:{port}"]
    result = run_cli(*args, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"officesensor: error: {named.format(config=config)}: ")
    assert "auth.token" in lines[0]
    assert "auth.behind_proxy" in lines[0]
    assert not port_open(port)
    assert not (tmp_path / "data").exists()  # the demo started nothing


def test_behind_a_proxy_it_starts_without_its_own_auth(broker: Broker, tmp_path: Path) -> None:
    server = start_exposed(broker, tmp_path / "serve", OFFICESENSOR_AUTH_BEHIND_PROXY="true")
    try:
        assert server.get("/api/series")[0] == 200
        stream = EventStream(server.base, "?metric=Temperature")
        stream.close()
        assert stream.status_line.startswith("HTTP/1.1 200")
    finally:
        stop(server)


# ----------------------------------------------------------------------------- a token


def test_with_a_token_every_route_asks_for_it(broker: Broker, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    server = start_exposed(broker, tmp_path / "serve", OFFICESENSOR_AUTH_TOKEN=token)
    client = Browser(server.base)
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        status, headers, body = client.request("GET", "/api/series")
        assert status == 401
        assert headers["www-authenticate"].startswith("Bearer")
        assert json.loads(body) == {"error": "Sign in to see this."}
        status, headers, _ = client.request("GET", "/temperature?range=1h")
        assert (status, headers["location"]) == (302, "/login?next=/temperature?range%3D1h")
        assert client.request("GET", "/api/series", **bearer)[0] == 200
        assert client.request("GET", "/metrics", **bearer)[0] == 200
        assert client.request("GET", "/healthz")[0] == 200
        assert client.request("GET", "/api/series", Authorization="Bearer nope-nope-nope")[0] == 401
        assert client.sign_in("", token) == 302
        assert client.request("GET", "/api/series")[0] == 200
    finally:
        stop(server)
    assert token not in server.log()


def test_the_live_stream_needs_the_same_credentials(broker: Broker, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    server = start_exposed(broker, tmp_path / "serve", OFFICESENSOR_AUTH_TOKEN=token)
    publisher = Publisher(broker)
    streams: list[EventStream] = []
    try:
        anonymous = EventStream(server.base, "?metric=Temperature")
        streams.append(anonymous)
        assert anonymous.status_line.startswith("HTTP/1.1 401")
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        forged = EventStream(
            server.base,
            "?metric=Temperature",
            {"Cookie": "officesensor_session=eyJ1c2VyIjoidG9rZW4ifQ.x.y"},
        )
        streams.append(forged)
        assert forged.status_line.startswith("HTTP/1.1 401")

        by_token = EventStream(
            server.base, "?metric=Temperature", {"Authorization": f"Bearer {token}"}
        )
        browser = Browser(server.base)
        assert browser.sign_in("", token) == 302
        by_cookie = EventStream(server.base, "?metric=Temperature", {"Cookie": browser.cookie})
        streams += [by_token, by_cookie]
        for stream in (by_token, by_cookie):
            assert stream.status_line.startswith("HTTP/1.1 200"), stream.status_line
        time.sleep(0.3)  # subscribed before the publish
        now = datetime.now(UTC).replace(microsecond=0)
        publisher.publish(*reading(70.5, now))
        for stream in (by_token, by_cookie):
            (event,) = stream.events(1)
            assert event["value"] == 70.5
    finally:
        for stream in streams:
            stream.close()
        publisher.close()
        stop(server)


# ----------------------------------------------------------------------------- users


def add_user(tmp_path: Path, users_file: Path, name: str, password: str) -> str:
    result = run_cli(
        "auth", "add-user", name, "--file", str(users_file), "--password-stdin",
        cwd=tmp_path, input_text=password + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_add_user_then_sign_in_and_a_new_password_signs_everyone_out(
    broker: Broker, tmp_path: Path
) -> None:
    users_file = tmp_path / "viewers"
    assert "added alice" in add_user(tmp_path, users_file, "alice", PASSWORD)
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    content = users_file.read_text()
    assert content.startswith("alice:scrypt$32768$8$1$")
    assert PASSWORD not in content
    server = start_exposed(broker, tmp_path / "serve", OFFICESENSOR_AUTH_USERS_FILE=str(users_file))
    try:
        browser = Browser(server.base)
        assert browser.sign_in("alice", "not the password") == 401
        assert browser.sign_in("alice", PASSWORD) == 302
        status, _, page = browser.request("GET", "/humidity")
        assert status == 200
        assert "Sign out" in page
        assert "changed the password" in add_user(tmp_path, users_file, "alice", PASSWORD + "!")
        assert browser.request("GET", "/api/series")[0] == 401
        assert browser.sign_in("alice", PASSWORD + "!") == 302
    finally:
        stop(server)
    log = server.log()
    assert "signed in as 'alice'" in log
    assert PASSWORD not in log


@pytest.mark.parametrize(
    ("args", "stdin", "named"),
    [
        (["add-user", "alice"], "long enough\n", "--file"),
        (["add-user", "al:ice", "--file", "u"], "long enough\n", "NAME"),
        (["add-user", "alice", "--file", "u"], "short\n", "--password-stdin"),
        (["add-user"], "", "NAME"),
    ],
)
def test_add_user_mistakes_are_one_line_naming_what_to_fix(
    args: list[str], stdin: str, named: str, tmp_path: Path
) -> None:
    result = run_cli("auth", *args, "--password-stdin", cwd=tmp_path, input_text=stdin)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"officesensor: error: {named}: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "u").exists()


def test_new_token_prints_a_usable_token(tmp_path: Path) -> None:
    result = run_cli("auth", "new-token", cwd=tmp_path)
    assert result.returncode == 0
    token = result.stdout.strip()
    assert len(token) >= 40
    assert run_cli("auth", "new-token", cwd=tmp_path).stdout.strip() != token


def run_in_terminal(args: list[str], cwd: Path, answers: list[str]) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal (getpass reads /dev/tty), typing each answer after
    its prompt; returns the exit code and what the terminal showed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFICESENSOR_")}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "officesensor.cli", *args], env)
    shown = b""
    try:
        for answer in answers:
            pending = b""  # what the terminal showed since the last answer
            while not pending.rstrip().endswith(b":"):
                ready, _, _ = select.select([fd], [], [], 30)
                assert ready, f"no prompt; the terminal showed {shown + pending!r}"
                pending += os.read(fd, 1024)
            shown += pending
            os.write(fd, answer.encode() + b"\n")
        while True:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"the command did not finish; the terminal showed {shown!r}"
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        status = _reap(pid)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def _reap(pid: int, timeout_s: float = 15) -> int:
    """The child's wait status; killed if it is still running (waiting for input) by then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def test_add_user_asks_twice_on_the_terminal_without_echo(tmp_path: Path) -> None:
    users_file = tmp_path / "viewers"
    args = ["auth", "add-user", "carol", "--file", str(users_file)]
    code, shown = run_in_terminal(args, tmp_path, [PASSWORD, PASSWORD + "?"])
    assert code == 2
    assert "the two passwords differ" in shown
    assert not users_file.exists()
    code, shown = run_in_terminal(args, tmp_path, [PASSWORD, PASSWORD])
    assert code == 0, shown
    assert "Password for carol:" in shown
    assert "The same again:" in shown
    assert PASSWORD not in shown  # not echoed
    assert users_file.read_text().startswith("carol:scrypt$")
