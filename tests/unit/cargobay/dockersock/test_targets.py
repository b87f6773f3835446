"""Which host engine addresses can be forwarded (no connection is made)."""

from __future__ import annotations

import pytest

from cargobay.dockersock.targets import HostEngine
from cargobay.errors import InvalidInput


def test_unix_and_tcp_engines() -> None:
    engine = HostEngine("unix:///var/run/docker.sock")
    assert engine.unix_path == "/var/run/docker.sock"
    assert engine.listens_on("/var/run/docker.sock")
    assert not engine.listens_on("/run/cargobay/docker-host.sock")
    assert HostEngine("unix:///run//x/../docker.sock").listens_on("/run/docker.sock")
    tcp = HostEngine("tcp://127.0.0.1:2375")
    assert tcp.unix_path is None
    assert not tcp.listens_on("/var/run/docker.sock")


@pytest.mark.parametrize(
    "url", ["ssh://user@host", "npipe:////./pipe/docker_engine", "unix://", "fd://", "tcp://"]
)
def test_engines_bytes_cannot_pass_through_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="only unix:// and tcp://"):
        HostEngine(url)


def test_tls_engines_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    with pytest.raises(InvalidInput, match="TLS"):
        HostEngine("tcp://10.0.0.5:2376")
    HostEngine("unix:///var/run/docker.sock")  # a local socket has no TLS
