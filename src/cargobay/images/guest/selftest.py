"""Boot self-test of a CargoBay guest image, run by /sbin/cargobay-init instead of the agent
when the kernel command line has ``cargobay.selftest=1``.

Installed as /opt/cargobay/selftest.py; runs with the guest's python3 and the standard
library only.  Prints one ``cargobay-selftest: KEY=VALUE`` line per check to the console,
where the host reads them (tests/integration/images).  It checks what the guest agent
relies on: the stdlib modules it imports, virga importable from precompiled bytecode, the
overlay root and whether it is writable, the API filesystems, lo, hostname and qemu-ga.
Each boot increments a counter file under /var/lib, so the host can see the change
persisted on the data disk.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import sys
from pathlib import Path

STDLIB = (
    "asyncio",
    "base64",
    "errno",
    "fcntl",
    "hashlib",
    "json",
    "pty",
    "select",
    "shutil",
    "signal",
    "socket",
    "struct",
    "subprocess",
    "termios",
    "tty",
    "zlib",
)
COUNTER = Path("/var/lib/cargobay-selftest/boots")


def report(key: str, value: object) -> None:
    print(f"cargobay-selftest: {key}={value}", flush=True)


def uptime() -> str:
    return Path("/proc/uptime").read_text().split()[0]


def missing_modules(names: tuple[str, ...]) -> list[str]:
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def bytecode_state(module_name: str) -> str:
    """``ok`` when the module was loaded from a precompiled, unchecked hash-based .pyc
    made by this very interpreter (same magic number)."""
    module = importlib.import_module(module_name)
    cached = getattr(module, "__cached__", None)
    if not cached or not os.path.exists(cached):
        return "missing"
    header = Path(cached).read_bytes()[:8]
    if header[:4] != importlib.util.MAGIC_NUMBER:
        return "wrong-python"
    flags = int.from_bytes(header[4:8], "little")
    return "ok" if flags == 0b01 else f"flags-{flags}"


def mounts() -> dict[str, str]:
    table = {}
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        table[fields[1]] = fields[2]
    return table


def running(comm: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    return True
            except OSError:
                continue
    return False


def kernel_features() -> dict[str, str]:
    """What the guest kernel offers that the agent, Python and containers in the guest
    use: each ``ok`` or what failed.  The minimal kernel must offer all of them built in."""
    import ctypes
    import select
    import subprocess

    libc = ctypes.CDLL(None, use_errno=True)
    sigset = ctypes.create_string_buffer(128)  # glibc's sigset_t, empty

    def new_fd(fd: int) -> None:
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        os.close(fd)

    def epoll() -> None:
        select.epoll().close()

    def pty() -> None:
        for fd in os.openpty():
            os.close(fd)

    def vsock() -> None:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()

    def namespaces() -> None:
        argv = ["unshare", "--user", "--pid", "--net", "--uts", "--ipc", "--mount", "--fork"]
        subprocess.run([*argv, "true"], check=True, capture_output=True)

    checks = {
        "epoll": epoll,
        "eventfd": lambda: new_fd(os.eventfd(0)),
        "inotify": lambda: new_fd(libc.inotify_init1(0)),
        "timerfd": lambda: new_fd(libc.timerfd_create(1, 0)),  # CLOCK_MONOTONIC
        "signalfd": lambda: new_fd(libc.signalfd(-1, sigset, 0)),
        "pty": pty,
        "vsock": vsock,
        "namespaces": namespaces,
    }
    results = {}
    for name, check in checks.items():
        try:
            check()
        except (OSError, subprocess.CalledProcessError) as err:
            results[name] = f"{type(err).__name__}-{getattr(err, 'errno', None) or ''}"
        else:
            results[name] = "ok"
    return results


def main() -> int:
    report("start", uptime())
    report("kernel", os.uname().release)
    report("modules", "loadable" if Path("/proc/modules").exists() else "none")
    filesystems = Path("/proc/filesystems").read_text().split()
    wanted_fs = ("ext4", "overlay", "9p", "tmpfs", "devtmpfs", "cgroup2", "proc", "sysfs")
    report("filesystems", ",".join(fs for fs in wanted_fs if fs in filesystems))
    features = kernel_features()
    bad = [f"{name}:{value}" for name, value in features.items() if value != "ok"]
    report("features", "ok" if not bad else ",".join(bad))
    report("python", ".".join(map(str, sys.version_info[:3])))
    missing = missing_modules(STDLIB)
    report("stdlib", "ok" if not missing else "missing:" + ",".join(missing))
    virga_missing = missing_modules(("virga.yamux", "virga.connection", "cargobay.guest.protocol"))
    report("virga", "ok" if not virga_missing else "missing:" + ",".join(virga_missing))
    report("bytecode", bytecode_state("virga.yamux"))
    report("agent", "present" if importlib.util.find_spec("cargobay.guest.agent") else "absent")

    table = mounts()
    report("root", table.get("/", "none"))
    try:
        report("overlay", Path("/run/cargobay/overlay").read_text().strip())
    except OSError:
        report("overlay", "unknown")
    wanted = ("/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp")
    absent = [path for path in wanted if path not in table]
    report("mounts", "ok" if not absent else "missing:" + ",".join(absent))

    try:
        boots = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
        COUNTER.parent.mkdir(parents=True, exist_ok=True)
        COUNTER.write_text(f"{boots}\n")
        os.sync()
        report("boots", boots)
    except OSError as err:
        report("boots", f"error:{err.strerror}")

    flags = int(Path("/sys/class/net/lo/flags").read_text(), 16)
    report("lo", "up" if flags & 1 else "down")
    report("hostname", socket.gethostname())
    report("qemu-ga", "running" if running("qemu-ga") else "absent")
    report("pid1", Path("/proc/1/comm").read_text().strip())
    report("end", uptime())
    return 0


if __name__ == "__main__":
    sys.exit(main())
