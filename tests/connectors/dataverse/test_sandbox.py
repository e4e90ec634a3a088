"""The Dataverse sandbox serves the lead table's definition only in the Web API's documented
shapes, so `leadbridge config check --online` can be run against `leadbridge sandbox`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from leadbridge.connectors.dataverse.sandbox import DataverseSandbox
from leadbridge.connectors.dataverse.target import DataverseConfig, DataverseTarget
from leadbridge.core.connector.sandboxes import target_entry
from tests.clihelp import EXIT_USAGE, run_cli


@pytest.fixture
def d365() -> Iterator[DataverseSandbox]:
    with DataverseSandbox() as sandbox:
        yield sandbox


def _check_online(tmp_path: Path, sandbox: DataverseSandbox) -> list[str | Path]:
    """Write a config pointing at the sandbox; the `config check --online` command line."""
    path = tmp_path / "lb.yaml"
    config = {
        "store": f"sqlite:///{tmp_path / 'lb.db'}",
        "targets": [target_entry("dataverse", sandbox)],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return ["--config", path, "config", "check", "--online"]


def test_config_check_online_passes_against_the_sandbox(
    tmp_path: Path, d365: DataverseSandbox
) -> None:
    result = run_cli(_check_online(tmp_path, d365))
    assert "d365: no schema problem(s)" in result.output


def test_config_check_online_names_a_missing_dnc_column_and_a_building_key(
    tmp_path: Path, d365: DataverseSandbox
) -> None:
    d365.columns.discard("lb_marketplacednc")  # an environment set up before the DNC marker
    d365.key_index_status = "Pending"
    result = run_cli(_check_online(tmp_path, d365), expect=EXIT_USAGE)
    out = " ".join(result.output.split())  # rich wraps long lines
    assert "targets[d365].fields.lb_marketplacednc: lead has no column lb_marketplacednc" in out
    assert "fix: create the Yes/No column lb_marketplacednc on lead" in out
    assert "the alternate key lb_leadkey_key index is Pending" in out
    assert "d365: 2 schema problem(s)" in out


def test_max_length_only_from_the_cast_collection(d365: DataverseSandbox) -> None:
    """Like the Web API: MaxLength is not a property of AttributeMetadata."""
    target = DataverseTarget(DataverseConfig(**target_entry("dataverse", d365)))
    definition = f"{target.base}/EntityDefinitions(LogicalName='lead')"

    uncast = target.transport.request(
        "GET",
        f"{definition}?$select=LogicalName&$expand=Attributes($select=LogicalName,MaxLength)",
    )
    assert uncast.status_code == 400
    assert uncast.json() == {
        "error": {
            "code": "0x0",
            "message": "Could not find a property named 'MaxLength' on type "
            "'Microsoft.Dynamics.CRM.AttributeMetadata'.",
        }
    }
    assert (
        target.transport.request("GET", f"{definition}/Attributes?$select=MaxLength").status_code
        == 400
    )

    cast = target.transport.request(
        "GET",
        f"{definition}/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata"
        "?$select=LogicalName,MaxLength",
    )
    lengths = {a["LogicalName"]: a["MaxLength"] for a in cast.json()["value"]}
    assert lengths["lastname"] == 50 and lengths["lb_leadkey"] == 100
    assert "description" not in lengths  # a memo, not a string
    assert "donotemail" not in lengths
