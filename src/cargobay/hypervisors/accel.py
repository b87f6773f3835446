"""Choosing QEMU's accelerator: KVM only when a test guest really boots under it, else TCG.

On some hosts ``/dev/kvm`` opens and ``KVM_CREATE_VM`` succeeds, yet an ordinary kernel
hangs under ``accel=kvm`` (nested, PVM-style virtualisation: FIELD-NOTES).  Opening the
device proves nothing, so the verdict comes from a probe: boot the image's own kernel
under ``accel=kvm`` with a throwaway initramfs whose ``/init`` prints a marker and powers
off, and look for the marker on the serial console within a short, bounded time.

The probe's ``/init`` is a 200-byte static x86-64 ELF generated here (``probe_init_elf``):
write(1, marker), then reboot(POWER_OFF) if it is PID 1, else exit(0).  It needs no busybox,
no modules and nothing from the image but the kernel, so the probe tests exactly one
thing: does this kernel reach userspace under KVM on this host.

The verdict is cached in ``<cache>/accel.json``, keyed by the host kernel release, the
QEMU version and the guest kernel's SHA-256: a host upgrade, a QEMU upgrade or a new image
kernel probes again.  ``CARGOBAY_ACCEL=kvm|tcg`` overrides everything.  When KVM is
present but does not work, one line says so (``TCG_NOTICE``), once per process.

TCG settings.  Under TCG the guest's TSC is the host's TSC (QEMU passes ``rdtsc``
through), but the kernel must first measure its frequency against the PIT, and on a
loaded host that measurement fails ("tsc: Unable to calibrate against PIT ... Marking TSC
unstable due to could not calculate TSC khz"), after which the boot hangs: measured here
with three guests booting at once on two cores, 11 of 15 ``-smp 2`` boots and 5 of 9
``-smp 1`` boots hung.  ``tcg_kernel_params`` therefore measures the host TSC frequency
once and passes it as ``tsc_early_khz=`` (the kernel then skips the calibration), plus
``tsc=reliable`` (the host TSC is what every vCPU thread reads, so it is synchronised; this
keeps the ``tsc`` clocksource with several vCPUs instead of ``refined-jiffies``).  With
both, 24 of 24 boots under the same load succeeded, ``-smp 2`` included, so vCPU counts
are not clamped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import hashlib
import json
import logging
import mmap
import os
import platform
import shutil
import signal
import struct
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cargobay.errors import AccelerationError

__all__ = [
    "ACCEL_ENV",
    "PROBE_MARKER",
    "TCG_NOTICE",
    "AccelChoice",
    "ProbeResult",
    "cached_kvm_works",
    "choose_accel",
    "host_tsc_khz",
    "kvm_device_status",
    "probe_init_elf",
    "probe_initramfs",
    "probe_kvm",
    "qemu_version",
    "tcg_kernel_params",
]

log = logging.getLogger(__name__)

Accel = Literal["kvm", "tcg"]

ACCEL_ENV = "CARGOBAY_ACCEL"
PROBE_MARKER = b"CARGOBAY-KVM-PROBE-OK"
TCG_NOTICE = "KVM is present but a test guest did not boot under it; using TCG (slower)"
CACHE_FILE = "accel.json"
_CACHE_FORMAT = 1

PROBE_TIMEOUT = 15.0
"""Wall-clock limit for one probe boot (a working KVM reaches init in well under 2 s)."""
PROBE_SILENCE_TIMEOUT = 6.0
"""Give up earlier when the guest prints nothing for this long (how a broken KVM fails:
nothing at all, or "Probing EDD... ok" and then silence)."""

KVM_DEVICE = Path("/dev/kvm")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    works: bool
    detail: str
    """What happened, for the cache and for logs."""
    seconds: float


@dataclass(frozen=True, slots=True)
class AccelChoice:
    accel: Accel
    reason: str
    source: Literal["env", "no-kvm", "cache", "probe"]
    notice: str | None = None
    """A line for the user when we fell back to TCG although /dev/kvm exists."""


# -- the probe guest --------------------------------------------------------------------


def probe_init_elf(marker: bytes = PROBE_MARKER) -> bytes:
    """A static x86-64 Linux executable: print ``marker`` + newline on fd 1, and power off
    if it is PID 1 (anywhere else it just exits 0, so running it by mistake is harmless).

    Layout: ELF header (64 bytes), one PT_LOAD program header (56 bytes) mapping the
    whole file read+execute at 0x400000, then the code, then the message.
    """
    message = marker + b"\n"
    base = 0x400000
    code_offset = 64 + 56
    # (bytes, label): labels name the offset just after their instruction.
    write = [
        b"\xb8\x01\x00\x00\x00",  # mov eax, 1             write(
        b"\xbf\x01\x00\x00\x00",  # mov edi, 1               1,
        b"\x48\x8d\x35@MSG",  # lea rsi, [rip + MSG]      message,
        b"\xba" + struct.pack("<I", len(message)),  # mov edx, len  len)
        b"\x0f\x05",  # syscall
        b"\xb8\x27\x00\x00\x00",  # mov eax, 39            getpid()
        b"\x0f\x05",  # syscall
        b"\x83\xf8\x01",  # cmp eax, 1
        b"\x75@EXIT",  # jne EXIT                  not PID 1: just exit
        b"\xb8\xa9\x00\x00\x00",  # mov eax, 169           reboot(
        b"\xbf\xad\xde\xe1\xfe",  # mov edi, 0xfee1dead      LINUX_REBOOT_MAGIC1,
        b"\xbe\x69\x19\x12\x28",  # mov esi, 0x28121969      LINUX_REBOOT_MAGIC2,
        b"\xba\xdc\xfe\x21\x43",  # mov edx, 0x4321fedc      LINUX_REBOOT_CMD_POWER_OFF)
        b"\x0f\x05",  # syscall
    ]
    exit_ = [
        b"\xb8\x3c\x00\x00\x00",  # EXIT: mov eax, 60     exit(
        b"\x31\xff",  # xor edi, edi                         0)
        b"\x0f\x05",  # syscall
    ]
    sizes = [len(i.replace(b"@MSG", b"....").replace(b"@EXIT", b".")) for i in write + exit_]
    exit_at = sum(sizes[: len(write)])
    message_at = sum(sizes)
    code = bytearray()
    for insn in write + exit_:
        if insn.endswith(b"@MSG"):
            end = len(code) + len(insn) - len(b"@MSG") + 4
            insn = insn.replace(b"@MSG", struct.pack("<i", message_at - end))
        elif insn.endswith(b"@EXIT"):
            end = len(code) + len(insn) - len(b"@EXIT") + 1
            insn = insn.replace(b"@EXIT", struct.pack("<b", exit_at - end))
        code += insn
    size = code_offset + len(code) + len(message)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, v1, SysV
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # ET_EXEC
        0x3E,  # EM_X86_64
        1,  # EV_CURRENT
        base + code_offset,  # entry
        64,  # program headers right after this header
        0,  # no section headers
        0,  # flags
        64,  # header size
        56,  # program header size
        1,  # one program header
        64,  # section header size
        0,
        0,
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)  # PT_LOAD, R+X
    return header + phdr + bytes(code) + message


def _newc_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = header + encoded
    out += bytes(-len(out) % 4)
    out += data + bytes(-len(data) % 4)
    return out


def probe_initramfs(marker: bytes = PROBE_MARKER) -> bytes:
    """An uncompressed newc initramfs: ``/dev/console`` (so init has a stdout) and ``/init``."""
    return b"".join(
        [
            _newc_entry("dev", 0o040755),
            _newc_entry("dev/console", 0o020600, rdev=(5, 1)),
            _newc_entry("init", 0o100755, probe_init_elf(marker)),
            _newc_entry("TRAILER!!!", 0),
        ]
    )


# -- facts about the host ---------------------------------------------------------------


def kvm_device_status(device: Path = KVM_DEVICE) -> tuple[bool, str]:
    """Whether ``/dev/kvm`` exists and this user may open it read-write."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False, f"{device} does not exist (no KVM on this host)"
    except PermissionError:
        return False, f"{device} exists but this user cannot open it (join the 'kvm' group)"
    except OSError as err:
        return False, f"{device} cannot be opened: {err.strerror}"
    os.close(fd)
    return True, f"{device} opens"


