"""core type-checks clean under `mypy --strict`, with the settings in pyproject.toml
([tool.mypy]): a wrong annotation fails the suite like a wrong assertion does.

mypy can't see `leadbridge.core` through the editable install (`leadbridge` is a namespace
package whose folders are mapped from the repository's top level, and the install's finder
is a runtime import hook). So mypy runs from a folder holding `leadbridge/core -> core/`,
`leadbridge/connectors -> connectors/`, `leadbridge/config -> config/` symlinks. The folder
and mypy's incremental cache live in the repository's `.mypy_cache`, at the same paths every
run, so a run after a small change re-checks only what the change touches.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
CACHE = ROOT / ".mypy_cache"  # mypy writes a .gitignore of `*` into it
SHIM = CACHE / "leadbridge-shim"
MAPPED = ("core", "connectors", "config")  # [tool.setuptools] package-dir


def shim(base: Path = SHIM) -> Path:
    """The symlink folder, made or repaired without a moment in which a link is missing
    (another test run may be reading it): each link is made aside, then renamed over."""
    package = base / "leadbridge"
    package.mkdir(parents=True, exist_ok=True)
    for name in MAPPED:
        link, folder = package / name, ROOT / name
        if link.is_symlink() and link.readlink() == folder:
            continue
        aside = package / f".{name}.{os.getpid()}"
        aside.unlink(missing_ok=True)
        aside.symlink_to(folder, target_is_directory=True)
        os.replace(aside, link)
    return base


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    """mypy of this interpreter's environment, with pyproject's [tool.mypy], from the shim."""
    command = [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT)]
    command += ["--cache-dir", str(CACHE), "--sqlite-cache", *args]
    return subprocess.run(command, cwd=shim(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def mypy_installed() -> None:
    need(
        importlib.util.find_spec("mypy") is not None,
        "mypy is not installed: pip install -e '.[test]'",
    )


@pytest.mark.slow
def test_core_passes_mypy_strict(mypy_installed: None) -> None:
    result = run_mypy("-p", "leadbridge.core")
    assert result.returncode == 0, (
        f"mypy --strict on leadbridge.core (exit {result.returncode}):\n"
        + result.stdout
        + result.stderr
    )


def test_the_shim_maps_each_package_to_its_folder(tmp_path: Path) -> None:
    """What mypy reads as leadbridge.core is the repository's core/, not an installed copy;
    a stale link (a moved checkout) is repaired."""
    package = shim(tmp_path) / "leadbridge"
    stale = package / "config"
    stale.unlink()
    stale.symlink_to(ROOT / "tests", target_is_directory=True)
    package = shim(tmp_path) / "leadbridge"
    for name in MAPPED:
        assert (package / name).resolve() == (ROOT / name).resolve()
    assert (package / "core" / "settings.py").samefile(ROOT / "core" / "settings.py")
