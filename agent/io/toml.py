"""TOML merge-patch that keeps a file's comments and layout: the one TOML mechanism every task uses.

The file is edited in place with tomlkit, never re-encoded through a generic map (which would lose comments, sort
keys and write integers from JSON as `5000.0`):

- `merge_patch(target, patch)` applies an RFC 7386 JSON merge patch to a tomlkit document or table: `None` deletes a
  key, a mapping merges into an existing table recursively, anything else replaces the value. A new
  subtree is built by merging into an empty table, so nulls inside it are dropped (strict RFC 7386); a `{"a": null}`
  patch for a table that does not exist yet creates the empty table `[a]`, exactly as RFC 7386 yields `{"a": {}}`.
  Arrays are values: they replace the old value whole, and may not contain nulls.
- Everything the patch does not touch keeps its bytes: comments, blank lines, key order, quoting, spacing. A replaced
  scalar keeps the comment that trailed it, and a replaced literal string stays literal when it can. A new key in an
  existing table goes right after the table's last value, not after the comment banner opening the next section.
- Python values keep their TOML types: an `int` stays an integer (never `5000.0`), a `bool` a boolean, a list of
  strings an array. No type is coerced: a float in the patch is written as a float.
- A key containing a dot is refused (`ParamsInvalid`): TOML would write it as one quoted key (`"p2p.laddr" = ...`),
  which no node reads, while the caller almost certainly meant the nested `{"p2p": {"laddr": ...}}`.
- Key spelling is never guessed by `merge_patch`: sei-tendermint v0.35 files spell keys with hyphens
  (`persistent-peers`), CometBFT and parts of app.toml with underscores (`persistent_peers`, `[evm] http_port`).
  A caller that writes a fixed key into a file it did not create asks for `match_key_spelling` (or
  `patch_toml_file(..., match_spelling=True)`), which reuses the spelling the file already has.

Writing is two-phase so a task can validate and compute every edit before touching any file: `prepare_toml_patch`
returns a `TomlEdit` (old and new text) and `TomlEdit.write()` replaces the file atomically, keeping its mode.
"""

from __future__ import annotations

import datetime
import re
import stat
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.items import AoT, InlineTable, SingleKey, String, StringType, Table
from tomlkit.toml_document import TOMLDocument

from agent.io.files import atomic_write
from agent.models import ParamsInvalid, TaskError

__all__ = [
    "TomlEdit",
    "check_patch",
    "get_dotted",
    "key_separator_style",
    "load_toml_document",
    "match_key_spelling",
    "merge_patch",
    "patch_toml_file",
    "prepare_toml_patch",
    "read_toml",
    "respelled_keys",
    "spelling_duplicates",
    "spelling_in",
]

NEW_FILE_MODE = 0o644
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALARS = (bool, int, float, str, datetime.datetime, datetime.date, datetime.time)
Separator = Literal["-", "_"]


# --- validation -------------------------------------------------------------------------------------------------


