"""Start-up benchmark: how long the `leadbridge` command takes before it does anything.

Each command runs as a fresh process, `--runs` times, interleaved with the baseline — a
bare `python -c pass`, the interpreter's own start on this machine — so the figure that
matters is leadbridge's cost on top of it, side by side in the same run:

    python bench/startup.py [--runs 15]

`status` reads a small SQLite store (made first, migrated), so it pays for the store's
libraries; `--help` and `--version` load none of leadbridge's machinery (core/app/cli.py
imports it lazily).

Every command runs with compiled bytecode, as an installed leadbridge does (pip compiles
it at install): the children write theirs to a temporary `PYTHONPYCACHEPREFIX`, even where
`PYTHONDONTWRITEBYTECODE` is set, and each command runs once untimed first. Without that,
an editable install under `PYTHONDONTWRITEBYTECODE` compiles leadbridge's sources on every
start, which is the checkout's cost, not the command's.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time, and the child's CPU time (user + system): on a shared machine the wall
    time also holds waiting for a core, the CPU time is the command's own work."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def child_env(tmp: Path) -> dict[str, str]:
    """This environment, with bytecode cached in `tmp` (see the module's docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def commands(tmp: Path, env: dict[str, str]) -> dict[str, list[str]]:
    """The commands timed, with a small migrated SQLite store for `status`."""
    config = tmp / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{tmp / 'lb.db'}\n"
        "sources:\n  - {name: drop, kind: leads_file, path: leads.jsonl}\n",
        encoding="utf-8",
    )
    leadbridge = [sys.executable, "-m", "leadbridge.core"]
    subprocess.run([*leadbridge, "--config", str(config), "db", "upgrade"], check=True, env=env)
    return {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "leadbridge --help": [*leadbridge, "--help"],
        "leadbridge --version": [*leadbridge, "--version"],
        "leadbridge status": [*leadbridge, "--config", str(config), "status"],
    }


def measure(runs: int) -> dict[str, list[tuple[float, float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(Path(tmp))
        argvs = commands(Path(tmp), env)
        for argv in argvs.values():  # warm-up: bytecode written, files in the page cache
            timed(argv, env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in argvs}
        for _ in range(runs):  # interleaved: a noisy moment hits every command alike
            for name, argv in argvs.items():
                times[name].append(timed(argv, env))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    times = measure(args.runs)
    base = statistics.median(wall for wall, _ in times["python -c pass (baseline)"])
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.runs} runs each, interleaved; load average {os.getloadavg()[0]:.2f}"
    )
    print("| command | median s | p90 s | CPU median s | over the baseline s | × baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        walls = sorted(wall for wall, _ in values)
        median = statistics.median(walls)
        p90 = walls[int(0.9 * (len(walls) - 1))]
        cpu = statistics.median(c for _, c in values)
        print(
            f"| {name} | {median:.3f} | {p90:.3f} | {cpu:.3f} | {median - base:+.3f} "
            f"| {median / base:.1f}x |"
        )


if __name__ == "__main__":
    main()
