"""``cargobay app`` without a daemon: help, parsing errors and exit codes.  With
CARGOBAY_AUTOSTART=0 and a fresh home, a command whose arguments parse stops at "cargobayd
is not running" (exit 5); one that does not parse exits 2 before that."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cargobay.cli.main import app as cargobay_app

Invoke = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.setenv("CARGOBAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARGOBAY_AUTOSTART", "0")
    monkeypatch.delenv("CARGOBAY_API_KEY", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cargobay_app, ["app", *args], prog_name="cargobay")

    return invoke


def test_help_lists_the_commands(cli: Invoke) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("create", "deploy", "logs", "rm", "import-legacy", "config", "backup"):
        assert command in result.output


@pytest.mark.parametrize(
    "args",
    [("create", "bot1"), ("ls",), ("deploy", "bot1"), ("logs", "bot1", "-f", "--tail", "5")],
)
def test_parsed_commands_reach_for_the_daemon(cli: Invoke, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.exit_code == 5, result.output


def test_bad_set_is_a_usage_error(cli: Invoke) -> None:
    result = cli("create", "bot1", "--set", "novalue")
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output


def test_provider_key_never_from_argv(cli: Invoke) -> None:
    result = cli("provider", "set", "bot1", "DeepSeek", "--base-url", "https://x/v1")
    assert result.exit_code == 2
    assert "$CARGOBAY_API_KEY" in result.output


def test_missing_argument(cli: Invoke) -> None:
    assert cli("deploy").exit_code == 2


def test_napcat_options_go_together(cli: Invoke) -> None:
    partial = cli("create", "bot1", "--mode", "local", "--napcat-url", "http://127.0.0.1/n.zip")
    assert partial.exit_code == 2
    assert "--napcat-sha256" in partial.output
    whole = cli(
        "create", "bot1", "--mode", "local", "--napcat-url", "http://127.0.0.1/n.zip",
        "--napcat-sha256", "a" * 64, "--napcat-version", "4.1",
    )  # fmt: skip
    assert whole.exit_code == 5, whole.output
