"""A CargoBay home for sandbox tests, with the daemon the SDK starts in it cleaned up.

``sandbox_home(image_dir)`` makes a short ``/tmp/cb-XXXXXX`` home whose image store is
the shared one (``default_image``) and whose cache is the shared cache (so the KVM probe
is not run again).  Nothing is started here: the code under test starts cargobayd the way
a user's would (``ensure_daemon``).  On exit every machine left is removed, the daemon is
asked to stop (then killed by its pid file if it lingers), any QEMU naming the home is
killed, and the home is removed unless the block failed; the daemon log's end is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cargobay.errors import CargoBayError
from cargobay.paths import Paths
from cargobay.sdk import CargoBayClient
from tests.integration.daemon.conftest import kill_qemus, qemu_pids
from tests.integration.machines.variants import shared_cache_dir

__all__ = ["sandbox_home"]


def _daemon_pid(paths: Paths) -> int | None:
    try:
        return int(paths.daemon_pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def sandbox_home(image_dir: Path) -> Iterator[Paths]:
    home = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    (home / "cache").symlink_to(shared_cache_dir())
    paths = Paths.from_env({"CARGOBAY_HOME": str(home), "CARGOBAY_IMAGES": str(image_dir.parent)})
    paths.ensure()
    failed = True
    leftovers: list[str] = []
    try:
        yield paths
        failed = False
    finally:
        pid = _daemon_pid(paths)
        with CargoBayClient(paths=paths) as client, contextlib.suppress(CargoBayError):
            for machine in client.list_machines():
                leftovers.append(str(machine["name"]))
                client.delete(str(machine["name"]), force=True)
            client.shutdown_daemon()
        deadline = time.monotonic() + 20
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        stray = qemu_pids(str(home))
        kill_qemus(str(home))
        if paths.daemon_log.exists():
            print(f"--- {paths.daemon_log} (end) ---")
            print(paths.daemon_log.read_text(errors="replace")[-6000:])
        if failed or stray:
            print(f"kept the CargoBay home {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
        assert not stray, f"QEMU processes outlived the daemon: {stray}"
        assert failed or not leftovers, f"sandboxes left behind by the tests: {leftovers}"
