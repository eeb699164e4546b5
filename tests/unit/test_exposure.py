"""Refusing to start on a network address without viewer authentication (exposure.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from officesensor.config import load_settings
from officesensor.errors import ConfigError
from officesensor.exposure import check_exposure, is_loopback, require_viewer_auth, setting_label


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "a.localhost",
             "::ffff:127.0.0.1"],
)  # fmt: skip
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "[::]", "192.168.1.20", "10.0.0.5", "fe80::1%eth0", "office-pi",
             "localhost.example.com", "example.com", "::ffff:10.0.0.1"],
)  # fmt: skip
def test_exposed_hosts(host):
    assert not is_loopback(host)


def settings_for(http: str, **env: str):
    return load_settings(environ={"OFFICESENSOR_HTTP": http, **env})


def test_loopback_needs_no_auth():
    check_exposure(settings_for("127.0.0.1:8000"))
    check_exposure(settings_for("[::1]:8000"))


@pytest.mark.parametrize("http", ["0.0.0.0:8000", "[::]:8000", "192.168.1.20:80", "pi:8000"])
def test_exposed_without_auth_is_refused_naming_the_setting(http):
    with pytest.raises(ConfigError) as caught:
        check_exposure(settings_for(http), "--http")
    assert caught.value.setting == "--http"
    message = str(caught.value)
    assert message.startswith("--http: ")
    assert "\n" not in message
    for named in ("auth.token", "auth.users_file", "auth.behind_proxy"):
        assert named in message


def test_exposed_is_allowed_with_a_token_users_or_a_proxy(tmp_path: Path):
    users_file = tmp_path / "users"
    users_file.write_text("")
    check_exposure(settings_for("0.0.0.0:8000", OFFICESENSOR_AUTH_TOKEN="t" * 16 + "x" * 8))
    check_exposure(settings_for("0.0.0.0:8000", OFFICESENSOR_AUTH_USERS_FILE=str(users_file)))
    check_exposure(settings_for("0.0.0.0:8000", OFFICESENSOR_AUTH_BEHIND_PROXY="true"))


def test_setting_label_follows_load_settings_precedence(tmp_path: Path):
    config = tmp_path / "office.toml"
    config.write_text('http = "0.0.0.0:8000"\n')
    other = tmp_path / "other.toml"
    other.write_text("window = 12\n")
    env = {"OFFICESENSOR_HTTP": "0.0.0.0:1"}
    assert setting_label("http", config, env, {"http": "0.0.0.0:2"}) == "--http"
    assert setting_label("http", config, env, {"http": None}) == "OFFICESENSOR_HTTP"
    assert setting_label("http", config, {}, {}) == f"http in {config}"
    assert setting_label("http", other, {}, {}) == "OFFICESENSOR_HTTP"
    assert setting_label("http", None, {}, {}) == "OFFICESENSOR_HTTP"


def test_an_entry_point_without_an_address_always_asks(tmp_path: Path):
    """application.py's check: even the default, loopback http counts as exposed there."""
    with pytest.raises(ConfigError) as caught:
        require_viewer_auth(settings_for("127.0.0.1:8000"), "application.py", "served to all")
    assert str(caught.value).startswith("application.py: served to all and viewers need no ")
    for named in ("auth.token", "auth.users_file", "auth.behind_proxy"):
        assert named in str(caught.value)
    token = "t" * 16 + "x" * 8
    require_viewer_auth(settings_for("127.0.0.1:8000", OFFICESENSOR_AUTH_TOKEN=token), "a", "b")
    proxied = settings_for("127.0.0.1:8000", OFFICESENSOR_AUTH_BEHIND_PROXY="true")
    require_viewer_auth(proxied, "a", "b")
