"""Driving the connectors' sandboxes from core: start the ones installed, point targets at
them, inject faults. Used by `leadbridge demo`, `leadbridge sandbox`, the tests and the
benchmarks; every sandbox binds to loopback only.

Which sandboxes exist is what the installed connectors declare (`Sandboxed`), so a new CRM's
sandbox appears here without a line changing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from leadbridge.core.connector.contract import SandboxServer
from leadbridge.core.connector.registry import sandboxed_kinds


def kinds() -> list[str]:
    """Every installed target kind that has a sandbox, sorted."""
    return sorted(sandboxed_kinds())


def start(
    kinds: list[str] | None = None, *, latency_ms: float = 0.0, ports: dict[str, int] | None = None
) -> dict[str, Any]:
    """Start the sandboxes of these kinds (default: all), on free ports unless `ports` says."""
    classes = sandboxed_kinds()
    started: dict[str, Any] = {}
    try:
        for kind in kinds or sorted(classes):
            sandbox = classes[kind].sandbox(port=(ports or {}).get(kind, 0), latency_ms=latency_ms)
            started[kind] = sandbox.start()
    except BaseException:
        stop(started)
        raise
    return started


def stop(sandboxes: Mapping[str, SandboxServer]) -> None:
    for sandbox in sandboxes.values():
        sandbox.stop()


def target_entry(kind: str, sandbox: Any, name: str | None = None) -> dict[str, Any]:
    """The `targets:` entry that points leadbridge at a running sandbox (its credentials)."""
    cls = sandboxed_kinds()[kind]
    return cls.sandbox_entry(sandbox, name or cls.default_name)


def parse_faults(spec: str | Mapping[Any, Any]) -> dict[int, float]:
    """`423:0.1,521:0.05` (or {"423": 0.1, ...}) as {status: share}. Shares are of all API
    requests, so together they can't pass 1; a status is an HTTP error status (400-599)."""
    pairs = (
        [tuple(part.split(":", 1)) for part in spec.split(",") if part.strip()]
        if isinstance(spec, str)
        else list(spec.items())
    )
    statuses: dict[int, float] = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"{':'.join(map(str, pair))!r}: write status:share, e.g. 423:0.1")
        status, share = _fault_pair(*pair)
        if status in statuses:
            raise ValueError(f"{status} is given twice")
        statuses[status] = share
    if sum(statuses.values()) > 1:
        raise ValueError("the shares add up to more than 1 (they are shares of every request)")
    return statuses


def _fault_pair(status: Any, share: Any) -> tuple[int, float]:
    try:
        code, part = int(str(status).strip()), float(str(share).strip())
    except ValueError:
        raise ValueError(f"{status}:{share}: write status:share, e.g. 423:0.1") from None
    if not 400 <= code <= 599:
        raise ValueError(f"{code}: only error statuses (400-599) can be injected")
    if not 0 <= part <= 1:
        raise ValueError(f"{code}:{share}: a share is between 0 and 1")
    return code, part


def apply_faults(
    sandboxes: Mapping[str, SandboxServer], statuses: Mapping[int, float]
) -> dict[str, list[int]]:
    """Give each sandbox the statuses it can answer; returns, per sandbox, the ones it can't
    (left out there). A status no sandbox can answer is an error: nothing would inject it."""
    skipped = {
        kind: sorted(set(statuses) - box.fault_statuses()) for kind, box in sandboxes.items()
    }
    nowhere = sorted(set(statuses).intersection(*map(set, skipped.values())))
    if nowhere and sandboxes:
        raise ValueError(
            f"no running sandbox answers {', '.join(map(str, nowhere))}; they answer: "
            + "; ".join(
                f"{kind} {', '.join(map(str, sorted(box.fault_statuses())))}"
                for kind, box in sandboxes.items()
            )
        )
    for kind, box in sandboxes.items():
        box.set_faults({s: v for s, v in statuses.items() if s not in skipped[kind]})
    return {kind: left for kind, left in skipped.items() if left}
