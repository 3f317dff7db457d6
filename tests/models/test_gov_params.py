"""Params of the governance tasks: wire names of the Go sidecar, and every bad value named by its field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent.models.params import format_validation_error
from agent.tasks.gov import GovParamChangeParams, GovSoftwareUpgradeParams, GovVoteParams

COMMON = {"chainId": "sei-devnet-1", "fees": "20000usei", "gas": 200000}


def _problem(model: type, params: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(params)
    return format_validation_error(caught.value)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("yes", "yes"),
        ("YES", "yes"),
        ("no-with-veto", "no_with_veto"),
        ("No_With_Veto", "no_with_veto"),
        ("abstain", "abstain"),
    ],
)
def test_vote_options_are_read_like_the_original(option: str, expected: str) -> None:
    params = GovVoteParams.model_validate({**COMMON, "proposalId": "7", "option": option})
    assert (params.option, params.proposal_id, params.key_name) == (expected, 7, "validator")


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"proposalId": 0, "option": "yes"}, "params.proposalId", "must be positive"),
        ({"proposalId": 1, "option": "maybe"}, "params.option", "not one of"),
        ({"proposalId": 1, "option": "yes", "fees": "0usei"}, "params.fees", "positive"),
        ({"proposalId": 1, "option": "yes", "gas": 0}, "params.gas", "positive"),
        ({"proposalId": 1, "option": "yes", "keyName": "node admin"}, "params.keyName", "not a key name"),
        ({"proposalId": 1, "option": "yes", "memo": "a\nb"}, "params.memo", "printable"),
        ({"proposalId": 1, "option": "yes", "memo": "taskID=x"}, "params.memo", "taskID="),
        ({"proposalId": 1, "option": "yes", "memo": "x" * 201}, "params.memo", "at most 200"),
        ({"proposalId": 1, "option": "yes", "chainId": ""}, "params.chainId", "at least 1"),
        ({"proposalId": 1, "option": "yes", "sequence": 3}, "params.sequence", "unknown field"),
    ],
)
def test_a_bad_vote_param_is_named(params: dict[str, Any], field: str, message: str) -> None:
    problem = _problem(GovVoteParams, {**COMMON, **params})
    assert field in problem and message in problem


def test_param_change_values_are_sent_as_their_json_text() -> None:
    params = GovParamChangeParams.model_validate(
        {
            **COMMON,
            "title": "t",
            "description": "d",
            "initialDeposit": "10usei",
            "changes": [
                {"subspace": "staking", "key": "MaxValidators", "value": 150},
                {"subspace": "gov", "key": "votingparams", "value": {"voting_period": "600000000000"}},
                {"subspace": "staking", "key": "UnbondingTime", "value": "600s"},
            ],
        }
    )
    assert [change.value_text() for change in params.changes] == [
        "150",
        '{"voting_period":"600000000000"}',
        '"600s"',
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ([], "params.changes"),
        ([{"subspace": "", "key": "k", "value": 1}], "params.changes[0].subspace"),
        ([{"subspace": "s", "key": "k"}], "params.changes[0].value"),
        ([{"subspace": "s", "key": "k", "value": None}], "params.changes[0].value"),
    ],
)
def test_a_bad_change_is_named(changes: list[dict[str, Any]], field: str) -> None:
    problem = _problem(
        GovParamChangeParams,
        {**COMMON, "title": "t", "description": "d", "initialDeposit": "1usei", "changes": changes},
    )
    assert field in problem


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"upgradeHeight": 0}, "params.upgradeHeight"),
        ({"upgradeName": "has space"}, "params.upgradeName"),
        ({"title": ""}, "params.title"),
        ({"initialDeposit": "10"}, "params.initialDeposit"),
    ],
)
def test_a_bad_upgrade_param_is_named(params: dict[str, Any], field: str) -> None:
    base = {
        **COMMON,
        "title": "t",
        "description": "d",
        "initialDeposit": "1usei",
        "upgradeName": "v2",
        "upgradeHeight": 10,
    }
    assert field in _problem(GovSoftwareUpgradeParams, {**base, **params})
