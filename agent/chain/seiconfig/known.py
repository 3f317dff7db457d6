"""The keys seid reads, per config file: what config-patch and config-validate call a known key.

A key is known when sei-config's registry places it in that file (`registry().placements`, from
sei-config-table.json) or when any stock `seid init` home has it (`seid-keys.json`: every dotted TOML key of
config.toml, app.toml and client.toml in any of the four modes, derived from tests/fixtures/seid/ by
scripts/seid-keys.py). A key outside both (`p2p.max-num-inbound-peers`: CometBFT has it, seid does not) is a key the
node silently ignores, so a patch that writes it changes nothing. `unknown_keys` names each such key with the
nearest known key of the same file; only these three files are judged (any other `.toml` has no reference).

Spelling: seid reads one spelling per key (`persistent-peers`, never `persistent_peers`), so keys compare exactly;
`loose=True` (config-patch with `matchKeySpelling`, which rewrites a key to the file's spelling) treats `-` and `_`
as the same character.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from .registry import registry
from .validate import Diagnostic, Severity

SEID_KEYS_PATH = Path(__file__).with_name("seid-keys.json")
JUDGED_FILES = ("config.toml", "app.toml", "client.toml")


def dotted_keys(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a TOML table or merge patch; an empty table is a leaf of its own (a
    free-form table: anything below it is accepted)."""
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from dotted_keys(value, f"{dotted}.")
        else:
            yield dotted, value


def derive_seid_keys(fixtures: Path) -> dict[str, Any]:
    """file name -> sorted dotted keys present in any recorded stock home under `fixtures/<version>/init/<mode>`."""
    files: dict[str, set[str]] = {name: set() for name in JUDGED_FILES}
    homes = sorted(fixtures.glob("*/init/*/config"))
    for home in homes:
        for name in JUDGED_FILES:
            path = home / name
            if path.is_file():
                files[name].update(key for key, _ in dotted_keys(tomllib.loads(path.read_text())))
    return {
        "source": sorted(str(home.parent.relative_to(fixtures)) for home in homes),
        "files": {name: sorted(keys) for name, keys in files.items()},
    }


@cache
def known_keys(file_name: str) -> frozenset[str]:
    """Every dotted key seid reads from `file_name` (empty for a file that is not judged)."""
    if file_name not in JUDGED_FILES:
        return frozenset()
    stock = json.loads(SEID_KEYS_PATH.read_text())["files"].get(file_name, [])
    placed = {place.toml for entry in registry().values() for place in entry.placements if place.file == file_name}
    return frozenset({*stock, *placed})


def _normal(key: str) -> str:
    return key.replace("-", "_")


def is_known(file_name: str, key: str, *, loose: bool = False) -> bool:
    """Whether seid reads `key` from `file_name`; a key below a known leaf (a free-form table) counts as known."""
    known = known_keys(file_name)
    if loose:
        known = frozenset(_normal(item) for item in known)
        key = _normal(key)
    parts = key.split(".")
    return any(".".join(parts[:end]) in known for end in range(len(parts), 0, -1))


def nearest_keys(file_name: str, key: str, n: int = 3) -> list[str]:
    """The known keys of `file_name` closest to `key`, nearest first: its respelling alone when seid reads the key
    under the other `-`/`_` spelling, else up to `n` by similarity (empty when nothing is close)."""
    known = sorted(known_keys(file_name))
    for item in known:
        if _normal(item) == _normal(key):
            return [item]
    return difflib.get_close_matches(key, known, n=n, cutoff=0.4)


def unknown_key_message(file_name: str, key: str) -> str:
    nearest = nearest_keys(file_name, key)
    hint = f"; nearest known: {', '.join(nearest)}" if nearest else ""
    return f"{file_name}: {key} is not a key seid reads (the node ignores it){hint}"


def unknown_keys(
    file_name: str, table: Mapping[str, Any], *, loose: bool = False, severity: Severity = "WARNING"
) -> list[Diagnostic]:
    """A diagnostic (field `<file>:<key>`) for every key of `table` (a file's content or a merge patch) that seid
    does not read from `file_name`. A `null` in a patch deletes: removing an unknown key is never flagged."""
    if file_name not in JUDGED_FILES:
        return []
    return [
        Diagnostic(severity=severity, field=f"{file_name}:{key}", message=unknown_key_message(file_name, key))
        for key, value in dotted_keys(table)
        if value is not None and not is_known(file_name, key, loose=loose)
    ]


def unknown_keys_on_disk(config_dir: Path) -> list[Diagnostic]:
    """A WARNING for every key of config.toml, app.toml and client.toml in `config_dir` that seid does not read
    (a missing or unparseable file is left to the caller's own reading of it)."""
    found: list[Diagnostic] = []
    for name in JUDGED_FILES:
        try:
            document = tomllib.loads((config_dir / name).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        found.extend(unknown_keys(name, document))
    return found


__all__ = [
    "JUDGED_FILES",
    "SEID_KEYS_PATH",
    "derive_seid_keys",
    "dotted_keys",
    "is_known",
    "known_keys",
    "nearest_keys",
    "unknown_key_message",
    "unknown_keys",
    "unknown_keys_on_disk",
]
