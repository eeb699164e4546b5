"""Static safety checks: no debug mode in ``serve``, no disabled certificate check, no secret
committed. Each scanner is plain regular expressions over files, and each has a self-test
that it finds a planted example (built at run time, so this file holds none)."""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from officesensor.config import load_settings
from officesensor.store.sqlite import SqliteStore
from officesensor.web import create_app

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    rule: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.text.strip()[:120]}"


def scan(files: Iterable[Path], rules: dict[str, re.Pattern[str]], root: Path) -> list[Finding]:
    found = []
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError:  # a file listed by git but deleted in the work tree
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for rule, pattern in rules.items():
                if pattern.search(line):
                    found.append(Finding(str(path.relative_to(root)), number, rule, line))
    return found


def python_sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


# ----------------------------------------------------------------------------- debug mode

#: Ways a Flask or uvicorn app ends up in debug or reload mode (the Werkzeug debugger runs
#: arbitrary code for whoever reaches it; uvicorn's reloader is for development).
DEBUG_RULES = {
    "debug=True": re.compile(r"\bdebug\s*=\s*True\b"),
    "app.debug": re.compile(r"\.debug\s*=(?!=)\s*(?!False\b)\S"),
    "FLASK_DEBUG": re.compile(r"FLASK_DEBUG"),
    "use_debugger": re.compile(r"use_debugger|use_reloader"),
    "reload=True": re.compile(r"\breload\s*=\s*True\b"),
    "DEBUG config": re.compile(r"""config\[\s*["']DEBUG["']\s*\]\s*=(?!=)\s*(?!False\b)\S"""),
}


def test_no_debug_switch_in_the_sources():
    assert [str(f) for f in scan(python_sources(SRC), DEBUG_RULES, ROOT)] == []


@pytest.mark.parametrize(
    "line",
    [
        "app.run(debug=True)",
        "app.debug = True",
        "os.environ['FLASK_DEBUG'] = '1'",
        "run_simple('0.0.0.0', 80, app, use_debugger=True)",
        "uvicorn.run(app, reload=True)",
        "app.config['DEBUG'] = True",
    ],
)
def test_debug_scanner_finds_a_planted_switch(tmp_path, line):
    planted = tmp_path / "planted.py"
    planted.write_text(f"import os\n{line}\n")
    findings = scan([planted], DEBUG_RULES, tmp_path)
    assert {(f.path, f.line) for f in findings} == {("planted.py", 2)}


@pytest.mark.parametrize("line", ["app.debug = False", 'app.config["DEBUG"] = False'])
def test_debug_scanner_accepts_switching_debug_off(tmp_path, line):
    planted = tmp_path / "planted.py"
    planted.write_text(line + "\n")
    assert scan([planted], DEBUG_RULES, tmp_path) == []


@pytest.fixture
def app(tmp_path):
    store = SqliteStore(tmp_path / "readings.db")
    yield create_app(load_settings(environ={}), store)
    store.close()


def test_the_app_is_not_in_debug_mode(app):
    assert app.debug is False
    assert app.testing is False
    assert app.config["PROPAGATE_EXCEPTIONS"] is None  # so errors reach the 500 handler
    assert app.jinja_env.auto_reload is False


@pytest.mark.parametrize("value", ["1", "true"])
def test_flask_debug_in_the_environment_does_not_switch_debug_on(tmp_path, monkeypatch, value):
    # `serve` builds the app with create_app in a process whose environment the operator
    # controls; Flask reads FLASK_DEBUG there (Flask.make_config), not only in `flask run`.
    monkeypatch.setenv("FLASK_DEBUG", value)
    store = SqliteStore(tmp_path / "readings.db")
    try:
        app = create_app(load_settings(environ={}), store)
    finally:
        store.close()
    assert app.debug is False, (
        "FLASK_DEBUG in the environment turns debug mode on in create_app (and so in `serve`):"
        " errors would bypass the 500 handler. create_app must switch debug off itself."
    )


@pytest.mark.parametrize("path", ["/boom", "/api/boom"])
def test_an_error_in_a_view_is_a_plain_500_without_a_traceback(app, path, caplog):
    detail = "view-internal-detail-1234"

    def boom() -> str:
        raise RuntimeError(detail)

    app.add_url_rule(path, "boom", boom)
    response = app.test_client().get(path)
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    for leak in ("Traceback", detail, "RuntimeError", "werkzeug", 'File "', ".py"):
        assert leak not in body, f"the 500 response shows {leak!r}:\n{body}"
    if path.startswith("/api/"):
        assert response.json == {"error": "Something went wrong on our side."}
    else:
        assert response.content_type.startswith("text/html")
        assert "Internal error" in body
    assert response.headers["Content-Security-Policy"]
    assert detail in caplog.text  # the details go to the log, for the operator


# ----------------------------------------------------------------------------- certificates

