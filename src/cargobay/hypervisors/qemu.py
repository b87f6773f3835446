"""The QEMU backend: microvm guests that outlive the daemon, driven over QMP (qemu.qmp).

A VM is one daemonized QEMU process (command line: ``qemu_cmdline``).  Everything needed
to find it again is in its ``VMHandle``: the pid, the QMP socket, and the process's start
time and the host's boot id (``extra``), which guard every signal and every "is it alive"
against pid reuse.  No state lives in this object between calls, so a fresh backend in a
new daemon process can status/pause/stop/kill a VM from its handle alone (adoption).

QMP.  QEMU's QMP socket serves one client at a time, and a connection held open by one
daemon would lock out the next one (and the CLI), so every operation opens a short QMP
session (connect, negotiate, one or two commands, disconnect) under a timeout; calls on
one VM through one backend are serialised by a lock.

Stopping.  ``stop`` presses the ACPI power button (``system_powerdown``; microvm has one
through its ACPI GED device, and it works under TCG: a guest running busybox acpid with
the ``button`` and ``evdev`` modules powers off on it), waits ``timeout`` seconds for the
process to end, then has QEMU ``quit`` (and SIGKILLs it if even that hangs).  A guest
that handles no power button simply runs into the timeout; the machines service asks the
guest agent to shut down first.  ``kill`` is SIGKILL at once.

Files.  Sockets and the pidfile live in ``spec.run_dir``; ``console.log`` (the serial
console) and ``qemu.log`` (QEMU's own messages) in ``spec.state_dir``, where a start
first renames the previous boot's logs to ``*.log.1``.

Runstates from ``query-status`` map to ``VMStatus``: running -> RUNNING, paused/suspended
-> PAUSED, shutdown -> STOPPED, anything else (internal-error, guest-panicked, ...) ->
UNKNOWN, as is a live process whose QMP does not answer within ``QMP_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient, QMPError
from qemu.qmp.protocol import Runstate

from cargobay.errors import Conflict, HypervisorError, InvalidInput
from cargobay.hypervisors import accel as accel_mod
from cargobay.hypervisors import cgroups, process, qemu_snapshot
from cargobay.hypervisors.accel import AccelChoice
from cargobay.hypervisors.base import Features, VMHandle, VMSpec, VMStatus
from cargobay.hypervisors.qemu_cmdline import (
    QemuLayout,
    QemuOptions,
    build_argv,
    parse_ports,
)
from cargobay.hypervisors.qemu_storage import decode_shares
from cargobay.paths import Paths

__all__ = ["QemuHypervisor"]

log = logging.getLogger(__name__)

_QMP_LOGGER = logging.getLogger(__name__ + ".qmp")
"""qemu.qmp logs every failed connect at ERROR; the errors reach our callers as
``HypervisorError``s, so its own records go here, quiet unless asked for (set this
logger's level to DEBUG to see them)."""
if _QMP_LOGGER.level == logging.NOTSET:
    _QMP_LOGGER.setLevel(logging.CRITICAL)

QEMU_ENV = "CARGOBAY_QEMU"
DEFAULT_QEMU = "qemu-system-x86_64"
VHOST_VSOCK = Path("/dev/vhost-vsock")

LAUNCH_TIMEOUT = 30.0
"""QEMU's launcher exits once the VM is initialised: well under a second normally."""
QMP_READY_TIMEOUT = 10.0
QMP_TIMEOUT = 3.0
"""One QMP session (connect + commands) on a live VM."""
QMP_CONNECT_ATTEMPTS = 3
QUIT_WAIT = 2.0
"""stop(): how long QMP ``quit`` may take before SIGKILL."""
KILL_WAIT = 5.0
SNAPSHOT_TIMEOUT = 120.0
"""Saving or loading a VM's state (RAM size / disk speed bound)."""
LOG_TAIL_LINES = 12

_RUNSTATES = {
    "running": VMStatus.RUNNING,
    "paused": VMStatus.PAUSED,
    "suspended": VMStatus.PAUSED,
    "postmigrate": VMStatus.PAUSED,  # a paused machine whose state was just saved
    "prelaunch": VMStatus.PAUSED,  # started with -S (a template being made)
    "shutdown": VMStatus.STOPPED,
}


def _is_our_vm(handle: VMHandle) -> bool:
    """``handle.pid`` is alive and is the very QEMU the handle was made for."""
    return process.is_same_process(
        handle.pid,
        handle.extra.get("proc_start"),
        handle.extra.get("boot_id"),
        handle.control_socket,
    )


async def _wait_gone(handle: VMHandle, timeout: float) -> bool:
    return await process.wait_gone(
        handle.pid,
        handle.extra.get("proc_start"),
        handle.extra.get("boot_id"),
        timeout,
        handle.control_socket,
    )


def _vsock_cid(vm_id: str, attempt: int) -> int:
    digest = hashlib.sha256(f"{vm_id}/{attempt}".encode()).digest()
    return 3 + int.from_bytes(digest[:4], "big") % (0x7FFFFFFF - 3)


# -- the backend --------------------------------------------------------------------------


class QemuHypervisor:
    """``Hypervisor`` for QEMU (x86-64 microvm; TCG, or KVM where a probe guest boots)."""

    name = "qemu"

    def __init__(
        self,
        *,
        qemu_binary: str | None = None,
        paths: Paths | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._env = os.environ if env is None else env
        self._qemu_name = qemu_binary or self._env.get(QEMU_ENV) or DEFAULT_QEMU
        self._paths = paths
        self._locks: dict[str, asyncio.Lock] = {}

    # -- facts ---------------------------------------------------------------------------

    @property
    def paths(self) -> Paths:
        if self._paths is None:
            self._paths = Paths.from_env(self._env)
        return self._paths

    @property
    def features(self) -> Features:
        usable, _ = accel_mod.kvm_device_status()
        return Features(
            pause=True,
            graceful_stop=True,
            adopt=True,
            console_log=True,
            serial_channel=True,
            vsock=VHOST_VSOCK.exists(),
            kvm=usable and accel_mod.cached_kvm_works(self.paths.cache),
        )

    def qemu_binary(self) -> str:
        found = shutil.which(self._qemu_name)
        if found is None:
            raise HypervisorError(
                f"{self._qemu_name} not found; install QEMU (Debian: apt-get install "
                f"qemu-system-x86) or point {QEMU_ENV} at it"
            )
        return found

    def console_log(self, handle: VMHandle) -> Path:
        return Path(handle.console_log)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, spec: VMSpec) -> VMHandle:
        spec = _absolute(spec)
        qemu = self.qemu_binary()
        layout = QemuLayout.of(spec)
        machine = spec.extra.get("machine", "microvm")
        if machine not in ("microvm", "q35"):
            raise InvalidInput(f"unknown QEMU machine {machine!r}: use microvm or q35")
        ports = parse_ports(spec.extra.get("ports", ""))
        display = spec.extra.get("display", "none")
        if display not in ("none", "vga"):
            raise InvalidInput(f"unknown display {display!r}: use none or vga (q35)")
        if display == "vga" and machine != "q35":
            raise InvalidInput("a VGA display needs machine q35 (microvm has no display)")
        choice = await self._choose_accel(spec, qemu)
        params: list[str] = []
        if choice.accel == "tcg":  # measures the TSC once (~0.1 s): not on the event loop
            params = await asyncio.to_thread(accel_mod.tcg_kernel_params)
        options = QemuOptions(
            accel=choice.accel,
            machine=machine,  # type: ignore[arg-type]
            extra_kernel_params=tuple(params),
            ports=ports,
            display=display,  # type: ignore[arg-type]
            memory_file=spec.extra.get("memory_file") or None,
            memory_share=spec.extra.get("memory_share", "on") != "off",
            incoming=spec.extra.get("incoming") == "defer",
            start_paused=spec.extra.get("start_paused") == "1",
            user_nic=spec.extra.get("user_nic") == "1",
            tap=spec.extra.get("tap") or None,
            mac=spec.extra.get("mac") or None,
            data_cache=spec.extra.get("cache", "writeback"),
            shares=decode_shares(spec.extra.get("shares", "")),
        )
        layout.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        layout.state_dir.mkdir(parents=True, exist_ok=True)
        use_vsock = VHOST_VSOCK.exists() and spec.extra.get("vsock", "on") != "off"  # noqa: ASYNC240
        attempts = 3 if use_vsock else 1
        for attempt in range(attempts):
            if use_vsock:
                options = dataclasses.replace(options, vsock_cid=_vsock_cid(spec.vm_id, attempt))
            try:
                return await self._launch(qemu, spec, layout, options, choice)
            except _CidInUse:
                if attempt == attempts - 1:
                    raise HypervisorError(
                        f"VM {spec.name!r}: no free vsock CID after {attempts} tries"
                    ) from None
        raise AssertionError("unreachable")

    async def _choose_accel(self, spec: VMSpec, qemu: str) -> AccelChoice:
        if not os.access(spec.kernel, os.R_OK):
            # Nothing to probe with; QEMU itself reports the missing kernel below.
            return AccelChoice("tcg", f"the kernel {spec.kernel} is unreadable", "no-kvm")
        return await accel_mod.choose_accel(spec.kernel, qemu, self.paths.cache, env=self._env)

    async def _launch(
        self,
        qemu: str,
        spec: VMSpec,
        layout: QemuLayout,
        options: QemuOptions,
        choice: AccelChoice,
    ) -> VMHandle:
        argv = build_argv(qemu, spec, options)
        running = process.pids_with_args("-pidfile", str(layout.pidfile))
        if running:
            # Its sockets are about to be replaced: refuse rather than orphan a live VM.
            raise Conflict(
                f"VM {spec.name!r} already has a QEMU process running (pid "
                f"{', '.join(map(str, running))}) with run directory {layout.run_dir}; "
                "stop it first"
            )
        for stale in (*layout.sockets(), layout.pidfile):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        for previous in (layout.console_log, layout.qemu_log):  # keep the last boot's logs
            with contextlib.suppress(FileNotFoundError):
                previous.replace(previous.with_name(previous.name + ".1"))
        log.debug("starting VM %s: %s", spec.name, " ".join(argv))
        pid: int | None = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
            )
        except OSError as err:
            raise HypervisorError(f"cannot run {qemu}: {err.strerror}") from err
        try:
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout=LAUNCH_TIMEOUT)
            except TimeoutError:
                raise HypervisorError(
                    f"QEMU did not finish starting VM {spec.name!r} within "
                    f"{LAUNCH_TIMEOUT:.0f} s; its log: {layout.qemu_log}\n"
                    f"{process.log_tail(layout.qemu_log)}"
                ) from None
            # With -D, QEMU's own error messages go to the log file, not to stderr.
            message = "\n".join(
                part
                for part in (
                    out.decode(errors="replace").strip(),
                    process.log_tail(layout.qemu_log),
                )
                if part
            )
            if proc.returncode != 0:
                if options.vsock_cid is not None and "guest cid" in message.lower():
                    raise _CidInUse(message)
                raise HypervisorError(
                    f"QEMU could not start VM {spec.name!r} (exit status {proc.returncode}): "
                    f"{_last_lines(message) or 'no output'}"
                )
            pid = process.read_pidfile(layout.pidfile)
            start = process.start_time(pid) if pid else None
            if pid is None or start is None:
                logs = process.log_tail(layout.qemu_log) or process.log_tail(layout.console_log)
                raise HypervisorError(
                    f"QEMU started VM {spec.name!r} but exited at once; its log:\n"
                    f"{logs or '(empty)'}"
                )
            extra = {
                "proc_start": start,
                "boot_id": process.boot_id(),
                "machine": options.machine,
                "qemu_log": str(layout.qemu_log),
                "pidfile": str(layout.pidfile),
                "accel_reason": choice.reason,
            }
            if choice.notice:
                extra["accel_notice"] = choice.notice
            limits = cgroups.limits_for(spec.cpus, spec.memory_mb)
            extra.update(
                (await asyncio.to_thread(cgroups.place, spec.vm_id, pid, limits)).as_extra()
            )
            if options.vsock_cid is not None:
                extra["vsock_cid"] = str(options.vsock_cid)
            handle = VMHandle(
                vm_id=spec.vm_id,
                backend=self.name,
                pid=pid,
                control_socket=str(layout.qmp_socket),
                agent_address=f"unix:{layout.agent_socket}",
                console_log=str(layout.console_log),
                accel=choice.accel,
                qga_address=f"unix:{layout.qga_socket}",
                extra=extra,
            )
            await self._wait_qmp(handle, spec)
            return handle
        except BaseException:
            # Whatever stage failed or was cancelled: the launcher, its daemonized child
            # (which may not have written its pidfile yet) - nothing may stay running.
            if proc.returncode is None:
                process.kill_hard(proc.pid)
                with contextlib.suppress(TimeoutError):
                    await asyncio.shield(asyncio.wait_for(proc.wait(), timeout=KILL_WAIT))
            if pid is not None:
                process.kill_hard(pid)
            await asyncio.shield(process.kill_processes_with_arg("-pidfile", str(layout.pidfile)))
            with contextlib.suppress(FileNotFoundError):
                layout.pidfile.unlink()
            raise

    async def _wait_qmp(self, handle: VMHandle, spec: VMSpec) -> None:
        deadline = time.monotonic() + QMP_READY_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not _is_our_vm(handle):
                raise HypervisorError(
                    f"QEMU for VM {spec.name!r} exited right after starting; its log:\n"
                    f"{process.log_tail(Path(handle.extra['qemu_log'])) or '(empty)'}\nconsole:\n"
                    f"{process.log_tail(Path(handle.console_log)) or '(empty)'}"
                )
            try:
                await self._qmp(handle, "query-status", timeout=deadline - time.monotonic())
                return
            except HypervisorError as err:
                last = err
                await asyncio.sleep(0.1)
        raise HypervisorError(
            f"QEMU for VM {spec.name!r} (pid {handle.pid}) did not answer on QMP "
            f"{handle.control_socket} within {QMP_READY_TIMEOUT:.0f} s ({last}); its log:\n"
            f"{process.log_tail(Path(handle.extra['qemu_log'])) or '(empty)'}"
        )

    async def stop(self, handle: VMHandle, timeout: float = 10.0) -> None:
        pressed = False
        async with self._lock(handle):  # held for the QMP session only, not the wait
            if not _is_our_vm(handle):
                self._forget(handle)
                return
            try:
                async with self._session(handle) as qmp:
                    state = await qmp.execute("query-status")
                    if isinstance(state, dict) and state.get("status") != "running":
                        await qmp.execute("cont")  # a paused guest cannot see the button
                    await qmp.execute("system_powerdown")
                    pressed = True
            except HypervisorError as err:
                log.info("VM %s: no graceful stop (%s); killing it", handle.vm_id, err)
        if pressed and await _wait_gone(handle, max(timeout, 0.0)):
            self._forget(handle)
            return
        # The guest did not power off: ask QEMU itself to quit (it closes its files and
        # removes its sockets), and SIGKILL it if even that does not end it.
        async with self._lock(handle):
            if _is_our_vm(handle):
                with contextlib.suppress(HypervisorError):
                    await self._qmp(handle, "quit", timeout=QUIT_WAIT)
        if await _wait_gone(handle, QUIT_WAIT):
            self._forget(handle)
            return
        await self.kill(handle)

    async def kill(self, handle: VMHandle) -> None:
        async with self._lock(handle):
            await self._kill(handle)

    async def _kill(self, handle: VMHandle) -> None:
        if _is_our_vm(handle):
            process.kill_hard(handle.pid)
            if not await _wait_gone(handle, KILL_WAIT):
                raise HypervisorError(
                    f"QEMU for VM {handle.vm_id} (pid {handle.pid}) survived SIGKILL for "
                    f"{KILL_WAIT:.0f} s (stuck in the kernel?)"
                )
        self._forget(handle)

    def _forget(self, handle: VMHandle) -> None:
        """Remove the pidfile a killed QEMU leaves behind (the sockets go with run_dir),
        and the VM's cgroups."""
        cgroups.remove(handle.extra)
        pidfile = handle.extra.get("pidfile")
        if pidfile:
            with contextlib.suppress(OSError):
                if process.read_pidfile(Path(pidfile)) == handle.pid:
                    Path(pidfile).unlink()

    async def pause(self, handle: VMHandle) -> None:
        async with self._lock(handle):
            self._require_alive(handle, "pause")
            await self._qmp(handle, "stop")

    async def resume(self, handle: VMHandle) -> None:
        async with self._lock(handle):
            self._require_alive(handle, "resume")
            await self._qmp(handle, "cont")

    async def status(self, handle: VMHandle) -> VMStatus:
        async with self._lock(handle):
            if not _is_our_vm(handle):
                return VMStatus.STOPPED
            try:
                result = await self._qmp(handle, "query-status")
            except HypervisorError as err:
                if not _is_our_vm(handle):
                    return VMStatus.STOPPED
                log.info("VM %s: QMP does not answer: %s", handle.vm_id, err)
                return VMStatus.UNKNOWN
        state = result.get("status") if isinstance(result, dict) else None
        return _RUNSTATES.get(str(state), VMStatus.UNKNOWN)

    async def save_state(self, handle: VMHandle, path: Path, *, ignore_shared: bool) -> None:
        """Stop the vCPUs and write the VM's state to ``path`` (``Snapshotting``); the VM
        stays paused."""
        async with self._lock(handle):
            self._require_alive(handle, "snapshot")
            async with self._session(handle, timeout=SNAPSHOT_TIMEOUT) as qmp:
                await qemu_snapshot.save(qmp, path, ignore_shared=ignore_shared)

    async def load_state(
        self, handle: VMHandle, path: Path, *, ignore_shared: bool, resume: bool = True
    ) -> None:
        """Feed ``path`` to a VM started with ``extra["incoming"] = "defer"``."""
        async with self._lock(handle):
            self._require_alive(handle, "restore")
            async with self._session(handle, timeout=SNAPSHOT_TIMEOUT) as qmp:
                await qemu_snapshot.load(qmp, path, ignore_shared=ignore_shared, resume=resume)

    async def block_stats(self, handle: VMHandle) -> list[dict[str, Any]]:
        """Per-drive I/O counters from QMP ``query-blockstats``."""
        async with self._lock(handle):
            self._require_alive(handle, "read the disk counters of")
            return parse_blockstats(await self._qmp(handle, "query-blockstats"))

    # -- QMP -----------------------------------------------------------------------------

    def _lock(self, handle: VMHandle) -> asyncio.Lock:
        lock = self._locks.get(handle.vm_id)
        if lock is None:
            lock = self._locks[handle.vm_id] = asyncio.Lock()
        return lock

    def _require_alive(self, handle: VMHandle, what: str) -> None:
        if not _is_our_vm(handle):
            raise HypervisorError(
                f"cannot {what} VM {handle.vm_id}: its QEMU process (pid {handle.pid}) is gone"
            )

    @contextlib.asynccontextmanager
    async def _session(
        self, handle: VMHandle, timeout: float = QMP_TIMEOUT
    ) -> AsyncIterator[QMPClient]:
        """A QMP session on the VM's socket; every step inside shares ``timeout``.

        A failed connect is retried (within the same time budget): when the previous
        client was one that gave up waiting, QEMU first works through such abandoned
        connections, and a new one has been seen to fail once with EINVAL on its first
        read.  Only connecting is retried, never a command."""
        client: QMPClient | None = None
        try:
            async with asyncio.timeout(timeout):
                for attempt in range(1, QMP_CONNECT_ATTEMPTS + 1):
                    client = QMPClient(f"cargobay-{handle.vm_id[:8]}")
                    client.logger = _QMP_LOGGER
                    try:
                        await client.connect(handle.control_socket)
                        break
                    except (QMPError, OSError, EOFError):
                        if attempt == QMP_CONNECT_ATTEMPTS or not _is_our_vm(handle):
                            raise
                    await asyncio.sleep(0.05 * attempt)
                assert client is not None
                yield client
        except TimeoutError as err:
            raise HypervisorError(
                f"QMP on {handle.control_socket} did not answer within {timeout:.1f} s"
            ) from err
        except (QMPError, OSError, EOFError) as err:
            raise HypervisorError(f"QMP on {handle.control_socket} failed: {err}") from err
        finally:
            if client is not None and client.runstate != Runstate.IDLE:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.disconnect(), timeout=2)

    async def _qmp(
        self,
        handle: VMHandle,
        command: str,
        arguments: dict[str, Any] | None = None,
        timeout: float = QMP_TIMEOUT,
    ) -> object:
        async with self._session(handle, timeout) as qmp:
            return await qmp.execute(command, arguments)


