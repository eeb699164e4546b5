"""Failed sign-ins per key (web/throttle.py), with the clock passed in."""

from __future__ import annotations

from officesensor.web.throttle import LoginThrottle


def test_an_address_waits_after_max_failures_until_the_oldest_ages_out():
    throttle = LoginThrottle(max_failures=3, window_s=60)
    for t in (0.0, 10.0, 20.0):
        assert throttle.retry_after("10.0.0.1", t) == 0
        throttle.failure("10.0.0.1", t)
    assert throttle.retry_after("10.0.0.1", 21.0) == 39.0  # the failure at 0 ages out at 60
    assert throttle.retry_after("10.0.0.2", 21.0) == 0  # others are not affected
    assert throttle.retry_after("10.0.0.1", 60.0) == 0


def test_a_success_forgets_the_failures():
    throttle = LoginThrottle(max_failures=2, window_s=60)
    throttle.failure("a", 0.0)
    throttle.success("a")
    throttle.failure("a", 1.0)
    assert throttle.retry_after("a", 2.0) == 0


def test_memory_is_bounded_by_max_clients():
    throttle = LoginThrottle(max_failures=1, window_s=60, max_clients=100)
    for i in range(1000):
        throttle.failure(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(throttle._failures) == 100
    assert throttle.retry_after("10.0.3.231", 1.0) > 0  # the newest are kept
    assert throttle.retry_after("10.0.0.0", 1.0) == 0


def test_keys_are_whatever_the_caller_counts_by():
    throttle: LoginThrottle[tuple[str, str]] = LoginThrottle(max_failures=2, window_s=60)
    for t in (0.0, 1.0):
        throttle.failure(("10.0.0.2", "alice"), t)
    assert throttle.retry_after(("10.0.0.2", "alice"), 2.0) == 58.0
    assert throttle.retry_after(("10.0.0.2", "bob"), 2.0) == 0  # same address, another name
    assert throttle.retry_after(("10.0.0.3", "alice"), 2.0) == 0
