"""Who may look: the configured credentials, the signed session cookie, bearer tokens.

The session is Flask's signed cookie (itsdangerous, HMAC-SHA256, timestamped: older than
``SESSION_LIFETIME`` is refused). Its signing key is *derived* rather than configured:
HMAC-SHA256 over ``auth.token`` and the users file's bytes. So every instance behind a load
balancer that shares those settings derives the same key with no new setting, and changing
the token or any password (the file changes) invalidates every session: everyone signs in
again. The users file is re-read when its size or modification time changes, so that
happens without a restart. With no auth configured there is nothing secret to derive from,
and the key is random per process; nobody signs in then, so no session cookie is set. The
CSRF token is not in the session: it has a cookie of its own that any instance can check
without a key (web/csrf.py).

``Credentials.identify`` reads a raw Cookie/Authorization pair, for the ASGI stream that
runs outside Flask; Flask requests use ``session_user``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Request, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.http import parse_cookie

from officesensor import users
from officesensor.errors import ConfigError

log = logging.getLogger(__name__)

COOKIE_NAME = "officesensor_session"
SESSION_LIFETIME = timedelta(days=7)
TOKEN_USER = "token"  # noqa: S105 (a user name: the session signed in with the token)
_KEY_CONTEXT = b"officesensor session key v1"


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[int, int, int] | None  # (inode, size, mtime_ns) of the users file
    users: Mapping[str, str]
    key: bytes


class Credentials:
    """The token and the users file, as loaded now; thread-safe."""

    def __init__(self, token: str | None, users_file: Path | None) -> None:
        self.token = token
        self.users_file = users_file
        self._token_digest = hashlib.sha256(token.encode()).digest() if token else None
        self._random_key = os.urandom(32)
        self._lock = threading.Lock()
        try:
            self._loaded = self._load(strict=True)
        except ValueError as exc:
            raise ConfigError("auth.users_file", f"{users_file}: {exc}") from None

    @property
    def required(self) -> bool:
        """Whether viewers must authenticate (a token or a users file is configured)."""
        return self.token is not None or self.users_file is not None

    @property
    def key(self) -> bytes:
        return self._loaded.key

    def refresh(self) -> None:
        """Re-read the users file if it changed (a stat per call; cheap)."""
        if self.users_file is None or self._stamp() == self._loaded.stamp:
            return
        with self._lock:
            if self._stamp() != self._loaded.stamp:
                self._loaded = self._load(strict=False)
                log.info("users file %s changed: reloaded; earlier sessions end", self.users_file)

    def check_token(self, candidate: str) -> bool:
        if self._token_digest is None:
            return False
        digest = hashlib.sha256(candidate.encode("utf-8", "replace")).digest()
        return hmac.compare_digest(digest, self._token_digest)

    def check_password(self, name: str, password: str) -> bool:
        encoded = self._loaded.users.get(name)
        if encoded is None:
            users.dummy_verify(password)
            return False
        return users.verify_password(password, encoded)

    def valid_user(self, name: Any) -> bool:
        """Whether a session signed in as ``name`` still stands."""
        if name == TOKEN_USER:
            return self.token is not None
        return isinstance(name, str) and name in self._loaded.users

    def bearer_user(self, authorization: str | None) -> str | None:
        """TOKEN_USER when ``authorization`` is ``Bearer <the token>``."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and self.check_token(value.strip()):
            return TOKEN_USER
        return None

    def identify(self, cookie_header: str | None, authorization: str | None) -> str | None:
        """The viewer a raw request speaks for (bearer token first, then the session)."""
        if is_bearer(authorization):
            return self.bearer_user(authorization)
        value = parse_cookie(cookie_header or "").get(COOKIE_NAME)
        if not value:
            return None
        try:
            data = serializer(self.key).loads(value, max_age=int(SESSION_LIFETIME.total_seconds()))
        except BadSignature:
            return None
        name = data.get("user") if isinstance(data, dict) else None
        return name if self.valid_user(name) else None

    def _stamp(self) -> tuple[int, int, int] | None:
        if self.users_file is None:
            return None
        try:
            info = self.users_file.stat()
        except OSError:
            return (0, -1, 0)
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def _load(self, *, strict: bool) -> _Loaded:
        stamp = self._stamp()
        if self.users_file is None:
            table: Mapping[str, str] = {}
            data = b""
        else:
            try:
                table, data = users.read_users(self.users_file)
                _warn_if_readable_by_others(self.users_file)
            except (OSError, ValueError) as exc:
                if strict:
                    raise ValueError(str(getattr(exc, "strerror", None) or exc)) from None
                log.error(
                    "cannot read users file %s (%s): nobody can sign in", self.users_file, exc
                )
                table, data = {}, os.urandom(32)  # fail closed: every session ends
        if not self.required:
            return _Loaded(stamp, table, self._random_key)
        material = b"".join(
            len(part).to_bytes(8, "big") + part for part in ((self.token or "").encode(), data)
        )
        return _Loaded(stamp, table, hmac.new(_KEY_CONTEXT, material, hashlib.sha256).digest())


def is_bearer(authorization: str | None) -> bool:
    return (authorization or "").partition(" ")[0].lower() == "bearer"


def serializer(key: bytes) -> URLSafeTimedSerializer:
    """The session cookie's serializer, the same as Flask's but for the key and SHA-256."""
    interface = SessionInterface
    return URLSafeTimedSerializer(
        key,
        salt=interface.salt,
        serializer=interface.serializer,
        signer_kwargs={"key_derivation": interface.key_derivation, "digest_method": hashlib.sha256},
    )


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, keyed by ``Credentials`` and Secure over https."""

    digest_method = staticmethod(hashlib.sha256)

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer:
        return serializer(self.credentials.key)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        self.credentials.refresh()  # before the cookie is checked against the key
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        # Secure whenever the request came over https (uvicorn honours X-Forwarded-Proto
        # from trusted proxies, FORWARDED_ALLOW_IPS, loopback by default).
        return request.is_secure


def configure(app: Flask, credentials: Credentials) -> None:
    app.session_interface = SessionInterface(credentials)
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )


def _warn_if_readable_by_others(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "users file %s is readable by other users (mode %o): chmod 600 it", path, mode & 0o777
        )
