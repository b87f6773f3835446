"""Storage and data through a real cargobayd and one VM (default image), shared by the
module: host folders shared into the guest (virtio-9p read-write and read-only,
virtiofs), a block image and a scratch volume, the data drive's cache strategy on QEMU's
command line, ``data push|pull|sync`` round trips with their counts, and every path
escape refused on both sides.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cargobay.errors import Conflict, InvalidInput
from cargobay.images import ImageManifest
from cargobay.machines.shares import find_virtiofsd
from cargobay.paths import Paths
from cargobay.sdk import CargoBayClient, daemon_environment
from tests.integration.daemon.conftest import kill_qemus, qemu_pids, wait_answering
from tests.integration.machines.variants import shared_cache_dir
from tests.support import require

pytestmark = pytest.mark.slow

NAME = "store"


@dataclass
class Setup:
    home: Path
    client: CargoBayClient
    rw: Path
    ro: Path
    vfs: Path
    paths: Paths

    def sh(self, script: str) -> tuple[int, str]:
        result = self.client.exec(NAME, ["sh", "-c", script], timeout=60)
        out = (result.stdout + result.stderr).decode(errors="replace")
        return int(result.exit_code if result.exit_code is not None else -1), out

    def data(self, op: str, host: Path | str, guest: str, **kw: Any) -> dict[str, Any]:
        events = list(self.client.transfer_data(NAME, op, str(host), guest, **kw))
        assert events[0]["type"] == "plan"
        assert events[-1]["type"] == "done"
        return events[-1]


@pytest.fixture(scope="module")
def setup(default_image: tuple[Path, ImageManifest]) -> Iterator[Setup]:
    require(find_virtiofsd() is not None, "virtiofsd not found (Debian: qemu-system-common)")
    home = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    (home / "images").mkdir()
    (home / "images" / "default").symlink_to(default_image[0], target_is_directory=True)
    (home / "cache").symlink_to(shared_cache_dir())
    paths = Paths.from_env({"CARGOBAY_HOME": str(home), "CARGOBAY_IMAGES": str(home / "images")})
    paths.ensure()
    rw, ro, vfs = home / "rw", home / "ro", home / "vfs"
    for d in (rw, ro, vfs):
        d.mkdir()
    (rw / "from-host.txt").write_text("hello 9p\n")
    (ro / "fixed.txt").write_text("read only\n")
    (vfs / "vfs.txt").write_text("hello virtiofs\n")
    with paths.daemon_log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cargobay.daemon.server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=daemon_environment(paths),
            start_new_session=True,
        )
    client = CargoBayClient(paths=paths)
    failed = True
    try:
        wait_answering(client, proc, 30)
        client.create_machine(
            NAME,
            memory="256MB",
            shares=[f"{rw}:/mnt/rw", f"{ro}:/mnt/ro:ro", f"virtiofs:{vfs}:/mnt/vfs"],
            cache_strategy="writethrough",
            start=False,
        )
        tree = home / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "in-image.txt").write_text("from the block image\n")
        client.attach_data(NAME, "image", "/mnt/img", host_path=str(tree))
        client.attach_data(NAME, "volume", "/mnt/scratch", size="64MB")
        client.start(NAME, boot_timeout=240)
        yield Setup(home, client, rw, ro, vfs, paths)
        failed = False
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        client.close()
        kill_qemus(str(home))
        print(paths.daemon_log.read_text(errors="replace")[-6000:])
        if not failed:
            shutil.rmtree(home, ignore_errors=True)


def test_cache_strategy_and_shares_on_the_qemu_command_line(setup: Setup) -> None:
    (pid,) = qemu_pids(str(setup.home))
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    data = next(a for a in argv if a.startswith("id=data,"))
    assert "cache=writethrough" in data.split(",")
    assert any("virtio-9p-device" in a and "mount_tag=cbshare1" in a for a in argv)
    assert any(a.startswith("vhost-user-fs-device") for a in argv)
    settings = setup.client.machine_config(NAME)["settings"]
    assert settings["cache_strategy"] == "writethrough"
    assert len(settings["shares"]) == 3


def test_9p_share_is_readable_and_writable(setup: Setup) -> None:
    code, out = setup.sh("cat /mnt/rw/from-host.txt && echo from-guest > /mnt/rw/guest.txt")
    assert (code, out) == (0, "hello 9p\n")
    assert (setup.rw / "guest.txt").read_text() == "from-guest\n"


def test_readonly_9p_share_refuses_writes(setup: Setup) -> None:
    code, out = setup.sh("cat /mnt/ro/fixed.txt")
    assert (code, out) == (0, "read only\n")
    code, _ = setup.sh("echo x > /mnt/ro/new.txt")
    assert code != 0
    assert not (setup.ro / "new.txt").exists()


def test_virtiofs_share(setup: Setup) -> None:
    code, out = setup.sh("grep -c virtiofs /proc/mounts; cat /mnt/vfs/vfs.txt")
    assert code == 0, out
    assert out.splitlines()[-1] == "hello virtiofs"
    setup.sh("echo via-virtiofs > /mnt/vfs/back.txt")
    assert (setup.vfs / "back.txt").read_text() == "via-virtiofs\n"


def test_push_pull_sync_round_trip(setup: Setup, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(os.urandom(70_000))
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "run.sh", 0o750)
    (src / "link").symlink_to("sub/b.bin")
    done = setup.data("push", src, "/root/tree")
    assert sorted(done["sent"]) == ["a.txt", "link", "run.sh", "sub/b.bin"]
    code, out = setup.sh("stat -c %a /root/tree/run.sh; readlink /root/tree/link")
    assert (code, out.split()) == (0, ["750", "sub/b.bin"])

    # nothing changed: sync sends nothing; then one file changes, one is new
    assert setup.data("sync", src, "/root/tree")["sent"] == []
    (src / "a.txt").write_text("A2")
    (src / "new.txt").write_text("N")
    done = setup.data("sync", src, "/root/tree")
    assert sorted(done["sent"]) == ["a.txt", "new.txt"]
    assert len(done["skipped"]) == 4  # sub, run.sh, link, sub/b.bin

    # --delete removes what the host no longer has
    (src / "new.txt").unlink()
    done = setup.data("sync", src, "/root/tree", delete=True)
    assert done["removed"] == ["new.txt"]
    assert done["sent"] == []

    back = tmp_path / "back"
    done = setup.data("pull", back, "/root/tree")
    assert sorted(done["sent"]) == ["a.txt", "link", "run.sh", "sub/b.bin"]
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert (back / "run.sh").stat().st_mode & 0o777 == 0o750
    assert os.readlink(back / "link") == "sub/b.bin"
    # a guest-side change comes back with a reverse sync, alone
    setup.sh("echo changed > /root/tree/a.txt")
    done = setup.data("sync", back, "/root/tree", reverse=True)
    assert done["sent"] == ["a.txt"]
    assert (back / "a.txt").read_text() == "changed\n"


def test_escapes_are_refused(setup: Setup, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # push: a host tree with a link pointing out of it
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "out").symlink_to("/etc/passwd")
    with pytest.raises(InvalidInput, match="points outside"):
        setup.data("push", evil, "/root/evil")
    code, _ = setup.sh("test -e /root/evil/out")
    assert code != 0
    # '..' in either path
    with pytest.raises(InvalidInput, match=r"'\.\.'"):
        setup.data("push", tmp_path, "/root/../etc")
    with pytest.raises(InvalidInput, match=r"'\.\.'"):
        setup.data("pull", f"{tmp_path}/../x", "/root/tree")
    # pull: a guest tree with links pointing out of it
    setup.sh("mkdir -p /root/bad && ln -sf /etc /root/bad/etc && ln -sf ../../x /root/bad/up")
    with pytest.raises(InvalidInput, match="points outside"):
        setup.data("pull", outside, "/root/bad")
    assert list(outside.iterdir()) == []
    # pull into a host dir whose subdirectory is a link out: nothing written through it
    setup.sh("rm -rf /root/bad && mkdir -p /root/bad/sub && echo x > /root/bad/sub/f")
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    done = setup.data("pull", target, "/root/bad")
    assert done["sent"] == ["sub/f"]
    assert list(outside.iterdir()) == []
    assert (target / "sub" / "f").read_text() == "x\n"
    assert not (target / "sub").is_symlink()


def test_block_image_and_scratch_volume(setup: Setup) -> None:
    code, out = setup.sh("cat /mnt/img/sub/in-image.txt")
    assert (code, out) == (0, "from the block image\n")
    code, _ = setup.sh("echo x > /mnt/img/new.txt")
    assert code != 0  # read-only
    code, out = setup.sh(
        "echo scratch > /mnt/scratch/f && cat /mnt/scratch/f && df -m /mnt/scratch"
    )
    assert code == 0, out
    assert out.startswith("scratch\n")
    # the volume's file is already unlinked: it goes away with QEMU
    machine_dirs = list((setup.home / "data" / "machines").iterdir())
    assert [p.name for d in machine_dirs for p in d.glob("volume*.ext4")] == []
    assert [p.suffix for d in machine_dirs for p in (d / "attachments").iterdir()] == [".ext4"]
    settings = setup.client.machine_config(NAME)["settings"]
    assert settings["attachments"] == ["image /mnt/img", "volume /mnt/scratch 64MB"]
    with pytest.raises(Conflict):
        setup.client.attach_data(NAME, "volume", "/mnt/rw", size="8MB")


def test_cli_data_verbs(setup: Setup, tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("1")
    env = daemon_environment(setup.paths)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "cargobay.cli.aiva", "data", NAME, *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    first = cli("sync", str(tmp_path), "/root/cli", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["sent"] == ["one.txt"]
    again = cli("sync", str(tmp_path), "/root/cli", "--json")
    assert json.loads(again.stdout)["skipped"] == ["one.txt"]
    refused = cli("push", str(tmp_path), "/root/../etc")
    assert refused.returncode == 2  # bad input
    assert "'..'" in refused.stderr
    missing = cli("pull", "/root/cli", str(tmp_path / "x"), "--json")
    assert missing.returncode == 0, missing.stderr
    assert (tmp_path / "x" / "one.txt").read_text() == "1"


async def test_virtiofsd_without_qemu_is_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cargobay.hypervisors.qemu_storage import ShareDevice
    from cargobay.machines import shares

    require(find_virtiofsd() is not None, "virtiofsd not found (Debian: qemu-system-common)")
    monkeypatch.setattr(shares, "VIRTIOFSD_CONNECT_WAIT", 0.5)
    (tmp_path / "src").mkdir()
    dev = ShareDevice(
        tag="t", host_path=str(tmp_path / "src"), kind="virtiofs", socket=str(tmp_path / "s")
    )
    procs = await shares.start_virtiofsd((dev,), tmp_path)
    assert procs[0].poll() is None  # waiting for a QEMU that never comes
    await shares._reap_unconnected(procs, tmp_path / "qemu.pid")
    assert procs[0].poll() is not None
