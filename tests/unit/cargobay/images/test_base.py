"""Reading the host's apt sources, the base hash and debootstrap progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.errors import ImageError
from cargobay.images.base import (
    AptSource,
    DebootstrapProgress,
    base_hash,
    find_mirror,
    host_sources,
    mounts_under,
    parse_deb822,
    parse_sources_list,
)

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb deb-src
URIs: http://a.example/debian http://b.example/debian
Suites: trixie
Components: main contrib
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBF...
 -----END PGP PUBLIC KEY BLOCK-----
"""


def test_deb822_binary_sources_only() -> None:
    sources = parse_deb822(DEB822)
    assert sources == [
        AptSource(
            "http://deb.debian.org/debian",
            ("bookworm", "bookworm-updates"),
            ("main",),
            "/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
        AptSource("http://a.example/debian", ("trixie",), ("main", "contrib"), None),
        AptSource("http://b.example/debian", ("trixie",), ("main", "contrib"), None),
    ]


def test_one_line_sources_with_options_and_comments() -> None:
    text = """\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/x.gpg] http://mirror.example/debian bookworm main non-free
deb http://security.example/debian-security bookworm-security main  # trailing
"""  # noqa: E501
    assert parse_sources_list(text) == [
        AptSource(
            "http://mirror.example/debian",
            ("bookworm",),
            ("main", "non-free"),
            "/etc/apt/keyrings/x.gpg",
        ),
        AptSource("http://security.example/debian-security", ("bookworm-security",), ("main",)),
    ]


def test_host_sources_reads_both_styles(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://one.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "extra.list").write_text("deb http://two.example/d sid main\n")
    (tmp_path / "sources.list.d" / "ignored.save").write_text("deb http://no.example/ x main\n")
    uris = [source.uri for source in host_sources(tmp_path)]
    assert uris == [
        "http://one.example/debian",
        "http://deb.debian.org/debian",
        "http://a.example/debian",
        "http://b.example/debian",
        "http://two.example/d",
    ]


def test_find_mirror_wants_the_suite_and_main() -> None:
    sources = [
        AptSource("http://security.example/", ("bookworm-security",), ("main",)),
        AptSource("http://contrib-only.example/", ("bookworm",), ("contrib",)),
        AptSource("http://right.example/debian", ("bookworm",), ("main",)),
    ]
    assert find_mirror(sources, "bookworm").uri == "http://right.example/debian"
    with pytest.raises(ImageError, match="no Debian trixie mirror"):
        find_mirror(sources, "trixie")


def test_base_hash_depends_on_what_debootstrap_sees() -> None:
    one = base_hash("bookworm", "amd64", ["python3", "kmod"])
    assert one == base_hash("bookworm", "amd64", ["kmod", "python3"])
    assert one != base_hash("bookworm", "amd64", ["kmod"])
    assert one != base_hash("trixie", "amd64", ["python3", "kmod"])
    assert one != base_hash("bookworm", "arm64", ["python3", "kmod"])


def test_debootstrap_progress_only_moves_forward() -> None:
    progress = DebootstrapProgress(expected_packages=2)
    lines = [
        "I: Retrieving InRelease",
        "I: Retrieving Packages",
        "I: Validating Packages",
        "I: Retrieving libc6 2.36-9",
        "I: Extracting base-files...",
        "I: Installing core packages...",
        "I: Unpacking libc6:amd64...",
        "I: Configuring libc6:amd64...",
        "I: Base system installed successfully.",
    ]
    fractions = []
    for line in lines:
        progress.feed(line)
        fractions.append(progress.fraction)
    assert fractions == sorted(fractions)
    assert 0 < fractions[0] < 0.4 <= fractions[4] < fractions[6] < fractions[7] < 1.0
    assert fractions[-1] == 1.0
    assert progress.feed("W: something else") is False


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:5 / /cache/base/.debootstrap-x/tree/proc rw - proc proc rw
41 22 0:6 / /cache/base/.debootstrap-x/tree/sys rw - sysfs sysfs rw
42 22 0:7 / /cache/base/.debootstrap-x/tree/dev rw - devtmpfs udev rw
43 42 0:8 / /cache/base/.debootstrap-x/tree/dev/pts rw - devpts devpts rw
44 22 0:9 / /cache/base/.debootstrap-xy/tree/proc rw - proc proc rw
45 22 0:10 / /cache/with\\040space/proc rw - proc proc rw
"""


def test_mounts_under_finds_nested_mounts_deepest_first() -> None:
    found = mounts_under(Path("/cache/base/.debootstrap-x"), MOUNTINFO)
    assert found[0] == "/cache/base/.debootstrap-x/tree/dev/pts"
    assert sorted(found) == [
        "/cache/base/.debootstrap-x/tree/dev",
        "/cache/base/.debootstrap-x/tree/dev/pts",
        "/cache/base/.debootstrap-x/tree/proc",
        "/cache/base/.debootstrap-x/tree/sys",
    ]
    assert mounts_under(Path("/cache/with space"), MOUNTINFO) == ["/cache/with space/proc"]
    assert mounts_under(Path("/elsewhere"), MOUNTINFO) == []
