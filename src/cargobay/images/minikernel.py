"""The minimal guest kernel: Linux 6.1 built from Debian's ``linux-source-6.1``.

Seed 000 asks for a slimmed Linux 6.x kernel for short boots and little memory.  The
recipe is ``make tinyconfig``, then our fragment ``kconfig/minimal.config`` on top,
``make olddefconfig``, and ``make bzImage``: everything a CargoBay guest needs is built in,
nothing else, and there are no modules.

The build checks the final ``.config`` against the fragment: an option Kconfig dropped
(because a dependency is off) fails the build with the options named, instead of
producing a kernel that cannot boot a guest.

Cache.  The result is kept under ``<cache>/images/minikernel/<key>/`` (``bzImage``,
``config``, ``build.json`` written last) where the key hashes the source package's version
and the fragment, so a second image build uses it again and a changed fragment or a new
``linux-source-6.1`` builds a new kernel.  The source tree is unpacked into a temporary
directory next to it and removed afterwards (it is 1.4 GB once built).

Progress comes from counting the compile lines of ``make`` against the count of the
previous build with the same fragment (or an estimate for the first one).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cargobay.errors import ImageError
from cargobay.images.tools import ToolRunner

__all__ = [
    "CONFIG_FRAGMENT",
    "KERNEL_TOOLCHAIN",
    "SOURCE_PACKAGE",
    "MinimalKernel",
    "MinimalSource",
    "build_minimal_kernel",
        "dropped_options",
    "find_source",
    "kernel_key",
    "kernel_release",
    "missing_toolchain",
    "parse_config",
]

SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_DIR = Path("/usr/src")
CONFIG_FRAGMENT = Path(__file__).parent / "kconfig" / "minimal.config"
LOCALVERSION = "-cargobay-minimal"
BUILD_FORMAT = 2
"""Bump when the build changes in a way the fragment and the source version do not show."""

KERNEL_TOOLCHAIN: Mapping[str, str] = {
    "make": "make",
    "gcc": "gcc",
    "ld": "binutils",
    "objcopy": "binutils",
    "bc": "bc",
    "bison": "bison",
    "flex": "flex",
    "perl": "perl",
    "tar": "tar",
    "xz": "xz-utils",
    "zstd": "zstd",
}
"""Programs the kernel build runs, and the Debian package of each."""

HEADERS: Mapping[str, str] = {"/usr/include/libelf.h": "libelf-dev"}
"""Headers the build tools need (objtool is built against libelf)."""

FIRST_BUILD_UNITS = 1850
"""Roughly how many compile steps a first build prints; only used for its progress bar."""

_UNIT = re.compile(r"^\s+(CC|AS|LD|AR|HOSTCC|HOSTLD|OBJCOPY|ZSTD22|VDSO|RELOCS)\s")
_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True, slots=True)
class MinimalSource:
    version: str
    """The Debian version of linux-source-6.1: ``6.1.192-2``."""
    tarball: Path

    @property
    def upstream(self) -> str:
        """``6.1.192``: the version without Debian's revision."""
        return self.version.split(":")[-1].rsplit("-", 1)[0]


@dataclass(frozen=True, slots=True)
class MinimalKernel:
    """A built minimal kernel in the cache."""

    root: Path
    release: str
    """What ``uname -r`` says in the guest: ``6.1.192-cargobay-minimal``."""
    source_version: str
    config_sha256: str
    """SHA-256 of the fragment the kernel was configured with."""
    build_seconds: float
    units: int

    @property
    def bzimage(self) -> Path:
        return self.root / "bzImage"

    @property
    def vmlinux(self) -> Path:
        """The uncompressed ELF kernel, which QEMU starts at its PVH entry point."""
        return self.root / "vmlinux"

    @property
    def config(self) -> Path:
        return self.root / "config"


