"""What the CLI checks before it talks to the daemon: sizes, ports, env, templates."""

from __future__ import annotations

import itertools

import pytest

from cargobay.cli.inputs import command_text, format_mib, parse_env, parse_port, parse_size_mib
from cargobay.cli.templates import (
    SEED_PROFILES,
    resolve_template,
    scale_factor,
    scaled_profiles,
)
from cargobay.errors import InvalidInput
from cargobay.machines.models import parse_size_mb


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("512MB", 512),
        ("512mb", 512),
        ("512M", 512),
        ("512MiB", 512),
        ("2G", 2048),
        ("2GB", 2048),
        ("1.5GiB", 1536),
        ("1T", 1024 * 1024),
        ("2048", 2048),
        ("  256 MB ", 256),
        ("1048576B", 1),
        ("4096K", 4),
    ],
)
def test_sizes(text: str, mib: int) -> None:
    assert parse_size_mib(text, "memory") == mib


@pytest.mark.parametrize("text", ["8XB", "", "MB", "-1GB", "1,5GB", "0", "0.5MB", "100B", "1 G B"])
def test_bad_sizes_name_the_option_and_the_value(text: str) -> None:
    with pytest.raises(InvalidInput, match="memory") as info:
        parse_size_mib(text, "memory")
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    "text", ["512MB", "2G", "1.5GiB", "2048", "1048576B", "8XB", "0", "1 G B", "3.7T", "12k"]
)
def test_size_grammar_agrees_with_the_daemon(text: str) -> None:
    """The CLI's early check accepts and rejects exactly what the daemon's parser does."""
    try:
        expected: int | None = parse_size_mb(text, "memory")
    except InvalidInput:
        expected = None
    try:
        got: int | None = parse_size_mib(text, "memory")
    except InvalidInput:
        got = None
    assert got == expected


@pytest.mark.parametrize(
    ("mib", "text"),
    [(512, "512 MiB"), (1024, "1 GiB"), (1536, "1.5 GiB"), (None, "-"), (25600, "25 GiB")],
)
def test_format_mib(mib: int | None, text: str) -> None:
    assert format_mib(mib) == text


@pytest.mark.parametrize(
    ("text", "normal"),
    [("8080:80", "8080:80/tcp"), ("53:53/udp", "53:53/udp"), ("1:65535/TCP", "1:65535/tcp")],
)
def test_ports(text: str, normal: str) -> None:
    assert parse_port(text) == normal


@pytest.mark.parametrize(
    "text", ["8080", "8080:", ":80", "a:b", "0:80", "8080:70000", "8080:80/sctp", "-1:80", ""]
)
def test_bad_ports(text: str) -> None:
    with pytest.raises(InvalidInput, match="port mapping"):
        parse_port(text)


def test_env() -> None:
    assert parse_env(["A=1", "B=", "C=x=y"]) == {"A": "1", "B": "", "C": "x=y"}
    for bad in ("A", "=1"):
        with pytest.raises(InvalidInput, match="KEY=VALUE"):
            parse_env([bad])


def test_command_text_is_shell_quoted_and_bounded() -> None:
    assert command_text(["sh", "-c", "echo hi"]) == "sh -c 'echo hi'"
    long = command_text(["echo", "x" * 200], limit=20)
    assert len(long) == 20
    assert long.endswith("...")


# -- templates -------------------------------------------------------------------------


def test_templates_on_a_big_host_are_the_seeds_numbers() -> None:
    profiles = scaled_profiles(16, 64 * 1024)
    for seed in SEED_PROFILES:
        p = profiles[seed.name]
        assert (p.cpus, p.memory_mib, p.disk_mib) == (seed.cpus, seed.memory_mib, seed.disk_mib)


def test_templates_on_this_projects_ci_machine() -> None:
    """2 CPUs, 24 GiB: factor 0.25, as the templates module documents."""
    assert scale_factor(2, 24 * 1024) == 0.25
    got = {n: (p.cpus, p.memory_mib, p.disk_mib) for n, p in scaled_profiles(2, 24 * 1024).items()}
    assert got == {
        "minimal": (1, 1024, 5 * 1024),
        "standard": (1, 2048, 12 * 1024),
        "performance": (2, 4096, 25 * 1024),
    }


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 8, 12, 64])
@pytest.mark.parametrize("mem", [512, 2048, 8192, 24 * 1024, 256 * 1024])
def test_templates_fit_the_host_and_keep_their_order(cpus: int, mem: int) -> None:
    profiles = list(scaled_profiles(cpus, mem).values())
    for p in profiles:
        assert 1 <= p.cpus <= cpus
        assert p.memory_mib >= 256
        assert p.memory_mib <= max(256, mem // 2)
        assert p.memory_mib % 256 == 0
        assert p.disk_mib % 1024 == 0
    for small, big in itertools.pairwise(profiles):
        assert small.cpus <= big.cpus
        assert small.memory_mib <= big.memory_mib
        assert small.disk_mib <= big.disk_mib


def test_unknown_template_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_template("huge", host=(2, 4096))
    message = str(info.value)
    assert "'huge'" in message
    for name in ("minimal", "standard", "performance"):
        assert name in message
    assert resolve_template(" Standard ", host=(8, 32 * 1024)).cpus == 4
