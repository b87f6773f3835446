"""Short and long syntax of ports and volumes, durations and byte sizes."""

from __future__ import annotations

import pytest

from cargobay.containers.compose.values import (
    format_duration,
    parse_bytes,
    parse_duration,
    parse_port,
    parse_volume,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("1.5s", 1.5), ("2h", 7200), (3, 3),
     ("1h2m3s", 3723), ("250us", 0.00025), ("7", 7)],
)  # fmt: skip
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10x", "s", "1m30", "-1s", "ten"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0, 0.5, 10, 90, 3723):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 * 2**20), ("1g", 2**30), ("100kb", 102400), ("1GiB", 2**30), (1024, 1024),
     ("2048", 2048), ("1.5k", 1536)],
)  # fmt: skip
def test_bytes(text: str | int, size: int) -> None:
    assert parse_bytes(text) == size


def test_bad_bytes() -> None:
    with pytest.raises(ValueError, match="byte size"):
        parse_bytes("lots")


def _short(spec: str | int) -> list[tuple[object, ...]]:
    return [(p["host_ip"], p["published"], p["target"], p["protocol"]) for p in parse_port(spec)]


def test_ports_short_syntax() -> None:
    assert _short(80) == [(None, None, 80, "tcp")]
    assert _short("8080:80") == [(None, "8080", 80, "tcp")]
    assert _short("127.0.0.1:8080:80/udp") == [("127.0.0.1", "8080", 80, "udp")]
    assert _short("127.0.0.1::80") == [("127.0.0.1", None, 80, "tcp")]
    assert _short("[::1]:53:53/udp") == [("::1", "53", 53, "udp")]
    assert _short("9000-9001:90-91") == [(None, "9000", 90, "tcp"), (None, "9001", 91, "tcp")]
    assert _short("6000-6010:6000") == [(None, "6000-6010", 6000, "tcp")]
    assert _short("3000-3001") == [(None, None, 3000, "tcp"), (None, None, 3001, "tcp")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("80:70000", "out of range"), ("1-3:1-2", "do not match"), ("abc", "not a port mapping"),
     ("90-80", "ends before"), (True, "not a port")],
)  # fmt: skip
def test_bad_ports(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port(spec)


def test_ports_long_syntax() -> None:
    [port] = parse_port({"target": 80, "published": 8080, "host_ip": "127.0.0.1"})
    assert port == {"target": 80, "published": "8080", "host_ip": "127.0.0.1",
                    "protocol": "tcp", "mode": "ingress"}  # fmt: skip
    with pytest.raises(ValueError, match="published port"):
        parse_port({"target": 80, "published": "x"})


def test_volumes_short_syntax() -> None:
    assert parse_volume("/data") == {"type": "volume", "source": None, "target": "/data",
                                     "read_only": False}  # fmt: skip
    named = parse_volume("db:/var/lib/db:ro")
    assert (named["type"], named["source"], named["read_only"]) == ("volume", "db", True)
    bind = parse_volume("./src:/src:rw,z")
    assert (bind["type"], bind["source"], bind["bind"]["selinux"]) == ("bind", "./src", "z")
    assert parse_volume("~/x:/x")["type"] == "bind"
    assert parse_volume("/abs:/in")["type"] == "bind"
    assert parse_volume("db:/v:nocopy")["volume"] == {"nocopy": True}


@pytest.mark.parametrize(
    ("spec", "message"),
    [("a:b:c:d", "not a volume"), ("db:relative", "not absolute"), ("db:/x:bogus", "unknown"),
     ({"type": "bind", "target": "/x"}, "needs a 'source'"), ({"type": "nfs", "target": "/x"},
     "not one of"), ({"type": "tmpfs", "source": "a", "target": "/x"}, "cannot have"),
     ({"type": "volume"}, "needs a 'target'"), (5, "not a volume")],
)  # fmt: skip
def test_bad_volumes(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_volume(spec)