def _render_path(path: Sequence[str | int]) -> str:
    """`p2p.persistent_peers`, `a."odd key"[2]`: a key path as a reader of the params would write it."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
            text += f".{name}" if text else name
    return text or "(top level)"


def _refuse(label: str, path: Sequence[str | int], reason: str) -> ParamsInvalid:
    where = _render_path(path)
    return ParamsInvalid(f"{label}: {where}: {reason}" if label else f"{where}: {reason}")


def _check_value(value: Any, path: list[str | int], label: str, *, in_patch: bool) -> None:
    """Raise ParamsInvalid for anything TOML cannot hold. `in_patch` is True where a null means "delete"."""
    if value is None:
        if not in_patch:
            raise _refuse(label, path, "null inside a list cannot be written to TOML")
        return
    if isinstance(value, Mapping):
        for key, child in value.items():
            if not isinstance(key, str):
                raise _refuse(label, path, f"key {key!r} is not a string (TOML keys are strings)")
            if not key:
                raise _refuse(label, path, "empty key")
            if "." in key:
                raise _refuse(
                    label,
                    [*path, key],
                    "a key may not contain '.'; nest objects instead ({'p2p': {'laddr': ...}}, not 'p2p.laddr')",
                )
            _check_value(child, [*path, key], label, in_patch=in_patch)
        return
    if isinstance(value, list | tuple):
        for index, element in enumerate(value):
            _check_value(element, [*path, index], label, in_patch=False)
        return
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        raise _refuse(label, path, f"integer {value} does not fit TOML's 64-bit integers")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _refuse(label, path, "string is not valid Unicode (lone surrogate)") from None
        return
    if not isinstance(value, _SCALARS):
        raise _refuse(label, path, f"a value of type {type(value).__name__} cannot be written to TOML")


def check_patch(patch: Mapping[str, Any], *, label: str = "") -> None:
    """Raise `ParamsInvalid` (naming `label` and the dotted key path) if `patch` holds anything TOML cannot represent:
    a null inside a list, a non-string, empty or dotted key, an integer beyond 64 bits, an unsupported type."""
    if not isinstance(patch, Mapping):
        raise ParamsInvalid(f"{label or 'patch'}: must be an object, not {type(patch).__name__}")
    _check_value(patch, [], label, in_patch=True)


# --- merge ------------------------------------------------------------------------------------------------------


def _is_table(value: Any) -> TypeGuard[MutableMapping[str, Any]]:
    # tomlkit tables, inline tables, documents and out-of-order table proxies are all mutable mappings; arrays and
    # arrays of tables are not, so a mapping patch replaces them (RFC 7386: a non-object target becomes {}).
    return isinstance(value, MutableMapping)


def _replacement(existing: Any, value: Any) -> Any:
    """The value to store: a replaced literal string ('...') stays literal when the new text allows it."""
    if (
        isinstance(existing, String)
        and existing.type is StringType.SLL
        and isinstance(value, str)
        and "'" not in value
        and value.isprintable()
    ):
        return tomlkit.string(value, literal=True)
    return list(value) if isinstance(value, tuple) else value


def _merge(container: MutableMapping[str, Any], patch: Mapping[str, Any], *, inline: bool) -> None:
    for key, value in patch.items():
        if value is None:
            if key in container:
                del container[key]
            continue
        existing = container.get(key)
        if isinstance(value, Mapping):
            if _is_table(existing):
                _merge(existing, value, inline=inline or isinstance(existing, InlineTable))
                continue
            # Built empty and merged into, so nulls inside a new subtree vanish (strict RFC 7386). Inside an inline
            # table only inline tables are legal TOML.
            fresh: MutableMapping[str, Any] = tomlkit.inline_table() if inline else tomlkit.table()
            _merge(fresh, value, inline=inline)
            container[key] = fresh
            continue
        if existing is None and isinstance(container, Table) and _add_after_last_value(container, key, value):
            continue
        # Assigning through the container lets tomlkit keep the trailing comment of the replaced value and pick the
        # right shape for lists (array of tables at table level, inline array inside an inline table).
        container[key] = _replacement(existing, value)


def _add_after_last_value(table: Table, key: str, value: Any) -> bool:
    """Insert a new key right after the table's last key/value line; returns False to let tomlkit append instead.

    tomlkit appends at the end of the table's body, which is after the comment banner and blank lines that open the
    *next* section in files like seid's config.toml, so the new key would read as part of the wrong section.
    """
    body = table.value.body
    anchors = [
        index
        for index, (name, entry) in enumerate(body)
        if isinstance(name, SingleKey) and not isinstance(entry, Table | AoT)
    ]
    if not anchors or anchors[-1] == len(body) - 1:
        return False
    anchor_key, anchor = body[anchors[-1]]
    if not isinstance(anchor_key, SingleKey):
        return False
    new = tomlkit.item(list(value) if isinstance(value, tuple) else value)
    if isinstance(new, AoT | Table):
        return False
    new.trivia.indent = anchor.trivia.indent
    # tomlkit has no public "insert at"; `Container._insert_at` is what its own API uses, and the one such method
    # every supported tomlkit has (0.15 dropped `_insert_after`; pyproject bounds the version, and the tests pin the
    # layout this produces). The table keeps a dict mirror of its container, updated here as `Table.append` does.
    table.value._insert_at(anchors[-1] + 1, key, new)
    dict.__setitem__(table, key, new)
    return True


def merge_patch(target: MutableMapping[str, Any], patch: Mapping[str, Any], *, label: str = "") -> None:
    """Apply the RFC 7386 merge `patch` to the tomlkit document or table `target`, in place.

    The whole patch is checked first (`check_patch`), so an unrepresentable value raises `ParamsInvalid` before
    `target` changes. `label` prefixes error messages (for example the file or params field being patched).
    """
    check_patch(patch, label=label)
    _merge(target, patch, inline=isinstance(target, InlineTable))


# --- key spelling (hyphen vs underscore) ---------------------------------------------------------------------------


def _normal(key: str) -> str:
    return key.replace("-", "_")


def spelling_in(table: Mapping[str, Any], key: str) -> str | None:
    """The spelling under which `key` already exists in `table`, treating '-' and '_' as the same character
    (`persistent_peers` finds `persistent-peers`); the exact spelling wins when both exist; None when absent."""
    if key in table:
        return key
    wanted = _normal(key)
    return next((existing for existing in table if _normal(existing) == wanted), None)


def _count_separators(table: Mapping[str, Any], counts: dict[str, int], *, recursive: bool) -> None:
    for key, value in table.items():
        if "-" in key and "_" not in key:
            counts["-"] += 1
        elif "_" in key and "-" not in key:
            counts["_"] += 1
        if recursive and _is_table(value):
            _count_separators(value, counts, recursive=True)


def key_separator_style(table: Mapping[str, Any], *, recursive: bool = True) -> Separator | None:
    """Which separator the multi-word keys of `table` use: '-' (sei-tendermint v0.35, Cosmos app.toml), '_'
    (CometBFT), or None when there are no multi-word keys or as many of each."""
    counts = {"-": 0, "_": 0}
    _count_separators(table, counts, recursive=recursive)
    if counts["-"] == counts["_"]:
        return None
    return "-" if counts["-"] > counts["_"] else "_"


def _respell(key: str, style: Separator | None) -> str:
    if style == "-":
        return key.replace("_", "-")
    if style == "_":
        return key.replace("-", "_")
    return key


def _match(table: Mapping[str, Any], patch: Mapping[str, Any], fallback: Separator | None) -> dict[str, Any]:
    own_style = key_separator_style(table, recursive=False) or fallback
    matched: dict[str, Any] = {}
    for key, value in patch.items():
        existing = spelling_in(table, key) if isinstance(key, str) else None
        new_key = existing or (_respell(key, own_style) if isinstance(key, str) else key)
        if isinstance(value, Mapping):
            sub_table = table[existing] if existing is not None and _is_table(table[existing]) else {}
            value = _match(sub_table, value, fallback)
        matched[new_key] = value
    return matched


def _respelled(table: Mapping[str, Any], patch: Mapping[str, Any], path: list[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for key, value in patch.items():
        existing = spelling_in(table, key)
        if existing is not None and existing != key:
            found.append((_render_path([*path, key]), _render_path([*path, existing])))
        elif existing is not None and isinstance(value, Mapping) and _is_table(table[existing]):
            found.extend(_respelled(table[existing], value, [*path, existing]))
    return found


def respelled_keys(document: Mapping[str, Any], patch: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key in the patch, key in the file) for every patch key the file already has under the other separator
    (`max-num-inbound-peers` given, `max_num_inbound_peers` present). Written as given, each would become a second
    key that the node ignores (it reads one spelling only) while the old value stays in force."""
    return _respelled(document, patch, [])


