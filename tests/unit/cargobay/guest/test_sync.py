"""The sync preamble's two sans-IO sides, and the agent's port lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cargobay.guest.agent import find_port_device
from cargobay.guest.channel import AgentSync, HostSync, sync_hello, sync_reply, sync_request
from cargobay.guest.protocol import PROTOCOL_VERSION, SYNC_REPLY, SYNC_REQUEST
from virga.errors import RemoteProtocolError

YAMUX = b"\x00\x01\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00"  # a window update with SYN


def feed(agent: AgentSync, data: bytes, chunk: int) -> bytes:
    out = b""
    for i in range(0, len(data), chunk):
        if agent.done:
            break
        out += agent.receive_data(data[i : i + chunk])
    return out


def test_request_and_reply_wire_format() -> None:
    assert sync_request(b"n1") == b"\n" + SYNC_REQUEST + b" n1\n"
    assert sync_reply(b"n1") == SYNC_REPLY + b" n1 " + str(PROTOCOL_VERSION).encode() + b"\n"


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_agent_answers_and_hands_over_at_the_first_yamux_byte(chunk: int) -> None:
    agent = AgentSync()
    replies = feed(agent, sync_request(b"abc") + YAMUX + b"more", chunk)
    assert replies == sync_reply(b"abc")
    assert agent.done
    assert agent.nonce == b"abc"
    # Whatever the chunking, the yamux bytes after the preamble are all kept.
    rest = YAMUX + b"more"
    assert rest.startswith(agent.leftover)
    assert len(agent.leftover) >= 1


def test_agent_skips_junk_before_the_request() -> None:
    agent = AgentSync()
    junk = b"\x00\xff garbage\r\n" + SYNC_REQUEST + b"\n" + SYNC_REQUEST + b" bad nonce!\n" + YAMUX
    assert agent.receive_data(junk) == b""
    assert not agent.done
    assert agent.receive_data(b"noise " + sync_request(b"n2")) == sync_reply(b"n2")
    assert not agent.done


def test_agent_drops_repeats_of_the_answered_request() -> None:
    agent = AgentSync()
    replies = agent.receive_data(sync_request(b"n") * 5)
    assert replies == sync_reply(b"n")
    assert agent.receive_data(sync_request(b"n")) == b""
    agent.receive_data(YAMUX)
    assert agent.done
    assert agent.leftover == YAMUX


def test_agent_answers_a_new_host_after_an_abandoned_sync() -> None:
    agent = AgentSync()
    assert agent.receive_data(sync_request(b"old") * 2) == sync_reply(b"old")
    assert agent.receive_data(sync_request(b"new") + sync_request(b"new")) == sync_reply(b"new")
    assert agent.nonce == b"new"
    agent.receive_data(YAMUX)
    assert agent.done


def test_a_nul_byte_before_any_request_is_not_yamux() -> None:
    agent = AgentSync()
    agent.receive_data(YAMUX * 3)
    assert not agent.done
    assert agent.receive_data(b"\n" + sync_request(b"x")) == sync_reply(b"x")


def test_agent_bounds_its_buffer_on_endless_junk() -> None:
    agent = AgentSync()
    for _ in range(100):
        agent.receive_data(b"x" * 10_000)
    assert len(agent._buf) < 10_000
    assert agent.receive_data(sync_request(b"ok")) == sync_reply(b"ok")


def test_agent_refuses_bytes_after_the_handover() -> None:
    agent = AgentSync()
    agent.receive_data(sync_request(b"n") + YAMUX)
    with pytest.raises(RuntimeError):
        agent.receive_data(b"x")


@given(
    junk=st.binary(max_size=300).filter(lambda b: SYNC_REQUEST not in b),
    repeats=st.integers(1, 4),
    chunk=st.integers(1, 64),
)
def test_agent_sync_property(junk: bytes, repeats: int, chunk: int) -> None:
    agent = AgentSync()
    stream = junk + sync_request(b"nonce") * repeats + YAMUX
    replies = feed(agent, stream, chunk)
    assert replies == sync_reply(b"nonce")
    assert agent.done
    assert (YAMUX).startswith(agent.leftover)


def test_host_finds_its_reply_among_others() -> None:
    host = HostSync(b"mine")
    assert host.request == sync_request(b"mine")
    host.receive_data(b"junk\n" + sync_reply(b"other") + b"\x00\x01")
    assert host.version is None
    host.receive_data(SYNC_REPLY + b" mi")
    host.receive_data(b"ne 1")
    assert host.version is None
    host.receive_data(b"\n" + YAMUX)
    assert host.version == 1
    assert host.leftover == YAMUX


def test_host_notices_the_agent_hello() -> None:
    host = HostSync(b"n")
    host.receive_data(b"junk " + sync_hello()[:5])
    assert not host.hello
    host.receive_data(sync_hello()[5:])
    assert host.hello
    host.hello = False
    host.receive_data(b"more junk\n")
    assert not host.hello  # the same hello counts once
    host.receive_data(sync_hello() + sync_reply(b"n"))
    assert host.version == PROTOCOL_VERSION


def test_host_nonces_are_fresh() -> None:
    assert HostSync().nonce != HostSync().nonce


@pytest.mark.parametrize("reply", [SYNC_REPLY + b" n x\n", SYNC_REPLY + b" n " + b"9" * 40])
def test_host_rejects_a_malformed_reply(reply: bytes) -> None:
    host = HostSync(b"n")
    with pytest.raises(RemoteProtocolError):
        host.receive_data(reply)


def test_host_refuses_an_invalid_nonce() -> None:
    with pytest.raises(ValueError, match="nonce"):
        HostSync(b"with space")


def test_both_sides_together() -> None:
    host = HostSync()
    agent = AgentSync()
    host.receive_data(b"\x00stale bytes from an old session\n")
    host.receive_data(agent.receive_data(b"boot noise" + host.request + host.request))
    assert host.version == PROTOCOL_VERSION
    agent.receive_data(host.request + YAMUX)  # a late re-send, then yamux
    assert agent.done
    assert agent.leftover == YAMUX


def test_find_port_device(tmp_path: Path) -> None:
    sysfs = tmp_path / "virtio-ports"
    dev = tmp_path / "dev"
    dev.mkdir()
    for port, name in (("vport0p1", "org.qemu.guest_agent.0"), ("vport0p2", "cargobay.agent")):
        (sysfs / port).mkdir(parents=True)
        (sysfs / port / "name").write_text(name + "\n")
    (sysfs / "vport0p3").mkdir()  # a port without a name file yet
    assert find_port_device("cargobay.agent", str(sysfs), str(dev)) is None  # no device node
    (dev / "vport0p2").touch()
    assert find_port_device("cargobay.agent", str(sysfs), str(dev)) == str(dev / "vport0p2")
    assert find_port_device("missing", str(sysfs), str(dev)) is None
    assert find_port_device("cargobay.agent", str(tmp_path / "absent"), str(dev)) is None
