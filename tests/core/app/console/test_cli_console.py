"""`leadbridge console add-user`: the password from stdin off a terminal, argon2 in the store."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from leadbridge.core.app.console import auth
from leadbridge.core.store.repo import Store
from leadbridge.core.store.tables import console_audit, console_users
from tests.clihelp import EXIT_USAGE, run_cli


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "lb.yaml"
    path.write_text(f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\n", encoding="utf-8")
    return path


def test_add_user_reads_the_password_from_stdin_and_stores_only_its_hash(tmp_path: Path) -> None:
    config = _config(tmp_path)
    added = run_cli(
        ["--config", config, "console", "add-user", "olga", "--role", "operator"],
        input="s3cret pass\n",
    )
    assert "added olga (operator)" in added.output and "s3cret" not in added.output
    changed = run_cli(
        ["--config", config, "console", "add-user", "olga", "--role", "viewer"],
        input="other pass\n",
    )
    assert "changed olga (viewer)" in changed.output
    store = Store(f"sqlite:///{tmp_path / 'lb.db'}")
    try:
        with store.connect() as conn:
            [user] = conn.execute(select(console_users)).all()
            actions = conn.execute(select(console_audit.c.action)).scalars().all()
        assert user.role == "viewer" and user.password_hash.startswith("$argon2id$")
        assert actions == ["user added", "user changed"]
        assert auth.check_password(store, "olga", "other pass") is auth.Role.viewer
        assert auth.check_password(store, "olga", "s3cret pass") is None
    finally:
        store.dispose()


def test_an_empty_password_or_bad_role_is_a_usage_error(tmp_path: Path) -> None:
    config = _config(tmp_path)
    refused = run_cli(
        ["--config", config, "console", "add-user", "olga", "--role", "operator"],
        input="\n",
        expect=EXIT_USAGE,
    )
    assert "the password is empty" in refused.output
    run_cli(
        ["--config", config, "console", "add-user", "olga", "--role", "admin"],
        input="x\n",
        expect=EXIT_USAGE,
    )
