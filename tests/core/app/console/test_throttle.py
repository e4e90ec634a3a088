"""The sign-in throttle on its own, with a clock the test moves (no waiting, no timing)."""

from __future__ import annotations

from leadbridge.core.app.console.throttle import LoginThrottle, address_key, user_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock, **kwargs: float) -> LoginThrottle:
    return LoginThrottle(clock=clock, **kwargs)  # type: ignore[arg-type]


def test_the_fifth_failure_blocks_for_the_whole_cool_down() -> None:
    clock = Clock()
    counter = _throttle(clock)
    keys = [user_key("Olga"), address_key("10.0.0.1")]
    assert [counter.failed(keys) for _ in range(5)] == [[]] * 4 + [["user", "addr"]]
    assert counter.retry_after([user_key("olga")]) == counter.cooldown_s  # any case
    assert counter.retry_after([address_key("10.0.0.1")]) == counter.cooldown_s
    clock.now += counter.cooldown_s - 1
    assert counter.retry_after(keys) == 1
    clock.now += 1
    assert counter.retry_after(keys) is None
    assert counter.failed(keys) == []  # a fresh count after the cool-down


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = Clock()
    counter = _throttle(clock)
    for _ in range(4):
        counter.failed([user_key("olga")])
    clock.now += counter.window_s
    assert counter.failed([user_key("olga")]) == []
    assert counter.retry_after([user_key("olga")]) is None


def test_a_success_forgets_the_name_not_the_address() -> None:
    clock = Clock()
    counter = _throttle(clock)
    keys = [user_key("olga"), address_key("10.0.0.1")]
    for _ in range(4):
        counter.failed(keys)
    counter.succeeded(user_key("olga"))
    assert counter.failed([user_key("olga")]) == []
    assert counter.failed([address_key("10.0.0.1")]) == ["addr"]


def test_memory_stays_bounded() -> None:
    clock = Clock()
    counter = _throttle(clock, max_keys=3)
    for n in range(10):
        counter.failed([address_key(f"10.0.0.{n}")])
    assert len(counter._keys) <= 3
    assert counter.retry_after([address_key("10.0.0.9")]) is None
