"""What Elastic Beanstalk runs: ``application.py`` (the WSGI ``application``, served here by
a real WSGI server), the Procfile's command, the requirements file it installs, and the
forwarding headers that its nginx and load balancer add, as ``.ebextensions`` tells uvicorn
to read them."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import yaml

from officesensor import users
from officesensor.cli import SETTING_FLAGS, build_parser, run_serve
from officesensor.config import Settings, load_settings
from officesensor.errors import ConfigError
from officesensor.exposure import check_exposure
from officesensor.web import csrf
from officesensor.web.context import EXTENSION_KEY
from officesensor.web.throttle import PASSWORD_MAX_FAILURES
from tests.integration.conftest import Broker, start_mosquitto, stop_process
from tests.integration.test_auth_serve import Browser, start_exposed, stop

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def import_application(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> ModuleType:
    for name in [n for n in os.environ if n.startswith("OFFICESENSOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("eb_application", ROOT / "application.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def wsgi_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token: str
) -> Iterator[tuple[str, ModuleType]]:
    module = import_application(
        monkeypatch,
        {
            "OFFICESENSOR_STORE": f"sqlite:///{tmp_path / 'office.db'}",
            "OFFICESENSOR_AUTH_TOKEN": token,
        },
    )
    server: WSGIServer = make_server("127.0.0.1", 0, module.application, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", module
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        module.application.extensions[EXTENSION_KEY].store.close()


def fetch(url: str, **headers: str) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_application_py_serves_the_dashboard_through_a_wsgi_server(
    wsgi_server: tuple[str, ModuleType], token: str
) -> None:
    base, module = wsgi_server
    status, _, body = fetch(base + "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    status, headers, _ = fetch(base + "/api/series", Authorization=f"Bearer {token}")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    status, _, body = fetch(base + "/temperature", Authorization=f"Bearer {token}")
    assert status == 200
    assert "Temperature" in body.decode()
    assert fetch(base + "/api/series")[0] == 401  # viewers must authenticate
    assert module.application.debug is False


def test_application_py_refuses_to_serve_without_viewer_auth(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The WSGI server binds, not the app, so even the default loopback http setting counts
    as exposed: on Elastic Beanstalk nginx serves it to the internet."""
    store = {"OFFICESENSOR_STORE": f"sqlite:///{tmp_path / 'office.db'}"}
    with pytest.raises(ConfigError) as caught:
        import_application(monkeypatch, store)
    assert caught.value.setting == "application.py"
    for named in ("auth.token", "auth.users_file", "auth.behind_proxy"):
        assert named in str(caught.value)
    assert not (tmp_path / "office.db").exists()  # refused before opening anything
    proxied = import_application(monkeypatch, {**store, "OFFICESENSOR_AUTH_BEHIND_PROXY": "true"})
    proxied.application.extensions[EXTENSION_KEY].store.close()


