"""Configuration and templates end to end: config.yaml's defaults reach a new machine,
``aiva init --template mcp-server`` takes the shipped template, ``aiva config NAME``
changes a machine's settings through the daemon and refuses a bad value naming its key.

Nothing here boots a VM: create alone shows every setting (the daemon stores them and
makes the data disk)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Bay


def _machine(bay: Bay, name: str) -> dict:  # type: ignore[type-arg]
    r = bay.cargobay("vm", "status", name, "--json")
    assert r.returncode == 0, r
    data = json.loads(r.stdout)
    assert isinstance(data, dict)
    return data


def test_config_yaml_defaults_apply_to_a_new_machine(bay: Bay) -> None:
    r = bay.cargobay("config", "path")
    assert r.returncode == 0, r
    path = Path(r.stdout.strip())
    assert path == bay.home / "config" / "config.yaml"

    assert bay.cargobay("config", "set", "defaults.memory", "320MB").returncode == 0
    r = bay.cargobay("config", "set", "defaults.cpus", "2")
    assert r.returncode == 0, r
    before = path.read_text()

    bad = bay.cargobay("config", "set", "defaults.memory", "lots")
    assert bad.returncode == 2, bad
    assert "defaults.memory:" in bad.error_line
    assert path.read_text() == before  # nothing half-written

    r = bay.cargobay("config", "get", "defaults.memory")
    assert r.returncode == 0, r
    assert r.stdout.strip() == "320MB", r

    r = bay.aiva("init", "plain")
    assert r.returncode == 0, r
    config = _machine(bay, "plain")["config"]
    assert (config["cpus"], config["memory_mb"], config["disk_mb"]) == (2, 320, 2048)

    # An explicit value still wins over the file.
    r = bay.aiva("init", "explicit", "--memory", "256MB")
    assert r.returncode == 0, r
    assert _machine(bay, "explicit")["config"]["memory_mb"] == 256
    for name in ("plain", "explicit"):
        assert bay.aiva("rm", name).returncode == 0

    # A broken file (edited by hand) is refused by the daemon, naming the key and the file.
    path.write_text("defaults:\n  cpus: many\n")
    broken = bay.aiva("init", "broken")
    assert broken.returncode == 2, broken
    assert "defaults.cpus:" in broken.error_line
    assert str(path) in broken.error_line
    assert "broken" not in {m["name"] for m in bay.machines()}
    path.unlink()


def test_template_then_config_get_set(bay: Bay) -> None:
    r = bay.aiva("init", "mcp", "--template", "mcp-server")
    assert r.returncode == 0, r
    config = _machine(bay, "mcp")["config"]
    assert config["template"] == "mcp-server"
    assert config["image"] == "default"
    assert [(p["host"], p["guest"]) for p in config["ports"]] == [(18000, 8000)]
    assert config["env"]["MCP_TRANSPORT"] == "streamable-http"

    r = bay.aiva("config", "mcp", "set", "memory", "768MB")
    assert r.returncode == 0, r
    r = bay.aiva("config", "mcp", "get", "memory")
    assert r.returncode == 0, r
    assert r.stdout.strip() == "768MB", r
    assert _machine(bay, "mcp")["config"]["memory_mb"] == 768

    bad = bay.aiva("config", "mcp", "set", "memory", "a-lot")
    assert bad.returncode == 2, bad
    assert "memory:" in bad.error_line
    bad = bay.cargobay("vm", "config", "mcp", "set", "cpus", "0")
    assert bad.returncode == 2, bad
    assert "cpus:" in bad.error_line
    assert bay.aiva("config", "mcp", "get", "memory").stdout.strip() == "768MB"

    # The data disk grows (the file and its ext4), never shrinks.
    disk_mb = _machine(bay, "mcp")["config"]["disk_mb"]
    shrink = bay.aiva("config", "mcp", "set", "disk", "16MB")
    assert shrink.returncode == 2, shrink
    assert "disk:" in shrink.error_line
    r = bay.aiva("config", "mcp", "set", "disk", f"{disk_mb + 512}MB")
    assert r.returncode == 0, r
    m = _machine(bay, "mcp")
    assert m["config"]["disk_mb"] == disk_mb + 512
    data_disk = bay.home / "data" / "machines" / m["id"] / "data.ext4"
    assert data_disk.stat().st_size == (disk_mb + 512) * 1024 * 1024

    r = bay.aiva("config", "mcp", "list", "--json")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["settings"]["ports"] == ["18000:8000/tcp"]

    unknown = bay.aiva("init", "x", "--template", "huge")
    assert unknown.returncode == 2, unknown
    assert "mcp-server" in unknown.error_line
    assert bay.aiva("rm", "mcp").returncode == 0