#: Ways to switch off TLS certificate or host name checks (requests, ssl, paho, httpx...).
INSECURE_TLS_RULES = {
    "verify=False": re.compile(r"\bverify\s*=\s*False\b"),
    "CERT_NONE": re.compile(r"\bCERT_NONE\b"),
    "check_hostname=False": re.compile(r"\bcheck_hostname\s*=\s*False\b"),
    "tls_insecure_set(True)": re.compile(r"tls_insecure_set\(\s*True\s*\)"),
    "unverified context": re.compile(r"_create_unverified_context"),
    "PYTHONHTTPSVERIFY": re.compile(r"PYTHONHTTPSVERIFY"),
    "cert_reqs none": re.compile(r"cert_reqs\s*=\s*(ssl\.)?CERT_(NONE|OPTIONAL)"),
}


def test_no_certificate_check_is_disabled():
    # No allowlist: nothing in src/ has a reason to turn the checks off.
    assert [str(f) for f in scan(python_sources(SRC), INSECURE_TLS_RULES, ROOT)] == []


@pytest.mark.parametrize(
    "line",
    [
        "requests.get(url, verify=False)",
        "context.verify_mode = ssl.CERT_NONE",
        "context.check_hostname = False",
        "client.tls_insecure_set(True)",
        "context = ssl._create_unverified_context()",
        "os.environ['PYTHONHTTPSVERIFY'] = '0'",
    ],
)
def test_tls_scanner_finds_a_planted_bypass(tmp_path, line):
    planted = tmp_path / "planted.py"
    planted.write_text(f"import ssl\n{line}\n")
    assert [f.line for f in scan([planted], INSECURE_TLS_RULES, tmp_path)] == [2]


# ----------------------------------------------------------------------------- secrets

SECRET_RULES = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key block": re.compile(r"-----BEGIN ([A-Z]+ )*PRIVATE KEY( BLOCK)?-----"),
    "AWS secret key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*[\"']?[^\s\"']{20,}"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}"),
}
#: A long, random-looking literal assigned to a name that says secret, password, token...
ASSIGNED_SECRET = re.compile(
    r"(?i)\b[\w.-]*(password|passwd|secret|token|api_?key|access_?key)[\w-]*[\"']?\s*[:=]\s*"
    r"[\"']([^\"'\s]{16,})[\"']"
)
MIN_ENTROPY = 3.5  # bits per character: words and identifiers score lower


def entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(value: str) -> bool:
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
        )
    )
    return classes >= 2 and entropy(value) >= MIN_ENTROPY and "_" not in value.strip("_")


def find_secrets(files: Iterable[Path], root: Path) -> list[Finding]:
    found = scan(files, SECRET_RULES, root)
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for match in ASSIGNED_SECRET.finditer(line):
                if looks_random(match.group(2)):
                    found.append(
                        Finding(str(path.relative_to(root)), number, "assigned secret", line)
                    )
    return found


def repository_files() -> Iterator[Path]:
    """Every file git tracks, and every untracked one it would add (not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in sorted(set(listed.split("\0")) - {""}):
        path = ROOT / name
        if path.is_file() and path.stat().st_size < 5_000_000:
            yield path


def test_no_secret_in_the_repository():
    files = list(repository_files())
    assert len(files) > 50  # git answered: the scan saw the tree
    assert [str(f) for f in find_secrets(files, ROOT)] == []


def _planted_examples() -> list[str]:
    # Assembled here so that no example appears whole in this file.
    begin, end = "-----BEGIN ", "-----END "
    return [
        "key_id = '" + "AK" + "IA" + "Q3EGRWXN7ZHZ5KPL" + "'",
        begin + "RSA PRIVATE KEY-----",
        begin + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n" + end + "OPENSSH",
        "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzEXAMPLEKEY",
        "MQTT_PASSWORD = '" + "Zq8vN2" + "rT5xKp9LmW3s'",
        '"api_key": "' + "9fB2kQ7x" + 'Lp4Vn8Rz1Tw6"',
        "token = " + "'gh" + "p_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8" + "'",
    ]


@pytest.mark.parametrize("text", _planted_examples())
def test_secret_scanner_finds_a_planted_secret(tmp_path, text):
    planted = tmp_path / "settings.toml"
    planted.write_text(f"# harmless\n{text}\n")
    findings = find_secrets([planted], tmp_path)
    assert findings, f"not found: {text!r}"
    assert {f.line for f in findings} == {2}


@pytest.mark.parametrize(
    "text",
    [
        'password = "correct horse battery staple"',  # has spaces: prose, not a key
        "password_file = /etc/officesensor/mqtt-password",
        'token = "<your token here>"',
        'secret = "${OFFICESENSOR_SECRET_FROM_ENV}"',
        "MQTT_PASSWORD_ENV = 'OFFICESENSOR_MQTT_PASSWORD'",
        "assert settings.mqtt_password == 's3cret'",
    ],
)
def test_secret_scanner_leaves_placeholders_alone(tmp_path, text):
    planted = tmp_path / "example.py"
    planted.write_text(text + "\n")
    assert find_secrets([planted], tmp_path) == []
