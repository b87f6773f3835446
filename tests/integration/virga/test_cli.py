"""``python -m virga``: serve-echo/echo-client between two processes, the demo, bad usage."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.peers.goyamux import PeerProcess, PeerProcesses, virga_command

pytestmark = pytest.mark.integration


async def start_server(peers: PeerProcesses, address: str, *args: str) -> PeerProcess:
    server = await peers.start(virga_command("serve-echo", "--listen", address, *args))
    await server.wait_line("listening")
    return server


def assert_clean_failure(peer: PeerProcess, code: int, *needles: str) -> None:
    """A failure the user caused: the given exit code, one clear line, no traceback."""
    assert peer.proc.returncode == code, peer.log()
    err = peer.stderr_text
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("extra", [[], ["--protocol", "yamux"]], ids=["default", "explicit"])
async def test_yamux_echo_between_processes(
    peers: PeerProcesses, sock_dir: Path, extra: list[str]
) -> None:
    address = f"unix:{sock_dir}/echo.sock"
    server = await start_server(peers, address, *extra)
    client = await peers.run(
        virga_command(
            "echo-client", "--connect", address, "--streams", "3", "--bytes", "300000", *extra
        )
    )
    assert client.proc.returncode == 0, client.log()
    assert client.lines[-1].startswith("ok streams=3 bytes=300000 MB/s="), client.log()
    assert float(client.lines[-1].rsplit("=", 1)[1]) > 0
    for stream_id in (1, 3, 5):  # client streams have odd ids
        await server.wait_line(f"echoed id={stream_id} bytes=300000")


@pytest.mark.parametrize("ack", [[], ["--wait-for-ack"]], ids=["no-ack", "wait-for-ack"])
async def test_xtransport_echo_between_processes(
    peers: PeerProcesses, sock_dir: Path, ack: list[str]
) -> None:
    address = f"unix:{sock_dir}/echo.sock"
    opts = ["--protocol", "xtransport", *ack]
    server = await start_server(peers, address, *opts)
    client = await peers.run(
        virga_command(
            "echo-client", "--connect", address, "--streams", "4", "--bytes", "100K", *opts
        )
    )
    assert client.proc.returncode == 0, client.log()
    assert client.lines[-1].startswith("ok streams=4 bytes=102400 MB/s="), client.log()
    await server.wait_line("echoed message=1 bytes=102400")
    echoed = [line for line in server.lines if line.startswith("echoed message=")]
    assert len(echoed) == 4, server.lines  # one message on each of 4 connections


async def test_serve_echo_stops_cleanly_on_sigterm(peers: PeerProcesses, sock_dir: Path) -> None:
    server = await start_server(peers, f"unix:{sock_dir}/echo.sock")
    server.proc.send_signal(signal.SIGTERM)
    assert await server.finish(within=10) == 0, server.log()
    assert not (sock_dir / "echo.sock").exists()


async def test_demo(peers: PeerProcesses) -> None:
    demo = await peers.run(virga_command("demo"))
    assert demo.proc.returncode == 0, demo.log()
    text = "\n".join(demo.lines)
    assert "hvsock:" in text
    assert "CONNECT 1024 -> OK" in text
    assert "SHA-256 verified" in text
    assert demo.lines[-1].startswith("ok demo finished in"), text
    assert demo.stderr_text == ""


async def test_demo_json(peers: PeerProcesses) -> None:
    demo = await peers.run(virga_command("demo", "--json", "--streams", "2", "--bytes", "64K"))
    assert demo.proc.returncode == 0, demo.log()
    report = json.loads("\n".join(demo.lines))
    assert report["ok"] is True
    assert report["transport"] == "hvsock"
    assert report["address"].startswith("hvsock:")
    assert (report["streams"], report["bytes"]) == (2, 65536)
    assert [step["name"] for step in report["steps"]] == ["guest", "host", "yamux", "echo", "close"]
    assert all(step["ms"] >= 0 for step in report["steps"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["echo-client", "--streams", "2"], "--connect"),
        (["echo-client", "--connect", "bogus:x"], "unknown address scheme"),
        (["echo-client", "--connect", "unix:/x", "--streams", "0"], "at least 1"),
        (["echo-client", "--connect", "unix:/x", "--bytes", "12Q"], "byte count"),
        (["echo-client", "--connect", "unix:/x", "--protocol", "http"], "invalid choice"),
        (["serve-echo"], "--listen"),
        (["serve-echo", "--listen", "tcp:localhost:99999"], "99999"),
        (["frobnicate"], "invalid choice"),
    ],
)
async def test_bad_usage_exits_2(peers: PeerProcesses, args: list[str], needle: str) -> None:
    peer = await peers.run(virga_command(*args))
    assert_clean_failure(peer, 2, needle)


async def test_serve_echo_refuses_to_replace_a_regular_file(
    peers: PeerProcesses, sock_dir: Path
) -> None:
    path = sock_dir / "not-a-socket"
    path.write_text("keep me")
    peer = await peers.run(virga_command("serve-echo", "--listen", f"unix:{path}"))
    assert peer.proc.returncode in (1, 2), peer.log()
    assert_clean_failure(peer, peer.proc.returncode, "virga: error:", "not a socket")
    assert path.read_text() == "keep me"


async def test_echo_client_without_server_fails(peers: PeerProcesses, sock_dir: Path) -> None:
    peer = await peers.run(
        virga_command("echo-client", "--connect", f"unix:{sock_dir}/absent.sock")
    )
    assert_clean_failure(peer, 1, "virga: error:", "absent.sock")
    assert not any(line.startswith("ok ") for line in peer.lines)


async def test_protocol_mismatch_fails_cleanly(peers: PeerProcesses, sock_dir: Path) -> None:
    address = f"unix:{sock_dir}/echo.sock"
    await start_server(peers, address, "--protocol", "xtransport")
    peer = await peers.run(
        virga_command("echo-client", "--connect", address, "--timeout", "20"), within=30
    )
    assert_clean_failure(peer, 1, "virga: error:")
    assert not any(line.startswith("ok ") for line in peer.lines)