def parse_blockstats(result: object) -> list[dict[str, Any]]:
    """The answer of ``query-blockstats`` as ``{"drive", "read_bytes", ...}`` rows; a drive
    is named by its ``-drive id`` (``device``), else its qdev path or node name."""
    rows: list[dict[str, Any]] = []
    for entry in result if isinstance(result, list) else []:
        stats = entry.get("stats") or {}
        drive = entry.get("device") or entry.get("qdev") or entry.get("node-name") or "?"
        rows.append(
            {
                "drive": str(drive),
                "read_bytes": int(stats.get("rd_bytes", 0)),
                "write_bytes": int(stats.get("wr_bytes", 0)),
                "read_ops": int(stats.get("rd_operations", 0)),
                "write_ops": int(stats.get("wr_operations", 0)),
            }
        )
    return rows


class _CidInUse(Exception):
    """QEMU refused the vsock CID (another VM on this host has it)."""


def _absolute(spec: VMSpec) -> VMSpec:
    """QEMU daemonizes into ``/``; every path it gets must be absolute."""
    changes: dict[str, Path] = {}
    for name in ("kernel", "rootfs", "data_disk", "run_dir", "state_dir", "initrd"):
        value = getattr(spec, name)
        if value is not None and not Path(value).is_absolute():
            changes[name] = Path(value).absolute()
    return dataclasses.replace(spec, **changes) if changes else spec  # type: ignore[arg-type]


def _last_lines(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])
