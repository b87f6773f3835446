"""The shipped multi-host example on real libvirt: three VMs boot in parallel, one on
cargobay's own QEMU and two as libvirt domains reached over qemu:///system and
qemu+tcp://127.0.0.1; QMP and QGA go through libvirt for those, the console comes back
over a libvirt stream, and nothing is left running afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cargobay.images import ImageManifest
from cargobay.paths import Paths
from cargobay.scenarios import load_scenario
from cargobay.scenarios.runner import run_scenario
from tests.integration.libvirt_env import LibvirtEnv
from tests.support import REPO

pytestmark = pytest.mark.integration

MULTIHOST = REPO / "examples" / "scenarios" / "multihost.yaml"


async def test_the_multihost_example_passes(
    default_image: tuple[Path, ImageManifest],
    libvirt_env: LibvirtEnv,
    test_paths: Paths,
    tmp_path: Path,
) -> None:
    import libvirt

    reports = tmp_path / "multihost"
    lines: list[str] = []
    result = await run_scenario(load_scenario(MULTIHOST), reports, progress=lines.append)
    assert result.status == "passed", "\n".join(lines)
    providers = {vm.name: (vm.info["provider"], vm.info.get("host")) for vm in result.vms}
    assert providers == {
        "local": ("qemu", None),
        "viaunix": ("libvirt", "unix"),
        "viatcp": ("libvirt", "tcp"),
    }
    shot = reports / result.screenshots[0]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    traffic = json.loads((reports / "traffic.json").read_text())
    assert {r["vm"] for r in traffic if r["channel"] == "qga"} == {"local", "viaunix", "viatcp"}
    # the libvirt console stream reached the report
    assert "multihost-marker" in (reports / "console" / "viaunix.log").read_text()
    conn = libvirt.open("qemu:///system")
    try:
        left = [d.name() for d in conn.listAllDomains() if d.name().startswith("cb-sc-")]
    finally:
        conn.close()
    assert left == []


INPUTS = REPO / "examples" / "scenarios" / "inputs.yaml"


async def test_the_inputs_example_reaches_the_guest_kernel(
    debian_image: tuple[Path, ImageManifest],
    libvirt_env: LibvirtEnv,
    test_paths: Paths,
    tmp_path: Path,
) -> None:
    """Keys typed through Spice and QMP, and mouse clicks through both, show up as evdev
    events in the guest (the example's own recorder checks them)."""
    lines: list[str] = []
    result = await run_scenario(load_scenario(INPUTS), tmp_path / "inputs", progress=lines.append)
    assert result.status == "passed", "\n".join(lines)
    recorded = result.steps[10].details["stdout"]
    assert "key 30" in recorded  # typed through Spice
    assert "btn 273" in recorded  # clicked through QMP
