"""Session keys, cookies and bearer tokens (web/sessions.py), over real users files."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from officesensor import users
from officesensor.errors import ConfigError
from officesensor.web.sessions import (
    COOKIE_NAME,
    SESSION_LIFETIME,
    TOKEN_USER,
    Credentials,
    SessionInterface,
    serializer,
)

FAST = {"n": 2**10, "r": 8}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(f"alice:{users.hash_password('alice password', **FAST)}\n")
    path.chmod(0o600)
    return path


def cookie(key: bytes, data: dict[str, object]) -> str:
    return f"{COOKIE_NAME}={serializer(key).dumps(data)}"


def test_instances_sharing_the_settings_derive_the_same_key(users_file: Path):
    token = secrets.token_urlsafe(24)
    first, second = Credentials(token, users_file), Credentials(token, users_file)
    assert first.key == second.key
    assert Credentials(secrets.token_urlsafe(24), users_file).key != first.key
    assert Credentials(token, None).key != first.key
    # A session signed by one instance is accepted by the other.
    assert second.identify(cookie(first.key, {"user": "alice"}), None) == "alice"


def test_without_auth_the_key_is_random_per_process():
    assert not Credentials(None, None).required
    assert Credentials(None, None).key != Credentials(None, None).key


def test_changing_a_password_ends_every_session(users_file: Path):
    credentials = Credentials(None, users_file)
    signed_in = cookie(credentials.key, {"user": "alice"})
    assert credentials.identify(signed_in, None) == "alice"
    users.write_user(users_file, "alice", "a new password")
    os.utime(users_file, ns=(time.time_ns(), time.time_ns() + 10**9))  # a visibly new mtime
    credentials.refresh()
    assert credentials.identify(signed_in, None) is None
    assert credentials.check_password("alice", "a new password")
    assert not credentials.check_password("alice", "alice password")


def test_a_removed_user_or_a_dropped_token_ends_their_sessions(users_file: Path):
    token = secrets.token_urlsafe(24)
    credentials = Credentials(token, users_file)
    assert credentials.identify(cookie(credentials.key, {"user": "bob"}), None) is None
    assert credentials.identify(cookie(credentials.key, {"user": TOKEN_USER}), None) == TOKEN_USER
    without_token = Credentials(None, users_file)
    forged = cookie(without_token.key, {"user": TOKEN_USER})
    assert without_token.identify(forged, None) is None


def test_tampered_foreign_and_expired_cookies_are_refused(users_file: Path):
    credentials = Credentials(None, users_file)
    good = serializer(credentials.key).dumps({"user": "alice"})
    payload, stamp, signature = good.split(".")
    other = serializer(b"x" * 32).dumps({"user": "alice"})
    old = URLSafeTimedSerializer(
        credentials.key,
        salt=SessionInterface.salt,
        serializer=SessionInterface.serializer,
        signer=_SignerFrom(time.time() - SESSION_LIFETIME.total_seconds() - 60),
        signer_kwargs={"key_derivation": "hmac", "digest_method": SessionInterface.digest_method},
    ).dumps({"user": "alice"})
    for value in (other, old, f"{payload}.{stamp}.{signature[:-2]}AA", f"{payload}x.{stamp}"):
        assert credentials.identify(f"{COOKIE_NAME}={value}", None) is None, value
    assert credentials.identify(f"{COOKIE_NAME}={good}", None) == "alice"


def _SignerFrom(when: float) -> type[TimestampSigner]:
    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(when)

    return Signer


def test_bearer_tokens_are_checked_and_win_over_the_cookie(users_file: Path):
    token = secrets.token_urlsafe(24)
    credentials = Credentials(token, users_file)
    signed_in = cookie(credentials.key, {"user": "alice"})
    assert credentials.identify(None, f"Bearer {token}") == TOKEN_USER
    assert credentials.identify(None, f"bearer {token}") == TOKEN_USER
    assert credentials.identify(signed_in, "Bearer wrong-token-of-some-length") is None
    assert credentials.identify(signed_in, "Basic YWxpY2U6eA==") == "alice"  # not ours: cookie
    assert not credentials.check_token(token[:-1])
    assert not Credentials(None, users_file).check_token(token)


def test_unknown_users_cost_a_hash_too(users_file: Path):
    credentials = Credentials(None, users_file)
    assert not credentials.check_password("mallory", "alice password")
    assert credentials.check_password("alice", "alice password")


def test_an_unreadable_users_file_fails_at_start_then_closed_at_run_time(tmp_path: Path, caplog):
    broken = tmp_path / "users"
    broken.write_text("alice\n")
    with pytest.raises(ConfigError, match=r"auth\.users_file: .*line 1"):
        Credentials(None, broken)
    broken.write_text(f"alice:{users.hash_password('alice password', **FAST)}\n")
    credentials = Credentials(None, broken)
    signed_in = cookie(credentials.key, {"user": "alice"})
    broken.write_text("garbage that is longer than before\n")
    credentials.refresh()
    assert not credentials.check_password("alice", "alice password")
    assert credentials.identify(signed_in, None) is None
    assert "nobody can sign in" in caplog.text


def test_a_users_file_readable_by_others_is_reported(users_file: Path, caplog):
    users_file.chmod(0o644)
    Credentials(None, users_file)
    assert "readable by other users" in caplog.text
