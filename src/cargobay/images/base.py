"""The rootfs base: a debootstrap tree, made once and kept in the cache.

``debootstrap --variant=minbase SUITE`` plus the recipe's packages takes about a minute,
so its result is cached under ``<cache>/images/base/<hash>/`` where the hash covers only
what debootstrap sees (suite, architecture, package list, the clean-up below).  Changing
the guest agent or an init script reuses the base; changing the package list makes a new
one.  The downloaded .debs are kept in ``<cache>/images/debs`` for the next debootstrap.

The Debian mirror comes from the host's apt sources (deb822 ``*.sources`` files or
one-line ``sources.list`` entries): the first ``deb`` source with the suite and ``main``.
No other host is ever contacted.

The tree is slimmed like a container base image: no apt lists or package cache, no
documentation, man pages or translations, no udev hwdb (nothing runs udev), and a dpkg
config that keeps those out of later installs inside the guest.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cargobay.errors import ImageError
from cargobay.images.tools import ToolRunner

__all__ = [
    "AptSource",
    "DebootstrapProgress",
    "base_hash",
    "find_mirror",
    "host_sources",
    "make_base",
    "mounts_under",
    "parse_deb822",
    "parse_sources_list",
    "remove_tree",
]

BASE_FORMAT = 1
"""Bump when the clean-up or debootstrap options change: it invalidates cached bases."""

_SLIM_PATHS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "var/cache/apt",
    "var/lib/apt/lists",
)
_SLIM_FILES = ("usr/lib/udev/hwdb.bin", "etc/udev/hwdb.bin")
_DPKG_EXCLUDES = """\
# CargoBay keeps guest images small: no documentation or translations.
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
"""


@dataclass(frozen=True, slots=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None
    """A keyring path, when the source names one."""


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t" and key is not None:
            current[key] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if sep:
            key = name.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def parse_deb822(text: str) -> list[AptSource]:
    """The binary (``deb``) sources of a deb822 ``.sources`` file."""
    sources = []
    for stanza in _deb822_stanzas(text):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        signed = stanza.get("signed-by", "").strip()
        keyring = signed if signed.startswith("/") and "\n" not in signed else None
        for uri in stanza.get("uris", "").split():
            sources.append(
                AptSource(
                    uri=uri,
                    suites=tuple(stanza.get("suites", "").split()),
                    components=tuple(stanza.get("components", "").split()),
                    signed_by=keyring,
                )
            )
    return sources


_OPTIONS = re.compile(r"^\[([^\]]*)\]\s*")


def parse_sources_list(text: str) -> list[AptSource]:
    """The ``deb`` lines of a one-line-style ``sources.list``."""
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        keyring = None
        options = _OPTIONS.match(rest)
        if options:
            for option in options.group(1).split():
                name, _, value = option.partition("=")
                if name == "signed-by" and value.startswith("/"):
                    keyring = value
            rest = rest[options.end() :]
        fields = rest.split()
        if len(fields) >= 2:
            sources.append(AptSource(fields[0], (fields[1],), tuple(fields[2:]), keyring))
    return sources


def host_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    sources: list[AptSource] = []
    main_list = etc_apt / "sources.list"
    if main_list.is_file():
        sources += parse_sources_list(main_list.read_text(errors="replace"))
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".sources":
                sources += parse_deb822(path.read_text(errors="replace"))
            elif path.suffix == ".list":
                sources += parse_sources_list(path.read_text(errors="replace"))
    return sources


def find_mirror(sources: Iterable[AptSource], suite: str) -> AptSource:
    sources = list(sources)
    for source in sources:
        if suite in source.suites and "main" in source.components:
            return source
    raise ImageError(
        f"the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d) have no "
        f"Debian {suite} mirror with the main component ({len(sources)} sources found); add "
        f"one, e.g. `deb http://deb.debian.org/debian {suite} main`, or pass a mirror to the build"
    )


def base_hash(suite: str, arch: str, packages: Iterable[str]) -> str:
    recipe = {"format": BASE_FORMAT, "suite": suite, "arch": arch, "packages": sorted(packages)}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


class DebootstrapProgress:
    """Turns debootstrap's ``I:`` lines into a fraction (estimated: it does not say how
    many packages it will handle until it handles them)."""

    _PHASES = (
        ("I: Retrieving ", 0.02, 0.40),
        ("I: Extracting ", 0.40, 0.50),
        ("I: Unpacking ", 0.50, 0.72),
        ("I: Configuring ", 0.72, 0.98),
    )

    def __init__(self, expected_packages: int = 110) -> None:
        self.expected = expected_packages
        self.counts = [0] * len(self._PHASES)
        self.fraction = 0.0
        self.message = "starting debootstrap"

    def feed(self, line: str) -> bool:
        """Account one output line; True if the fraction or message changed."""
        for index, (prefix, start, end) in enumerate(self._PHASES):
            if line.startswith(prefix):
                self.counts[index] += 1
                done = min(1.0, self.counts[index] / self.expected)
                self.fraction = max(self.fraction, start + (end - start) * done)
                self.message = line[3:].strip()
                return True
        if line.startswith("I: Base system installed"):
            self.fraction, self.message = 1.0, "base system installed"
            return True
        return False


def _slim(tree: Path) -> None:
    for rel in _SLIM_PATHS:
        path = tree / rel
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (tree / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for rel in _SLIM_FILES:
        (tree / rel).unlink(missing_ok=True)
    for log in (tree / "var/log").rglob("*"):
        if log.is_file() and not log.is_symlink():
            log.unlink()
    for old in (tree / "var/cache/debconf").glob("*-old"):
        old.unlink()
    dpkg_cfg = tree / "etc/dpkg/dpkg.cfg.d"
    dpkg_cfg.mkdir(parents=True, exist_ok=True)
    (dpkg_cfg / "cargobay-slim").write_text(_DPKG_EXCLUDES)


def mounts_under(path: Path, mountinfo: str | None = None) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    prefix = str(path.absolute()).rstrip("/")
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(runner: ToolRunner, path: Path) -> None:
    """Delete a (partial) debootstrap tree.  debootstrap mounts /proc and /sys in its
    target (and bind-mounts /dev inside containers); deleting through such a mount
    would reach the host's files, so they are unmounted first, and a tree that still has
    a mount is left alone."""
    if not path.exists():
        return
    for point in mounts_under(path):
        runner.run(["umount", "--lazy", point], what="unmounting", check=False)
    left = mounts_under(path)
    if left:
        raise ImageError(
            f"{path} still has mounts ({', '.join(left)}); unmount them and delete it by hand"
        )
    shutil.rmtree(path, ignore_errors=True)


def make_base(
    runner: ToolRunner,
    cache: Path,
    *,
    suite: str,
    arch: str,
    packages: Iterable[str],
    mirror: AptSource,
    on_progress: Callable[[float, str], None],
) -> Path:
    """The cached base tree for this recipe, made with debootstrap if not cached yet.
    The caller holds the build lock."""
    packages = sorted(packages)
    bases = cache / "images" / "base"
    target = bases / base_hash(suite, arch, packages)
    if (target / "base.json").exists():
        on_progress(1.0, "reusing the cached base system")
        return target / "tree"
    bases.mkdir(parents=True, exist_ok=True)
    for stale in bases.glob(".debootstrap-*"):
        remove_tree(runner, stale)
    debs = cache / "images" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=bases, prefix=".debootstrap-"))
    tree = tmp / "tree"
    argv: list[str | Path] = [
        "debootstrap",
        "--variant=minbase",
        f"--arch={arch}",
        "--components=main",
        f"--include={','.join(packages)}",
        f"--cache-dir={debs.absolute()}",
    ]
    if mirror.signed_by and Path(mirror.signed_by).is_file():
        argv.append(f"--keyring={mirror.signed_by}")
    argv += [suite, tree, mirror.uri]
    progress = DebootstrapProgress()

    def on_line(line: str) -> None:
        if progress.feed(line):
            on_progress(progress.fraction, progress.message)

    try:
        runner.stream(argv, what="debootstrap", on_line=on_line)
        if mounts_under(tree):
            raise ImageError(f"debootstrap left mounts in {tree}: {mounts_under(tree)}")
        on_progress(0.99, "removing documentation and package caches")
        _slim(tree)
        record = {"suite": suite, "arch": arch, "packages": packages, "mirror": mirror.uri}
        (tmp / "base.json").write_text(json.dumps(record, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        remove_tree(runner, tmp)
        raise
    on_progress(1.0, "base system ready")
    return target / "tree"
