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
