"""A libvirt test environment: libvirtd (with TCP on loopback) and sshd on loopback.

``LibvirtEnv.start()`` makes sure that

- virtlogd and libvirtd run (started as root with a config that also listens for
  ``qemu+tcp://127.0.0.1/system`` without auth; an already running libvirtd is used as it
  is, and then its TCP listener must already be on 127.0.0.1:16509);
- an sshd listens on a free loopback port with a fresh host key and accepts a fresh
  client key for root, so ``qemu+ssh://root@127.0.0.1:PORT/system`` works.  libvirt's ssh
  transport runs ``ssh`` through ``command=``: a wrapper that keeps the known-hosts file in
  the temporary directory instead of root's ~/.ssh.

Everything it started is stopped by ``stop()``, which also removes its directory.  Every
address involved is 127.0.0.1.  A missing piece skips on a laptop and fails in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import require, require_binary

LIBVIRT_SOCK = Path("/run/libvirt/libvirt-sock")
TCP_PORT = 16509


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def _kvm_device_as_udev_leaves_it() -> None:
    """Give /dev/kvm the owner and mode Debian's udev rule gives it (root:kvm 0660).

    Machines without udev (containers, these CI VMs) leave it root:root 0600.  libvirtd
    then probes QEMU's capabilities as root (KVM usable), checks KVM as the libvirt-qemu
    user (not usable), finds its capability cache stale and probes again on every
    define/create: about 30 s each (seen here).  Domains still run under TCG
    (``<domain type='qemu'>``); this only makes libvirt's view of KVM consistent."""
    import grp

    dev = Path("/dev/kvm")
    try:
        st = dev.stat()
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except (OSError, KeyError):
        return
    if st.st_gid == 0 and st.st_mode & 0o777 == 0o600:
        os.chown(dev, 0, kvm_gid)
        dev.chmod(0o660)


@dataclass
class LibvirtEnv:
    dir: Path
    ssh_port: int = 0
    started_pids: list[int] = field(default_factory=list)

    @property
    def local_uri(self) -> str:
        return "qemu:///system"

    @property
    def tcp_uri(self) -> str:
        return "qemu+tcp://127.0.0.1/system"

    @property
    def ssh_uri(self) -> str:
        return (
            f"qemu+ssh://root@127.0.0.1:{self.ssh_port}/system"
            f"?keyfile={self.dir}/client_key&no_verify=1&command={self.dir}/ssh"
        )

    def uris(self) -> dict[str, str]:
        return {"local": self.local_uri, "tcp": self.tcp_uri, "ssh": self.ssh_uri}

    # --- starting ---------------------------------------------------------------------

    @classmethod
    def start(cls) -> LibvirtEnv:
        require(os.geteuid() == 0, "root, to run libvirtd and sshd")
        libvirtd = require_binary("libvirtd", "Debian: apt-get install libvirt-daemon-system")
        virtlogd = require_binary("virtlogd", "Debian: apt-get install libvirt-daemon-system")
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        require(Path(sshd).exists(), "sshd (Debian: apt-get install openssh-server)")
        require_binary("ssh", "Debian: apt-get install openssh-client")
        try:
            import libvirt  # noqa: F401
        except ImportError:
            require(False, "libvirt-python (pip install libvirt-python; needs libvirt-dev)")
        env = cls(Path(tempfile.mkdtemp(prefix="cb-libvirt-")))
        _kvm_device_as_udev_leaves_it()
        try:
            env._start_libvirtd(libvirtd, virtlogd)
            env._start_sshd(sshd)
        except BaseException:
            env.stop()
            raise
        return env

    def _spawn(self, argv: list[str], log: str) -> int:
        with open(self.dir / log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        self.started_pids.append(proc.pid)
        return proc.pid

    def _start_libvirtd(self, libvirtd: str, virtlogd: str) -> None:
        if _answers(LIBVIRT_SOCK):
            require(
                _tcp_open(TCP_PORT),
                "libvirtd runs but does not listen on 127.0.0.1:16509 "
                "(listen_tcp=1, auth_tcp=none, listen_addr=127.0.0.1)",
            )
            return
        if not _answers(Path("/run/libvirt/virtlogd-sock")):
            self._spawn([virtlogd], "virtlogd.log")
        conf = self.dir / "libvirtd.conf"
        conf.write_text(
            'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "127.0.0.1"\nauth_tcp = "none"\n'
            f'log_outputs = "3:file:{self.dir}/libvirtd-debug.log"\n'
        )
        self._spawn([libvirtd, "--listen", "-f", str(conf)], "libvirtd.log")
        _wait(lambda: _answers(LIBVIRT_SOCK) and _tcp_open(TCP_PORT), "libvirtd")

    def _start_sshd(self, sshd: str) -> None:
        d = self.dir
        for key in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True
            )
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        self.ssh_port = _free_port()
        (d / "sshd_config").write_text(
            f"Port {self.ssh_port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"StrictModes no\nPidFile {d}/sshd.pid\n"
        )
        (d / "ssh").write_text(
            f'#!/bin/sh\nexec ssh -o UserKnownHostsFile={d}/known_hosts -o BatchMode=yes "$@"\n'
        )
        (d / "ssh").chmod(0o755)
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        self._spawn([sshd, "-D", "-e", "-f", str(d / "sshd_config")], "sshd.log")
        _wait(lambda: _tcp_open(self.ssh_port), "sshd")

    # --- stopping ---------------------------------------------------------------------

    def stop(self) -> None:
        for pid in reversed(self.started_pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in reversed(self.started_pids):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.started_pids.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill_ssh_clients(self) -> int:
        """SIGKILL the ``ssh`` processes of our URI (to cut a qemu+ssh connection)."""
        out = subprocess.run(
            ["pgrep", "-f", f"ssh .*-p {self.ssh_port}"], capture_output=True, text=True
        ).stdout.split()
        for pid in out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        return len(out)
