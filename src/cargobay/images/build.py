"""Building an image: kernel, base system, root filesystem, initramfs, manifest.

``build_image`` decides first whether anything needs doing: the recipe hash covers
everything that goes into an image (the recipe's packages, modules and command line,
the kernel package and version the host's apt lists name, every file installed into the
rootfs — cargobay-init, the agent sources — and the initramfs /init), so an image whose
manifest carries the same hash is returned as it is, without root and without network.
Otherwise, as root and under a lock (one build per image store at a time):

    kernel     apt-get download + dpkg-deb -x + depmod, cached (kernel.py), or the
               minimal kernel compiled from linux-source-6.1, cached (minikernel.py)
    base       debootstrap minbase + packages, cached by its own hash (base.py)
    rootfs     copy of the base + modules + guest files, compiled, mke2fs -d (rootfs.py)
    initramfs  busybox + modules + /init as a gzipped newc cpio (initramfs.py)
    finish     the kernel copied (vmlinuz: Debian's bzImage; vmlinux: the minimal
               kernel's ELF, which QEMU starts at its PVH entry), checksums,
               manifest.json written last, directory renamed into place (store.py)

Everything is built in a hidden directory next to the images and renamed into place at
the end, so an interrupted build leaves the previous image untouched.  Every command's
output goes to ``<state>/logs/image-build-<name>.log``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cargobay
import virga
from cargobay.errors import ImageError
from cargobay.guest.protocol import AGENT_VERSION
from cargobay.images.base import AptSource, base_hash, find_mirror, host_sources, make_base
from cargobay.images.initramfs import make_initramfs
from cargobay.images.kernel import (
    KernelPackage,
    KernelTree,
    fetch_kernel,
    load_order,
    parse_modules_dep,
    resolve_kernel,
)
from cargobay.images.manifest import MANIFEST, ImageManifest
from cargobay.images.minikernel import (
    CONFIG_FRAGMENT,
    build_minimal_kernel,
    describe,
    find_source,
    kernel_key,
    kernel_release,
)
from cargobay.images.rootfs import GuestFile, assemble, guest_path, make_ext4
from cargobay.images.store import ImageStore, file_record, validate_name
from cargobay.images.tools import BUILD_TOOLS, ToolRunner, require_root, require_tools
from cargobay.paths import Paths

__all__ = [
    "BUILD_STEPS",
    "DEFAULT_RECIPE",
    "BuildEvent",
    "ImageRecipe",
    "ProgressCallback",
    "agent_sources",
    "build_image",
    "guest_files",
    "initramfs_init",
    "recipe_hash",
]

RECIPE_FORMAT = 2
"""Bump when the build changes in a way the hashed inputs do not show."""

GUEST_DIR = Path(__file__).parent / "guest"
BUILD_STEPS = ("prepare", "kernel", "base", "rootfs", "initramfs", "finish")
"""The steps a build reports progress for, in order."""

DEFAULT_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "overlay",
)


@dataclass(frozen=True, slots=True)
class BuildEvent:
    step: str
    """One of ``BUILD_STEPS``."""
    fraction: float
    """How much of this step is done, 0.0 to 1.0."""
    message: str


ProgressCallback = Callable[[BuildEvent], None]
"""Called in the building thread.  It may raise (say, to cancel): the build stops,
cleans up its temporary files and the exception propagates."""


KernelKind = Literal["debian", "minimal"]
KERNELS: tuple[KernelKind, ...] = ("debian", "minimal")
"""``debian``: Debian's packaged kernel (``kernel_flavour``) with its modules in the root
image; ``minimal``: our own kernel from linux-source-6.1 (``minikernel``), no modules."""


@dataclass(frozen=True, slots=True)
class ImageRecipe:
    suite: str = "bookworm"
    arch: str = "amd64"
    kernel: KernelKind = "minimal"
    """``minimal`` became the default once bench/minimal_kernel.py showed it boots faster
    in less memory and every test passed with it (issue 9)."""
    kernel_flavour: str = "cloud-amd64"
    """For ``kernel="debian"``: the package ``linux-image-<flavour>`` depends on."""
    packages: tuple[str, ...] = ("python3", "qemu-guest-agent", "kmod", "busybox-static")
    """Added to debootstrap's minbase.  ``python3`` brings the full standard library the
    agent needs (python3-minimal lacks asyncio, json, pty, termios); busybox-static gives
    the initramfs its tools and the guest ``ip``."""
    initramfs_modules: tuple[str, ...] = DEFAULT_MODULES
    cmdline: str = "console=ttyS0 reboot=t panic=-1 quiet"
    hostname: str = "cargobay"


DEFAULT_RECIPE = ImageRecipe()


def _read_guest(name: str) -> bytes:
    return (GUEST_DIR / name).read_bytes()


def initramfs_init() -> bytes:
    return _read_guest("initramfs-init")


def agent_sources() -> dict[str, bytes]:
    """The guest agent's code as installed under /opt/cargobay/lib: the virga package,
    cargobay/__init__.py and the cargobay.guest package, from the installed sources."""
    files: dict[str, bytes] = {}
    packages = (
        (Path(virga.__file__).parent, "virga"),
        (Path(cargobay.__file__).parent / "guest", "cargobay/guest"),
    )
    for directory, prefix in packages:
        for path in sorted(directory.rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[f"{prefix}/{path.relative_to(directory).as_posix()}"] = path.read_bytes()
    files["cargobay/__init__.py"] = Path(cargobay.__file__).read_bytes()
    return files


def guest_files(recipe: ImageRecipe = DEFAULT_RECIPE) -> dict[str, GuestFile]:
    """Every file the build writes into the root image, by guest path."""
    files = {
        "/sbin/cargobay-init": GuestFile(_read_guest("cargobay-init"), 0o755),
        "/opt/cargobay/selftest.py": GuestFile(_read_guest("selftest.py")),
        "/etc/hostname": GuestFile(f"{recipe.hostname}\n".encode()),
        "/etc/hosts": GuestFile(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{recipe.hostname}\n"
            "::1\t\tlocalhost ip6-localhost ip6-loopback\n".encode()
        ),
        "/etc/fstab": GuestFile(
            b"# CargoBay guest: the initramfs sets up / (the read-only root image with an\n"
            b"# overlay on the data disk) and cargobay-init mounts the rest; nothing here.\n"
        ),
    }
    for rel, data in agent_sources().items():
        files[f"/opt/cargobay/lib/{rel}"] = GuestFile(data)
    return files


def recipe_hash(
    recipe: ImageRecipe, kernel: KernelPackage, files: dict[str, GuestFile], init: bytes
) -> str:
    digest = hashlib.sha256()
    header = {
        "format": RECIPE_FORMAT,
        "recipe": asdict(recipe),
        "base": base_hash(recipe.suite, recipe.arch, recipe.packages),
        "kernel": [kernel.name, kernel.version, kernel.release],
        **(
            {"kernel_build": kernel_key(CONFIG_FRAGMENT.read_bytes(), kernel.version)}
            if recipe.kernel == "minimal"
            else {}
        ),
        "initramfs_init": hashlib.sha256(init).hexdigest(),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for path in sorted(files):
        item = files[path]
        line = f"\n{path} {item.mode:o} {hashlib.sha256(item.data).hexdigest()}"
        digest.update(line.encode())
    return digest.hexdigest()


class _Progress:
    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self.step = BUILD_STEPS[0]

    def __call__(self, step: str, fraction: float, message: str) -> None:
        self.step = step
        if self._callback is not None:
            self._callback(BuildEvent(step, min(1.0, max(0.0, fraction)), message))

    def within(self, step: str) -> Callable[[float, str], None]:
        return lambda fraction, message: self(step, fraction, message)


@contextmanager
def _locked(path: Path, progress: _Progress, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(progress.step, 0.0, f"waiting for another build ({what}, lock {path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _up_to_date(store: ImageStore, name: str, digest: str) -> ImageManifest | None:
    manifest = store.find(name)
    if manifest is not None and manifest.recipe_hash == digest and store.complete(name):
        return manifest
    return None


def build_image(
    paths: Paths,
    name: str = "default",
    *,
    progress: ProgressCallback | None = None,
    force: bool = False,
    recipe: ImageRecipe | None = None,
    mirror: AptSource | None = None,
) -> ImageManifest:
    """Build the image ``name`` into ``paths.images`` unless an up-to-date one is there,
    and return its manifest.  Blocking (minutes for a first build, ~a second when up to
    date): the daemon runs it in a worker thread.  ``force`` rebuilds even an up-to-date
    image (the cached kernel and base system are still used).  ``mirror`` overrides the
    Debian mirror found in the host's apt sources."""
    validate_name(name)
    recipe = recipe or DEFAULT_RECIPE
    report = _Progress(progress)
    store = ImageStore(paths.images)
    started = time.monotonic()
    report("prepare", 0.0, "reading the recipe")
    files = guest_files(recipe)
    init = initramfs_init()
    kernel = _resolve(recipe)
    if kernel is not None and not force:
        current = _up_to_date(store, name, recipe_hash(recipe, kernel, files, init))
        if current is not None:
            report("finish", 1.0, f"image {name} is up to date")
            return current
    elif kernel is None and not force:
        existing = store.find(name)
        if existing is not None and store.complete(name):
            report(
                "finish",
                1.0,
                f"apt does not know linux-image-{recipe.kernel_flavour} (no package lists?); "
                f"keeping the existing image {name}",
            )
            return existing

    require_root(f"building the image {name!r}")
    tools = require_tools(BUILD_TOOLS)
    paths.images.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    cache_lock = paths.cache / "images" / "build.lock"
    with _locked(paths.images / ".build.lock", report, f"image store {paths.images}"):
        store.clean_stale()
        log_path = paths.logs / f"image-build-{name}.log"
        with log_path.open("w") as log:
            runner = ToolRunner(tools, log)
            if kernel is None:  # only Debian's kernel comes from the apt lists
                report("prepare", 0.5, "apt does not know the kernel package: apt-get update")
                runner.run(["apt-get", "update", "-q"], what="apt-get update")
                kernel = resolve_kernel(runner, recipe.kernel_flavour)
                if kernel is None:
                    raise ImageError(
                        f"apt knows no package linux-image-{recipe.kernel_flavour}, even after "
                        "`apt-get update`; the host's apt sources need a Debian "
                        f"{recipe.suite} mirror with the main component"
                    )
            digest = recipe_hash(recipe, kernel, files, init)
            if not force:
                current = _up_to_date(store, name, digest)
                if current is not None:
                    report("finish", 1.0, f"image {name} was built by another build meanwhile")
                    return current
            with _locked(cache_lock, report, f"cache {paths.cache}"):
                return _build(
                    paths,
                    store,
                    name,
                    recipe,
                    kernel,
                    files,
                    init,
                    digest,
                    runner,
                    report,
                    mirror,
                    started,
                )


