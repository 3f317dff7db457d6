"""evm-logical-digest against the output of a real seidb (tests/fixtures/seidb/, replayed by a stand-in program) and
a real S3 server."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.models import TaskError, TaskType
from agent.tasks.evm_logical_digest import Digests, OutputInvalid
from tests.chain.standin import install_replayer, replayer_calls
from tests.fixtures.common import HandlerRunner

DIGEST = TaskType.EVM_LOGICAL_DIGEST
RECORDED = Path(__file__).parents[1] / "fixtures" / "seidb"
HEIGHT = 311
FINAL = "6BF5A510EDDC58A7D4EC23D6A8AFE93AB969622AC0A78ACA19A540FF6B9940EA"
MISC = "592EC5AD05EF289235ED7B76D7D6096D4F50D262C1491FA559B41922C8475A04"
ZERO = "0" * 64


class Seidb:
    """The replaying seidb, its recordings (copies that a test may alter) and the two store directories."""

    def __init__(self, tmp_path: Path, home: Path):
        self.recordings = tmp_path / "recordings"
        shutil.copytree(RECORDED, self.recordings)
        self.flatkv = home / "data" / "state_commit" / "flatkv"
        self.memiavl = home / "data" / "state_commit" / "memiavl"
        self.flatkv.mkdir(parents=True)
        self.memiavl.mkdir(parents=True)
        self.bin = tmp_path / "bin"
        self.program = self.bin / "seidb"

    def command(self, backend: str, height: int = HEIGHT, normalization: str = "", mode: str = "") -> tuple[str, ...]:
        directory = self.flatkv if backend == "flatkv" else self.memiavl
        argv = ("evm-logical-digest", "--backend", backend, "-d", str(directory), "--height", str(height))
        if normalization:
            argv += ("--memiavl-normalization", normalization)
        if mode:
            argv += ("--memiavl-open-mode", mode)
        return argv

    def answer(self, answers: dict[tuple[str, ...], str]) -> None:
        install_replayer(self.bin, "seidb", {argv: self.recordings / name for argv, name in answers.items()})

    def answer_recorded(self, height: int = HEIGHT, mode: str = "") -> None:
        self.answer(
            {
                self.command("flatkv", height): "flatkv-311",
                self.command("memiavl", height, "semantic", mode): "memiavl-311-semantic",
                self.command("memiavl", height, "translator", mode): "memiavl-311-translator",
            }
        )

    def calls(self) -> list[list[str]]:
        return replayer_calls(self.program)


@pytest.fixture
def seidb(tmp_path: Path, s3_run_handler: HandlerRunner) -> Seidb:
    recorded = Seidb(tmp_path, s3_run_handler.settings.home)
    s3_run_handler.settings = s3_run_handler.settings.model_copy(update={"seidb_binary": str(recorded.program)})
    return recorded


def params(bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "region": "us-east-1",
        "height": HEIGHT,
        "flatkvDir": "data/state_commit/flatkv",
        "memiavlDir": "data/state_commit/memiavl",
        **extra,
    }


def stored_record(s3_admin: Any, bucket: str, key: str) -> tuple[dict[str, Any], bytes, str]:
    answer = s3_admin.get_object(Bucket=bucket, Key=key)
    text = gzip.decompress(answer["Body"].read())
    return json.loads(text), text, answer["ContentType"]


async def test_recorded_seidb_output_gives_one_matching_verdict_object_per_normalization(
    seidb: Seidb, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    seidb.answer_recorded()
    result = await s3_run_handler(DIGEST, params(s3_bucket, prefix="digests"))

    assert result == {
        "height": HEIGHT,
        "bucket": s3_bucket,
        "match": True,
        "normalizations": {
            name: {"match": True, "key": f"digests/endpoint-digest-311-{name}.json.gz"}
            for name in ("semantic", "translator")
        },
    }
    assert seidb.calls() == [
        list(seidb.command("flatkv")),
        list(seidb.command("memiavl", normalization="semantic")),
        list(seidb.command("memiavl", normalization="translator")),
    ]
    for name in ("semantic", "translator"):
        record, text, content_type = stored_record(s3_admin, s3_bucket, f"digests/endpoint-digest-311-{name}.json.gz")
        assert content_type == "application/gzip"
        assert text.startswith(b'{\n  "height": 311,\n  "normalization": ') and text.endswith(b"}\n")
        assert list(record) == [
            "height",
            "normalization",
            "flatkv_digest",
            "memiavl_digest",
            "per_bucket",
            "match",
            "axes_proved",
            "generated_at",
        ]
        assert record["normalization"] == name
        assert record["flatkv_digest"] == record["memiavl_digest"] == FINAL
        assert record["per_bucket"] == {
            "account": {"flatkv": ZERO, "memiavl": ZERO, "match": True},
            "code": {"flatkv": ZERO, "memiavl": ZERO, "match": True},
            "legacy": {"flatkv": MISC, "memiavl": MISC, "match": True},
            "storage": {"flatkv": ZERO, "memiavl": ZERO, "match": True},
        }
        assert record["match"] is True
        assert record["axes_proved"] == ["nonce", "code", "code_hash", "storage", "legacy"]


async def test_a_differing_memiavl_digest_still_completes_and_publishes_the_mismatch(
    seidb: Seidb, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    changed = "1" * 64
    translator = seidb.recordings / "memiavl-311-translator.stdout"
    translator.write_bytes(translator.read_bytes().replace(f"digest={FINAL}".encode(), f"digest={changed}".encode()))
    storage = f"storage  count=0 bucket_digest={ZERO}"
    translator.write_bytes(translator.read_bytes().replace(storage.encode(), storage.replace(ZERO, "2" * 64).encode()))
    seidb.answer_recorded()

    result = await s3_run_handler(DIGEST, params(s3_bucket, normalizations=["translator"]))

    assert result["match"] is False and list(result["normalizations"]) == ["translator"]
    record, _, _ = stored_record(s3_admin, s3_bucket, "endpoint-digest-311-translator.json.gz")
    assert (record["match"], record["flatkv_digest"], record["memiavl_digest"]) == (False, FINAL, changed)
    assert record["per_bucket"]["storage"] == {"flatkv": ZERO, "memiavl": "2" * 64, "match": False}
    assert record["per_bucket"]["legacy"]["match"] is True
    assert "endpoint-digest-311-semantic.json.gz" not in str(s3_admin.list_objects_v2(Bucket=s3_bucket))


async def test_a_height_the_stores_do_not_hold_fails_naming_both_versions(
    seidb: Seidb, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    seidb.answer({seidb.command("flatkv", 312): "flatkv-311"})  # seidb opened 311 although 312 was asked for
    with pytest.raises(TaskError, match=r"flatkv opened version 311 != requested height 312") as caught:
        await s3_run_handler(DIGEST, params(s3_bucket, height=312))
    assert caught.value.reason == "VersionMismatch"
    assert s3_admin.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    ("recording", "backend", "expected"),
    [
        ("flatkv-400", "flatkv", r"exited with status 1: Error: open flatkv read-only: .*requested 400, reached 311"),
        ("memiavl-311-snapshotmode", "memiavl", r"exited with status 1: Error: read metadata: open .*no such file"),
    ],
    ids=["flatkv-height-beyond-the-store", "memiavl-snapshot-missing"],
)
async def test_real_seidb_failures_fail_the_task_with_its_error_line(
    seidb: Seidb,
    s3_run_handler: HandlerRunner,
    s3_admin: Any,
    s3_bucket: str,
    recording: str,
    backend: str,
    expected: str,
) -> None:
    seidb.answer(
        {
            seidb.command("flatkv"): "flatkv-311",
            seidb.command(backend, normalization="semantic" if backend == "memiavl" else ""): recording,
        }
    )
    with pytest.raises(TaskError, match=expected) as caught:
        await s3_run_handler(DIGEST, params(s3_bucket, normalizations=["semantic"]))
    assert caught.value.reason == "SeidbFailed"
    assert "Usage:" not in caught.value.message  # the reason, not cobra's usage text
    assert len(caught.value.message) < 3000
    assert s3_admin.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


async def test_memiavl_open_mode_is_passed_only_when_set(
    seidb: Seidb, s3_run_handler: HandlerRunner, s3_bucket: str
) -> None:
    seidb.answer_recorded(mode="replay")  # how the memiavl recordings were made: the store had no snapshot-311
    await s3_run_handler(DIGEST, params(s3_bucket, memiavlOpenMode="replay", normalizations=["semantic"]))
    assert seidb.calls()[1][-2:] == ["--memiavl-open-mode", "replay"]


def recorded_lines(name: str) -> list[str]:
    return (RECORDED / f"{name}.stdout").read_text().splitlines()


def parse(lines: list[str]) -> Digests:
    digests = Digests()
    for line in lines:
        digests.feed(line)
    digests.check()
    return digests


@pytest.mark.parametrize("name", ["flatkv-311", "memiavl-311-semantic", "memiavl-311-translator"])
def test_recorded_output_parses_to_its_version_buckets_and_final_digest(name: str) -> None:
    digests = parse(recorded_lines(name))
    assert digests.version == HEIGHT and digests.final == FINAL and digests.fourth_name == "misc"
    assert digests.buckets == {"account": ZERO, "code": ZERO, "storage": ZERO, "legacy": MISC}


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("version:", r"no 'version:' line"),
        ("code ", r"no 'code \.\.\. bucket_digest=' line"),
        ("misc ", r"no 'legacy \(or misc\) \.\.\. bucket_digest=' line"),
        ("FINAL_DIGEST", r"no 'FINAL_DIGEST \.\.\. digest=' line"),
    ],
)
def test_output_missing_a_line_is_refused_naming_it(drop: str, message: str) -> None:
    with pytest.raises(OutputInvalid, match=message):
        parse([line for line in recorded_lines("flatkv-311") if not line.startswith(drop)])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("version: 311", "version: 3x1"), r"malformed version line 'version: 3x1'"),
        (("requested_height: 311\nversion: 311", "version: 310"), r"version lines disagree \(310, then 311\)"),
        (("digest=6BF5", "digest=ZZ"), r"malformed FINAL_DIGEST line"),
        (("account  count=0 bucket_digest=0000", "account  count=0 bucket_digest=00"), r"malformed account bucket"),
        (("misc   count", "legacy count=1 bucket_digest=" + "A" * 64 + "\nmisc   count"), r"both a legacy and a misc"),
    ],
    ids=["version", "versions-disagree", "final", "bucket", "legacy-and-misc"],
)
def test_garbled_output_is_refused_naming_the_line(edit: tuple[str, str], message: str) -> None:
    text = (RECORDED / "flatkv-311.stdout").read_text()
    assert edit[0] in text
    with pytest.raises(OutputInvalid, match=message):
        parse(text.replace(edit[0], edit[1], 1).splitlines())


async def test_garbled_output_fails_the_task_and_writes_nothing(
    seidb: Seidb, s3_run_handler: HandlerRunner, s3_admin: Any, s3_bucket: str
) -> None:
    flatkv = seidb.recordings / "flatkv-311.stdout"
    flatkv.write_text("\n".join(line for line in flatkv.read_text().splitlines() if not line.startswith("FINAL")))
    seidb.answer_recorded()
    with pytest.raises(TaskError, match=r"unusable output: no 'FINAL_DIGEST \.\.\. digest=' line") as caught:
        await s3_run_handler(DIGEST, params(s3_bucket))
    assert caught.value.reason == "DigestOutputInvalid"
    assert s3_admin.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"seidbPath": "/bin/sh"}, r"params\.seidbPath: .*agent configuration"),
        ({"normalizations": ["raw"]}, r"params\.normalizations"),
        ({"height": 0}, r"params\.height"),
        ({"flatkvDir": "missing/dir"}, r"params\.flatkvDir: .*missing/dir' is not a directory"),
    ],
    ids=["seidb-path", "normalization", "height", "missing-dir"],
)
async def test_bad_params_are_refused_naming_the_field(
    seidb: Seidb, s3_run_handler: HandlerRunner, s3_bucket: str, extra: dict[str, Any], message: str
) -> None:
    seidb.answer_recorded()
    with pytest.raises(TaskError, match=message) as caught:
        await s3_run_handler(DIGEST, params(s3_bucket, **extra))
    assert caught.value.reason == "ParamsInvalid"
    assert seidb.calls() == []


async def test_missing_seidb_fails_with_binary_not_found(s3_run_handler: HandlerRunner, s3_bucket: str) -> None:
    home = s3_run_handler.settings.home
    for name in ("flatkv", "memiavl"):
        (home / "data" / "state_commit" / name).mkdir(parents=True)
    s3_run_handler.settings = s3_run_handler.settings.model_copy(update={"seidb_binary": "/nonexistent/seidb"})
    with pytest.raises(TaskError, match=r"'/nonexistent/seidb' \(SEI_SEIDB_BINARY\) not found") as caught:
        await s3_run_handler(DIGEST, params(s3_bucket))
    assert caught.value.reason == "BinaryNotFound"