def test_application_py_names_a_bad_setting(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    with pytest.raises(ConfigError, match="OFFICESENSOR_STORE"):
        import_application(
            monkeypatch,
            {"OFFICESENSOR_STORE": "postgres://nowhere", "OFFICESENSOR_AUTH_TOKEN": token},
        )


def procfile_command() -> list[str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = shlex.split(command)
    assert set(processes) == {"web"}, "Elastic Beanstalk routes HTTP to the web process"
    return processes["web"]


def procfile_settings(environ: dict[str, str]) -> Settings:
    _, *args = procfile_command()
    parsed = build_parser().parse_args(args)
    assert parsed.run is run_serve
    overrides = {field: getattr(parsed, field, None) for field in SETTING_FLAGS}
    return load_settings(environ=environ, overrides=overrides)


def test_the_procfile_runs_serve_on_port_8000_as_exposed() -> None:
    program, *_ = procfile_command()
    venv_bin = str(Path(sys.executable).parent)
    assert shutil.which(program, path=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    settings = procfile_settings({})
    # EB's nginx proxies to 127.0.0.1:8000, which 0.0.0.0 includes. The app does face the
    # internet through nginx, and a non-loopback address makes it say so: it needs viewer
    # authentication (or auth.behind_proxy) before it starts.
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 8000)
    with pytest.raises(ConfigError):
        check_exposure(settings)
    check_exposure(procfile_settings({"OFFICESENSOR_AUTH_TOKEN": secrets.token_urlsafe(32)}))
    check_exposure(procfile_settings({"OFFICESENSOR_AUTH_BEHIND_PROXY": "true"}))


def test_a_default_eb_deployment_refuses_to_start(tmp_path: Path) -> None:
    """The Procfile's command as EB runs it, with only the settings docs/deploy-aws.md has
    you set before viewer authentication: one line naming --http and what to set."""
    program, *args = procfile_command()
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFICESENSOR_")}
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["OFFICESENSOR_STORE"] = f"sqlite:///{tmp_path / 'office.db'}"
    env["OFFICESENSOR_LOG_FORMAT"] = "json"
    result = subprocess.run(
        [program, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("officesensor: error: --http: 0.0.0.0 is not a loopback address")
    assert "auth.users_file" in lines[0]
    assert not (tmp_path / "office.db").exists()


def test_requirements_txt_installs_this_package_pinned_by_the_constraints() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines == ["-c constraints.txt", "."]
    constraints = (ROOT / "constraints.txt").read_text()
    for dependency in ("paho-mqtt==", "Flask==", "uvicorn==", "boto3=="):
        assert dependency in constraints, dependency


# ----------------------------------------------------------------------------- behind EB's proxies


def eb_environment() -> dict[str, str]:
    """The environment properties that .ebextensions/officesensor.config sets."""
    config = yaml.safe_load((ROOT / ".ebextensions" / "officesensor.config").read_text())
    found = config["option_settings"]["aws:elasticbeanstalk:application:environment"]
    return {str(k): str(v) for k, v in found.items()}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    started = start_mosquitto(tmp_path / "mosquitto")
    yield started
    stop_process(started.proc)


CLIENT = "198.51.100.7"  # a viewer on the internet
OTHER_CLIENT = "203.0.113.50"  # another one
LOAD_BALANCER = "172.31.20.5"  # an ALB node in the default VPC


def via_load_balancer(client: str) -> dict[str, str]:
    """The headers uvicorn receives from EB's nginx (over loopback) for ``client``: the load
    balancer appended the client's address to X-Forwarded-For and set X-Forwarded-Proto, and
    nginx appended the load balancer's address. The client's own X-Forwarded-For (here a
    forged one) comes first."""
    return {
        "X_Forwarded_For": f"10.9.9.9, {client}, {LOAD_BALANCER}",
        "X_Forwarded_Proto": "https",
    }


def test_behind_the_load_balancer_each_client_is_throttled_on_its_own(
    broker: Broker, tmp_path: Path
) -> None:
    """With the FORWARDED_ALLOW_IPS that .ebextensions sets, the app sees the client's address
    (not the load balancer's, which every viewer shares) and that they came over https."""
    env = eb_environment()
    assert "FORWARDED_ALLOW_IPS" in env
    password = "an office password"
    users_file = tmp_path / "viewers"
    users.write_user(users_file, "alice", password)
    server = start_exposed(
        broker, tmp_path / "serve", OFFICESENSOR_AUTH_USERS_FILE=str(users_file), **env
    )
    try:
        guesser = Browser(server.base)
        for _ in range(PASSWORD_MAX_FAILURES):
            assert guesser.sign_in("alice", "a wrong guess", **via_load_balancer(CLIENT)) == 401
        assert guesser.sign_in("alice", password, **via_load_balancer(CLIENT)) == 429
        alice = Browser(server.base)
        assert alice.sign_in("alice", password, **via_load_balancer(OTHER_CLIENT)) == 302
        # X-Forwarded-Proto from the load balancer: the cookies are Secure, the CSRF one
        # __Host-, and signing in worked with them.
        assert set(alice.cookies) == {"officesensor_session", csrf.SECURE_COOKIE_NAME}
        status, _, _ = alice.request("GET", "/api/series", **via_load_balancer(OTHER_CLIENT))
        assert status == 200
    finally:
        stop(server)
    log = server.log()
    assert f"failed sign-in as 'alice' from {CLIENT}" in log
    assert f"signed in as 'alice' from {OTHER_CLIENT}" in log
    assert LOAD_BALANCER not in log
    assert "10.9.9.9" not in log  # what a client forges in X-Forwarded-For is not believed
