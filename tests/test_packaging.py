"""The image is built the way docs/deploy.md says: dependencies from the committed lock in a
layer of their own, only the project's own folders in the build context, and a health check
that follows the configured port."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from leadbridge.core.app import healthcheck

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_lock_pins_every_dependency_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    pinned = {
        _name(line): line.split("==", 1)[1]
        for line in (ROOT / "requirements.lock").read_text("utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    missing = [_name(r) for r in project["dependencies"] if _name(r) not in pinned]
    assert not missing, f"requirements.lock lacks {missing}: regenerate it (see Dockerfile)"


def test_dependencies_are_a_layer_before_the_code() -> None:
    steps = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text("utf-8").splitlines()
        if line.startswith(("COPY", "RUN pip"))
    ]
    deps = steps.index("RUN pip install -r requirements.lock")
    assert steps.index("COPY requirements.lock ./") < deps < steps.index("COPY core ./core")
    assert steps[-1].startswith("RUN pip install --no-deps .")


def test_the_build_context_leaves_out_node_modules_and_stores() -> None:
    ignore = (ROOT / ".dockerignore").read_text("utf-8").splitlines()
    assert ignore[ignore.index("*") + 1 :]  # everything is out unless named back in
    named = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert named == {
        "pyproject.toml",
        "requirements.lock",
        "README.md",
        "core",
        "connectors",
        "config",
    }


def test_the_health_check_follows_the_configured_port(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "lb.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'lb.db'}\nhttp: {{port: 9123}}\n", "utf-8")
    monkeypatch.setenv("LEADBRIDGE_CONFIG", str(config))
    assert healthcheck.probe_url() == "http://127.0.0.1:9123/healthz"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nhttp: {{port: 9123, health_port: 9124}}\n",
        "utf-8",
    )
    assert healthcheck.probe_url() == "http://127.0.0.1:9124/healthz"
    # Nothing listens there: unhealthy, exit 1, one line saying why.
    result = subprocess.run(
        [sys.executable, "-m", "leadbridge.core.app.healthcheck"],
        capture_output=True,
        text=True,
        env={"LEADBRIDGE_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 1 and "unhealthy" in result.stderr