_qemu_versions: dict[str, str] = {}


async def qemu_version(qemu: str) -> str:
    """The first line of ``qemu --version`` (cached per binary for this process)."""
    if qemu in _qemu_versions:
        return _qemu_versions[qemu]
    try:
        proc = await asyncio.create_subprocess_exec(
            qemu,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as err:
        raise AccelerationError(
            f"cannot run {qemu}: {err.strerror}; install QEMU (Debian: apt-get install "
            "qemu-system-x86)"
        ) from err
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    except TimeoutError as err:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise AccelerationError(f"{qemu} --version did not answer within 10 s") from err
    first = out.decode(errors="replace").strip().splitlines()[:1]
    version = first[0] if first else "unknown"
    _qemu_versions[qemu] = version
    return version


def _read_tsc_fn() -> tuple[ctypes._CFuncPtr, mmap.mmap] | None:  # type: ignore[name-defined]
    """A callable running ``rdtsc`` (10 bytes of machine code in an executable page)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        state = ctypes.c_int(0)
        pr_get_tsc, pr_tsc_enable = 25, 1
        if libc.prctl(pr_get_tsc, ctypes.byref(state), 0, 0, 0) == 0 and (
            state.value != pr_tsc_enable
        ):
            return None  # rdtsc would raise SIGSEGV in this process
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, AttributeError, ValueError):
        return None
    # rdtsc; shl rdx, 32; or rax, rdx; ret
    page.write(b"\x0f\x31\x48\xc1\xe2\x20\x48\x09\xd0\xc3")
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_uint64)(address), page


@functools.cache
def host_tsc_khz() -> int | None:
    """The host's TSC frequency in kHz, measured against CLOCK_MONOTONIC (~60 ms, once).

    Under TCG the guest reads the host's TSC, so this is the guest's TSC frequency too.
    None when it cannot be measured (not x86-64, rdtsc disabled, no executable memory);
    then ``/proc/cpuinfo``'s "cpu MHz" is used, which is the TSC rate on virtual
    machines and on CPUs without frequency scaling.
    """
    measured = _measure_tsc_khz()
    if measured is not None:
        return measured
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "cpu MHz":
                return round(float(value) * 1000)
    except (OSError, ValueError):
        pass
    return None


def _measure_tsc_khz() -> int | None:
    found = _read_tsc_fn()
    if found is None:
        return None
    read_tsc, page = found

    def reading() -> tuple[int, int]:
        # The (clock, tsc) pair whose clock readings bracket the rdtsc most tightly.
        best: tuple[int, int, int] | None = None
        for _ in range(5):
            before = time.perf_counter_ns()
            tsc = read_tsc()
            after = time.perf_counter_ns()
            if best is None or after - before < best[0]:
                best = (after - before, (before + after) // 2, tsc)
        assert best is not None
        return best[1], best[2]

    samples = []
    try:
        for _ in range(3):
            t0, c0 = reading()
            time.sleep(0.03)
            t1, c1 = reading()
            if t1 > t0 and c1 > c0:
                samples.append((c1 - c0) * 1_000_000 / (t1 - t0))
    finally:
        with contextlib.suppress(BufferError):  # still exported to ctypes: left to the GC
            page.close()
    if not samples:
        return None
    samples.sort()
    khz = round(samples[len(samples) // 2])  # the median shrugs off one preempted sample
    return khz if 100_000 <= khz <= 20_000_000 else None


def tcg_kernel_params() -> list[str]:
    """Kernel parameters that make a TCG boot independent of PIT calibration (see module doc)."""
    khz = host_tsc_khz()
    return [f"tsc_early_khz={khz}", "tsc=reliable"] if khz else []


# -- the probe ---------------------------------------------------------------------------


async def probe_kvm(
    kernel: Path,
    qemu: str,
    *,
    timeout: float = PROBE_TIMEOUT,
    silence_timeout: float = PROBE_SILENCE_TIMEOUT,
    accel: Accel = "kvm",
) -> ProbeResult:
    """Boot ``kernel`` with the probe initramfs under ``accel`` and wait for the marker.

    Bounded by ``timeout`` (and ``silence_timeout`` while the guest prints nothing); the
    QEMU process is always killed and reaped before this returns.  ``accel="tcg"`` exists
    for tests (it shows the probe guest itself works).
    """
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cargobay-probe-") as tmp:
        initrd = Path(tmp) / "probe.cpio"
        initrd.write_bytes(probe_initramfs())
        cmdline = "console=ttyS0 panic=-1 reboot=t"
        if accel == "tcg":
            cmdline = " ".join([cmdline, *await asyncio.to_thread(tcg_kernel_params)])
        # If this process dies mid-probe, nobody kills the probe guest, which may hang
        # forever under a broken KVM: coreutils' timeout bounds its life on its own.
        limit = shutil.which("timeout")
        lifetime = [limit, "-s", "KILL", str(int(timeout) + 10)] if limit else []
        argv = [
            *lifetime,
            qemu,
            "-M",
            f"microvm,accel={accel},acpi=on",
            *(["-cpu", "host"] if accel == "kvm" else []),
            "-m",
            "128",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-append",
            cmdline,
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as err:
            return ProbeResult(False, f"cannot run {qemu}: {err.strerror}", 0.0)
        try:
            return await _watch_probe(proc, began, timeout, silence_timeout)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # timeout and QEMU: one group
            # Reaping a SIGKILLed process is quick; the bound only guards the impossible.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout=5)


async def _watch_probe(
    proc: asyncio.subprocess.Process, began: float, timeout: float, silence_timeout: float
) -> ProbeResult:
    assert proc.stdout is not None
    assert proc.stderr is not None
    output = bytearray()
    stderr_task = asyncio.ensure_future(_drain(proc.stderr))
    last_output = began
    try:
        while True:
            now = time.monotonic()
            if now - began >= timeout:
                return ProbeResult(
                    False,
                    f"the test guest did not reach its init within {timeout:.0f} s",
                    now - began,
                )
            if now - last_output >= silence_timeout:
                what = "printed nothing" if not output else "stopped printing"
                recent = bytes(output[-80:]).decode(errors="replace").strip().splitlines()
                seen = f" after {recent[-1]!r}" if recent else ""
                return ProbeResult(
                    False,
                    f"the test guest {what} for {silence_timeout:.0f} s{seen}",
                    now - began,
                )
            wait = min(began + timeout, last_output + silence_timeout) - now
            try:
                chunk = await asyncio.wait_for(proc.stdout.read(4096), timeout=wait)
            except TimeoutError:
                continue
            if chunk:
                last_output = time.monotonic()
                output += chunk
                if PROBE_MARKER in output:
                    return ProbeResult(
                        True, "the test guest reached its init", time.monotonic() - began
                    )
                del output[: max(0, len(output) - 64 * 1024)]
                continue
            # EOF: QEMU exited without the marker.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout=5)
            err = b""
            with contextlib.suppress(TimeoutError):
                err = await asyncio.wait_for(asyncio.shield(stderr_task), timeout=1)
            lines = err.decode(errors="replace").strip().splitlines()
            tail = " / ".join(lines[-2:]) if lines else f"exit status {proc.returncode}"
            return ProbeResult(
                False,
                f"QEMU exited before the test guest reached its init: {tail}",
                time.monotonic() - began,
            )
    finally:
        stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await stderr_task


async def _drain(stream: asyncio.StreamReader, keep: int = 8192) -> bytes:
    """Read ``stream`` to EOF, keeping the last ``keep`` bytes."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        del kept[: max(0, len(kept) - keep)]
    return bytes(kept)


# -- the cache ---------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _host_key(qemu_ver: str) -> str:
    return f"{os.uname().release}|{qemu_ver}"


def _load_cache(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _store_cache(path: Path, key: str, entry: dict[str, object]) -> None:
    entries = _load_cache(path)
    entries[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".accel-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"format": _CACHE_FORMAT, "entries": entries}, f, indent=1)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not write the KVM probe cache %s: %s", path, err)


def cached_kvm_works(cache_dir: Path) -> bool:
    """True if a cached probe on this host kernel found KVM working (any QEMU, any guest
    kernel: a cheap answer for ``Features.kvm``; ``choose_accel`` decides per kernel)."""
    prefix = os.uname().release + "|"
    return any(
        key.startswith(prefix) and isinstance(entry, dict) and entry.get("kvm") is True
        for key, entry in _load_cache(cache_dir / CACHE_FILE).items()
    )


# -- the decision ------------------------------------------------------------------------

_probe_lock: asyncio.Lock | None = None
_probe_lock_loop: asyncio.AbstractEventLoop | None = None
_notified: set[str] = set()


def _lock() -> asyncio.Lock:
    """One probe at a time in this process (two VMs started together share one probe)."""
    global _probe_lock, _probe_lock_loop
    loop = asyncio.get_running_loop()
    if _probe_lock is None or _probe_lock_loop is not loop:
        _probe_lock, _probe_lock_loop = asyncio.Lock(), loop
    return _probe_lock


def _notice_once(message: str) -> None:
    if message not in _notified:
        _notified.add(message)
        log.warning("%s", message)


async def choose_accel(
    kernel: Path,
    qemu: str,
    cache_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    kvm_device: Path = KVM_DEVICE,
    probe_timeout: float = PROBE_TIMEOUT,
) -> AccelChoice:
    """KVM if ``CARGOBAY_ACCEL`` says so or a (cached) probe with ``kernel`` booted; else TCG."""
    env = os.environ if env is None else env
    forced = env.get(ACCEL_ENV, "").strip().lower()
    if forced:
        if forced not in ("kvm", "tcg"):
            raise AccelerationError(
                f"{ACCEL_ENV}={env[ACCEL_ENV]!r} is not understood: use kvm or tcg, or unset it"
            )
        if forced == "kvm":
            usable, why = kvm_device_status(kvm_device)
            if not usable:
                raise AccelerationError(f"{ACCEL_ENV}=kvm but {why}; unset it to use TCG")
        return AccelChoice(forced, f"{ACCEL_ENV}={forced}", "env")  # type: ignore[arg-type]

    usable, why = kvm_device_status(kvm_device)
    if not usable:
        return AccelChoice("tcg", why, "no-kvm")

    qemu_ver = await qemu_version(qemu)
    try:
        kernel_hash = await asyncio.to_thread(_file_sha256, kernel)
    except OSError as err:
        raise AccelerationError(f"cannot read the guest kernel {kernel}: {err.strerror}") from err
    key = f"{_host_key(qemu_ver)}|{kernel_hash}"
    cache_path = cache_dir / CACHE_FILE
    async with _lock():
        entry = _load_cache(cache_path).get(key)
        source: Literal["cache", "probe"] = "cache"
        if entry is None or not isinstance(entry.get("kvm"), bool):
            result = await probe_kvm(kernel, qemu, timeout=probe_timeout)
            entry = {
                "kvm": result.works,
                "detail": result.detail,
                "seconds": round(result.seconds, 2),
                "probed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "kernel": str(kernel),
            }
            _store_cache(cache_path, key, entry)
            source = "probe"
            log.info("KVM probe: %s (%.1f s)", result.detail, result.seconds)
    if entry["kvm"] is True:
        return AccelChoice("kvm", f"a test guest booted under KVM ({source})", source)
    _notice_once(TCG_NOTICE)
    return AccelChoice(
        "tcg", f"KVM probe failed: {entry.get('detail', 'unknown')} ({source})", source, TCG_NOTICE
    )
