"""await-condition against an in-test CometBFT node, and its SIGTERM_SEID action in a PID namespace."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.models import ParamsInvalid, TaskType
from tests.fixtures.cometbft import CometBFTFactory, FakeCometBFT, Fault
from tests.fixtures.common import HandlerRunner

REPO = Path(__file__).resolve().parents[2]
FAST = {"pollIntervalSeconds": 0.05, "requestTimeoutSeconds": 0.5}


def params(node: FakeCometBFT, **extra: Any) -> dict[str, Any]:
    return {"rpcEndpoint": node.url, **FAST, **extra}


async def test_a_height_already_reached_returns_at_once(cometbft: FakeCometBFT, run_handler: HandlerRunner) -> None:
    result = await run_handler(TaskType.AWAIT_CONDITION, params(cometbft, condition="height", targetHeight=900))
    assert result == {"condition": "height", "targetHeight": 900, "height": 1000, "catchingUp": False, "rpcErrors": 0}
    assert cometbft.requests == ["/status"]


@pytest.mark.parametrize("shape", ["flat", "envelope"])
async def test_waiting_for_a_height_reports_progress_until_it_is_reached(
    cometbft_factory: CometBFTFactory, run_handler: HandlerRunner, shape: str
) -> None:
    node = cometbft_factory("local", height=10, shape=shape)
    node.advance_every(0.03)
    result = await run_handler(TaskType.AWAIT_CONDITION, params(node, condition="height", targetHeight=20))
    assert result is not None and result["height"] >= 20
    heights = [report.current for report in run_handler.progress if report.current is not None]
    assert heights == sorted(heights) and heights[0] < 20
    assert {(report.total, report.unit) for report in run_handler.progress} == {(20, "blocks")}
    assert run_handler.progress[-1].message == "condition holds"


async def test_catching_up_waits_until_the_node_reports_it_has_caught_up(
    cometbft_factory: CometBFTFactory, run_handler: HandlerRunner
) -> None:
    node = cometbft_factory("local", catching_up=True)
    waiting = asyncio.create_task(run_handler(TaskType.AWAIT_CONDITION, params(node, condition="catchingUp")))
    while len(node.requests) < 3:
        await asyncio.sleep(0.02)
    assert not waiting.done()
    assert run_handler.progress[-1].message == "catching up"
    node.catching_up = False
    result = await waiting
    assert result is not None and result["catchingUp"] is False


async def test_catching_up_is_not_done_on_an_empty_node_that_says_false_at_height_zero(
    cometbft_factory: CometBFTFactory, run_handler: HandlerRunner
) -> None:
    node = cometbft_factory("local", height=0, catching_up=False)
    waiting = asyncio.create_task(run_handler(TaskType.AWAIT_CONDITION, params(node, condition="catchingUp")))
    while len(node.requests) < 3:
        await asyncio.sleep(0.02)
    assert not waiting.done()
    node.set_height(2)
    result = await waiting
    assert result is not None and result["height"] == 2


async def test_catching_up_with_a_target_also_needs_the_height(
    cometbft_factory: CometBFTFactory, run_handler: HandlerRunner
) -> None:
    node = cometbft_factory("local", height=100)
    waiting = asyncio.create_task(
        run_handler(TaskType.AWAIT_CONDITION, params(node, condition="catchingUp", targetHeight=105))
    )
    while len(node.requests) < 3:
        await asyncio.sleep(0.02)
    assert not waiting.done()
    node.advance(5)
    result = await waiting
    assert result is not None and result["height"] == 105


async def test_rpc_errors_are_tolerated_and_counted(cometbft: FakeCometBFT, run_handler: HandlerRunner) -> None:
    cometbft.fail(Fault.HTTP_500, times=2)
    cometbft.fail(Fault.RPC_ERROR, times=1)
    cometbft.fail(Fault.MALFORMED, times=1)
    result = await run_handler(TaskType.AWAIT_CONDITION, params(cometbft, condition="height", targetHeight=1000))
    assert result is not None and result["rpcErrors"] == 4
    messages = [report.message for report in run_handler.progress]
    assert any(message.startswith("waiting for the node's RPC: HTTP 500") for message in messages)


async def test_a_node_that_is_down_at_first_is_waited_for(
    cometbft_factory: CometBFTFactory, run_handler: HandlerRunner
) -> None:
    node = cometbft_factory("local", height=50)
    port = node.port
    node.stop()
    waiting = asyncio.create_task(
        run_handler(TaskType.AWAIT_CONDITION, params(node, condition="height", targetHeight=50))
    )
    while not any("cannot connect" in report.message for report in run_handler.progress):
        await asyncio.sleep(0.02)
    restarted = cometbft_factory("local-again", height=50, port=port)
    result = await waiting
    assert result is not None and result["rpcErrors"] >= 1
    assert restarted.requests[-1] == "/status"


@pytest.mark.parametrize("fault", [None, Fault.HANG])
async def test_the_wait_ends_on_cancel_even_while_a_request_hangs(
    cometbft: FakeCometBFT, run_handler: HandlerRunner, fault: Fault | None
) -> None:
    if fault is not None:
        cometbft.fail(fault)
    waiting = asyncio.create_task(
        run_handler(
            TaskType.AWAIT_CONDITION,
            params(cometbft, condition="height", targetHeight=10**9, requestTimeoutSeconds=60),
        )
    )
    while not cometbft.requests:
        await asyncio.sleep(0.02)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_task_timeout_cancels_the_wait(cometbft: FakeCometBFT, run_handler: HandlerRunner) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await run_handler(TaskType.AWAIT_CONDITION, params(cometbft, condition="height", targetHeight=10**9))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"condition": "height", "targetHeight": 0}, "params.targetHeight: Input should be greater than 0"),
        ({"condition": "height", "targetHeight": -5}, "params.targetHeight: Input should be greater than 0"),
        ({"condition": "height", "targetHeight": 10.5}, "params.targetHeight"),
        ({"condition": "height"}, "targetHeight is required when condition is 'height'"),
        ({"condition": "blocks", "targetHeight": 5}, "params.condition"),
        ({"condition": "height", "targetHeight": 5, "action": "SIGKILL_SEID"}, "params.action"),
        ({"targetHeight": 5}, "params.condition: required field is missing"),
        ({"condition": "height", "targetHeight": 5, "rpcEndpoint": "localhost"}, "'localhost' has no :port"),
    ],
)
async def test_bad_params_are_refused_by_name(run_handler: HandlerRunner, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsInvalid) as caught:
        await run_handler(TaskType.AWAIT_CONDITION, bad)
    assert message in caught.value.message


# --- SIGTERM_SEID, in a PID namespace of its own ---------------------------------------------------------------


def _unshare_command() -> list[str]:
    """The unshare invocation that gives a child its own PID namespace and /proc, as root or through a user ns."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("util-linux unshare is not installed")
    for flags in (
        ["--pid", "--fork", "--mount-proc"],
        ["--user", "--map-root-user", "--pid", "--fork", "--mount-proc"],
    ):
        probe = subprocess.run([unshare, *flags, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [unshare, *flags]
    pytest.skip("this machine allows no PID namespaces (unshare failed)")


@pytest.fixture(scope="module")
def in_pid_namespace() -> list[str]:
    return _unshare_command()


async def run_in_namespace(prefix: list[str], home: Path, params: dict[str, Any], standin: str) -> dict[str, Any]:
    arguments = json.dumps({"home": str(home), "params": params, "standin": standin})
    process = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "tests.tasks.seid_namespace",
        arguments,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    report: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(
    ("behaviour", "signal_sent", "exit_code"), [("graceful", "SIGTERM", 0), ("stubborn", "SIGKILL", -9)]
)
async def test_sigterm_seid_stops_seid_once_the_height_is_reached(
    in_pid_namespace: list[str], cometbft: FakeCometBFT, home: Path, behaviour: str, signal_sent: str, exit_code: int
) -> None:
    request = params(cometbft, condition="height", targetHeight=1000, action="SIGTERM_SEID", graceSeconds=0.5)
    report = await run_in_namespace(in_pid_namespace, home, request, behaviour)
    assert "error" not in report, report
    assert report["result"]["seid"] == {"pid": report["pidInNamespace"], "signal": signal_sent, "stopped": True}
    assert report["exitCode"] == exit_code


async def test_sigterm_seid_without_seid_fails_after_the_condition_holds(
    in_pid_namespace: list[str], cometbft: FakeCometBFT, home: Path
) -> None:
    request = params(cometbft, condition="height", targetHeight=10, action="SIGTERM_SEID")
    report = await run_in_namespace(in_pid_namespace, home, request, "none")
    assert "no process named 'seid' was found in /proc" in report["error"]["message"]
    assert cometbft.requests == ["/status"]
