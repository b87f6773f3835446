"""Host folders shared into a machine: ``--share HOST_PATH:GUEST_PATH[:ro]``.

A share is stored on the machine (``VMConfig.shares``) and attached at every start:

- always as virtio-9p (QEMU serves the folder itself; no helper process);
- as virtiofs instead when ``kind="virtiofs"`` was asked for and a virtiofsd is installed
  (``/usr/lib/qemu/virtiofsd`` from QEMU 7.2, or Debian's ``virtiofsd``).  The daemon starts
  one virtiofsd per share, its socket in the VM's run directory, before QEMU; virtiofsd
  exits when QEMU closes the vhost-user connection (stop, crash, kill), and the run
  directory is removed with the machine's other sockets.  virtiofs needs the guest RAM in
  a shared memory backend: a ``memory-backend-file`` with ``share=on`` whose mem-path is
  the directory /dev/shm (QEMU makes an unlinked file there: nothing is left after a
  crash; ``QemuOptions.memory_file``), so such a machine cannot also start from a
  private template clone.

After the guest agent answers, the daemon mounts each share from the host side through the
agent (``mkdir -p`` then ``mount -t 9p -o trans=virtio,version=9p2000.L[,ro] TAG PATH`` or
``mount -t virtiofs TAG PATH``): the guest image is unchanged (its kernel has 9p and
virtiofs built in).

This module imports no machine model, so ``machines.models`` can hold ``ShareSpec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from cargobay.errors import GuestError, InvalidInput
from cargobay.hypervisors.qemu_storage import ShareDevice, encode_shares
from cargobay.machines.agent import ExecExit, ExecOutput, ExecRequest, exec_events

if TYPE_CHECKING:
    from cargobay.machines.models import VMInstance

__all__ = [
    "VIRTIOFSD_CANDIDATES",
    "ShareSpec",
    "check_guest_dir",
    "find_virtiofsd",
    "mount_argv",
    "parse_share",
    "share_devices",
    "start_virtiofsd",
]

VIRTIOFSD_CANDIDATES = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd")
VIRTIOFSD_WAIT = 10.0
SHM_DIR = "/dev/shm"


class ShareSpec(BaseModel):
    """One shared folder, as stored on the machine."""

    model_config = ConfigDict(frozen=True)

    host_path: str
    guest_path: str
    readonly: bool = False
    kind: Literal["9p", "virtiofs"] = "9p"


def check_guest_dir(path: str, what: str = "guest path") -> str:
    """An absolute guest path with no ``..`` component (``InvalidInput`` otherwise)."""
    if not path.startswith("/") or "\0" in path:
        raise InvalidInput(f"bad {what} {path!r}: use an absolute path like /mnt/src")
    if ".." in PurePosixPath(path).parts:
        raise InvalidInput(f"bad {what} {path!r}: '..' is not allowed")
    return path


def parse_share(text: str, kind: Literal["9p", "virtiofs"] = "9p") -> ShareSpec:
    """``HOST_PATH:GUEST_PATH[:ro]`` -> a checked ``ShareSpec``: the host path exists and
    is a directory (made absolute), the guest path is absolute without ``..``."""
    parts = text.split(":")
    readonly = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        readonly = parts[2] == "ro"
        parts = parts[:2]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InvalidInput(f"bad share {text!r}: use HOST_PATH:GUEST_PATH[:ro]")
    host, guest = parts
    return check_share(ShareSpec(host_path=host, guest_path=guest, readonly=readonly, kind=kind))


def check_share(share: ShareSpec) -> ShareSpec:
    host = Path(share.host_path).expanduser()
    if not host.is_absolute():
        host = Path.cwd() / host
    if not host.exists():
        raise InvalidInput(f"bad share: host folder {share.host_path!r} does not exist")
    if not host.is_dir():
        raise InvalidInput(f"bad share: {share.host_path!r} is not a directory")
    check_guest_dir(share.guest_path, "share guest path")
    return share.model_copy(update={"host_path": str(host.resolve())})


def find_virtiofsd() -> str | None:
    """The virtiofsd binary, or ``None`` where it is not installed."""
    for candidate in VIRTIOFSD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("virtiofsd")


def _tag(i: int) -> str:
    return f"cbshare{i}"


def share_devices(
    shares: tuple[ShareSpec, ...], run_dir: Path
) -> tuple[tuple[ShareDevice, ...], dict[str, str]]:
    """The devices for ``shares`` and the ``VMSpec.extra`` entries that carry them (with a
    shared memory file when one is virtiofs)."""
    devices = tuple(
        ShareDevice(
            tag=_tag(i),
            host_path=s.host_path,
            readonly=s.readonly,
            kind=s.kind,
            socket=str(run_dir / f"vfs{i}.sock") if s.kind == "virtiofs" else None,
        )
        for i, s in enumerate(shares)
    )
    extra: dict[str, str] = {}
    if devices:
        extra["shares"] = encode_shares(devices)
    if any(d.kind == "virtiofs" for d in devices):
        # a directory: QEMU makes an unlinked file in it (nothing to clean up after a crash)
        extra["memory_file"] = SHM_DIR if os.path.isdir(SHM_DIR) else str(run_dir)
        extra["memory_share"] = "on"
    return devices, extra


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )


async def start_virtiofsd(
    devices: tuple[ShareDevice, ...], log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    """One virtiofsd per virtiofs device, each in its own session (it outlives the daemon
    with its VM; a plain ``Popen``: an asyncio transport would kill it when collected),
    its stderr in ``log_dir/virtiofsdN.log``; returns once every socket exists.  Raises
    ``InvalidInput`` when virtiofsd is missing or does not start."""
    wanted = [d for d in devices if d.kind == "virtiofs"]
    if not wanted:
        return []
    binary = find_virtiofsd()
    if binary is None:
        raise InvalidInput(
            "a virtiofs share needs virtiofsd (Debian: qemu-system-common or virtiofsd); "
            "use a 9p share instead"
        )
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for i, d in enumerate(wanted):
            logs.append(log_dir / f"virtiofsd{i}.log")
            procs.append(_spawn(virtiofsd_argv(binary, d), logs[-1]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VIRTIOFSD_WAIT
        for d, proc, log_path in zip(wanted, procs, logs, strict=True):
            assert d.socket is not None
            while not os.path.exists(d.socket):  # noqa: ASYNC240 (a stat per 20 ms)
                if proc.poll() is not None or loop.time() > deadline:
                    err = log_path.read_text(errors="replace").strip()
                    raise InvalidInput(
                        f"virtiofsd for {d.host_path} did not start: {err or 'no socket'}"
                    )
                await asyncio.sleep(0.02)
    except BaseException:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        raise
    return procs


_WATCHDOGS: set[asyncio.Task[None]] = set()
VIRTIOFSD_CONNECT_WAIT = 120.0
REAP_EVERY = 5.0


async def _reap_unconnected(procs: list[subprocess.Popen[bytes]], pidfile: Path) -> None:
    """Kill ``procs`` if QEMU never came up (its pidfile, written once it is initialised
    and connected to every vhost-user socket, did not appear): a virtiofsd waits for its
    connection forever otherwise.  Once connected, virtiofsd exits with QEMU; it is then
    reaped here (polled: no thread held per VM)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + VIRTIOFSD_CONNECT_WAIT
    while loop.time() < deadline:
        if all(p.poll() is not None for p in procs):
            return
        if os.path.exists(pidfile):  # noqa: ASYNC240 (a stat per 0.2 s)
            while any(p.poll() is None for p in procs):  # noqa: ASYNC110 (a child, no event)
                await asyncio.sleep(REAP_EVERY)
            return
        await asyncio.sleep(0.2)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def virtiofsd_argv(binary: str, device: ShareDevice) -> list[str]:
    """QEMU 7.2's C virtiofsd (``-o source=``; no read-only mode: a read-only share is
    mounted ``ro`` in the guest) or the Rust one (``--shared-dir``, ``--readonly``)."""
    assert device.socket is not None
    if binary.startswith("/usr/lib/qemu/"):
        opts = f"source={device.host_path},cache=auto,sandbox=chroot"
        return [binary, f"--socket-path={device.socket}", "-o", opts]
    argv = [binary, f"--socket-path={device.socket}", f"--shared-dir={device.host_path}"]
    argv += ["--sandbox=chroot", "--cache=auto"]
    return argv + (["--readonly"] if device.readonly else [])


