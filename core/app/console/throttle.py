"""Failed sign-ins counted per user name and per client address, so a password cannot be
guessed at the speed of the network (docs/console.md, "Security").

Why in memory, per process: the counters are a brake, not a ledger. Keeping them in the
store would cost a write per attempt on the shared database — the very load an attacker
controls — and the store has no table for them. With N replicas an attacker gets at most
N × LIMIT guesses per cool-down, still hopeless against an argon2 hash of a real password.
A restart forgets them; that is the price, and it is documented.

A blocked key is refused without checking the password at all (a right password is refused
too, or the block would only slow the guessing down), and the block runs its full cool-down
however many attempts arrive meanwhile: an attacker cannot keep it alive forever, and the
user it locked out knows when to come back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

LIMIT = 5  # failed sign-ins per key within WINDOW_S …
WINDOW_S = 15 * 60.0
COOLDOWN_S = 15 * 60.0  # … then every sign-in for that key is refused this long
MAX_KEYS = 10_000  # memory stays bounded however many names and addresses are tried


def user_key(name: str) -> str:
    """One counter per user name, however it is capitalised."""
    return f"user:{name.strip().casefold()}"


def address_key(address: str | None) -> str:
    """One counter per client address (the TCP peer: behind a proxy, the proxy's)."""
    return f"addr:{address or 'unknown'}"


@dataclass
class _Failures:
    at: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


class LoginThrottle:
    """Counts failed sign-ins; `clock` is injectable so tests move time instead of waiting."""

    def __init__(
        self,
        *,
        limit: int = LIMIT,
        window_s: float = WINDOW_S,
        cooldown_s: float = COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._max_keys = max_keys
        self._keys: dict[str, _Failures] = {}
        self._lock = threading.Lock()  # waitress serves requests from several threads

    def retry_after(self, keys: Iterable[str]) -> float | None:
        """Seconds until the longest running block among `keys` ends; None when none is."""
        now = self._clock()
        with self._lock:
            left = [
                f.blocked_until - now
                for k in keys
                if (f := self._keys.get(k)) is not None and f.blocked_until > now
            ]
        return max(left) if left else None

    def failed(self, keys: Iterable[str]) -> list[str]:
        """Count one failure against each key; the kinds ("user", "addr") of the keys whose
        block it started (none: no new block)."""
        now = self._clock()
        started: list[str] = []
        with self._lock:
            for key in keys:
                failures = self._keys.get(key) or self._add(key, now)
                failures.at.append(now)
                while failures.at and failures.at[0] <= now - self.window_s:
                    failures.at.popleft()
                if len(failures.at) >= self.limit and failures.blocked_until <= now:
                    failures.blocked_until = now + self.cooldown_s
                    failures.at.clear()  # after the cool-down, LIMIT fresh tries
                    started.append(key.split(":", 1)[0])
        return started

    def succeeded(self, key: str) -> None:
        """A right password forgets the name's failures (never an address's: one attacker
        signing in to their own account must not reset the count for everyone they tried)."""
        with self._lock:
            self._keys.pop(key, None)

    def _add(self, key: str, now: float) -> _Failures:
        if len(self._keys) >= self._max_keys:
            self._prune(now)
        failures = self._keys[key] = _Failures()
        return failures

    def _prune(self, now: float) -> None:
        """Drop what no longer matters, then (a flood of keys) the oldest."""
        for key in [k for k, f in self._keys.items() if _idle(f, now, self.window_s)]:
            del self._keys[key]
        while len(self._keys) >= self._max_keys:
            del self._keys[next(iter(self._keys))]


def _idle(failures: _Failures, now: float, window_s: float) -> bool:
    recent = failures.at and failures.at[-1] > now - window_s
    return not recent and failures.blocked_until <= now
