"""`cargobay spice probe` end to end: the CLI, a real cargobayd, and QEMU's Spice server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargobay.paths import Paths
from tests.integration.vmcontrol.test_spice_qemu import PASSWORD, SpiceServer

pytestmark = pytest.mark.integration

CARGOBAY = [sys.executable, "-m", "cargobay.cli.main"]


@pytest.fixture
def daemon_env(test_paths: Paths) -> Iterator[dict[str, str]]:
    env = {**os.environ, "CARGOBAY_AUTOSTART": "1"}
    try:
        yield env
    finally:
        subprocess.run([*CARGOBAY, "daemon", "stop"], env=env, timeout=60, check=False)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CARGOBAY, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_probe_lists_channels_with_timings(
    spice_server: SpiceServer, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    done = run(daemon_env, "spice", "probe", f"127.0.0.1:{spice_server.port}",
               "--password-file", str(pw), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["channels"][0] == "main:0"
    assert any(name.startswith("inputs") for name in result["channel_link_ms"])
    assert result["tcp_connect_ms"] > 0
    assert result["all_linked_at_ms"] >= result["main_init_at_ms"] > 0
    table = run(daemon_env, "spice", "probe", f"127.0.0.1:{spice_server.port}",
                "--password-file", str(pw))  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "MAIN_INIT at" in table.stdout
    assert "display" in table.stdout


def test_probe_over_tls_checks_the_certificate(
    spice_server: SpiceServer, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    ok = run(daemon_env, "spice", "probe", f"127.0.0.1:{spice_server.tls_port}", "--tls",
             "--ca", str(spice_server.ca_file), "--password-file", str(pw), "--json")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["tls"] is True
    wrong = run(daemon_env, "spice", "probe", f"127.0.0.1:{spice_server.tls_port}", "--tls",
                "--ca", str(spice_server.other_ca_file), "--password-file", str(pw))  # fmt: skip
    assert wrong.returncode != 0
    assert wrong.stderr.startswith("error:")


def test_bad_inputs_are_one_line_errors(
    spice_server: SpiceServer, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.write_text("not-the-password")
    for args in (
        ["spice", "probe", "nohostport"],
        ["spice", "probe", f"127.0.0.1:{spice_server.port}", "--password-file", str(bad)],
        ["spice", "probe", f"127.0.0.1:{spice_server.port}", "--password-file", "/nonexistent"],
    ):
        done = run(daemon_env, *args)
        assert done.returncode != 0, args
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("error:"), done.stderr
    assert run(daemon_env, "daemon", "status").returncode == 0  # the daemon is still up
