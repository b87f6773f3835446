"""``cargobay host add|ls|rm`` through a real cargobayd, against a real libvirtd reached
three ways on loopback (qemu:///system, qemu+tcp, qemu+ssh)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Bay
from tests.integration.conftest import libvirt_env
from tests.integration.libvirt_env import LibvirtEnv

__all__ = ["libvirt_env"]

pytestmark = pytest.mark.integration


def _ls(bay: Bay) -> tuple[int, dict[str, dict[str, object]]]:
    run = bay.cargobay("host", "ls", "--json")
    return run.returncode, {h["id"]: h for h in json.loads(run.stdout)}


def test_host_pool_through_the_daemon(bay: Bay, libvirt_env: LibvirtEnv):
    assert _ls(bay) == (0, {})
    for host_id, uri in libvirt_env.uris().items():
        run = bay.cargobay("host", "add", host_id, uri, "--tag", "loopback", "--json")
        assert run.returncode == 0, run
        added = json.loads(run.stdout)
        assert added["state"] == "connected", run
        assert added["tags"] == ["loopback"]

    # bad input: each refused with the host or the URI part named, nothing saved
    refused = bay.cargobay("host", "add", "bad", "qemu+tcp://127.0.0.1:1/system")
    assert refused.returncode != 0
    assert "host 'bad'" in refused.error_line
    assert "refused" in refused.error_line
    malformed = bay.cargobay("host", "add", "odd", "qemu+carrier-pigeon://x/system")
    assert malformed.returncode == 2, malformed
    assert "carrier-pigeon" in malformed.error_line
    duplicate = bay.cargobay("host", "add", "tcp", libvirt_env.local_uri)
    assert duplicate.returncode != 0
    assert "already exists" in duplicate.error_line

    code, hosts = _ls(bay)
    assert code == 0
    assert sorted(hosts) == ["local", "ssh", "tcp"]
    for h in hosts.values():
        assert h["healthy"] is True
        assert isinstance(h["last_check_ms"], float)

    # a host that is down can be kept; ls then fails (exit 1) but shows the others healthy
    kept = bay.cargobay("host", "add", "down", "qemu+tcp://127.0.0.1:1/system", "--keep")
    assert kept.returncode == 0, kept
    assert "saved but not connected" in kept.stderr
    code, hosts = _ls(bay)
    assert code == 1
    assert hosts["down"]["state"] == "failed"
    assert "refused" in str(hosts["down"]["last_error"])
    assert all(hosts[h]["healthy"] for h in ("local", "ssh", "tcp"))
    table = bay.cargobay("host", "ls")
    assert table.returncode == 1
    assert "connected" in table.stdout
    assert "failed" in table.stdout

    # the pool survives a daemon restart: saved hosts reconnect
    assert bay.cargobay("daemon", "stop").returncode == 0
    code, hosts = _ls(bay)
    assert sorted(hosts) == ["down", "local", "ssh", "tcp"]
    assert [h for h in hosts if hosts[h]["healthy"]] == ["local", "ssh", "tcp"]

    assert bay.cargobay("host", "rm", "down").returncode == 0
    missing = bay.cargobay("host", "rm", "down")
    assert missing.returncode != 0
    assert "no host 'down'" in missing.error_line
    for host_id in ("local", "ssh", "tcp"):
        assert bay.cargobay("host", "rm", host_id).returncode == 0
    assert _ls(bay) == (0, {})
