"""Stopping the daemon (the real app served by uvicorn on loopback: its lifespan closes
the app service) while a local-mode instance runs: every process of the instance, and the
children they spawned, is gone afterwards, and none is left as a zombie (read from /proc)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import uvicorn

from cargobay.daemon.app import DaemonState, create_app
from cargobay.daemon.images import DaemonImages
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.store import Store
from tests.integration.apps.test_local_mode import repo_url  # noqa: F401 - fixture
from tests.unit.cargobay.daemon.test_api import NoAgents, no_hypervisor

# each process spawns a helper (a grandchild of the daemon) and records its pid
SPAWNS = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen(['sleep', '300'])\n"
    "open('pids-' + sys.argv[1], 'w').write('%d %d' % (os.getpid(), child.pid))\n"
    "print('up', flush=True)\n"
    "time.sleep(300)\n"
)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, session id) of a live or zombie process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[3])


def _session_members(sid: int) -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == sid:
                out.append((int(entry.name), stat[0]))
    return out


async def test_daemon_shutdown_leaves_no_process_and_no_zombie(
    tmp_path: Path,
    repo_url: str,  # noqa: F811
) -> None:
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    paths.ensure()
    store = Store.open(paths.db)
    images = DaemonImages(paths)
    state = DaemonState(
        paths=paths,
        service=MachineService(paths, store, no_hypervisor, images, NoAgents()),
        images=images,
    )
    app = create_app(state, recover=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not serving.done(), serving
            await asyncio.sleep(0.02)
        body = {
            "name": "shutdown1",
            "deploy_mode": "local",
            "repo_url": repo_url,
            "local_commands": {
                "core": ["{python}", "-c", SPAWNS, "core"],
                "second": ["{python}", "-c", SPAWNS, "second"],
            },
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            created = await client.post("/v1/apps", json=body)
            assert created.status_code == 201, created.text
            deploy = await client.post("/v1/apps/shutdown1/deploy", params={"follow": "true"})
            events = [json.loads(line) for line in deploy.text.splitlines() if line]
            assert events[-1]["type"] == "done", events
            started = await client.post("/v1/apps/shutdown1/start")
            assert started.status_code == 200, started.text
            status = (await client.get("/v1/apps/shutdown1/status")).json()
            checkout = Path(status["instance"]["paths"]["app"])
            leaders = {p["name"]: p["pid"] for p in status["processes"]}
        assert set(leaders) == {"core", "second"}
        pids: list[int] = []
        for name, leader in leaders.items():
            record = checkout / f"pids-{name}"
            for _ in range(400):
                if await asyncio.to_thread(record.exists) and record.read_text().count(" "):
                    break
                await asyncio.sleep(0.05)
            own, child = (int(x) for x in record.read_text().split())
            assert own == leader
            # the helper runs, in the leader's session (the PTY's)
            assert _stat(child) is not None
            assert _stat(child)[1] == leader  # type: ignore[index]
            pids += [own, child]
    finally:
        server.should_exit = True
        await serving  # the lifespan closes the app service: the processes are stopped
        sock.close()
        store.close()
    # the grandchildren are reparented to the subreaper/init, which reaps them: allow it
    for _ in range(100):
        left = [(pid, _stat(pid)) for pid in pids if _stat(pid) is not None]
        left += [(pid, (s, sid)) for sid in leaders.values() for pid, s in _session_members(sid)]
        if not left:
            break
        await asyncio.sleep(0.05)
    assert left == [], "processes (or zombies, state Z) of the instance remain"