def mount_argv(device: ShareDevice, guest_path: str) -> list[str]:
    """The guest command that mounts ``device`` at ``guest_path`` (after ``mkdir -p``)."""
    if device.kind == "virtiofs":
        opts = ["-o", "ro"] if device.readonly else []
        return ["mount", "-t", "virtiofs", *opts, device.tag, guest_path]
    options = "trans=virtio,version=9p2000.L,msize=262144" + (",ro" if device.readonly else "")
    return ["mount", "-t", "9p", "-o", options, device.tag, guest_path]


async def mount_in_guest(
    run: Any, shares: tuple[ShareSpec, ...], devices: tuple[ShareDevice, ...]
) -> None:
    """Mount every share through ``run(argv) -> (exit code, output)`` (the agent's exec)."""
    for share, device in zip(shares, devices, strict=True):
        for argv in (["mkdir", "-p", share.guest_path], mount_argv(device, share.guest_path)):
            code, output = await run(argv)
            if code != 0:
                raise GuestError(
                    f"mounting share {share.host_path} at {share.guest_path} failed "
                    f"({' '.join(argv)}): {output.strip()}"
                )


def spec_extra(cache_strategy: str, devices_extra: Mapping[str, str]) -> dict[str, str]:
    return {"cache": cache_strategy, **devices_extra}


