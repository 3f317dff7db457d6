"""agent.io.toml: RFC 7386 merge into tomlkit documents, layout preservation, atomic file patching."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from agent.io.toml import (
    get_dotted,
    key_separator_style,
    match_key_spelling,
    merge_patch,
    patch_toml_file,
    prepare_toml_patch,
    read_toml,
    spelling_in,
)
from agent.models import ParamsInvalid, TaskError

CONFIG = """\
# This is a TOML config file.
# For more information, see https://github.com/toml-lang/toml

proxy_app = "tcp://127.0.0.1:26658"
moniker = "node-0"   # the node's name

#######################################################
###        P2P Configuration Options              ###
#######################################################
[p2p]

# Address to listen for incoming connections
laddr = "tcp://0.0.0.0:26656"

# Comma separated list of nodes to keep persistent connections to
persistent_peers = ''  # filled by the controller

max_num_inbound_peers = 40

[mempool]
size = 5000 # transactions
recheck = true

[statesync]
enable = false
rpc_servers = ""
"""


def merged(source: str, patch: dict[str, Any]) -> str:
    document = tomlkit.parse(source)
    merge_patch(document, patch)
    return tomlkit.dumps(document)


def test_replacing_one_value_changes_only_that_line_and_keeps_its_comment() -> None:
    result = merged(CONFIG, {"mempool": {"size": 10000}})
    assert result == CONFIG.replace("size = 5000 # transactions", "size = 10000 # transactions")


def test_replaced_literal_string_stays_literal_and_keeps_trailing_comment() -> None:
    result = merged(CONFIG, {"p2p": {"persistent_peers": "abc@10.0.0.1:26656"}})
    assert result == CONFIG.replace(
        "persistent_peers = ''  # filled", "persistent_peers = 'abc@10.0.0.1:26656'  # filled"
    )


def test_literal_string_that_cannot_stay_literal_becomes_basic() -> None:
    result = merged("a = 'x'\n", {"a": "it's"})
    assert tomlkit.parse(result)["a"] == "it's"
    assert result == 'a = "it\'s"\n'


def test_empty_patch_renders_the_file_byte_for_byte() -> None:
    assert merged(CONFIG, {}) == CONFIG


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (5000, "5000"),
        (True, "true"),
        (0, "0"),
        (-7, "-7"),
        (1.5, "1.5"),
        (["a", "b"], '["a", "b"]'),
        ([1, 2], "[1, 2]"),
        (("x",), '["x"]'),
        ("text", '"text"'),
    ],
)
def test_values_keep_their_toml_types(value: Any, rendered: str) -> None:
    result = merged("", {"key": value})
    assert result == f"key = {rendered}\n"
    reparsed = tomlkit.parse(result).unwrap()["key"]
    expected = list(value) if isinstance(value, tuple) else value
    assert reparsed == expected
    assert type(reparsed) is type(expected)


def test_datetime_values_are_toml_datetimes() -> None:
    moment = datetime.datetime(2026, 3, 31, 12, 0, tzinfo=datetime.UTC)
    assert tomlkit.parse(merged("", {"at": moment})).unwrap()["at"] == moment


def test_null_deletes_the_key_and_its_line() -> None:
    result = merged(CONFIG, {"p2p": {"max_num_inbound_peers": None}})
    assert result == CONFIG.replace("max_num_inbound_peers = 40\n", "")


def test_null_deletes_a_whole_table() -> None:
    result = merged(CONFIG, {"statesync": None})
    assert "statesync" not in tomlkit.parse(result)
    assert result.startswith(CONFIG.split("[statesync]")[0].rstrip("\n"))


def test_null_for_an_absent_key_is_a_no_op() -> None:
    assert merged(CONFIG, {"nothing": None, "p2p": {"ghost": None}}) == CONFIG


def test_nested_new_tables_are_created_and_nulls_inside_them_dropped() -> None:
    result = merged(CONFIG, {"new": {"a": 1, "gone": None, "deeper": {"b": "x", "also_gone": None}}})
    assert result.startswith(CONFIG)
    assert tomlkit.parse(result).unwrap()["new"] == {"a": 1, "deeper": {"b": "x"}}
    assert "gone" not in result


def test_patch_object_for_missing_table_with_only_nulls_creates_empty_table_as_rfc7386() -> None:
    assert tomlkit.parse(merged("", {"a": {"b": None}})).unwrap() == {"a": {}}


def test_new_key_in_existing_table_lands_in_that_table() -> None:
    result = merged(CONFIG, {"p2p": {"seeds": "s@1.2.3.4:26656"}})
    parsed = tomlkit.parse(result).unwrap()
    assert parsed["p2p"]["seeds"] == "s@1.2.3.4:26656"
    assert result.index("seeds") < result.index("[mempool]")
    assert result.replace('seeds = "s@1.2.3.4:26656"\n', "") == CONFIG


BANNERED = """\
[p2p]
  # Address to listen for incoming connections
  laddr = "tcp://0.0.0.0:26656"

