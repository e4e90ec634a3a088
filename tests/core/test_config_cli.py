"""`leadbridge config check` and `config show` on hostile or secret-laden configs: exit
codes, the message an operator reads, and nothing secret printed."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from leadbridge.core.cli import app

runner = CliRunner()


def _bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_config_check_refuses_an_alias_bomb_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(), encoding="utf-8")
    result = runner.invoke(app, ["--config", str(path), "config", "check"])
    assert result.exit_code == 2
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
    check = runner.invoke(app, ["--config", str(path), "config", "check"])
    assert check.exit_code == 0
    assert "db.internal" in check.output and "p@ss" not in check.output
    show = runner.invoke(app, ["--config", str(path), "config", "show"])
    assert show.exit_code == 0
    for secret in ("p@ss", "p%40ss", "url-t0ken", "Funct10nKey", "hmac-s3cret"):
        assert secret not in show.stdout, secret
    shown = json.loads(show.stdout)
    assert shown["store"] == "postgresql://lb@db.internal/leads?password=***"
    assert shown["targets"][0]["url"] == "https://fn.example.net/api/leads?code=***"
