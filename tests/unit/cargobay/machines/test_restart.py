"""Restart policy parsing and backoff (``machines.restart``)."""

from __future__ import annotations

import pytest

from cargobay.errors import InvalidInput
from cargobay.machines.restart import MAX_BACKOFF, backoff, check_restart, parse_restart


@pytest.mark.parametrize(
    ("text", "normal", "allowed"),
    [
        ("no", "no", [False]),
        ("on-failure", "on-failure:5", [True] * 5 + [False]),
        ("on-failure:2", "on-failure:2", [True, True, False]),
        ("always", "always", [True] * 50),
    ],
)
def test_policies(text: str, normal: str, allowed: list[bool]) -> None:
    assert check_restart(text) == normal
    policy = parse_restart(text)
    assert [policy.allows(n) for n in range(len(allowed))] == allowed


@pytest.mark.parametrize("text", ["", "yes", "always:3", "no:1", "on-failure:0", "on-failure:x"])
def test_bad_policies_name_the_key(text: str) -> None:
    with pytest.raises(InvalidInput, match="restart"):
        check_restart(text)


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(100) == MAX_BACKOFF