def parse_config(text: str) -> dict[str, str]:
    """A .config or a fragment as ``{option: value}``; ``# CONFIG_X is not set`` is ``n``."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if match := _SET.match(line):
            options[match.group(1)] = match.group(2)
        elif match := _UNSET.match(line):
            options[match.group(1)] = "n"
    return options


def dropped_options(wanted: Mapping[str, str], final: Mapping[str, str]) -> list[str]:
    """The fragment's options whose value the final .config does not have, as
    ``CONFIG_X=wanted (got ...)``; an unset option counts as ``n``."""
    dropped = []
    for option, value in wanted.items():
        got = final.get(option, "n")
        if got != value:
            dropped.append(f"{option}={value} (got {got})")
    return dropped


def kernel_key(fragment: bytes, source_version: str) -> str:
    """What identifies a build: the build format, the source version and the fragment
    (the cache directory's name, and part of the recipe hash of images using it)."""
    digest = hashlib.sha256()
    digest.update(f"{BUILD_FORMAT}\n{SOURCE_PACKAGE} {source_version}\n".encode())
    digest.update(fragment)
    return digest.hexdigest()


def kernel_release(source: MinimalSource) -> str:
    return f"{source.upstream}{LOCALVERSION}"


def _apt_advice(packages: list[str]) -> str:
    return f"install them with `sudo apt-get install {' '.join(sorted(set(packages)))}`"


def find_source(runner: ToolRunner) -> MinimalSource:
    """The installed linux-source-6.1, or an ``ImageError`` that says how to get it."""
    done = runner.run(
        ["dpkg-query", "-W", "-f", "${Version} ${db:Status-Abbrev}", SOURCE_PACKAGE],
        what="dpkg-query",
        check=False,
    )
    fields = done.stdout.split()
    tarballs = sorted(SOURCE_DIR.glob(f"{SOURCE_PACKAGE}.tar.*"))
    if done.returncode != 0 or len(fields) < 2 or not fields[1].startswith("ii") or not tarballs:
        everything = [SOURCE_PACKAGE, *KERNEL_TOOLCHAIN.values(), *HEADERS.values()]
        raise ImageError(
            f"the minimal kernel is built from Debian's {SOURCE_PACKAGE}, which is not "
            f"installed; {_apt_advice(everything)}"
        )
    return MinimalSource(version=fields[0], tarball=tarballs[0])


def missing_toolchain(search_path: str | None = None) -> list[str]:
    """The Debian packages of every missing build tool and header (empty: all there)."""
    missing = [
        package
        for tool, package in KERNEL_TOOLCHAIN.items()
        if shutil.which(tool, path=search_path) is None
    ]
    missing += [package for header, package in HEADERS.items() if not Path(header).exists()]
    return missing


def _cached(directory: Path) -> MinimalKernel | None:
    try:
        record = json.loads((directory / "build.json").read_text())
        kernel = MinimalKernel(root=directory, **record)
    except (OSError, ValueError, TypeError):
        return None
    return kernel if kernel.bzimage.is_file() and kernel.vmlinux.is_file() else None


def _units_hint(cache: Path) -> int:
    """The compile-step count of the newest cached build, for the progress bar."""
    builds = [k for k in (_cached(d) for d in cache.glob("*")) if k is not None]
    return max(builds, key=lambda k: k.root.stat().st_mtime).units if builds else FIRST_BUILD_UNITS


def build_minimal_kernel(
    runner: ToolRunner,
    cache: Path,
    *,
    jobs: int | None = None,
    on_progress: Callable[[float, str], None] = lambda fraction, message: None,
) -> MinimalKernel:
    """The minimal kernel from the cache, or built into it (minutes: 2 cores take ~10)."""
    source = find_source(runner)
    fragment = CONFIG_FRAGMENT.read_bytes()
    key = kernel_key(fragment, source.version)
    cache = cache / "minikernel"
    target = cache / key[:16]
    found = _cached(target)
    if found is not None:
        on_progress(1.0, f"kernel {found.release} from the cache")
        return found
    missing = missing_toolchain()
    if missing:
        raise ImageError(
            "building the minimal kernel needs tools that are not installed; "
            + _apt_advice(missing)
        )
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("a") as lock:
        if not _try_lock(lock):
            on_progress(0.0, "waiting for another build of the minimal kernel")
            fcntl.flock(lock, fcntl.LOCK_EX)
        found = _cached(target)  # built by the other build meanwhile
        if found is not None:
            on_progress(1.0, f"kernel {found.release} from the cache")
            return found
        return _build(runner, source, fragment, cache, target, jobs, on_progress)


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _build(
    runner: ToolRunner,
    source: MinimalSource,
    fragment: bytes,
    cache: Path,
    target: Path,
    jobs: int | None,
    on_progress: Callable[[float, str], None],
) -> MinimalKernel:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(dir=cache, prefix=".build-"))
    try:
        tree = work / "src"
        tree.mkdir()
        on_progress(0.0, f"unpacking {source.tarball.name}")
        runner.run(
            ["tar", "-xf", source.tarball, "-C", tree, "--strip-components=1"],
            what=f"unpacking {source.tarball}",
        )
        on_progress(0.03, "configuring: tinyconfig + kconfig/minimal.config")
        stamp = _source_date(source)
        built = _configure_and_make(
            runner, tree, fragment, jobs, _units_hint(cache), stamp, on_progress
        )
        staged = work / "out"
        staged.mkdir()
        shutil.copyfile(tree / "arch" / "x86" / "boot" / "bzImage", staged / "bzImage")
        # What the bzImage carries compressed: the ELF without symbols and comments.
        runner.run(
            ["objcopy", "-R", ".comment", "-S", tree / "vmlinux", staged / "vmlinux"],
            what="objcopy vmlinux",
        )
        shutil.copyfile(tree / ".config", staged / "config")
        kernel = MinimalKernel(
            root=target,
            release=built[0],
            source_version=source.version,
            config_sha256=hashlib.sha256(fragment).hexdigest(),
            build_seconds=round(time.monotonic() - started, 1),
            units=built[1],
        )
        record = {k: v for k, v in asdict(kernel).items() if k != "root"}
        (staged / "build.json").write_text(json.dumps(record, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    on_progress(1.0, f"kernel {kernel.release} built in {kernel.build_seconds:.0f} s")
    return kernel


def _source_date(source: MinimalSource) -> str:
    """The build date ``uname -v`` shows: the source tarball's date, so that the same
    source and fragment give the same kernel on every machine."""
    stamp = datetime.fromtimestamp(source.tarball.stat().st_mtime, UTC)
    return stamp.strftime("%a %b %d %H:%M:%S UTC %Y")


def _configure_and_make(
    runner: ToolRunner,
    tree: Path,
    fragment: bytes,
    jobs: int | None,
    units_hint: int,
    timestamp: str,
    on_progress: Callable[[float, str], None],
) -> tuple[str, int]:
    """Configure and build in ``tree``; returns (kernel release, compile steps)."""
    env = {
        "LOCALVERSION": "",
        "KBUILD_BUILD_USER": "cargobay",
        "KBUILD_BUILD_HOST": "cargobay",
        "KBUILD_BUILD_TIMESTAMP": timestamp,
    }
    make: list[str | os.PathLike[str]] = ["make", "-C", tree]
    runner.run([*make, "tinyconfig"], what="make tinyconfig", env=env)
    config = tree / ".config"
    with config.open("ab") as handle:
        handle.write(b"\n" + fragment)
    runner.run([*make, "olddefconfig"], what="make olddefconfig", env=env)
    dropped = dropped_options(parse_config(fragment.decode()), parse_config(config.read_text()))
    if dropped:
        raise ImageError(
            "Kconfig dropped options of kconfig/minimal.config (a dependency is off or the "
            f"option does not exist in {SOURCE_PACKAGE}): " + ", ".join(dropped)
        )
    units = 0
    jobs = jobs or os.cpu_count() or 1

    def on_line(line: str) -> None:
        nonlocal units
        if _UNIT.match(line):
            units += 1
            if units % 10 == 0:
                fraction = 0.05 + 0.94 * min(1.0, units / max(units_hint, 1))
                on_progress(fraction, f"compiling ({units} of ~{units_hint}): {line.split()[-1]}")

    runner.stream([*make, f"-j{jobs}", "bzImage"], what="make bzImage", on_line=on_line, env=env)
    release = runner.run(
        [*make, "-s", "kernelrelease"], what="make kernelrelease", env=env
    ).stdout.strip()
    return release, units


def describe(kernel: MinimalKernel) -> str:
    """One line for logs and the manifest's kernel_package."""
    return (
        f"{SOURCE_PACKAGE} {kernel.source_version} + kconfig/minimal.config "
        f"(sha256 {kernel.config_sha256[:12]})"
    )
