"""Interpolation and .env parsing (the Compose Specification's rules)."""

from __future__ import annotations

import pytest

from cargobay.containers.compose.interpolation import (
    InterpolationError,
    interpolate,
    interpolate_tree,
    parse_env_file,
)

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a${SET}b", "avalueb"),
        ("$SET.x", "value.x"),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${UNSET-dflt}", "dflt"),
        ("${SET:-dflt}", "value"),
        ("${SET:?boom}", "value"),
        ("${EMPTY?boom}", ""),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("cost: 5$$", "cost: 5$"),
        ("${UNSET:-a:b/c}", "a:b/c"),
        ("plain", "plain"),
    ],
)
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


def test_missing_variable_warns_and_is_empty() -> None:
    seen: list[str] = []
    assert interpolate("x${NOPE}y$NOPE2", ENV, seen.append) == "xy"
    assert seen == ["NOPE", "NOPE2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?need it}", "need it"),
        ("${EMPTY:?empty too}", "empty too"),
        ("${UNSET?}", "UNSET"),
    ],
)
def test_required_variables(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message):
        interpolate(text, ENV)


@pytest.mark.parametrize("text", ["${", "${1BAD}", "$ x", "${SET"])
def test_invalid_expressions(text: str) -> None:
    with pytest.raises(InterpolationError, match="invalid interpolation"):
        interpolate(text, ENV)


def test_tree_keeps_keys_and_non_strings_and_reports_the_path() -> None:
    tree = {"services": {"${SET}": {"ports": ["${SET}", 80], "tty": True}}}
    assert interpolate_tree(tree, ENV) == {
        "services": {"${SET}": {"ports": ["value", 80], "tty": True}}
    }
    with pytest.raises(InterpolationError) as info:
        interpolate_tree({"services": {"web": {"ports": ["ok", "${X:?gone}"]}}}, ENV)
    assert info.value.path == "services.web.ports[1]"


def test_env_file_syntax() -> None:
    text = "\n".join(
        [
            "# comment",
            "",
            "A=1",
            "export B=two",
            "C='single $A # kept'",
            'D="double\\nline ${A}"',
            "E=unquoted ${A} # comment",
            "F",
            "G=",
            'H="multi',
            'line"',
            "I=${UNSET:-fallback}",
        ]
    )
    parsed = parse_env_file(text, {})
    assert parsed == {
        "A": "1",
        "B": "two",
        "C": "single $A # kept",
        "D": "double\nline 1",
        "E": "unquoted 1",
        "F": None,
        "G": "",
        "H": "multi\nline",
        "I": "fallback",
    }


def test_env_file_error_names_the_line() -> None:
    with pytest.raises(InterpolationError, match="line 2"):
        parse_env_file("A=1\n!!!\n", {}, source=".env")


def test_env_file_expansion_prefers_the_file_then_the_environment() -> None:
    parsed = parse_env_file("A=file\nB=${A}\nC=${ONLY_ENV}\n", {"A": "env", "ONLY_ENV": "e"})
    assert parsed == {"A": "file", "B": "file", "C": "e"}
