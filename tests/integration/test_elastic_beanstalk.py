"""What Elastic Beanstalk runs: ``application.py`` (the WSGI ``application``, served here by
a real WSGI server), the Procfile's command, and the requirements file it installs."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from officesensor.cli import SETTING_FLAGS, build_parser, run_serve
from officesensor.config import load_settings
from officesensor.errors import ConfigError
from officesensor.web.context import EXTENSION_KEY

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
def wsgi_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[str, ModuleType]]:
    module = import_application(
        monkeypatch, {"OFFICESENSOR_STORE": f"sqlite:///{tmp_path / 'office.db'}"}
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


def test_application_py_serves_the_dashboard_through_a_wsgi_server(
    wsgi_server: tuple[str, ModuleType],
) -> None:
    base, module = wsgi_server
    with urllib.request.urlopen(base + "/healthz", timeout=10) as reply:
        assert reply.status == 200
        assert json.loads(reply.read())["status"] == "ok"
    with urllib.request.urlopen(base + "/api/series", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/json")
    with urllib.request.urlopen(base + "/temperature", timeout=10) as reply:
        assert reply.status == 200
        assert "Temperature" in reply.read().decode()
    assert module.application.debug is False


def test_application_py_names_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="OFFICESENSOR_STORE"):
        import_application(monkeypatch, {"OFFICESENSOR_STORE": "postgres://nowhere"})


def procfile_command() -> list[str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = shlex.split(command)
    assert set(processes) == {"web"}, "Elastic Beanstalk routes HTTP to the web process"
    return processes["web"]


def test_the_procfile_runs_serve_behind_eb_nginx_on_port_8000() -> None:
    program, *args = procfile_command()
    venv_bin = str(Path(sys.executable).parent)
    assert shutil.which(program, path=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    parsed = build_parser().parse_args(args)
    assert parsed.run is run_serve
    overrides = {field: getattr(parsed, field, None) for field in SETTING_FLAGS}
    settings = load_settings(environ={}, overrides=overrides)
    # EB's nginx proxies to 127.0.0.1:8000; loopback keeps the app itself off the network.
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8000)


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
