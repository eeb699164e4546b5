"""Viewer accounts: salted scrypt password hashes, and the users file that holds them.

The file has one ``name:hash`` line per viewer (blank lines and ``#`` comments are kept out
of the way). A hash is ``scrypt$<n>$<r>$<p>$<salt>$<key>`` (salt and key in unpadded
base64): the parameters travel with each hash, so raising them later keeps old lines valid.
scrypt is in the standard library (``hashlib.scrypt``) and is memory-hard: n=2**15, r=8 costs
32 MiB and about 0.1 s per guess on this kind of machine, which is what makes a stolen file
slow to crack. Hashes are compared in constant time.

``officesensor auth add-user`` writes the file (``write_user``); the web app reads it
(``read_users``). Nothing here imports Flask.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
#: A hash read from a file may not ask for more than this (a tampered file must not be able
#: to make one login cost gigabytes); 2**17 x 8 = 128 MiB.
MAX_N = 2**17
_MAXMEM = 256 * 1024 * 1024
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_NAME_LENGTH = 64
FILE_MODE = 0o600


def hash_password(
    password: str, *, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R
) -> str:
    """The encoded scrypt hash of ``password`` under a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = _scrypt(password, salt, n, r, SCRYPT_P, KEY_BYTES)
    return f"scrypt${n}${r}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; False for any malformed hash."""
    try:
        n, r, p, salt, key = _parse_hash(encoded)
    except ValueError:
        return False
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(key)), key)


def dummy_verify(password: str) -> None:
    """Spend what a real check costs, so an unknown name answers as slowly as a known one."""
    _scrypt(password[:MAX_PASSWORD_LENGTH], b"\0" * SALT_BYTES, SCRYPT_N, SCRYPT_R, SCRYPT_P, 1)


def check_name(name: str) -> str:
    """``name`` if it can be a viewer's name: 1-64 printable characters, no ':' or spaces."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a user name has 1 to {MAX_NAME_LENGTH} characters")
    if not name.isprintable() or any(c.isspace() or c == ":" for c in name):
        raise ValueError("a user name is printable, without ':' or spaces")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    return password


def parse_users(text: str) -> dict[str, str]:
    """name -> encoded hash; ValueError names the first bad line."""
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        try:
            if not sep:
                raise ValueError("expected name:hash")
            check_name(name)
            _parse_hash(encoded)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        users[name] = encoded
    return users


def read_users(path: Path) -> tuple[dict[str, str], bytes]:
    """The users in ``path`` and the file's bytes (the session key is derived from them)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    return parse_users(text), data


def write_user(path: Path, name: str, password: str) -> bool:
    """Add ``name`` to the users file, or replace its hash; True when it replaced one.

    The file is rewritten whole (a temporary file, mode 0600, renamed over the old one), so
    a reader never sees half a file, and other lines, comments included, are kept."""
    check_name(name)
    check_password(password)
    line = f"{name}:{hash_password(password)}"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    parse_users(old)  # refuse to rewrite a file we cannot read
    lines, replaced = [], False
    for raw in old.splitlines():
        if raw.strip().partition(":")[0] == name and not raw.lstrip().startswith("#"):
            if not replaced:
                lines.append(line)
            replaced = True
        else:
            lines.append(raw)
    if not replaced:
        lines.append(line)
    _write_private(path, "\n".join(lines) + "\n")
    return replaced


def _write_private(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp already uses 0600; say so explicitly
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("the hash is not scrypt$n$r$p$salt$key")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError("the hash has a malformed field") from None
    if n < 2 or n & (n - 1) or n > MAX_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("the hash has out-of-range scrypt parameters")
    if n * r * 128 * p > _MAXMEM // 2 or len(salt) < 8 or len(key) < 16:
        raise ValueError("the hash's salt or key is too short, or it asks too much memory")
    return n, r, p, salt, key


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