def spelling_duplicates(table: Mapping[str, Any], path: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Pairs of dotted keys in one table that differ only by '-' vs '_' (`p2p.max-num-inbound-peers` beside
    `p2p.max_num_inbound_peers`): the node reads one of them and silently ignores the other."""
    found: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for key, value in table.items():
        normal = _normal(key)
        if normal in seen:
            found.append((_render_path([*path, seen[normal]]), _render_path([*path, key])))
        else:
            seen[normal] = key
        if _is_table(value):
            found.extend(spelling_duplicates(value, [*path, key]))
    return found


def match_key_spelling(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `patch` whose keys use the spelling `document` already uses.

    A key that exists under the other separator takes the existing spelling; a new key takes the separator of the
    table it lands in, else the document's prevailing one (`key_separator_style`), else stays as given. Use it when
    a task writes a fixed key (`persistent_peers`, `trust_height`) into a file that may come from either lineage.
    """
    return _match(document, patch, key_separator_style(document))


# --- files ------------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist. Unreadable or non-UTF-8 files raise TaskError naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise TaskError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TaskError(f"{path}: not valid UTF-8 at byte {error.start}; TOML files are UTF-8") from None


def _parse(text: str, path: Path) -> TOMLDocument:
    try:
        return tomlkit.parse(text)
    except ParseError as error:
        cause = str(error).removesuffix(f" at line {error.line} col {error.col}")
        raise TaskError(
            f"{path} is not valid TOML (line {error.line}, column {error.col}): {cause}",
            hint="fix or remove the file; it was left untouched",
        ) from None
    except (TOMLKitError, ValueError) as error:
        raise TaskError(
            f"{path} is not valid TOML: {error}", hint="fix or remove the file; it was left untouched"
        ) from None


def load_toml_document(path: Path, *, missing_ok: bool = True) -> TOMLDocument:
    """Parse `path` into a tomlkit document (a missing file is an empty document unless `missing_ok` is False)."""
    text = _read_text(path)
    if text is None:
        if not missing_ok:
            raise TaskError(f"{path}: file not found")
        return tomlkit.document()
    return _parse(text, path)


def read_toml(path: Path, *, missing_ok: bool = False) -> dict[str, Any]:
    """`path` as plain Python values (dicts, lists, str, int, float, bool, datetimes).

    A missing file raises `TaskError` naming it, unless `missing_ok`, which returns `{}`.
    """
    return load_toml_document(path, missing_ok=missing_ok).unwrap()


def get_dotted(table: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """The plain value at `dotted` (`"p2p.persistent_peers"`) in a document or dict, or `default` when any part is
    missing or not a table. Keys are split on '.', so keys containing a dot cannot be addressed."""
    current: Any = table
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return default
        current = current[part]
    unwrap = getattr(current, "unwrap", None)
    return unwrap() if callable(unwrap) else current


@dataclass(frozen=True)
class TomlEdit:
    """A merge-patch of one file computed in memory, not written yet (`write()` does that)."""

    path: Path
    """The file as the caller named it."""
    target: Path
    """Where the bytes go: `path` with symlinks resolved, so a symlinked config file stays a symlink."""
    before: str | None
    """The file's text when the edit was prepared; None when the file did not exist."""
    after: str
    mode: int
    """Permission bits for the written file: the existing file's, or 0644 for a new one."""

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def write(self) -> bool:
        """Replace the file atomically if the edit changes it; returns whether it wrote.

        Refuses (retryable TaskError, nothing written) when the file changed on disk since `prepare_toml_patch` read
        it, so a concurrent writer's edit is never silently undone.
        """
        if not self.changed:
            return False
        if _read_text(self.target) != self.before:
            raise TaskError(
                f"{self.path} changed on disk while it was being patched; nothing was written",
                hint="run the task again",
                retryable=True,
            )
        try:
            atomic_write(self.target, self.after, mode=self.mode)
        except OSError as error:
            raise TaskError(f"{self.path}: cannot write: {error.strerror or error}") from None
        return True


def prepare_toml_patch(
    path: Path, patch: Mapping[str, Any], *, label: str = "", match_spelling: bool = False
) -> TomlEdit:
    """Read `path` (missing = empty document), merge `patch` into it in memory and return the pending edit.

    Raises `TaskError` for a file that is not valid TOML (naming file, line and cause) and `ParamsInvalid` for a patch
    TOML cannot hold (naming `label`, default the file, and the dotted key path). Nothing is written.
    `match_spelling` first rewrites the patch's keys to the file's hyphen/underscore spelling (`match_key_spelling`);
    without it, a patch key that the file already has under the other spelling is refused (`ParamsInvalid`): written
    as given it would be a second key the node ignores, and the patch would silently change nothing.
    """
    target = path.resolve()
    before = _read_text(target)
    document = tomlkit.document() if before is None else _parse(before, path)
    check_patch(patch, label=label or str(path))
    if match_spelling:
        patch = match_key_spelling(document, patch)
    else:
        clashes = respelled_keys(document, patch)
        if clashes:
            given, existing = clashes[0]
            others = f" (and {len(clashes) - 1} more: {', '.join(g for g, _ in clashes[1:])})" if clashes[1:] else ""
            raise ParamsInvalid(
                f"{label or path}: {given}: the file spells this key {existing}; writing {given} would add a second "
                f"key that the node ignores{others}",
                hint="spell the key as the file does, or set matchKeySpelling: true",
            )
    merge_patch(document, patch, label=label or str(path))
    mode = NEW_FILE_MODE if before is None else stat.S_IMODE(target.stat().st_mode)
    return TomlEdit(path=path, target=target, before=before, after=tomlkit.dumps(document), mode=mode)


def patch_toml_file(path: Path, patch: Mapping[str, Any], *, label: str = "", match_spelling: bool = False) -> bool:
    """Merge `patch` into the TOML file `path` and write it atomically; returns whether the content changed.

    A missing file is created (mode 0644); an existing file keeps its mode and, when nothing changes, is not
    written at all. See `prepare_toml_patch` for errors; on any error the file is left untouched. Blocking: call it
    through `asyncio.to_thread` from a handler.
    """
    return prepare_toml_patch(path, patch, label=label, match_spelling=match_spelling).write()
