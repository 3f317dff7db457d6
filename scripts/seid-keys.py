#!/usr/bin/env python3
"""Write the keys of the stock seid homes (tests/fixtures/seid/<version>/init/<mode>/config/*.toml) to
agent/chain/seiconfig/seid-keys.json: file name -> every dotted TOML key present in that file in any mode.

    .venv/bin/python scripts/seid-keys.py

Together with sei-config's table (sei-config-table.json) this is what config-patch and config-validate call a key
the node reads (agent/chain/seiconfig/known.py). tests/chain/test_seiconfig_known.py checks that the committed file
equals what this script derives from the fixtures; run it after recording a new seid version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.chain.seiconfig.known import SEID_KEYS_PATH, derive_seid_keys  # noqa: E402


def main() -> None:
    table = derive_seid_keys(ROOT / "tests" / "fixtures" / "seid")
    SEID_KEYS_PATH.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{sum(len(keys) for keys in table['files'].values())} keys -> {SEID_KEYS_PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
