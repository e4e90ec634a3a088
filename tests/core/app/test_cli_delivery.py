"""deliver, backfill and dlq through the CLI, against an in-process Salesforce sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadbridge.core.connector import sandboxes
from tests.clihelp import EXIT_ATTENTION, EXIT_USAGE, run_cli

Args = list[str | Path]


@pytest.fixture
def crm() -> Iterator[Any]:
    running = sandboxes.start(["salesforce"])
    yield running["salesforce"]
    sandboxes.stop(running)


@pytest.fixture
def config(tmp_path: Path, crm: Any, samples: list[dict[str, Any]]) -> Path:
    leads = tmp_path / "leads.jsonl"
    payloads = [s["https_payload"] for s in samples]
    payloads[2] = json.loads(json.dumps(payloads[2]))
    payloads[2]["UserDetails"]["Company"] = "SANDBOX_REJECT GmbH"  # the org's rule refuses it
    leads.write_text("\n".join(json.dumps(p) for p in payloads) + "\n", encoding="utf-8")
    path = tmp_path / "lb.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "store": f"sqlite:///{tmp_path / 'lb.db'}",
                "log_format": "text",
                "sources": [{"name": "capture", "kind": "leads_file", "path": str(leads)}],
                "targets": [sandboxes.target_entry("salesforce", crm)],
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def lb(config: Path) -> Args:
    """The start of every command line here: the test's config."""
    return ["--config", config]


def test_deliver_dead_letters_then_replay_after_the_crm_is_fixed(lb: Args, crm: Any) -> None:
    run_cli([*lb, "ingest"])  # the Microsoft test lead is set aside: not a problem
    result = run_cli([*lb, "deliver"], expect=EXIT_ATTENTION)  # finished, one dead-lettered
    assert "9 pushed in 2 API calls" in result.output and "1 dead-lettered" in result.output
    assert len(crm.records) == 9

    [letter] = json.loads(run_cli([*lb, "dlq", "list", "--format", "json"]).stdout)
    assert letter["error_class"] == "permanent" and "FIELD_CUSTOM_VALIDATION" in letter["error"]
    shown = json.loads(run_cli([*lb, "dlq", "show", str(letter["id"])]).stdout)
    assert shown["body"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"

    status = json.loads(run_cli([*lb, "status", "--format", "json"]).stdout)
    assert status["targets"]["sales"]["dead_letters"] == 1
    assert status["targets"]["sales"]["health"]["state"] == "ok"
    assert status["targets"]["sales"]["health"]["api_usage"]["total"] == 15000

    crm_rule = "SANDBOX_REJECT"
    from leadbridge.connectors.salesforce import sandbox as sf_sandbox

    sf_sandbox.REJECT_MARKER = "never-matches"  # the admin relaxes the validation rule
    try:
        replay = run_cli([*lb, "dlq", "replay", str(letter["id"])])
    finally:
        sf_sandbox.REJECT_MARKER = crm_rule
    assert "1 pushed" in replay.output and len(crm.records) == 10
    assert json.loads(run_cli([*lb, "dlq", "list", "--format", "json"]).stdout) == []
    assert run_cli([*lb, "deliver"]).output.count("0 pushed in 0 API calls") == 1


def test_dlq_discard_and_usage_errors(lb: Args) -> None:
    run_cli([*lb, "ingest"])
    run_cli([*lb, "deliver"], expect=EXIT_ATTENTION)
    [letter] = json.loads(run_cli([*lb, "dlq", "list", "--format", "json"]).stdout)
    run_cli([*lb, "dlq", "discard", str(letter["id"]), "--reason", "a duplicate of Ana's"])
    run_cli([*lb, "dlq", "discard", str(letter["id"])], expect=EXIT_ATTENTION)  # not open now
    story = run_cli([*lb, "leads", "show", letter["lead_key"]])  # who closed it, and why
    assert f"dead letter {letter['id']} ({letter['target']}) discarded: a duplicate" in " ".join(
        story.stdout.split()
    )
    run_cli([*lb, "dlq", "replay"], expect=EXIT_USAGE)  # none of ID, --all, --target
    run_cli([*lb, "deliver", "--target", "nope"], expect=EXIT_USAGE)
    closed = json.loads(run_cli([*lb, "dlq", "list", "--all", "--format", "json"]).stdout)
    assert closed[0]["resolution"] == "discarded"


def test_backfill_dry_run_then_backfill_into_a_fresh_crm(lb: Args, crm: Any) -> None:
    run_cli([*lb, "ingest"])
    dry = run_cli([*lb, "backfill", "--dry-run", "--since", "2000-01-01"])
    lines = [json.loads(line) for line in dry.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 10 and all(line["would_send"] for line in lines)
    assert lines[0]["payload"]["LastName"]
    assert crm.records == {} and crm.api_calls() == 0  # a dry run sends nothing

    result = run_cli([*lb, "backfill"], expect=EXIT_ATTENTION)  # as deliver: a dead letter
    assert "queued 10 lead pushes" in result.output
    assert len(crm.records) == 9  # and the refused one is a dead letter
    again = run_cli([*lb, "backfill"], expect=EXIT_ATTENTION)
    # Re-running costs reads, not writes: only the never-delivered lead is tried again.
    assert "9 unchanged (no call)" in again.output and "1 dead-lettered" in again.output
