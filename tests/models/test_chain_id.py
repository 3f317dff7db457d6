"""Every params model that takes a chain ID applies the one rule of `agent.models.params.check_chain_id`."""

from __future__ import annotations

import pytest

from agent.models import TaskType
from agent.tasks import default_registry

TASKS_WITH_CHAIN_ID = {
    TaskType.GENERATE_IDENTITY: {"moniker": "m"},
    TaskType.CONFIGURE_GENESIS: {},
    TaskType.GENERATE_GENTX: {"stakingAmount": "1usei", "accountBalance": "2usei"},
}


@pytest.mark.parametrize("task_type", sorted(TASKS_WITH_CHAIN_ID))
@pytest.mark.parametrize(
    ("chain_id", "problem"),
    [("sei test", "may contain only"), ("-sei", "starting with a letter or digit"), ("c" * 51, "at most 50")],
)
def test_bad_chain_ids_are_refused_the_same_way_by_every_task(task_type: TaskType, chain_id: str, problem: str) -> None:
    spec = default_registry().get(task_type)
    assert spec is not None
    with pytest.raises(ValueError, match=problem):
        spec.params_model.model_validate({**TASKS_WITH_CHAIN_ID[task_type], "chainId": chain_id})


@pytest.mark.parametrize("task_type", sorted(TASKS_WITH_CHAIN_ID))
def test_a_good_chain_id_is_accepted_by_every_task(task_type: TaskType) -> None:
    spec = default_registry().get(task_type)
    assert spec is not None
    params = spec.params_model.model_validate({**TASKS_WITH_CHAIN_ID[task_type], "chainId": "atlantic-2"})
    assert params.chain_id == "atlantic-2"  # type: ignore[attr-defined]
