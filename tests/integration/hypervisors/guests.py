"""Throwaway guests for the hypervisor tests, made from the default image's kernel and initrd.

An initramfs may be several cpio archives back to back (the kernel unpacks each in turn,
later files replacing earlier ones), so a test guest is the image's initrd (busybox and
the virtio modules) followed by a small uncompressed newc archive with a script that the
kernel runs instead of the image's init (``rdinit=/cbtest``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import require

__all__ = ["acpi_guest_initrd", "newc", "overlay_initrd"]


def newc(files: dict[str, tuple[int, bytes]]) -> bytes:
    """An uncompressed newc archive of ``{name: (mode, data)}`` (parents must be listed)."""
    out = bytearray()
    for name, (mode, data) in [*files.items(), ("TRAILER!!!", (0, b""))]:
        encoded = name.encode() + b"\0"
        fields = (0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        out += bytes(-len(out) % 4)
        out += data + bytes(-len(data) % 4)
    return bytes(out)


def overlay_initrd(base: Path, files: dict[str, tuple[int, bytes]], out: Path) -> Path:
    """``base`` then an archive of ``files``; the second starts 512-byte aligned (the
    kernel looks for the next archive's magic at a 4-byte boundary after zero padding)."""
    data = base.read_bytes()
    out.write_bytes(data + bytes(-len(data) % 512) + newc(files))
    return out


def _debugfs() -> str:
    found = shutil.which("debugfs") or next(
        (p for p in ("/sbin/debugfs", "/usr/sbin/debugfs") if Path(p).exists()), None
    )
    require(found is not None, "debugfs (Debian: apt-get install e2fsprogs)")
    assert found is not None
    return found


def extract_module(rootfs: Path, module: str, dest: Path) -> Path:
    """Copy ``module`` (a path under /lib/modules/VERSION/, without ``.ko``) out of an
    ext4 image without mounting it (debugfs), decompressing ``.ko.zst``/``.ko.xz``."""
    decompress = {".ko": None, ".ko.zst": "zstd", ".ko.xz": "xz"}
    for suffix, tool in decompress.items():
        packed = dest.with_name(dest.name + suffix)
        subprocess.run(
            [_debugfs(), "-R", f"dump {module}{suffix} {packed}", str(rootfs)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        if not packed.exists() or packed.stat().st_size == 0:
            packed.unlink(missing_ok=True)
            continue
        if tool is None:
            packed.rename(dest)
        else:
            binary = shutil.which(tool)
            require(binary is not None, f"{tool}, to unpack {module}{suffix}")
            assert binary is not None
            subprocess.run([binary, "-d", "-q", "-f", "-o", str(dest), str(packed)], check=True)
        return dest
    raise FileNotFoundError(f"{module}.ko is not in {rootfs}")


ACPI_SCRIPT = b"""#!/bin/busybox sh
# A guest that powers off when the ACPI power button is pressed (busybox acpid).
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
# (the minimal kernel has both built in: no module files then)
[ -e /cbmod/evdev.ko ] && /bin/busybox insmod /cbmod/evdev.ko
[ -e /cbmod/button.ko ] && /bin/busybox insmod /cbmod/button.ko
while [ ! -e /dev/input/event0 ]; do /bin/busybox sleep 0.1; done
/bin/busybox acpid -d -a /cbtest.acpid.conf &
pid=$!
# READY only once acpid holds the event device: a button pressed before that is lost.
until /bin/busybox ls -l /proc/$pid/fd 2>/dev/null | /bin/busybox grep -q event0; do
    /bin/busybox sleep 0.05
done
echo CBTEST-ACPI-READY
wait $pid
while true; do /bin/busybox sleep 3600; done  # PID 1 must not exit
"""

POWEROFF_SCRIPT = b"""#!/bin/busybox sh
echo CBTEST-POWER-BUTTON
/bin/busybox poweroff -f
"""


def acpi_guest_initrd(
    initrd: Path, kernel_version: str, rootfs: Path, out: Path, *, modules: bool = True
) -> Path:
    """The image's initrd plus ``/cbtest``: load the ACPI button driver, run acpid, print
    CBTEST-ACPI-READY; on the power button print CBTEST-POWER-BUTTON and power off.
    ``modules=False``: the kernel has the button and evdev drivers built in."""
    files: dict[str, tuple[int, bytes]] = {"cbmod": (0o040755, b"")}
    if modules:
        drivers = f"/lib/modules/{kernel_version}/kernel/drivers"
        work = out.parent
        extract_module(rootfs, f"{drivers}/acpi/button", work / "button.ko")
        extract_module(rootfs, f"{drivers}/input/evdev", work / "evdev.ko")
        files["cbmod/button.ko"] = (0o100644, (work / "button.ko").read_bytes())
        files["cbmod/evdev.ko"] = (0o100644, (work / "evdev.ko").read_bytes())
    files |= {
        "cbtest": (0o100755, ACPI_SCRIPT),
        # acpid runs an action relative to its config directory (-c, /etc/acpi)
        "etc": (0o040755, b""),
        "etc/acpi": (0o040755, b""),
        "etc/acpi/cbtest-poweroff": (0o100755, POWEROFF_SCRIPT),
        "cbtest.acpid.conf": (0o100644, b"PWRF cbtest-poweroff\n"),
    }
    return overlay_initrd(initrd, files, out)
