"""The KVM probe guest (ELF + initramfs), the environment override, the cache reader and the
TCG clock parameters.  The probe itself and the cache round trip run QEMU: see
tests/integration/hypervisors/test_accel.py."""

from __future__ import annotations

import json
import os
import platform
import struct
from pathlib import Path

import pytest

from cargobay.errors import AccelerationError
from cargobay.hypervisors import accel


def parse_newc(data: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    """(name, mode, data, (rdevmajor, rdevminor)) of each entry, checking alignment."""
    entries = []
    pos = 0
    while True:
        assert pos % 4 == 0
        header = data[pos : pos + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = (
            fields[1],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
        )
        name_end = pos + 110 + namesize
        name = data[pos + 110 : name_end - 1].decode()
        assert data[name_end - 1] == 0
        body = name_end + (-name_end % 4)
        entries.append((name, mode, data[body : body + filesize], (rmaj, rmin)))
        pos = body + filesize + (-(body + filesize) % 4)
        if name == "TRAILER!!!":
            assert pos == len(data)
            return entries


def test_probe_elf_is_a_static_x86_64_executable() -> None:
    elf = accel.probe_init_elf()
    assert elf[:4] == b"\x7fELF"
    assert elf[4:7] == bytes([2, 1, 1])  # 64-bit, little-endian, version 1
    e_type, machine, _, entry, phoff, shoff = struct.unpack_from("<HHIQQQ", elf, 16)
    assert (e_type, machine, phoff, shoff) == (2, 0x3E, 64, 0)
    phnum = struct.unpack_from("<H", elf, 56)[0]
    assert phnum == 1
    p_type, flags, offset, vaddr, _, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", elf, 64)
    assert (p_type, flags, offset) == (1, 5, 0)  # PT_LOAD, R+X, the whole file
    assert filesz == memsz == len(elf)
    assert vaddr <= entry < vaddr + filesz
    assert elf.endswith(accel.PROBE_MARKER + b"\n")


def test_probe_elf_code_points_at_its_message() -> None:
    elf = accel.probe_init_elf(b"HELLO")
    code = 64 + 56
    # lea rsi, [rip + rel32] is the third instruction (after two 5-byte movs)
    assert elf[code + 10 : code + 13] == b"\x48\x8d\x35"
    rel = struct.unpack_from("<i", elf, code + 13)[0]
    target = code + 17 + rel
    assert elf[target:] == b"HELLO\n"
    # mov edx, len
    assert elf[code + 17] == 0xBA
    assert struct.unpack_from("<I", elf, code + 18)[0] == len(b"HELLO\n")
    # reboot(2) only behind the PID 1 check: getpid, cmp eax 1, jne
    assert b"\xb8\x27\x00\x00\x00\x0f\x05\x83\xf8\x01\x75" in elf
    assert b"\xbf\xad\xde\xe1\xfe\xbe\x69\x19\x12\x28\xba\xdc\xfe\x21\x43" in elf


def test_probe_initramfs_has_console_and_init() -> None:
    entries = {
        name: (mode, data, rdev) for name, mode, data, rdev in parse_newc(accel.probe_initramfs())
    }
    assert set(entries) == {"dev", "dev/console", "init", "TRAILER!!!"}
    mode, _, rdev = entries["dev/console"]
    assert mode == 0o020600
    assert rdev == (5, 1)
    mode, data, _ = entries["init"]
    assert mode == 0o100755
    assert data == accel.probe_init_elf()
    assert entries["dev"][0] == 0o040755


async def test_env_override_tcg_skips_everything(tmp_path: Path) -> None:
    choice = await accel.choose_accel(
        tmp_path / "no-such-kernel",
        "no-such-qemu",
        tmp_path / "cache",
        env={"CARGOBAY_ACCEL": "TCG"},
    )
    assert (choice.accel, choice.source, choice.notice) == ("tcg", "env", None)
    assert not (tmp_path / "cache").exists()


async def test_env_override_rejects_nonsense(tmp_path: Path) -> None:
    with pytest.raises(AccelerationError, match="kvm or tcg"):
        await accel.choose_accel(tmp_path / "k", "qemu", tmp_path, env={"CARGOBAY_ACCEL": "hvf"})


async def test_env_override_kvm_needs_the_device(tmp_path: Path) -> None:
    with pytest.raises(AccelerationError, match="does not exist"):
        await accel.choose_accel(
            tmp_path / "k",
            "qemu",
            tmp_path,
            env={"CARGOBAY_ACCEL": "kvm"},
            kvm_device=tmp_path / "kvm",
        )


async def test_no_kvm_device_means_tcg_without_a_probe(tmp_path: Path) -> None:
    choice = await accel.choose_accel(
        tmp_path / "k", "no-such-qemu", tmp_path / "cache", env={}, kvm_device=tmp_path / "kvm"
    )
    assert (choice.accel, choice.source, choice.notice) == ("tcg", "no-kvm", None)
    assert "does not exist" in choice.reason


def test_kvm_device_status_on_a_regular_file(tmp_path: Path) -> None:
    fake = tmp_path / "kvm"
    fake.write_bytes(b"")
    assert accel.kvm_device_status(fake) == (True, f"{fake} opens")
    assert accel.kvm_device_status(tmp_path / "nope")[0] is False


def test_cached_kvm_works_reads_only_this_host_kernel(tmp_path: Path) -> None:
    assert accel.cached_kvm_works(tmp_path) is False
    release = os.uname().release
    entries = {
        "other-kernel|QEMU 9|abc": {"kvm": True},
        f"{release}|QEMU 7.2|def": {"kvm": False},
    }
    (tmp_path / "accel.json").write_text(json.dumps({"format": 1, "entries": entries}))
    assert accel.cached_kvm_works(tmp_path) is False
    entries[f"{release}|QEMU 7.2|ghi"] = {"kvm": True}
    (tmp_path / "accel.json").write_text(json.dumps({"format": 1, "entries": entries}))
    assert accel.cached_kvm_works(tmp_path) is True
    (tmp_path / "accel.json").write_text("{not json")
    assert accel.cached_kvm_works(tmp_path) is False


@pytest.mark.skipif(platform.machine() != "x86_64", reason="rdtsc is x86-64")
def test_tcg_params_carry_the_host_tsc_rate() -> None:
    params = accel.tcg_kernel_params()
    assert params[1:] == ["tsc=reliable"]
    key, _, value = params[0].partition("=")
    assert key == "tsc_early_khz"
    assert 100_000 <= int(value) <= 20_000_000
    assert accel.tcg_kernel_params() == params  # measured once per process


@pytest.mark.skipif(platform.machine() != "x86_64", reason="rdtsc is x86-64")
def test_tsc_measurement_agrees_with_a_second_one() -> None:
    first = accel._measure_tsc_khz()
    second = accel._measure_tsc_khz()
    assert first is not None
    assert second is not None
    assert abs(first - second) / first < 0.001  # bracketed readings: well under 0.1 %
