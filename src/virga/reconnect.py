"""Backoff for reconnecting: exponential, capped, with jitter, optionally bounded in attempts.

``delay(attempt)`` is the wait after failed attempt ``attempt`` (0-based):
``min(max_delay, initial_delay * multiplier**attempt)``, scaled by a random factor in
``[1 - jitter, 1 + jitter]`` (so that many clients that lost the same server do not
come back in lock step) and capped at ``max_delay`` again.  ``None`` means give up:
with ``max_attempts=N`` there are N attempts in all, so N - 1 delays.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from virga.errors import ConfigError

__all__ = ["ReconnectPolicy"]


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    initial_delay: float = 0.05
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    max_attempts: int | None = None
    """Give up after this many failed attempts; ``None`` retries forever."""

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "multiplier", "jitter"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ConfigError(f"reconnect {name}={value} must be a finite number")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ConfigError(
                f"reconnect delays invalid: initial_delay={self.initial_delay}, "
                f"max_delay={self.max_delay} (need 0 <= initial <= max)"
            )
        if self.multiplier < 1:
            raise ConfigError(f"reconnect multiplier={self.multiplier} must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"reconnect jitter={self.jitter} must be in [0, 1)")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigError(f"reconnect max_attempts={self.max_attempts} must be at least 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (0-based); None: give up."""
        if attempt < 0:
            raise ValueError(f"attempt={attempt} must not be negative")
        if self.max_attempts is not None and attempt + 1 >= self.max_attempts:
            return None
        try:
            base = min(self.max_delay, self.initial_delay * self.multiplier**attempt)
        except OverflowError:  # multiplier**attempt past float range: long since capped
            base = self.max_delay
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return min(self.max_delay, base * spread)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Every delay the policy allows, in order (endless without ``max_attempts``)."""
        attempt = 0
        while (delay := self.delay(attempt, rng)) is not None:
            yield delay
            attempt += 1
