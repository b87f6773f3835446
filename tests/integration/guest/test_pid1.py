"""The agent as PID 1, in a PID namespace (``unshare --pid``): what it is in the VM.

There it has no subreaper to lean on: every orphan of the namespace is its child, and
``shutdown`` runs the real power-off path (kill everything, sync, ``reboot(2)``), which
in a child PID namespace ends the namespace (its init gets SIGINT) instead of a machine.
"""

from __future__ import annotations

import asyncio
import os
import signal

from cargobay.guest.client import AgentClient
from tests.support import require, require_binary

from .conftest import AgentFactory, AgentProcess, children_of, pid_exists


async def start_as_init(agents: AgentFactory) -> tuple[AgentProcess, int]:
    unshare = require_binary("unshare", "Debian: util-linux")
    require(os.geteuid() == 0, "root, to create a PID namespace")
    agent = await agents.start(
        wrapper=[unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "--"]
    )
    children = agent.children()
    assert len(children) == 1, children
    return agent, children[0]


async def test_pid_1_reaps_orphans_and_powers_off(agents: AgentFactory) -> None:
    agent, init_pid = await start_as_init(agents)
    client = await agents.client(agent)
    assert client.agent_info.pid == 1
    result = await client.exec(["sh", "-c", "for i in 1 2 3; do sleep 0.1 & done; echo $$"])
    assert result.ok
    await asyncio.sleep(0.6)
    assert agent.zombie_children(init_pid) == []
    # A process left running is stopped by the power-off.
    await client.exec(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
    children = children_of(init_pid)
    assert len(children) == 1  # the orphaned sleep
    await client.shutdown()
    code = await agent.wait_exit(15)
    assert code in (-signal.SIGINT, 128 + signal.SIGINT), code
    log = agent.log()
    assert "powering off now" in log
    assert "reboot(2) failed" not in log
    assert not pid_exists(init_pid)
    assert not pid_exists(children[0])


async def test_pid_1_keeps_serving_reconnects(agents: AgentFactory) -> None:
    agent, _ = await start_as_init(agents)
    for i in range(3):
        client = await AgentClient.connect(agent.address)
        assert client.agent_info.pid == 1
        assert (await client.exec(["echo", str(i)])).stdout == f"{i}\n".encode()
        await client.close()
    # SIGTERM does not stop an init (it ignores it); the namespace lives on.
    os.kill(agent.children()[0], signal.SIGTERM)
    client = await agents.client(agent)
    # The agent's own PYTHONPATH (set by the init script) does not leak into execs.
    env = await client.exec(["sh", "-c", 'echo "${PYTHONPATH-unset}"'])
    assert env.stdout == b"unset\n"
