"""Rewrite the generated settings tables in README.md and docs/configuration.md (make docs)."""

import re
from pathlib import Path

from officesensor.config import markdown_table

MARKED = re.compile(r"(<!-- settings-table:[^\n]*-->\n).*?(<!-- end settings-table -->)", re.S)

for name in ("README.md", "docs/configuration.md"):
    path = Path(__file__).resolve().parents[1] / name
    text = path.read_text(encoding="utf-8")
    path.write_text(
        MARKED.sub(lambda m: m[1] + markdown_table() + "\n" + m[2], text), encoding="utf-8"
    )
