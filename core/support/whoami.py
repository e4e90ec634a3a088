"""Who this process is: one name for it in the store (replicas, job runs, outbox claims), and
one User-Agent for what it sends, so a request in a CRM's or a storage account's log can be
traced to the replica that made it."""

from __future__ import annotations

import os
import socket
from importlib.metadata import PackageNotFoundError, version


def replica_name() -> str:
    """host:pid — unique per process, and says where to look when one misbehaves."""
    return f"{socket.gethostname()}:{os.getpid()}"


def user_agent() -> str:
    try:
        release = version("leadbridge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        release = "dev"
    return f"leadbridge/{release} ({replica_name()})"
