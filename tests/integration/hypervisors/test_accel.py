"""The KVM probe with real QEMU: the probe guest boots, verdicts are cached per host kernel,
QEMU version and guest kernel, a planted verdict is obeyed, the TCG line is printed once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from cargobay.hypervisors import accel
from tests.integration.hypervisors.conftest import VMFactory
from tests.support import require_binary

pytestmark = pytest.mark.integration

QEMU = "qemu-system-x86_64"


@pytest.fixture
def kernel(vms: VMFactory) -> Path:
    require_binary(QEMU, "Debian: apt-get install qemu-system-x86")
    return vms.kernel


async def planted_key(kernel: Path) -> str:
    version = await accel.qemu_version(QEMU)
    digest = hashlib.sha256(kernel.read_bytes()).hexdigest()  # noqa: ASYNC240
    return f"{os.uname().release}|{version}|{digest}"


async def test_the_probe_guest_boots_under_tcg(kernel: Path) -> None:
    """The generated init + initramfs work: under TCG the marker comes back."""
    result = await accel.probe_kvm(kernel, QEMU, accel="tcg", timeout=90, silence_timeout=60)
    assert result.works, result.detail


async def test_the_probe_fails_fast_on_a_kernel_that_cannot_boot(tmp_path: Path) -> None:
    require_binary(QEMU, "Debian: apt-get install qemu-system-x86")
    junk = tmp_path / "vmlinuz"
    junk.write_bytes(b"\0" * 4096)
    result = await accel.probe_kvm(junk, QEMU, accel="tcg", timeout=30, silence_timeout=10)
    assert not result.works
    assert result.seconds < 30


async def test_verdict_is_probed_once_then_cached(kernel: Path, tmp_path: Path) -> None:
    usable, why = accel.kvm_device_status()
    if not usable:
        pytest.skip(f"no KVM to probe: {why}")
    first = await accel.choose_accel(kernel, QEMU, tmp_path, env={})
    assert first.source == "probe"
    second = await accel.choose_accel(kernel, QEMU, tmp_path, env={})
    assert second.source == "cache"
    assert second.accel == first.accel
    entries = json.loads((tmp_path / "accel.json").read_text())["entries"]
    entry = entries[await planted_key(kernel)]
    assert entry["kvm"] is (first.accel == "kvm")
    if first.accel == "tcg":
        assert first.notice == accel.TCG_NOTICE
        assert entry["detail"] in first.reason
    # What was used elsewhere in this session agrees with the fresh probe here.
    assert accel.cached_kvm_works(tmp_path) is (first.accel == "kvm")


async def test_a_cached_verdict_is_obeyed_and_the_env_beats_it(
    kernel: Path, tmp_path: Path
) -> None:
    fake_kvm = tmp_path / "kvm"  # opens like /dev/kvm does: the cache decides
    fake_kvm.write_bytes(b"")
    key = await planted_key(kernel)
    (tmp_path / "accel.json").write_text(
        json.dumps({"format": 1, "entries": {key: {"kvm": False, "detail": "planted verdict"}}})
    )
    choice = await accel.choose_accel(kernel, QEMU, tmp_path, env={}, kvm_device=fake_kvm)
    assert (choice.accel, choice.source) == ("tcg", "cache")
    assert "planted verdict" in choice.reason
    assert choice.notice == accel.TCG_NOTICE
    forced = await accel.choose_accel(
        kernel, QEMU, tmp_path, env={"CARGOBAY_ACCEL": "tcg"}, kvm_device=fake_kvm
    )
    assert (forced.accel, forced.source) == ("tcg", "env")
    # Another guest kernel is another key: it is probed, not read from the planted entry.
    other = tmp_path / "other-vmlinuz"
    other.write_bytes(kernel.read_bytes() + b"\0")  # noqa: ASYNC240
    probed = await accel.choose_accel(other, QEMU, tmp_path, env={}, kvm_device=fake_kvm)
    assert probed.source == "probe"
    assert "planted" not in probed.reason


async def test_the_tcg_line_is_printed_once_per_process(kernel: Path, tmp_path: Path) -> None:
    fake_kvm = tmp_path / "kvm"
    fake_kvm.write_bytes(b"")
    key = await planted_key(kernel)
    (tmp_path / "accel.json").write_text(
        json.dumps({"format": 1, "entries": {key: {"kvm": False, "detail": "planted"}}})
    )
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from cargobay.hypervisors import accel\n"
        "async def main():\n"
        "    for _ in range(3):\n"
        "        c = await accel.choose_accel(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]),\n"
        "                                     env={}, kvm_device=Path(sys.argv[4]))\n"
        "        assert c.accel == 'tcg', c\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        str(kernel),
        QEMU,
        str(tmp_path),
        str(fake_kvm),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = err.decode().splitlines()
    assert lines.count(accel.TCG_NOTICE) == 1, lines
