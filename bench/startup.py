"""Start-up benchmark: how long the `leadbridge` command takes before it does anything.

Each command runs as a fresh process, `--runs` times, interleaved with the baseline — a
bare `python -c pass`, the interpreter's own start on this machine — so the figure that
matters is leadbridge's cost on top of it, side by side in the same run:

    python bench/startup.py [--runs 15] [--before DIR]

`status` reads a small SQLite store (made first, migrated), so it pays for the store's
libraries — the row "store + config libraries alone" imports just those (SQLAlchemy with
its SQLite dialect, pydantic-settings, PyYAML): a floor no change to leadbridge's own code
can go under; `--help` and `--version` load none of leadbridge's machinery (core/app/cli.py
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

# What `status` cannot start without: the store's library (SQLAlchemy, with the SQLite
# dialect) and the configuration's (pydantic-settings, PyYAML) — not even the CLI's.
STATUS_LIBRARIES = "import sqlalchemy, sqlalchemy.dialects.sqlite, pydantic_settings, yaml"


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


Command = tuple[list[str], dict[str, str]]


def commands(tmp: Path, env: dict[str, str], before: Path | None) -> dict[str, Command]:
    """The commands timed, with a small migrated SQLite store for `status`; with `before`,
    `--help` and `status` again from that earlier tree, in the same interleaved run."""
    config = tmp / "lb.yaml"
    config.write_text(
        f"store: sqlite:///{tmp / 'lb.db'}\n"
        "sources:\n  - {name: drop, kind: leads_file, path: leads.jsonl}\n",
        encoding="utf-8",
    )
    leadbridge = [sys.executable, "-m", "leadbridge.core"]
    subprocess.run([*leadbridge, "--config", str(config), "db", "upgrade"], check=True, env=env)
    status = [*leadbridge, "--config", str(config), "status"]
    timed_commands = {
        "python -c pass (baseline)": ([sys.executable, "-c", "pass"], env),
        # The floor under `status` on this stack: the libraries it cannot run without, and
        # nothing of leadbridge's or the CLI's — what is above this row is theirs.
        "store + config libraries alone (floor)": (
            [sys.executable, "-c", STATUS_LIBRARIES],
            env,
        ),
        "leadbridge --help": ([*leadbridge, "--help"], env),
        "leadbridge --version": ([*leadbridge, "--version"], env),
        "leadbridge status": (status, env),
    }
    if before is not None:
        earlier = env | {"PYTHONPATH": str(before)}
        timed_commands["leadbridge --help (before)"] = ([*leadbridge, "--help"], earlier)
        timed_commands["leadbridge status (before)"] = (status, earlier)
    return timed_commands


def measure(runs: int, before: Path | None) -> dict[str, list[tuple[float, float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(Path(tmp))
        argvs = commands(Path(tmp), env, before)
        for argv, argv_env in argvs.values():  # warm-up: bytecode written, pages cached
            timed(argv, argv_env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in argvs}
        for _ in range(runs):  # interleaved: a noisy moment hits every command alike
            for name, (argv, argv_env) in argvs.items():
                times[name].append(timed(argv, argv_env))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--before",
        type=Path,
        help="a directory holding an earlier tree as a `leadbridge` package (leadbridge/core, "
        "leadbridge/connectors), put first on PYTHONPATH for the '(before)' rows",
    )
    args = parser.parse_args()
    times = measure(args.runs, args.before)
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
