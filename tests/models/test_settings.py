"""AgentSettings: one validated model for every environment variable, errors that name the variable, and the README's
Configuration table listing exactly the variables the model reads."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agent.models.settings import AgentSettings, SettingsError

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_variables() -> set[str]:
    section = README.read_text().split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_the_readme_table_lists_exactly_the_variables_the_model_reads() -> None:
    assert readme_variables() == set(AgentSettings.variables())


def test_every_field_is_read_from_a_variable() -> None:
    unread = [name for name, field in AgentSettings.model_fields.items() if field.validation_alias is None]
    assert unread == []


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("NODETASK_RETENTION_HOURS", "-5", "must be greater than 0"),
        ("NODETASK_RETENTION_HOURS", "0", "must be greater than 0"),
        ("NODETASK_RETENTION_HOURS", "a month", "must be a number of hours"),
        ("NODETASK_HTTP_PORT", "99999", "less than or equal to 65535"),
        ("NODETASK_HTTP_PORT", "0", "greater than or equal to 1"),
        ("NODETASK_HTTP_PORT", "http", "valid integer"),
        ("NODETASK_PROGRESS_SECONDS", "0", "greater than 0"),
        ("NODETASK_SHUTDOWN_GRACE_SECONDS", "-1", "greater than or equal to 0"),
        ("NODETASK_STATUS_CONCURRENCY", "0", "greater than or equal to 1"),
        ("NODETASK_SELECTOR", "fieldSelector", "'auto' or 'none'"),
        ("NODETASK_MAX_GAS", "0", "greater than or equal to 1"),
        ("NODETASK_MAX_GAS_PRICE", "usei", "'usei' is not a gas price"),
        ("NODETASK_MAX_GAS_PRICE", "0.1usei,0.2usei", "denom 'usei' appears twice"),
        ("NODETASK_MAX_GAS_PRICE", ",", "at least one"),
        ("NODETASK_MAX_DEPOSIT", "1.5usei", "whole number"),
        ("NODETASK_MAX_DEPOSIT", "-5usei", "is not an amount"),
        ("SEI_LOG_LEVEL", "bogus", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ("SEI_SIDECAR_PORT", "0", "greater than or equal to 1"),
        ("SEI_SIDECAR_PORT", "sidecar", "valid integer"),
        ("AWS_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
        ("AWS_RETRY_MODE", "eager", "'standard', 'adaptive' or 'legacy'"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_the_value_and_the_reason(
    variable: str, value: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        AgentSettings.from_env({variable: value})
    assert f"{variable}={value!r}: " in str(caught.value)
    assert reason in str(caught.value)


def test_the_spending_ceilings_are_read_per_denom() -> None:
    limits = AgentSettings.from_env(
        {"NODETASK_MAX_GAS": "500000", "NODETASK_MAX_GAS_PRICE": "0.02usei, 0.01stake", "NODETASK_MAX_DEPOSIT": "9usei"}
    ).spending_limits
    assert limits.max_gas == 500_000
    assert limits.max_gas_price == {"usei": Decimal("0.02"), "stake": Decimal("0.01")}
    assert limits.max_deposit == {"usei": 9}
    default = AgentSettings.from_env({}).spending_limits
    assert (default.max_gas, default.max_gas_price, default.max_deposit) == (
        1_000_000,
        {"usei": Decimal("0.1")},
        {"usei": 3_500_000_000},
    )


def test_every_bad_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        AgentSettings.from_env({"NODETASK_HTTP_PORT": "-1", "NODETASK_RETENTION_HOURS": "-1"})
    assert "NODETASK_HTTP_PORT" in str(caught.value) and "NODETASK_RETENTION_HOURS" in str(caught.value)


def test_values_are_read_converted_and_stripped_and_empty_means_the_default() -> None:
    settings = AgentSettings.from_env(
        {
            "SEI_HOME": " /data/sei ",
            "NODETASK_HTTP_PORT": "8080",
            "NODETASK_RETENTION_HOURS": "1.5",
            "NODETASK_SELECTOR": "none",
            "SEI_CHAIN_ID": "",
            "AWS_ENDPOINT_URL": "http://fallback:9000",
        }
    )
    assert settings.home == Path("/data/sei")
    assert settings.http_port == 8080
    assert settings.retention == timedelta(hours=1.5)
    assert settings.selector == "none"
    assert settings.chain_id == ""
    assert settings.s3_endpoint_url == "http://fallback:9000"
    assert settings.store_path == Path("/data/sei/nodetask-agent.db")


def test_the_s3_specific_endpoint_wins_over_the_general_one() -> None:
    env = {"AWS_ENDPOINT_URL": "http://general", "AWS_ENDPOINT_URL_S3": "http://s3-only"}
    assert AgentSettings.from_env(env).s3_endpoint_url == "http://s3-only"


def test_flags_win_over_the_environment_and_none_means_not_given() -> None:
    env = {"SEI_HOME": "/from-env", "NODETASK_HTTP_PORT": "8080"}
    settings = AgentSettings.from_env(env, home=Path("/from-flag"), http_port=None)
    assert (settings.home, settings.http_port) == (Path("/from-flag"), 8080)


def test_a_bad_flag_is_refused_naming_it() -> None:
    with pytest.raises(SettingsError, match="http_port=70000"):
        AgentSettings.from_env({}, http_port=70000)


def test_direct_construction_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEI_CHAIN_ID", "from-the-environment")
    monkeypatch.setenv("NODETASK_RETENTION_HOURS", "-5")
    settings = AgentSettings(home=Path("/h"))
    assert (settings.chain_id, settings.retention) == ("", timedelta(days=30))


def test_from_env_without_a_mapping_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEI_CHAIN_ID", "from-the-environment")
    assert AgentSettings.from_env().chain_id == "from-the-environment"
    monkeypatch.setenv("NODETASK_RETENTION_HOURS", "-5")
    with pytest.raises(SettingsError, match="NODETASK_RETENTION_HOURS"):
        AgentSettings.from_env()