def _resolve(recipe: ImageRecipe) -> KernelPackage | None:
    """What the kernel of the recipe is, without building or downloading it.

    For the minimal kernel: the source package and the release it will have (the
    fragment's hash goes into the recipe hash separately); ``ImageError`` when
    linux-source-6.1 is not installed."""
    if recipe.kernel == "minimal":
        source = find_source(ToolRunner(require_tools(["dpkg-query"])))
        return KernelPackage("linux-source-6.1", source.version, kernel_release(source))
    return resolve_kernel(ToolRunner(require_tools(["apt-cache"])), recipe.kernel_flavour)


def _build(
    paths: Paths,
    store: ImageStore,
    name: str,
    recipe: ImageRecipe,
    package: KernelPackage,
    files: dict[str, GuestFile],
    init: bytes,
    digest: str,
    runner: ToolRunner,
    report: _Progress,
    mirror: AptSource | None,
    started: float,
) -> ImageManifest:
    cache = paths.cache
    report("prepare", 1.0, f"building image {name} ({package.spec})")
    kernel: KernelTree | None = None
    if recipe.kernel == "minimal":
        report("kernel", 0.0, f"the minimal kernel from {package.name} {package.version}")
        minimal = build_minimal_kernel(
            runner, cache / "images", on_progress=report.within("kernel")
        )
        # The ELF, started at its PVH entry point: no decompression on the boot path.
        vmlinuz, kernel_spec, release = minimal.vmlinux, describe(minimal), minimal.release
    else:
        report("kernel", 0.0, f"fetching {package.name} {package.version}")
        kernel = fetch_kernel(runner, package, cache / "images")
        vmlinuz, kernel_spec, release = kernel.vmlinuz, package.spec, package.release
    report("kernel", 1.0, f"kernel {release}")

    source = mirror or find_mirror(host_sources(), recipe.suite)
    report("base", 0.0, f"debootstrap {recipe.suite} from {source.uri}")
    base = make_base(
        runner,
        cache,
        suite=recipe.suite,
        arch=recipe.arch,
        packages=recipe.packages,
        mirror=source,
        on_progress=report.within("base"),
    )

    tmp = Path(tempfile.mkdtemp(dir=paths.images, prefix=f".build-{name}-"))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the image from other users' QEMU
    try:
        tree = tmp / "tree"
        python_version = assemble(
            runner, base, tree, kernel, files, on_progress=report.within("rootfs")
        )
        report("rootfs", 0.8, "writing rootfs.ext4 (mke2fs -d)")
        make_ext4(runner, tree, tmp / "rootfs.ext4", "cbroot")
        shutil.rmtree(tree)
        report("rootfs", 1.0, "rootfs.ext4 written")

        report("initramfs", 0.0, "writing the initramfs")
        modules: list[tuple[str, Path]] = []
        if kernel is not None:  # the minimal kernel has everything built in
            deps = parse_modules_dep((kernel.modules / "modules.dep").read_text())
            builtin_list = kernel.modules / "modules.builtin"
            builtin = builtin_list.read_text().split() if builtin_list.exists() else []
            order = load_order(recipe.initramfs_modules, deps, builtin)
            modules = [(module, kernel.modules / path) for module, path in order]
        make_initramfs(
            runner,
            tmp / "initrd.img",
            init=init,
            busybox=guest_path(base, "/bin/busybox"),
            modules=modules,
        )
        report("initramfs", 1.0, f"initramfs with {len(modules)} modules")

        report("finish", 0.0, "computing checksums")
        kernel_file = "vmlinux" if recipe.kernel == "minimal" else "vmlinuz"
        shutil.copyfile(vmlinuz, tmp / kernel_file)
        manifest = ImageManifest(
            name=name,
            kernel_version=release,
            kernel_package=kernel_spec,
            kernel_kind=recipe.kernel,
            kernel_config_sha256=(
                hashlib.sha256(CONFIG_FRAGMENT.read_bytes()).hexdigest()
                if recipe.kernel == "minimal"
                else None
            ),
            debian_suite=recipe.suite,
            arch=recipe.arch,
            packages=list(recipe.packages),
            cmdline=recipe.cmdline,
            kernel=file_record(tmp, kernel_file),
            initrd=file_record(tmp, "initrd.img"),
            rootfs=file_record(tmp, "rootfs.ext4"),
            agent_version=AGENT_VERSION,
            python_version=python_version,
            initramfs_modules=[module for module, _ in modules],
            built_at=datetime.now(UTC),
            build_seconds=round(time.monotonic() - started, 2),
            recipe_hash=digest,
        )
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
        store.install(name, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report("finish", 1.0, f"image {name} built in {manifest.build_seconds:.0f} s")
    return manifest
