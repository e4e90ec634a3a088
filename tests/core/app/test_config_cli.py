"""`leadbridge config check` and `config show` on hostile or secret-laden configs: exit
codes, the message an operator reads, and nothing secret printed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clihelp import EXIT_USAGE, run_cli


def _bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_config_check_refuses_an_alias_bomb_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(), encoding="utf-8")
    result = run_cli(["--config", path, "config", "check"], expect=EXIT_USAGE)
    assert "alias bomb" in result.output and "fix: write the repeated values out" in result.output


def test_config_check_and_show_hide_store_and_connector_secrets(tmp_path: Path) -> None:
    path = tmp_path / "lb.yaml"
    path.write_text(
        "store: postgresql://lb@db.internal/leads?password=p%40ss-in-query\n"
        "sources:\n"
        "  - {name: hook, kind: marketplace_https, token: url-t0ken-0123456789}\n"
        "targets:\n"
        "  - name: fn\n"
        "    kind: webhook\n"
        "    url: https://fn.example.net/api/leads?code=Funct10nKey\n"
        "    secret: hmac-s3cret\n"
        "    headers: {X-Functions-Key: Funct10nKey}\n",
        encoding="utf-8",
    )
    check = run_cli(["--config", path, "config", "check"])
    assert "db.internal" in check.output and "p@ss" not in check.output
    show = run_cli(["--config", path, "config", "show"])
    for secret in ("p@ss", "p%40ss", "url-t0ken", "Funct10nKey", "hmac-s3cret"):
        assert secret not in show.stdout, secret
    shown = json.loads(show.stdout)
    assert shown["store"] == "postgresql://lb@db.internal/leads?password=***"
    assert shown["targets"][0]["url"] == "https://fn.example.net/api/leads?code=***"


def test_an_unknown_kind_is_answered_with_the_kinds_valid_where_it_stands(tmp_path: Path) -> None:
    path = tmp_path / "lb.yaml"
    path.write_text(
        "sources:\n  - {name: leads, kind: marketplace_tabel}\n"
        "targets:\n  - {name: crm, kind: salesfroce}\n",
        encoding="utf-8",
    )
    output = run_cli(["config", "check", "--config", path], expect=EXIT_USAGE).output
    source_kinds, target_kinds = (
        set(line.split("use one of: ")[1].split(", "))
        for line in output.splitlines()
        if "fix: use one of:" in line
    )
    assert {"marketplace_table", "leads_file"} <= source_kinds
    assert not {"salesforce", "hubspot", "dataverse", "webhook"} & source_kinds
    assert {"salesforce", "hubspot", "dataverse", "webhook"} <= target_kinds
    assert not {"marketplace_table", "leads_file"} & target_kinds


def test_names_an_environment_override_cannot_tell_apart_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "lb.yaml"
    path.write_text(
        "sources:\n"
        "  - {name: my-src, kind: leads_file, path: a.jsonl}\n"
        "  - {name: my_src, kind: leads_file, path: b.jsonl}\n",
        encoding="utf-8",
    )
    output = run_cli(["--config", path, "config", "check"], expect=EXIT_USAGE).output
    assert "sources[my_src]: the name is the same as 'my-src'" in output
    assert "LEADBRIDGE_SOURCES__MY_SRC__" in output and "fix: rename one of them" in output
