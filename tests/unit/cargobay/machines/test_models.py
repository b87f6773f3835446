"""The machine state machine (seed 004 section 2.2.2 plus the lifecycle edges) and the
size and port parsers."""

from __future__ import annotations

import itertools

import pytest

from cargobay.errors import Conflict, InvalidInput
from cargobay.machines.models import (
    PortForward,
    VMInstance,
    VMState,
    VMStateKind,
    check_transition,
    parse_port,
    parse_size_mb,
)

K = VMStateKind

ALLOWED = {
    # The seed's diagram.
    (K.CREATING, K.RUNNING),
    (K.RUNNING, K.PAUSED),
    (K.PAUSED, K.RUNNING),
    (K.RUNNING, K.STOPPING),
    (K.STOPPING, K.STOPPED),
    # A lifecycle: create without start, boot again, fail, clean up a failure.
    (K.CREATING, K.STOPPED),
    (K.STOPPED, K.CREATING),
    (K.PAUSED, K.STOPPING),
    (K.CREATING, K.ERROR),
    (K.RUNNING, K.ERROR),
    (K.PAUSED, K.ERROR),
    (K.STOPPING, K.ERROR),
    (K.ERROR, K.STOPPING),
    (K.ERROR, K.STOPPED),
    (K.ERROR, K.CREATING),
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(K, K)))
def test_transition_table(old: VMStateKind, new: VMStateKind) -> None:
    if (old, new) in ALLOWED:
        check_transition("box", old, new)
    else:
        with pytest.raises(Conflict, match=f"is {old.value}; it cannot become {new.value}"):
            check_transition("box", old, new)


def test_the_seed_forbids_skipping_stopping() -> None:
    with pytest.raises(Conflict):
        check_transition("box", K.RUNNING, K.STOPPED)
    with pytest.raises(Conflict):
        check_transition("box", K.STOPPED, K.RUNNING)


def test_error_state_carries_its_reason() -> None:
    state = VMState.error("qemu died")
    assert state.kind is K.ERROR
    assert str(state) == "error: qemu died"
    assert str(VMState(kind=K.RUNNING)) == "running"


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("512MB", 512),
        ("512M", 512),
        ("2GB", 2048),
        ("2g", 2048),
        ("1.5GiB", 1536),
        ("1024", 1024),
        ("1T", 1024 * 1024),
        ("2048KB", 2),
        (" 384 MiB ", 384),
        (256, 256),
    ],
)
def test_sizes(text: str | int, mb: int) -> None:
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize("text", ["8XB", "", "MB", "-1GB", "1.2.3G", "12 parsecs", "0", 0, -5])
def test_bad_sizes(text: str | int) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_size_mb(text, "memory")
    assert "memory" in str(info.value)


def test_ports() -> None:
    assert parse_port("8080:80") == PortForward(host=8080, guest=80, protocol="tcp")
    assert parse_port("53:53/udp") == PortForward(host=53, guest=53, protocol="udp")
    assert str(parse_port("8080:80")) == "8080:80/tcp"
    for bad in ["80", "a:b", "0:80", "70000:80", "80:80/sctp", ""]:
        with pytest.raises(InvalidInput, match="port mapping"):
            parse_port(bad)


def test_machine_names() -> None:
    VMInstance(name="a")
    VMInstance(name="web-1.dev_x")
    for bad in ["", "Web", "-x", ".x", "a b", "x" * 64, "a/b"]:
        with pytest.raises(ValueError, match="machine names"):
            VMInstance(name=bad)
