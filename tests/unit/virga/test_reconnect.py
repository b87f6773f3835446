"""virga.reconnect.ReconnectPolicy: the delay sequence, jitter bounds, giving up, validation."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virga.errors import ConfigError
from virga.reconnect import ReconnectPolicy


def test_no_jitter_is_exponential_then_capped() -> None:
    policy = ReconnectPolicy(initial_delay=0.1, max_delay=1.0, multiplier=2.0, jitter=0.0)
    delays = [policy.delay(n) for n in range(7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_seeded_jitter_is_reproducible_and_bounded() -> None:
    policy = ReconnectPolicy(initial_delay=0.1, max_delay=10.0, multiplier=3.0, jitter=0.25)
    first = list(itertools.islice(policy.delays(random.Random(7)), 8))
    second = list(itertools.islice(policy.delays(random.Random(7)), 8))
    assert first == second
    other = list(itertools.islice(policy.delays(random.Random(8)), 8))
    assert first != other
    for n, delay in enumerate(first):
        base = min(10.0, 0.1 * 3.0**n)
        assert base * 0.75 <= delay <= min(10.0, base * 1.25)


def test_jitter_spreads_delays() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=1.0, jitter=0.5)
    rng = random.Random(1)
    samples = [policy.delay(0, rng) for _ in range(200)]
    assert all(s is not None and 0.5 <= s <= 1.0 for s in samples)
    assert len(set(samples)) > 100  # not one value repeated


def test_max_attempts_counts_attempts_not_delays() -> None:
    policy = ReconnectPolicy(jitter=0.0, max_attempts=3)
    assert list(policy.delays()) == pytest.approx([0.05, 0.1])
    assert policy.delay(2) is None
    assert policy.delay(50) is None
    assert list(ReconnectPolicy(max_attempts=1).delays()) == []


def test_retry_forever_survives_huge_attempt_numbers() -> None:
    # multiplier**attempt overflows a float near attempt 1024; the delay stays capped.
    policy = ReconnectPolicy(initial_delay=0.01, max_delay=2.0, jitter=0.0)
    assert policy.delay(5000) == 2.0
    assert policy.delay(10**6) == 2.0


def test_zero_delays_are_allowed() -> None:
    policy = ReconnectPolicy(initial_delay=0.0, max_delay=0.0, max_attempts=4)
    assert list(policy.delays()) == [0.0, 0.0, 0.0]


def test_negative_attempt_is_a_bug() -> None:
    with pytest.raises(ValueError, match="attempt=-1"):
        ReconnectPolicy().delay(-1)


@given(
    initial=st.floats(0, 100),
    extra=st.floats(0, 100),
    multiplier=st.floats(1, 10),
    jitter=st.floats(0, 0.99),
    attempt=st.integers(0, 3000),
    seed=st.integers(0, 2**32),
)
def test_delay_never_exceeds_max(
    initial: float, extra: float, multiplier: float, jitter: float, attempt: int, seed: int
) -> None:
    policy = ReconnectPolicy(initial, initial + extra, multiplier, jitter)
    delay = policy.delay(attempt, random.Random(seed))
    assert delay is not None
    assert 0 <= delay <= policy.max_delay


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial_delay": -1.0}, "need 0 <= initial <= max"),
        ({"initial_delay": 2.0, "max_delay": 1.0}, "need 0 <= initial <= max"),
        ({"multiplier": 0.5}, "multiplier=0.5 must be at least 1"),
        ({"jitter": 1.0}, r"jitter=1.0 must be in \[0, 1\)"),
        ({"jitter": -0.1}, "jitter"),
        ({"max_attempts": 0}, "max_attempts=0 must be at least 1"),
        ({"initial_delay": float("nan")}, "initial_delay=nan must be a finite number"),
        ({"max_delay": float("inf")}, "max_delay=inf must be a finite number"),
        ({"multiplier": float("inf")}, "multiplier=inf"),
    ],
)
def test_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]
