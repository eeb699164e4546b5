"""Password hashes and the users file (officesensor/users.py): real scrypt, real files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from officesensor import users

#: Cheap parameters for tests that hash many times; the defaults are tested on their own.
FAST = {"n": 2**10, "r": 8}


def test_default_hash_names_its_parameters_and_verifies():
    encoded = users.hash_password("correct horse")
    scheme, n, r, p, salt, key = encoded.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**15, 8, 1)
    assert len(users._unb64(salt)) == users.SALT_BYTES
    assert len(users._unb64(key)) == users.KEY_BYTES
    assert users.verify_password("correct horse", encoded)
    assert not users.verify_password("correct horsE", encoded)


def test_each_hash_has_its_own_salt():
    first, second = (users.hash_password("same password", **FAST) for _ in range(2))
    assert first != second
    assert users.verify_password("same password", first)
    assert users.verify_password("same password", second)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "bcrypt$12$8$1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$1000$8$1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5",  # n not 2**k
        "scrypt$1073741824$8$1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5",  # n = 2**30
        "scrypt$1024$8$1$c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5",  # 4-byte salt
        "scrypt$1024$8$1$!!!!$a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
    ],
)
def test_malformed_or_greedy_hashes_never_verify(encoded):
    assert not users.verify_password("anything", encoded)
    with pytest.raises(ValueError, match="line 1"):
        users.parse_users(f"alice:{encoded}\n")


@pytest.mark.parametrize("name", ["", "a:b", "two words", "tab\there", "x" * 65, "nl\n"])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="user name"):
        users.check_name(name)


def test_parse_users_skips_comments_and_names_the_bad_line():
    good = users.hash_password("password one", **FAST)
    text = f"# viewers\n\nalice:{good}\n  bob:{good}  \n"
    assert users.parse_users(text) == {"alice": good, "bob": good}
    with pytest.raises(ValueError, match="line 3"):
        users.parse_users(f"alice:{good}\n# ok\nbob-without-hash\n")


def test_write_user_creates_a_private_file_then_replaces_only_that_user(tmp_path: Path):
    path = tmp_path / "users"
    assert users.write_user(path, "alice", "first password") is False
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("# office viewers\n" + path.read_text())
    path.chmod(0o644)  # someone loosened it: rewriting tightens it again
    assert users.write_user(path, "bob", "bob's password") is False
    assert users.write_user(path, "alice", "second password") is True
    table = users.parse_users(path.read_text())
    assert sorted(table) == ["alice", "bob"]
    assert users.verify_password("second password", table["alice"])
    assert not users.verify_password("first password", table["alice"])
    assert users.verify_password("bob's password", table["bob"])
    assert path.read_text().startswith("# office viewers\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users"]  # no temporary file left


def test_write_user_refuses_short_passwords_and_foreign_files(tmp_path: Path):
    with pytest.raises(ValueError, match="password"):
        users.write_user(tmp_path / "users", "alice", "short")
    foreign = tmp_path / "hosts"
    foreign.write_text("127.0.0.1 localhost\n")
    with pytest.raises(ValueError, match="line 1"):
        users.write_user(foreign, "alice", "long enough")
    assert foreign.read_text() == "127.0.0.1 localhost\n"
