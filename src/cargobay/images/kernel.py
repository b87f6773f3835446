"""The guest kernel: Debian's packaged kernel, fetched without installing it.

The meta package ``linux-image-<flavour>`` (``linux-image-cloud-amd64``) depends on the
current ABI's package (``linux-image-6.1.0-56-cloud-amd64``); ``apt-cache show`` of the
meta package names it and its version from the host's package lists.  ``apt-get
download`` fetches that .deb into the download cache (no install, no dependencies),
``dpkg-deb -x`` unpacks it into the kernel cache, and ``depmod -b`` writes the
modules.dep the package's postinst would have made.  A kernel already in the cache is
used again without touching the network.

The initramfs loads a few modules by hand (busybox insmod, no modprobe):
``load_order`` turns the wanted names into files in dependency order from modules.dep.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cargobay.errors import ImageError
from cargobay.images.tools import ToolRunner

__all__ = [
    "KernelPackage",
    "KernelTree",
    "fetch_kernel",
    "load_order",
    "parse_apt_show",
    "parse_modules_dep",
    "resolve_kernel",
]


@dataclass(frozen=True, slots=True)
class KernelPackage:
    name: str
    """``linux-image-6.1.0-56-cloud-amd64``"""
    version: str
    """The Debian version, ``6.1.192-2``."""
    release: str
    """What ``uname -r`` says, and the directory under /lib/modules: ``6.1.0-56-cloud-amd64``."""

    @property
    def spec(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True, slots=True)
class KernelTree:
    """An unpacked kernel package in the cache."""

    package: KernelPackage
    root: Path

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.package.release}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.package.release


_DEPENDS = re.compile(r"(linux-image-(\S+))\s*\(\s*=\s*([^)\s]+)\s*\)")


def parse_apt_show(text: str, flavour: str) -> KernelPackage | None:
    """The kernel package the meta package ``linux-image-<flavour>`` depends on, from the
    output of ``apt-cache show --no-all-versions``; None if the output has none."""
    release = re.compile(rf"^\d+\.\d+(\.\d+)?-\d+-{re.escape(flavour)}$")
    for line in text.splitlines():
        if not line.startswith(("Depends:", "Pre-Depends:")):
            continue
        for alternative in re.split(r"[,|]", line.split(":", 1)[1]):
            match = _DEPENDS.search(alternative)
            if match and release.match(match.group(2)):
                return KernelPackage(match.group(1), match.group(3), match.group(2))
    return None


def resolve_kernel(runner: ToolRunner, flavour: str) -> KernelPackage | None:
    """The current kernel package of a flavour per the host's apt lists, or None when
    apt does not know the meta package (the lists need an ``apt-get update``)."""
    meta = f"linux-image-{flavour}"
    done = runner.run(
        ["apt-cache", "show", "--no-all-versions", meta], what="apt-cache", check=False
    )
    if done.returncode != 0:
        return None
    return parse_apt_show(done.stdout, flavour)


def _deb_field(runner: ToolRunner, deb: Path, field: str) -> str:
    return runner.run(["dpkg-deb", "-f", deb, field], what="reading a .deb").stdout.strip()


def _download(runner: ToolRunner, package: KernelPackage, downloads: Path) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    for deb in sorted(downloads.glob(f"{package.name}_*.deb")):
        if _deb_field(runner, deb, "Version") == package.version:
            return deb
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".download-") as tmp:
        done = runner.run(
            ["apt-get", "download", "-q", f"{package.name}={package.version}"],
            what="downloading the kernel",
            cwd=Path(tmp),
            check=False,
        )
        debs = list(Path(tmp).glob("*.deb"))
        if done.returncode != 0 or len(debs) != 1:
            tail = "\n".join(done.stdout.strip().splitlines()[-5:])
            raise ImageError(
                f"apt-get could not download {package.name}={package.version}: {tail}\n"
                "check the network and the host's apt sources (`apt-get update`), then build again"
            )
        target = downloads / debs[0].name
        debs[0].replace(target)
        return target


def fetch_kernel(runner: ToolRunner, package: KernelPackage, cache: Path) -> KernelTree:
    """The unpacked kernel, from the cache or downloaded and unpacked into it."""
    root = cache / "kernels" / f"{package.name}_{package.version.replace(':', '%3a')}"
    tree = KernelTree(package, root)
    if (root / ".complete").exists():
        return tree
    deb = _download(runner, package, cache / "downloads")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".unpack-"))
    try:
        runner.run(["dpkg-deb", "-x", deb, tmp], what="unpacking the kernel package")
        staged = KernelTree(package, tmp)
        if not staged.vmlinuz.is_file() or not staged.modules.is_dir():
            raise ImageError(
                f"{deb.name} has no boot/vmlinuz-{package.release} or lib/modules/"
                f"{package.release}; it is not the kernel package expected"
            )
        runner.run(["depmod", "-b", tmp, package.release], what="depmod")
        (tmp / ".complete").write_text(package.spec + "\n")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tree


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suffix in (".ko.zst", ".ko.xz", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep as ``{name: (path, [dependency names])}``; names use ``_`` for ``-``."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        table[_module_name(path.strip())] = (path.strip(), [_module_name(d) for d in deps.split()])
    return table


def load_order(
    wanted: Iterable[str],
    deps: Mapping[str, tuple[str, list[str]]],
    builtin: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """``(name, path)`` of each wanted module and its dependencies, every module after
    the ones it needs, otherwise in the order asked.  Built-in modules are left out; an
    unknown module is an ``ImageError``."""
    builtins = {_module_name(b) for b in builtin}
    order: list[tuple[str, str]] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str, wanted_by: str | None) -> None:
        if name in done or name in builtins:
            return
        if name not in deps:
            needed = f" (needed by {wanted_by})" if wanted_by else ""
            raise ImageError(f"the kernel has no module {name}{needed}; it cannot boot this image")
        if name in visiting:
            raise ImageError(f"modules.dep has a dependency cycle through {name}")
        visiting.add(name)
        path, needs = deps[name]
        for dep in needs:
            visit(dep, name)
        visiting.discard(name)
        done.add(name)
        order.append((name, path))

    for name in wanted:
        visit(name.replace("-", "_"), None)
    return order
