"""Running host tools (errors carry the command and its output), the guest scripts' shell
syntax, and the build's refusal to run without root."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cargobay.errors import ImageError
from cargobay.images.base import mounts_under, remove_tree
from cargobay.images.build import GUEST_DIR
from cargobay.images.kernel import KernelPackage, fetch_kernel
from cargobay.images.tools import ToolRunner
from tests.support import require, require_binary


def test_run_returns_output_and_logs_it() -> None:
    log = io.StringIO()
    runner = ToolRunner({"echo": "/bin/echo"}, log)
    done = runner.run(["echo", "hello"], what="echoing")
    assert done.stdout == "hello\n"
    assert log.getvalue() == "$ /bin/echo hello\nhello\n"


def test_failed_command_names_itself_and_shows_the_end_of_its_output() -> None:
    runner = ToolRunner({})
    script = "for i in $(seq 1 40); do echo line $i; done; echo boom >&2; exit 3"
    with pytest.raises(ImageError) as caught:
        runner.run(["sh", "-c", script], what="the test step")
    message = str(caught.value)
    assert message.startswith("the test step failed: `sh -c")
    assert "exited with status 3" in message
    assert message.endswith("line 40\nboom")
    assert "line 15\n" not in message  # only the last lines


def test_missing_program_is_an_image_error() -> None:
    runner = ToolRunner({})
    with pytest.raises(ImageError, match="cannot run /nonexistent/tool"):
        runner.run(["/nonexistent/tool"], what="x")


def test_stream_hands_over_lines_and_fails_like_run() -> None:
    runner = ToolRunner({})
    lines: list[str] = []
    runner.stream(["sh", "-c", "echo I: one; echo I: two"], what="s", on_line=lines.append)
    assert lines == ["I: one", "I: two"]
    with pytest.raises(ImageError, match="exited with status 1"):
        runner.stream(["sh", "-c", "echo E: bad; exit 1"], what="s", on_line=lines.append)


class Cancelled(Exception):
    pass


def test_a_raising_progress_callback_stops_the_command() -> None:
    runner = ToolRunner({})
    pids: list[int] = []

    def cancel(line: str) -> None:
        pids.append(int(line))
        raise Cancelled

    with pytest.raises(Cancelled):
        runner.stream(["sh", "-c", "echo $$; exec sleep 60"], what="s", on_line=cancel)
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pids[0], 0)


@pytest.mark.parametrize(
    ("shell", "script"),
    [("dash", "cargobay-init"), ("busybox", "initramfs-init")],
)
def test_guest_scripts_parse(shell: str, script: str) -> None:
    binary = require_binary(shell, f"Debian: apt-get install {shell}")
    argv = [binary, "sh", "-n"] if shell == "busybox" else [binary, "-n"]
    done = subprocess.run([*argv, str(GUEST_DIR / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_building_without_root_says_root_is_needed() -> None:
    setpriv = require_binary("setpriv", "Debian: util-linux")
    require(os.geteuid() == 0, "root, to run the build as another user")
    home = Path(tempfile.mkdtemp(prefix="cb-noroot-"))
    home.chmod(0o777)
    code = (
        "from cargobay.paths import Paths\n"
        "from cargobay.images import build_image\n"
        "from cargobay.errors import ImageError\n"
        "try:\n"
        "    build_image(Paths.from_env())\n"
        "except ImageError as err:\n"
        "    print(err)\n"
    )
    try:
        done = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-c", code],
            env={**os.environ, "CARGOBAY_HOME": str(home), "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)
    assert done.returncode == 0, done.stderr
    assert "building the image 'default' needs root" in done.stdout
    assert "sudo cargobay image build" in done.stdout


def test_remove_tree_unmounts_before_deleting(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root, to mount a tmpfs")
    tree = tmp_path / ".debootstrap-t" / "tree"
    (tree / "proc").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "etc" / "hostname").write_text("x\n")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tree / "proc")], check=True)
    try:
        (tree / "proc" / "inside").write_text("on the mount\n")
        assert mounts_under(tmp_path) == [str(tree / "proc")]
        remove_tree(ToolRunner({}), tmp_path / ".debootstrap-t")
        assert not (tmp_path / ".debootstrap-t").exists()
        assert mounts_under(tmp_path) == []
    finally:
        if mounts_under(tmp_path):
            subprocess.run(["umount", "--lazy", str(tree / "proc")], check=False)


def test_a_kernel_apt_cannot_download_is_a_clear_error(tmp_path: Path) -> None:
    tools = {
        "apt-get": require_binary("apt-get", "apt"),
        "dpkg-deb": require_binary("dpkg-deb", "dpkg"),
    }
    bogus = KernelPackage(
        "linux-image-6.1.0-56-cloud-amd64", "0.0-cargobay-test", "6.1.0-56-cloud-amd64"
    )
    with pytest.raises(
        ImageError,
        match=re.escape(f"apt-get could not download {bogus.name}={bogus.version}"),
    ):
        fetch_kernel(ToolRunner(tools), bogus, tmp_path)
    assert list((tmp_path / "downloads").iterdir()) == []
