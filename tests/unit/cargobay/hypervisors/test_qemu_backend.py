"""QemuHypervisor pieces that need no QEMU: process identity (the pid-reuse guard), the
registry, features, path handling.  Everything that runs QEMU is in
tests/integration/hypervisors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cargobay import hypervisors
from cargobay.errors import HypervisorError
from cargobay.hypervisors import process, qemu
from cargobay.hypervisors.base import VMHandle, VMSpec
from cargobay.paths import Paths


def handle_for(pid: int, **extra: str) -> VMHandle:
    return VMHandle(
        vm_id="v1",
        backend="qemu",
        pid=pid,
        control_socket="/nonexistent/qmp.sock",
        agent_address="unix:/nonexistent/agent.sock",
        console_log="/nonexistent/console.log",
        accel="tcg",
        extra=extra,
    )


def test_identity_matches_start_time_and_boot() -> None:
    me = os.getpid()
    start = process.start_time(me)
    assert start is not None
    boot = process.boot_id()
    assert qemu._is_our_vm(handle_for(me, proc_start=start, boot_id=boot))
    # Same pid, another process (pid reuse): a different start time or another boot.
    assert not qemu._is_our_vm(handle_for(me, proc_start=str(int(start) + 1), boot_id=boot))
    assert not qemu._is_our_vm(handle_for(me, proc_start=start, boot_id="another-boot"))


def test_identity_without_extra_falls_back_to_the_command_line() -> None:
    me = os.getpid()
    mine = Path(f"/proc/{me}/cmdline").read_bytes().split(b"\0")[0].decode()
    h = handle_for(me)
    assert qemu._is_our_vm(h.__class__(**{**h.to_dict(), "control_socket": mine}))
    assert not qemu._is_our_vm(h)  # its control socket is not on our command line


def test_gone_processes_are_not_ours() -> None:
    assert not process.alive(0)
    assert not process.alive(-1)
    assert not qemu._is_our_vm(handle_for(2**22 + 12345, proc_start="1", boot_id="x"))


def test_registered_on_linux() -> None:
    if sys.platform.startswith("linux"):
        assert "qemu" in hypervisors.available()
        assert isinstance(hypervisors.get("qemu"), hypervisors.Hypervisor)


def test_features(tmp_path: Path) -> None:
    hv = qemu.QemuHypervisor(paths=Paths(tmp_path, tmp_path, tmp_path, tmp_path))
    f = hv.features
    assert f.pause
    assert f.adopt
    assert f.console_log
    assert f.serial_channel
    assert f.graceful_stop
    assert f.vsock == Path("/dev/vhost-vsock").exists()
    assert f.kvm is False  # nothing probed in this empty cache


def test_missing_qemu_binary_says_what_to_install() -> None:
    hv = qemu.QemuHypervisor(qemu_binary="no-such-qemu-binary")
    with pytest.raises(HypervisorError, match="apt-get install qemu-system-x86"):
        hv.qemu_binary()


def test_relative_spec_paths_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = VMSpec(
        vm_id="v",
        name="n",
        cpus=1,
        memory_mb=64,
        kernel=Path("k"),
        rootfs=Path("/abs/root"),
        data_disk=Path("d/disk.img"),
        run_dir=Path("run"),
        state_dir=Path("/abs/state"),
    )
    fixed = qemu._absolute(spec)
    assert fixed.kernel == tmp_path / "k"
    assert fixed.data_disk == tmp_path / "d" / "disk.img"
    assert fixed.run_dir == tmp_path / "run"
    assert fixed.rootfs == Path("/abs/root")
    assert fixed.initrd is None


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "q.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "\n\n")
    assert process.log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert process.log_tail(tmp_path / "missing") == ""


def test_vsock_cids_are_valid_and_vary() -> None:
    cids = {qemu._vsock_cid("vm-a", attempt) for attempt in range(3)}
    assert len(cids) == 3
    assert all(3 <= cid < 2**31 for cid in cids)


def test_processes_are_found_by_consecutive_arguments() -> None:
    argv = Path(f"/proc/{os.getpid()}/cmdline").read_bytes().split(b"\0")[:-1]
    if len(argv) < 2:
        pytest.skip("this interpreter runs without arguments")
    first, second = argv[0].decode(), argv[1].decode()
    assert os.getpid() in process.pids_with_args(first, second)
    assert os.getpid() not in process.pids_with_args(second, first + "-not-it")


def test_no_identity_and_no_needle_is_never_ours() -> None:
    assert not process.is_same_process(os.getpid(), None, None, None)


def test_read_pidfile(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("1234\n")
    assert process.read_pidfile(tmp_path / "p") == 1234
    (tmp_path / "p").write_text("garbage")
    assert process.read_pidfile(tmp_path / "p") is None
    assert process.read_pidfile(tmp_path / "missing") is None
