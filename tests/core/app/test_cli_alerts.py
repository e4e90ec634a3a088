"""`leadbridge alerts test`, the channels in `status`, and apprise URLs in `config show`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clihelp import EXIT_ATTENTION, EXIT_USAGE, run_cli
from tests.core.alerts.receiver import Receiver, receiver


def _config(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "lb.yaml"
    path.write_text(f"store: sqlite:///{tmp_path / 'lb.db'}\n{alerts}", encoding="utf-8")
    return path


def _two_channels(rx: Receiver) -> str:
    return (
        "alerts:\n"
        f"  - {{name: ops, url: 'json://127.0.0.1:{rx.port}/ops'}}\n"
        f"  - {{name: sales, url: 'json://127.0.0.1:{rx.port}/sales', events: [hot_lead]}}\n"
    )


def test_alerts_test_sends_to_every_channel_and_status_shows_their_last_success(
    tmp_path: Path,
) -> None:
    with receiver() as rx:
        config = _config(tmp_path, _two_channels(rx))
        result = run_cli(["--config", config, "alerts", "test", "--format", "json"])
        answers = json.loads(result.stdout)
        assert [(a["channel"], a["ok"]) for a in answers] == [("ops", True), ("sales", True)]
        assert {r.path for r in rx.requests} == {"/ops", "/sales"}
        assert rx.requests[0].body["title"] == "leadbridge test message"

        run_cli(["--config", config, "alerts", "test", "--channel", "sales"])
        assert len(rx.requests) == 3

        status = json.loads(run_cli(["--config", config, "status", "--format", "json"]).stdout)
        assert status["alerts"]["ops"]["last_success_at"] is not None
        assert status["alerts"]["ops"]["last_failure_at"] is None
        table = run_cli(["--config", config, "status"]).stdout
        assert "alert channels" in table and "sales" in table


def test_a_channel_that_refuses_is_exit_1_with_its_answer_and_recorded(tmp_path: Path) -> None:
    with receiver() as rx:
        rx.down = True
        config = _config(tmp_path, _two_channels(rx))
        result = run_cli(["--config", config, "alerts", "test"], expect=EXIT_ATTENTION)
        assert "500" in result.stdout
        status = json.loads(run_cli(["--config", config, "status", "--format", "json"]).stdout)
        assert status["alerts"]["ops"]["last_failure_at"] is not None
        assert "500" in status["alerts"]["ops"]["last_error"]


def test_no_channel_to_test_is_a_usage_error(tmp_path: Path) -> None:
    bare = _config(tmp_path, "")
    assert (
        "no alert channels"
        in run_cli(["--config", bare, "alerts", "test"], expect=EXIT_USAGE).stdout
    )
    with receiver() as rx:
        config = _config(tmp_path, _two_channels(rx))
        result = run_cli(
            ["--config", config, "alerts", "test", "--channel", "nope"], expect=EXIT_USAGE
        )
        assert "ops, sales" in result.stdout
        assert rx.requests == []


def test_status_without_alerts_configured_has_no_alerts_section(tmp_path: Path) -> None:
    status = json.loads(
        run_cli(["--config", _config(tmp_path, ""), "status", "--format", "json"]).stdout
    )
    assert "alerts" not in status


def test_config_show_masks_apprise_urls_whose_secrets_sit_in_the_path(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "alerts:\n"
        "  pii: false\n"
        "  channels:\n"
        "    - name: teams\n"
        "      url: workflows://prod-01.westeurope.logic.azure.com:443/wf-4711-abcdef/s3cr3t-key\n"
        "    - name: slack\n"
        "      url: slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#sales\n",
    )
    shown = run_cli(["--config", config, "config", "show"]).stdout
    for secret in ("s3cr3t-key", "wf-4711-abcdef", "TIiajkdnlazkcOXrIdevi7", "logic.azure"):
        assert secret not in shown
    assert "workflows://***" in shown and "slack://***" in shown


def test_a_bad_alerts_block_names_the_key_and_the_fix(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "alerts:\n"
        "  timezone: Mars/Olympus\n"
        "  channels:\n"
        "    - {name: a, url: 'json://x', events: [hot_leads]}\n",
    )
    result = run_cli(["--config", config, "config", "check"], expect=EXIT_USAGE)
    assert "alerts.timezone" in result.output and "Mars/Olympus" in result.output
    assert "alerts.channels[a].events" in result.output
