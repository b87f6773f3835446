"""Validation of a local instance's optional adapter and NapCat settings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cargobay.apps.models import InstanceCreate, LocalAdapter

NAPCAT = {"url": "http://127.0.0.1/n.zip", "sha256": "a" * 64, "version": "1"}


def _local(**fields: Any) -> InstanceCreate:
    return InstanceCreate(name="x", deploy_mode="local", repo_url="http://h/r.git", **fields)


def test_adapter_and_napcat_are_optional() -> None:
    plain = _local()
    assert (plain.adapter, plain.napcat, plain.napcat_command) == (None, None, None)
    full = _local(adapter={"repo_url": "http://h/a.git"}, napcat=NAPCAT, napcat_command=["sh"])
    assert full.adapter == LocalAdapter(repo_url="http://h/a.git")
    assert full.adapter.command == ["{python}", "main.py"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"adapter": {"repo_url": "ftp://h/a"}}, "not an http"),
        ({"adapter": {"repo_url": "http://h/a", "command": []}}, "at least 1"),
        ({"adapter": {"repo_url": "http://h/a", "extra": 1}}, "Extra inputs"),
        ({"napcat_command": ["sh", "x.sh"]}, "needs napcat"),
        ({"napcat": NAPCAT, "napcat_command": []}, "at least 1"),
        ({"local_commands": {"adapter": ["x"]}}, "reserved"),
    ],
)
def test_bad_local_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _local(**fields)


@pytest.mark.parametrize(
    "fields", [{"adapter": {"repo_url": "http://h/a.git"}}, {"napcat_command": ["sh"]}]
)
def test_local_settings_are_refused_for_docker(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="only for deploy_mode local"):
        InstanceCreate(name="x", deploy_mode="docker", **fields)
