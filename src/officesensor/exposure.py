"""Whether the dashboard may start on its address: pure checks on the settings.

A dashboard bound to loopback is reachable only from this machine; bound to anything else
(0.0.0.0, ::, a LAN address, a host name) anyone on the network can read it. So ``serve`` and
``demo`` refuse a non-loopback address unless viewers must authenticate (``auth.token`` or
``auth.users_file``) or ``auth.behind_proxy`` says an authenticating proxy stands in front.
Host names other than ``localhost`` count as exposed: we do not resolve them (what a name
resolves to can change after start-up).

``require_viewer_auth`` is the same refusal for an entry point that cannot know its address:
``application.py``, the WSGI app, is bound by whatever WSGI server imports it, and exists for
Elastic Beanstalk, whose nginx faces the internet. So it asks unconditionally.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from officesensor.config import SPEC_BY_FIELD, Settings
from officesensor.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name, IPv6 with or without brackets) is loopback."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def auth_configured(settings: Settings) -> bool:
    return settings.auth_token is not None or settings.auth_users_file is not None


def check_exposure(settings: Settings, http_label: str = "OFFICESENSOR_HTTP") -> None:
    """Raise ConfigError when the dashboard would be reachable from the network with nobody
    asking who is looking. ``http_label`` names the http setting as the user gave it."""
    if is_loopback(settings.http.host):
        return
    require_viewer_auth(settings, http_label, f"{settings.http.host} is not a loopback address")


def require_viewer_auth(settings: Settings, label: str, exposed: str) -> None:
    """Raise ConfigError, as ``<label>: <exposed> and viewers need no password: ...``, unless
    viewers must authenticate or an authenticating proxy is declared."""
    if auth_configured(settings) or settings.auth_behind_proxy:
        return
    raise ConfigError(
        label,
        f"{exposed} and viewers need no password: set "
        "auth.token (OFFICESENSOR_AUTH_TOKEN) or auth.users_file, or auth.behind_proxy = true "
        "if an authenticating proxy guards it (docs/security.md)",
    )


def setting_label(
    field: str,
    config_file: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> str:
    """How the user named the setting ``field`` that won, by the precedence load_settings
    applies (flag, then variable, then TOML file, then default), for error messages."""
    spec = SPEC_BY_FIELD[field]
    if overrides.get(field) is not None:
        return "--" + field.replace("_", "-")
    if spec.env in environ:
        return spec.env
    if config_file is not None and _toml_defines(config_file, spec.key):
        return f"{spec.key} in {config_file}"
    return spec.env


def _toml_defines(path: Path, dotted: str) -> bool:
    try:
        table: Any = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    for part in dotted.split("."):
        if not isinstance(table, dict) or part not in table:
            return False
        table = table[part]
    return True
