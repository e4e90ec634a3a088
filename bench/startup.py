"""Start-up benchmark: how long the `leadbridge` command takes before it does anything.

Each command runs as a fresh process, `--runs` times, interleaved with the baseline — a
bare `python -c pass`, the interpreter's own start on this machine — so the figure that
matters is leadbridge's cost on top of it, side by side in the same run:

    python bench/startup.py [--runs 15]

`status` reads a small SQLite store (made first, migrated), so it pays for the store's
libraries; `--help` and `--version` load none of leadbridge's machinery (core/app/cli.py
imports it lazily).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "lb.yaml"
        config.write_text(
            f"store: sqlite:///{Path(tmp) / 'lb.db'}\n"
            "sources:\n  - {name: drop, kind: leads_file, path: leads.jsonl}\n",
            encoding="utf-8",
        )
        leadbridge = [sys.executable, "-m", "leadbridge.core"]
        subprocess.run([*leadbridge, "--config", str(config), "db", "upgrade"], check=True)
        commands = {
            "python -c pass (baseline)": [sys.executable, "-c", "pass"],
            "leadbridge --help": [*leadbridge, "--help"],
            "leadbridge --version": [*leadbridge, "--version"],
            "leadbridge status": [*leadbridge, "--config", str(config), "status"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved: a noisy moment hits every command alike
            for name, argv in commands.items():
                times[name].append(timed(argv))
    base = statistics.median(times["python -c pass (baseline)"])
    print(
        f"# {platform.machine()} Python {platform.python_version()}; {args.runs} runs each, "
        "medians, interleaved"
    )
    print("| command | median s | p90 s | over the baseline s | × baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(
            f"| {name} | {median:.3f} | {p90:.3f} | {median - base:+.3f} | {median / base:.1f}x |"
        )


if __name__ == "__main__":
    main()
