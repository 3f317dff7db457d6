"""Sample Sei config files (tests/chain/data/seiconfig/, sei-tendermint spelling, with comments) for config tests."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

DATA = Path(__file__).parent / "data" / "seiconfig"
NAMES = ("config.toml", "app.toml")


def install_sample_config(home: Path, *, underscores: bool = False) -> None:
    """Copy the sample config.toml and app.toml into `home/config/`; `underscores` respells every key (and table
    name) CometBFT-style, `persistent_peers` instead of `persistent-peers`."""
    for name in NAMES:
        target = home / "config" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not underscores:
            shutil.copy(DATA / name, target)
            continue
        lines = []
        for line in (DATA / name).read_text().splitlines(keepends=True):
            if line.startswith("["):
                line = line.replace("-", "_")
            elif re.match(r"^[A-Za-z0-9_-]+ =", line):
                key, rest = line.split(" =", 1)
                line = key.replace("-", "_") + " =" + rest
            lines.append(line)
        target.write_text("".join(lines))


def snapshot(home: Path) -> dict[str, bytes | None]:
    """The bytes of both files (None when absent), to assert that nothing was touched."""
    return {
        name: (home / "config" / name).read_bytes() if (home / "config" / name).exists() else None for name in NAMES
    }
