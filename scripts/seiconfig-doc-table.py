#!/usr/bin/env python3
"""Rewrite the key table of docs/config-model.md from the registry (between "## Key table" and "## Code").

    .venv/bin/python scripts/seiconfig-doc-table.py

tests/chain/test_seiconfig.py checks that every key has its row; run this after regenerating the sei-config table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.chain.seiconfig import Mode, registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "config-model.md"
INTRO = (
    "Generated from the registry (sei-config v0.0.21 plus the decisions above) by `scripts/seiconfig-doc-table.py`.\n"
    'V / F / S / A = validator / full / seed / archive. "—" means not written unless set.\n\n'
)


def _value(value: Any) -> str:
    return "—" if value is None else f"`{json.dumps(value)}`"


def rows() -> list[str]:
    header = "| Key | Type | File: TOML key | Default (V / F / S / A when modes differ) | Hot |"
    lines = [header, "|---|---|---|---|---|"]
    for key, entry in registry().items():
        places = "<br>".join(f"{item.file}: `{item.toml}`" for item in entry.placements) or "written to neither file"
        if key == "mode":
            default = "the mode (archive is written as `full` in config.toml)"
        elif key == "version":
            default = "`2`"
        else:
            values = [entry.default(mode) for mode in Mode]
            if all(value == values[0] for value in values):
                default = _value(values[0])
            else:
                default = " / ".join(f"{mode.value[0].upper()}: {_value(entry.default(mode))}" for mode in Mode)
        lines.append(f"| `{key}` | {entry.spec.type} | {places} | {default} | {'yes' if entry.hot else ''} |")
    return lines


def main() -> None:
    text = DOC.read_text()
    head, rest = text.split("## Key table\n", 1)
    tail = rest[rest.index("## Code") :]
    DOC.write_text(head + "## Key table\n\n" + INTRO + "\n".join(rows()) + "\n\n" + tail)


if __name__ == "__main__":
    main()
