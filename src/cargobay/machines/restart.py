"""Restart policy: what the machines service does when a VM process ends on its own.

Seed 004 asks for automatic restarts after a VM crash, configurable.  The policy is a
string, as in ``docker run --restart``:

    no                 never (the machine stays in ERROR with the reason)
    on-failure[:N]     boot again after an end nobody asked for (a crash, a kill from
                       outside, the guest powering itself off), at most N times until the
                       user next starts or stops the machine (default 5)
    always             the same without a limit

A stop, delete or start by the user never triggers a restart, and resets the count.
Restarts back off: 1 s, 2 s, 4 s ... up to 30 s between attempts, so a machine that
crashes at once does not spin.  The count and the reason of the last end are kept on the
machine (``RuntimeInfo.restarts`` / ``last_exit``) and shown by ``status``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cargobay.errors import InvalidInput

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "MAX_BACKOFF",
    "RestartPolicy",
    "backoff",
    "check_restart",
    "parse_restart",
]

DEFAULT_MAX_RETRIES = 5
MAX_BACKOFF = 30.0
_POLICY_RE = re.compile(r"^(no|always|on-failure)(?::(\d{1,4}))?$")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    mode: Literal["no", "on-failure", "always"]
    max_retries: int | None
    """None: no limit."""

    def allows(self, restarts_so_far: int) -> bool:
        """Whether the next restart (after ``restarts_so_far`` in a row) may happen."""
        if self.mode == "no":
            return False
        return self.max_retries is None or restarts_so_far < self.max_retries


def parse_restart(text: str) -> RestartPolicy:
    m = _POLICY_RE.match(text.strip())
    if not m or (m.group(2) is not None and m.group(1) != "on-failure"):
        raise InvalidInput(
            f"restart: bad policy {text!r}: use no, on-failure, on-failure:N or always"
        )
    mode = m.group(1)
    if mode == "no":
        return RestartPolicy("no", 0)
    if mode == "always":
        return RestartPolicy("always", None)
    retries = int(m.group(2)) if m.group(2) is not None else DEFAULT_MAX_RETRIES
    if retries < 1:
        raise InvalidInput("restart: on-failure:N needs N >= 1 (or use no)")
    return RestartPolicy("on-failure", retries)


def check_restart(text: object) -> str:
    """The policy string, normalised, for ``VMConfig.restart``."""
    if not isinstance(text, str):
        raise InvalidInput(f"restart: expected a string like on-failure:3, got {text!r}")
    policy = parse_restart(text)
    if policy.mode == "on-failure":
        return f"on-failure:{policy.max_retries}"
    return policy.mode


def backoff(restarts_so_far: int) -> float:
    """Seconds to wait before the next restart."""
    return min(MAX_BACKOFF, 2.0 ** min(restarts_so_far, 10))
