"""Fixtures for the guest agent tests: the real agent as a host subprocess, and clients.

No VM is needed: ``python -m cargobay.guest.agent --listen unix:PATH`` runs here, with
the same code it runs as the guest's PID 1 (except power-off).  ``agents`` is a factory
that tracks every agent and client it made, stops them when the test ends (SIGTERM,
then SIGKILL) and prints each agent's log, which pytest shows for a failed test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from cargobay.guest.client import AgentClient

SRC = Path(__file__).resolve().parents[3] / "src"


class AgentProcess:
    """One agent subprocess."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        address: str,
        workdir: Path,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.proc = proc
        self.stop_signal = stop_signal
        self.address = address
        self.workdir = workdir
        self.log_path = workdir / "agent.log"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def children(self) -> list[int]:
        return children_of(self.pid)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def zombie_children(self, parent: int | None = None) -> list[int]:
        """Pids of zombie processes whose parent is the agent (or ``parent``)."""
        parent = self.pid if parent is None else parent
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if fields[0] == "Z" and int(fields[1]) == parent:
                    found.append(int(entry))
        return found

    async def wait_exit(self, timeout: float = 10.0) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (code := self.proc.poll()) is None:
            if loop.time() > deadline:
                raise AssertionError(f"agent {self.pid} did not exit within {timeout}s")
            await asyncio.sleep(0.02)
        return code


def _spawn_agent(
    listen: str | None, python: str, user: str | None, wrapper: Sequence[str]
) -> AgentProcess:
    workdir = Path(tempfile.mkdtemp(prefix="cbg-"))
    if user is not None:
        workdir.chmod(0o777)
    address = listen or f"unix:{workdir}/agent.sock"
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONDONTWRITEBYTECODE": "1"}
    with open(workdir / "agent.log", "wb") as log:
        proc = subprocess.Popen(
            [*wrapper, python, "-m", "cargobay.guest.agent", "--listen", address, "--debug"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            user=user,
            cwd="/",
        )
    # unshare ignores SIGTERM while it waits: SIGKILL it (--kill-child does the rest).
    return AgentProcess(proc, address, workdir, signal.SIGKILL if wrapper else signal.SIGTERM)


class AgentFactory:
    def __init__(self) -> None:
        self.agents: list[AgentProcess] = []
        self.clients: list[AgentClient] = []

    async def start(
        self,
        listen: str | None = None,
        *,
        python: str = sys.executable,
        user: str | None = None,
        wait_for_socket: bool = True,
        wrapper: Sequence[str] = (),
    ) -> AgentProcess:
        """Start an agent (``wrapper``: a command prefix, such as ``unshare ...``)."""
        agent = _spawn_agent(listen, python, user, wrapper)
        self.agents.append(agent)
        if wait_for_socket and agent.address.startswith("unix:"):
            await self.wait_listening(agent)
        return agent

    async def wait_listening(self, agent: AgentProcess, timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while "listening on" not in agent.log():
            if agent.proc.poll() is not None:
                raise AssertionError(f"the agent exited ({agent.proc.returncode}):\n{agent.log()}")
            if loop.time() > deadline:
                raise AssertionError(f"the agent did not listen within {timeout}s:\n{agent.log()}")
            await asyncio.sleep(0.02)

    async def client(self, agent: AgentProcess, *, timeout: float = 10.0) -> AgentClient:
        client = await AgentClient.connect(agent.address, timeout=timeout)
        self.clients.append(client)
        return client

    def track(self, client: AgentClient) -> AgentClient:
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        for agent in self.agents:
            if agent.proc.poll() is None:
                agent.proc.send_signal(agent.stop_signal)
        for agent in self.agents:
            try:
                await agent.wait_exit(5.0)
            except AssertionError:
                agent.proc.kill()
                agent.proc.wait()
            print(f"--- agent {agent.pid} ({agent.address}), exit {agent.proc.returncode}")
            print(agent.log())
            shutil.rmtree(agent.workdir, ignore_errors=True)


@pytest.fixture
async def agents() -> AsyncIterator[AgentFactory]:
    factory = AgentFactory()
    try:
        yield factory
    finally:
        await factory.close()


@pytest.fixture
async def agent(agents: AgentFactory) -> AgentProcess:
    return await agents.start()


@pytest.fixture
async def client(agents: AgentFactory, agent: AgentProcess) -> AgentClient:
    return await agents.client(agent)


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def path_exists(path: str | Path) -> bool:
    return os.path.exists(path)


def pid_exists(pid: int) -> bool:
    """True while ``pid`` exists, as a zombie too (not yet reaped)."""
    return os.path.exists(f"/proc/{pid}")


async def wait_gone(pids: Sequence[int], timeout: float = 10.0) -> None:
    """Wait until every pid has exited and been reaped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(pid_exists(p) for p in pids):
        if loop.time() > deadline:
            left = [p for p in pids if pid_exists(p)]
            raise AssertionError(f"processes {left} still exist after {timeout}s")
        await asyncio.sleep(0.05)
