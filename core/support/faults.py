"""Named crash points, for the reliability harness (tests/reliability/test_crash_anywhere.py).

`LEADBRIDGE_CRASH_AT=<point>:<n>` makes the process SIGKILL itself the n-th time it passes
`point`, so a kill lands exactly where it hurts most — between a CRM's confirmation and its
recording, say — every time. Unset (always, outside the harness), `point` does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_passes: Counter[str] = Counter()


def point(name: str) -> None:
    target = os.environ.get("LEADBRIDGE_CRASH_AT")
    if not target:
        return
    where, _, nth = target.partition(":")
    if where != name:
        return
    _passes[name] += 1
    if _passes[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
