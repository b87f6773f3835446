"""``cargobay compose`` without a daemon: parsing, one-line errors, exit codes, help.

As in tests/unit/cargobay/cli: CARGOBAY_AUTOSTART=0 and a fresh CARGOBAY_HOME, so a
command whose arguments pass stops at "cargobayd is not running" (exit 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cargobay.cli.main import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CARGOBAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARGOBAY_AUTOSTART", "0")
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["compose", *args], prog_name="cargobay")

    return invoke


def test_help_lists_the_commands(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("up", "down", "stop", "start", "restart", "ps", "logs", "config",
                    "export", "deploy"):  # fmt: skip
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("export",), 2, "--swarm or --kubernetes"),
        (("export", "--swarm", "--kubernetes"), 2, "--swarm or --kubernetes"),
        (("deploy",), 2, "--swarm"),
        (("up", "--bogus"), 2, "--bogus"),
        (("logs", "--tail", "-1"), 2, "tail"),
        (("-f", "x.yml", "ps"), 5, "cargobayd is not running"),
        (("up", "-d"), 5, "cargobayd is not running"),
    ],
)
def test_errors(cli, args: tuple[str, ...], code: int, words: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert words in lines[0]