async def attach(config: Any, spec: Any) -> tuple[Any, tuple[ShareDevice, ...]]:
    """``spec`` (a ``VMSpec``) with the storage entries of ``config`` (a ``VMConfig``) in
    its ``extra``: the cache strategy, the share devices and the block attachments
    (``machines.attachments``); virtiofsd started for virtiofs shares, scratch volumes
    made."""
    from cargobay.machines import attachments as att

    devices, extra = share_devices(config.shares, spec.run_dir)
    blocks = tuple(
        ShareDevice(
            tag=att.serial(i),
            host_path=a.image_path or ""
            if a.kind == "image"
            else str(att.volume_path(spec.state_dir, i)),
            readonly=a.kind == "image",
            kind="block",
        )
        for i, a in enumerate(config.attachments)
    )
    for a, d in zip(config.attachments, blocks, strict=True):
        if a.kind == "image" and not os.path.isfile(d.host_path):  # noqa: ASYNC240
            raise InvalidInput(
                f"the image for {a.guest_path} is missing ({d.host_path}); "
                "detach it with `data NAME detach GUEST_PATH`"
            )
    await att.prepare_volumes(config.attachments, spec.state_dir)
    procs = await start_virtiofsd(devices, spec.state_dir)
    if procs:
        task = asyncio.create_task(_reap_unconnected(procs, spec.run_dir / "qemu.pid"))
        _WATCHDOGS.add(task)
        task.add_done_callback(_WATCHDOGS.discard)
    if blocks:
        extra["shares"] = encode_shares(devices + blocks)
    extra = {**spec.extra, **spec_extra(config.cache_strategy, extra)}
    return dataclasses.replace(spec, extra=extra), devices + blocks


async def mount_with_agent(agent: Any, config: Any, devices: tuple[ShareDevice, ...]) -> None:
    """Mount the shares and attachments through the guest agent; a scratch volume's file
    is unlinked once mounted (QEMU holds it open: it goes when QEMU exits)."""
    from cargobay.machines import attachments as att

    if not devices:
        return

    async def run(argv: list[str]) -> tuple[int, str]:
        out = b""
        code = -1
        async for event in exec_events(agent, ExecRequest(argv=argv, timeout=30.0)):
            if isinstance(event, ExecOutput):
                out += event.data
            elif isinstance(event, ExecExit):
                code = event.exit_code if event.exit_code is not None else -1
        return code, out.decode(errors="replace")

    n = len(config.shares)
    await mount_in_guest(run, config.shares, devices[:n])
    for i, (a, d) in enumerate(zip(config.attachments, devices[n:], strict=True)):
        code, output = await run(att.mount_script(i, a))
        if code != 0:
            raise GuestError(f"mounting the {a.kind} at {a.guest_path} failed: {output.strip()}")
        if a.kind == "volume":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(d.host_path)


CACHE_STRATEGIES = ("writeback", "writethrough", "none", "directsync", "unsafe")


def check_cache_strategy(value: object) -> str:
    if value not in CACHE_STRATEGIES:
        raise InvalidInput(
            f"bad cache strategy {value!r}: use one of {', '.join(CACHE_STRATEGIES)}"
        )
    return str(value)


def with_storage(vm: VMInstance, shares: Iterable[str], cache_strategy: str) -> VMInstance:
    """``vm`` with its shares (``HOST:GUEST[:ro]``, checked; ``virtiofs:`` in front asks for
    virtiofs) and data-disk cache strategy."""
    specs: list[ShareSpec] = []
    for text in shares:
        kind: Literal["9p", "virtiofs"] = "9p"
        for prefix in ("virtiofs:", "9p:"):
            if text.startswith(prefix):
                kind = "virtiofs" if prefix == "virtiofs:" else "9p"
                text = text[len(prefix) :]
        specs.append(parse_share(text, kind))
    guests = [s.guest_path.rstrip("/") for s in specs]
    if len(set(guests)) != len(guests):
        raise InvalidInput("two shares have the same guest path")
    if any(s.kind == "virtiofs" for s in specs) and find_virtiofsd() is None:
        raise InvalidInput(
            "a virtiofs share needs virtiofsd (Debian: qemu-system-common or virtiofsd); "
            "share with 9p instead"
        )
    update = {"shares": tuple(specs), "cache_strategy": check_cache_strategy(cache_strategy)}
    return vm.model_copy(update={"config": vm.config.model_copy(update=update)})
