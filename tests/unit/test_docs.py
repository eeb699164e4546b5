"""Documentation that drifts from the code is a bug: these tests keep them together."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from officesensor.cli import build_parser
from officesensor.config import SPECS, markdown_table
from officesensor.models import RejectReason

ROOT = Path(__file__).resolve().parents[2]


def settings_table(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- settings-table:[^\n]*-->\n(.*?)<!-- end settings-table -->", text, re.S
    )
    assert match, f"{path.name} has no settings-table markers"
    return match.group(1).strip()


@pytest.mark.parametrize("doc", ["README.md", "docs/configuration.md"])
def test_settings_table_matches_the_settings_object(doc: str) -> None:
    assert settings_table(ROOT / doc) == markdown_table(), f"{doc} is out of date: run make docs"


def test_every_setting_has_a_variable_and_help() -> None:
    for spec in SPECS:
        assert spec.env.startswith("OFFICESENSOR_")
        assert spec.help.endswith(".")


def test_every_rejection_reason_is_documented() -> None:
    text = (ROOT / "docs/payloads.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", text, re.M))
    assert documented == {reason.value for reason in RejectReason}


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = text.split("## Quickstart", 1)[1]
    commands = re.findall(r"^make (\w+)", quickstart.split("```")[1], re.M)
    assert commands == ["demo", "test"]


def test_readme_lists_every_command() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "==SUPPRESS==" or a.choices)
    assert subparsers.choices is not None
    for name in subparsers.choices:
        assert f"officesensor {name}" in text or f"`{name}`" in text, name
