"""Backoff for reconnecting: exponential, capped, with jitter, optionally bounded in attempts."""

from __future__ import annotations

import random
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
        if self.max_attempts is not None and attempt + 1 >= self.max_attempts:
            return None
        base = min(self.max_delay, self.initial_delay * self.multiplier**attempt)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return min(self.max_delay, base * spread)
