"""The command lines without a daemon: parsing, one-line errors, exit codes, help.

Every invocation here runs with CARGOBAY_AUTOSTART=0 and a fresh CARGOBAY_HOME, so a
command whose arguments are fine stops at "cargobayd is not running" (exit 5) instead of
starting a daemon; that is how these tests see that parsing let an input through.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cargobay.cli.aiva import app as aiva_app
from cargobay.cli.main import app as cargobay_app

APPS = {"cargobay": cargobay_app, "aiva": aiva_app}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CARGOBAY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CARGOBAY_AUTOSTART", "0")
    runner = CliRunner()

    def invoke(prog: str, *args: str) -> Result:
        return runner.invoke(APPS[prog], list(args), prog_name=prog)

    yield invoke
    # Nothing was started: no socket, no pid file.
    run_dir = tmp_path / "home" / "run"
    assert not (run_dir / "cargobayd.sock").exists()
    assert not (run_dir / "cargobayd.pid").exists()


def one_error_line(result: Result) -> str:
    """The single ``error: ...`` line a failing command prints; nothing on stdout."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("aiva", "init", "box", "--memory", "8XB"),
        ("aiva", "start", "box", "--memory", "8XB"),
        ("cargobay", "vm", "create", "box", "--memory", "8XB"),
        ("cargobay", "vm", "start", "box", "--memory", "8XB"),
        ("cargobay", "run", "--memory", "8XB", "--", "true"),
    ],
)
def test_bad_memory(cli, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "memory" in line
    assert "'8XB'" in line
    assert "512MB" in line  # says what to type instead


def test_bad_disk(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("aiva", "start", "box", "--disk", "lots")
    assert result.exit_code == 2
    assert "disk" in one_error_line(result)


@pytest.mark.parametrize("port", ["8080", "0:80", "8080:99999", "8080:80/sctp", "web:80"])
def test_bad_ports(cli, port: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("aiva", "start", "box", "--ports", "8080:80", "--ports", port)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "port mapping" in line
    assert repr(port) in line


def test_bad_env(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("aiva", "exec", "box", "--env", "NOEQUALS", "--", "true")
    assert result.exit_code == 2
    assert "KEY=VALUE" in one_error_line(result)
    result = cli("aiva", "exec", "--env", "NOEQUALS", "box", "true")
    assert result.exit_code == 2
    assert "KEY=VALUE" in one_error_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ("aiva", "status", "--format", "xml"),
        ("aiva", "status", "box", "--format", "csv"),
        ("cargobay", "vm", "ls", "--format", "xml"),
        ("cargobay", "image", "ls", "--format", "toml"),
        ("cargobay", "daemon", "status", "--format", "xml"),
    ],
)
def test_format_choices(cli, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == 2
    line = one_error_line(result)
    for choice in ("table", "json", "yaml"):
        assert choice in line


def test_exec_hints_at_the_double_dash(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("aiva", "exec", "box", "ls", "-la")
    assert result.exit_code == 2
    assert "put the command after --" in one_error_line(result)


def test_json_and_another_format_contradict(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("cargobay", "vm", "ls", "--json", "--format", "yaml")
    assert result.exit_code == 2
    assert "contradict" in one_error_line(result)


def test_unknown_template(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("aiva", "init", "box", "--template", "huge")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "'huge'" in line
    assert "minimal, standard, performance" in line


@pytest.mark.parametrize(
    "args",
    [
        ("aiva", "start", "box", "--cpus", "0"),
        ("aiva", "logs", "box", "--tail", "-1"),
        ("aiva", "exec", "box"),
        ("aiva", "init"),
        ("aiva", "frobnicate"),
        ("aiva", "status", "--bogus"),
        ("cargobay", "run"),
        ("cargobay", "vm", "exec", "box", "--timeout", "0", "--", "true"),
    ],
)
def test_usage_errors_are_one_line_exit_2(cli, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == 2
    one_error_line(result)


@pytest.mark.parametrize(
    "args",
    [
        ("aiva", "init", "box", "--template", "minimal", "--memory", "768MB"),
        ("aiva", "start", "box", "--cpus", "1", "--memory", "1.5GiB", "--ports", "8080:80/udp"),
        ("aiva", "status", "--format", "yaml"),
        ("aiva", "exec", "box", "--", "ls", "-la"),
        ("aiva", "exec", "box", "--timeout", "3", "--", "sh", "-c", "exit 3"),
        ("aiva", "logs", "box", "--tail", "5"),
        ("cargobay", "vm", "ls", "--json"),
        ("cargobay", "image", "ls"),
        ("cargobay", "run", "--rm", "--", "sh", "-c", "exit 7"),
    ],
)
def test_good_input_reaches_for_the_daemon(cli, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """Valid arguments pass the local checks; with no daemon (and autostart off) the
    command then fails with exit 5 and the SDK's advice."""
    result = cli(*args)
    assert result.exit_code == 5, result.stderr
    line = one_error_line(result)
    assert "not running" in line
    assert "cargobay daemon start" in line


def test_daemon_status_when_not_running(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("cargobay", "daemon", "status", "--json")
    assert result.exit_code == 5
    assert '"running": false' in result.stdout
    result = cli("cargobay", "daemon", "status")
    assert result.exit_code == 5
    assert "not running" in result.stderr


def test_daemon_stop_when_not_running_is_fine(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("cargobay", "daemon", "stop")
    assert result.exit_code == 0
    assert "not running" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("cargobay", "--help"),
        ("cargobay", "run", "--help"),
        ("cargobay", "vm", "exec", "--help"),
        ("aiva", "--help"),
        ("aiva", "status", "--help"),
    ],
)
def test_help_documents_exit_codes(cli, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Exit codes" in text
    assert "3 not found" in text
    assert "4 conflict" in text


def test_the_verbs(cli) -> None:  # type: ignore[no-untyped-def]
    aiva = cli("aiva", "--help").stdout
    for verb in ("init", "start", "stop", "status", "exec", "logs", "rm", "templates"):
        assert f" {verb} " in aiva
    vm = cli("cargobay", "vm", "--help").stdout
    for verb in ("create", "start", "stop", "pause", "resume", "ls", "status", "exec", "logs"):
        assert f" {verb} " in vm


def test_no_arguments_prints_help(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("aiva")
    assert result.exit_code == 2
    assert "Usage" in result.output


def test_templates_listing(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("aiva", "templates", "--json")
    assert result.exit_code == 0
    import json

    doc = json.loads(result.stdout)
    assert [t["name"] for t in doc["templates"]] == ["minimal", "standard", "performance"]
    assert 0 < doc["factor"] <= 1
    table = cli("aiva", "templates").stdout
    assert "performance" in table