#######################################################
###         State Sync Configuration Options        ###
#######################################################
[statesync]
enable = false
"""


@pytest.mark.parametrize(
    ("value", "rendered"), [(60, "60"), (["a"], '["a"]'), ("x", '"x"')], ids=["int", "array", "string"]
)
def test_new_key_goes_after_the_last_value_not_under_the_next_sections_banner(value: Any, rendered: str) -> None:
    result = merged(BANNERED, {"p2p": {"max-num-inbound-peers": value}})
    assert result == BANNERED.replace(
        '  laddr = "tcp://0.0.0.0:26656"\n',
        f'  laddr = "tcp://0.0.0.0:26656"\n  max-num-inbound-peers = {rendered}\n',
    )
    assert tomlkit.parse(result).unwrap()["p2p"]["max-num-inbound-peers"] == value


def test_key_added_after_the_last_value_can_be_replaced_and_deleted_again() -> None:
    document = tomlkit.parse(BANNERED)
    merge_patch(document, {"p2p": {"seeds": "a"}})
    merge_patch(document, {"p2p": {"seeds": "b", "rows": [{"x": 1}]}})
    assert document.unwrap()["p2p"] == {"laddr": "tcp://0.0.0.0:26656", "seeds": "b", "rows": [{"x": 1}]}
    merge_patch(document, {"p2p": {"seeds": None, "rows": None}})
    assert tomlkit.dumps(document) == BANNERED


def test_new_top_level_scalar_goes_before_the_first_table() -> None:
    result = merged(CONFIG, {"db_backend": "goleveldb"})
    parsed = tomlkit.parse(result).unwrap()
    assert parsed["db_backend"] == "goleveldb"
    assert "db_backend" not in parsed["statesync"]


@pytest.mark.parametrize(
    ("source", "patch", "expected"),
    [
        ("a = 1\n", {"a": {"b": 2}}, {"a": {"b": 2}}),
        ("[a]\nb = 1\n", {"a": 5}, {"a": 5}),
        ("a = [1, 2]\n", {"a": {"x": 1}}, {"a": {"x": 1}}),
        ("[a]\nb = 1\n", {"a": [1]}, {"a": [1]}),
        ("a = {x = 1, y = 2}\n", {"a": {"y": None, "z": {"q": 1}}}, {"a": {"x": 1, "z": {"q": 1}}}),
        ("a.b = 1\na.c = 2\n", {"a": {"b": None, "d": 3}}, {"a": {"c": 2, "d": 3}}),
        ("[a]\nx = 1\n[b]\ny = 1\n[a.c]\nz = 1\n", {"a": {"c": {"z": 2}, "x": 9}}, None),
        ("", {"rows": [{"a": 1}, {"a": 2}]}, {"rows": [{"a": 1}, {"a": 2}]}),
        ("x = {k = 1}\n", {"x": {"rows": [{"a": 1}]}}, {"x": {"k": 1, "rows": [{"a": 1}]}}),
    ],
    ids=[
        "scalar-replaced-by-table",
        "table-replaced-by-scalar",
        "array-replaced-by-table",
        "table-replaced-by-array",
        "inline-table-merged",
        "dotted-keys-merged",
        "out-of-order-table-merged",
        "array-of-tables",
        "array-of-tables-inside-inline-table",
    ],
)
def test_merge_follows_rfc7386_on_every_toml_shape(source: str, patch: dict[str, Any], expected: Any) -> None:
    result = tomlkit.parse(merged(source, patch)).unwrap()
    if expected is None:
        expected = {"a": {"x": 9, "c": {"z": 2}}, "b": {"y": 1}}
    assert result == expected


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"p2p": {"list": ["a", None]}}, "p2p.list[1]"),
        ({"p2p": {1: "x"}}, "p2p"),
        ({"p2p": {"laddr": object()}}, "p2p.laddr"),
        ({"p2p": {"rows": [{"a": None}]}}, "p2p.rows[0].a"),
        ({"p2p.laddr": "x"}, '"p2p.laddr"'),
        ({"big": 2**64}, "big"),
        ({"p2p": {"": 1}}, "p2p"),
        ({"s": "\ud800"}, "s"),
    ],
    ids=[
        "null-in-list",
        "int-key",
        "object",
        "null-in-table-in-list",
        "dotted-key",
        "int-too-big",
        "empty-key",
        "surrogate",
    ],
)
def test_unrepresentable_values_raise_params_invalid_naming_the_path_and_change_nothing(
    patch: dict[Any, Any], named: str
) -> None:
    document = tomlkit.parse(CONFIG)
    with pytest.raises(ParamsInvalid) as caught:
        merge_patch(document, {"mempool": {"size": 1}, **patch}, label="files.config.toml")
    assert named in caught.value.message
    assert caught.value.message.startswith("files.config.toml: ")
    assert tomlkit.dumps(document) == CONFIG


# --- key spelling -------------------------------------------------------------------------------------------------

HYPHENATED = "[p2p]\npersistent-peers = ''\nladdr = 'x'\n\n[statesync]\nrpc-servers = ''\ntrust-height = 0\n"


@pytest.mark.parametrize(
    ("source", "style"),
    [(HYPHENATED, "-"), (CONFIG, "_"), ("[a]\nx = 1\n", None), ("a-b = 1\nc_d = 2\n", None)],
)
def test_key_separator_style_reports_the_prevailing_spelling(source: str, style: str | None) -> None:
    assert key_separator_style(tomlkit.parse(source)) == style


def test_spelling_in_finds_either_separator_and_prefers_the_exact_key() -> None:
    table = {"persistent-peers": "", "a_b": 1, "a-b": 2}
    assert spelling_in(table, "persistent_peers") == "persistent-peers"
    assert spelling_in(table, "a-b") == "a-b"
    assert spelling_in(table, "missing") is None


def test_match_key_spelling_adapts_patch_to_a_hyphenated_file() -> None:
    document = tomlkit.parse(HYPHENATED)
    patch = {"p2p": {"persistent_peers": "a@b:1", "max_connections": 5}, "new_table": {"some_key": 1}}
    assert match_key_spelling(document, patch) == {
        "p2p": {"persistent-peers": "a@b:1", "max-connections": 5},
        "new-table": {"some-key": 1},
    }


def test_match_key_spelling_prefers_the_tables_own_style_over_the_documents() -> None:
    # Sei's app.toml: Cosmos keys are hyphenated, the [evm] section uses underscores.
    document = tomlkit.parse("minimum-gas-prices = ''\npruning-keep-recent = '0'\n[evm]\nhttp_enabled = true\n")
    assert match_key_spelling(document, {"evm": {"http-port": 8545}}) == {"evm": {"http_port": 8545}}


def test_patch_toml_file_match_spelling_writes_the_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HYPHENATED)
    assert patch_toml_file(path, {"p2p": {"persistent_peers": "id@host:26656"}}, match_spelling=True)
    assert path.read_text() == HYPHENATED.replace("persistent-peers = ''", "persistent-peers = 'id@host:26656'")


# --- files --------------------------------------------------------------------------------------------------------


def test_patch_toml_file_changes_only_the_patched_bytes_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    path.chmod(0o640)
    assert patch_toml_file(path, {"mempool": {"size": 1}, "p2p": {"max_num_inbound_peers": None}}) is True
    assert path.read_text() == CONFIG.replace("size = 5000", "size = 1").replace("max_num_inbound_peers = 40\n", "")
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_patch_toml_file_creates_a_missing_file_with_mode_0644(tmp_path: Path) -> None:
    path = tmp_path / "new.toml"
    assert patch_toml_file(path, {"p2p": {"laddr": "tcp://0.0.0.0:26656"}, "size": 5000}) is True
    assert read_toml(path) == {"size": 5000, "p2p": {"laddr": "tcp://0.0.0.0:26656"}}
    assert path.stat().st_mode & 0o777 == 0o644


def test_patch_toml_file_does_not_write_when_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    before = path.stat()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))
    stamped = path.stat()
    assert patch_toml_file(path, {"mempool": {"size": 5000}, "ghost": None}) is False
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (stamped.st_ino, stamped.st_mtime_ns)


@pytest.mark.parametrize(
    ("content", "line"),
    [("[p2p]\nladdr = \n", 2), ("a = 1\na = 2\n", 2), ("[p2p\n", 1)],
    ids=["missing-value", "duplicate-key", "unclosed-table"],
)
def test_invalid_toml_raises_task_error_naming_file_and_line_and_is_left_untouched(
    tmp_path: Path, content: str, line: int
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    with pytest.raises(TaskError) as caught:
        patch_toml_file(path, {"a": 3})
    assert str(path) in caught.value.message
    assert f"line {line}" in caught.value.message
    assert path.read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_non_utf8_file_raises_task_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"a = '\xff'\n")
    with pytest.raises(TaskError, match=r"config\.toml: not valid UTF-8"):
        patch_toml_file(path, {"a": 1})
    assert path.read_bytes() == b"a = '\xff'\n"


def test_unrepresentable_patch_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    with pytest.raises(ParamsInvalid, match=r"p2p\.seeds\[0\]"):
        patch_toml_file(path, {"mempool": {"size": 1}, "p2p": {"seeds": [None]}})
    assert path.read_text() == CONFIG


def test_prepared_edit_refuses_to_overwrite_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    edit = prepare_toml_patch(path, {"mempool": {"size": 1}})
    path.write_text(CONFIG + "extra = 1\n")
    with pytest.raises(TaskError, match="changed on disk") as caught:
        edit.write()
    assert caught.value.retryable
    assert path.read_text() == CONFIG + "extra = 1\n"


def test_patching_through_a_symlink_updates_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text("a = 1\n")
    link = tmp_path / "config.toml"
    link.symlink_to(real.name)
    assert patch_toml_file(link, {"a": 2})
    assert link.is_symlink()
    assert real.read_text() == "a = 2\n"


def test_read_toml_returns_plain_values_and_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    values = read_toml(path)
    assert values["mempool"] == {"size": 5000, "recheck": True}
    assert type(values["mempool"]["size"]) is int
    with pytest.raises(TaskError, match=r"absent\.toml: file not found"):
        read_toml(tmp_path / "absent.toml")
    assert read_toml(tmp_path / "absent.toml", missing_ok=True) == {}


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("p2p.laddr", "tcp://0.0.0.0:26656"),
        ("mempool.size", 5000),
        ("moniker", "node-0"),
        ("p2p.missing", "default"),
        ("moniker.deeper", "default"),
        ("mempool", {"size": 5000, "recheck": True}),
    ],
)
def test_get_dotted_returns_plain_values_or_the_default(dotted: str, expected: Any) -> None:
    value = get_dotted(tomlkit.parse(CONFIG), dotted, "default")
    assert value == expected
    assert type(value) is type(expected)
