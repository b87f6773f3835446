"""Fixtures for virga's integration tests: the Go yamux peer, peer processes, socket paths.

``goyamux`` builds the Go peer once per session (cached across runs, see tests/peers/goyamux.py);
without Go or Debian's hashicorp/yamux it skips, and fails under CI=true.  ``peers`` starts
processes and kills every one still running when the test ends; it prints what each printed
during teardown, which pytest shows only for a failed test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.peers.goyamux import YAMUX_SOURCE, GoUnavailable, PeerProcesses, build
from tests.support import require, require_binary


@pytest.fixture(scope="session")
def goyamux() -> Path:
    """Path of the built Go yamux peer."""
    go = require_binary("go", "Debian: apt-get install golang-go")
    require(
        YAMUX_SOURCE.is_dir(),
        f"{YAMUX_SOURCE} (Debian: apt-get install golang-github-hashicorp-yamux-dev)",
    )
    try:
        return build(go)
    except GoUnavailable as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture
async def peers() -> AsyncIterator[PeerProcesses]:
    factory = PeerProcesses()
    try:
        yield factory
    finally:
        await factory.close()
        if factory.started:
            print(factory.logs())


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (AF_UNIX paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="virga-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
