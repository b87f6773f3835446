"""Shared test helpers. Policy: integration dependencies skip on a laptop and fail in CI."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip when ``condition`` is false, except in CI (CI=true), where it is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing dependency in CI: {what}", pytrace=False)
    pytest.skip(f"missing dependency: {what}")


def require_binary(name: str, hint: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} not found ({hint})")
    assert path is not None
    return path
