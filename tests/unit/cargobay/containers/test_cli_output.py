"""What ``cargobay images``/``containers`` print (helpers of cargobay.cli.containers)."""

from __future__ import annotations

from typing import Any

import pytest

from cargobay.cli import containers as cli

EVENTS: list[dict[str, Any]] = [
    {"type": "status", "status": "Pulling from cbt/app", "digest": None},
    {
        "type": "layer",
        "id": "aaa",
        "status": "Already exists",
        "current": 0,
        "total": 0,
        "fraction": 1.0,
    },
    {
        "type": "layer",
        "id": "bbb",
        "status": "Downloading",
        "current": 10,
        "total": 100,
        "fraction": 0.05,
    },
    {
        "type": "layer",
        "id": "bbb",
        "status": "Downloading",
        "current": 60,
        "total": 100,
        "fraction": 0.3,
    },
    {
        "type": "layer",
        "id": "bbb",
        "status": "Pull complete",
        "current": 0,
        "total": 0,
        "fraction": 1.0,
    },
    {"type": "done", "result": {"image_id": "sha256:1", "reference": "cbt/app:1"}},
]


def test_plain_pull_progress_one_line_per_layer_status(capsys: pytest.CaptureFixture[str]) -> None:
    done = cli._show_pull(EVENTS, "cbt/app:1")  # stderr is not a terminal under pytest
    assert done == EVENTS[-1]
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if "bbb" in line] == [
        "cbt/app:1: bbb: Downloading",
        "cbt/app:1: bbb: Pull complete",
    ]
    assert "cbt/app:1: Pulling from cbt/app" in lines


def test_pull_bars(capsys: pytest.CaptureFixture[str]) -> None:
    done = cli._pull_bars(EVENTS, "cbt/app:1")
    assert done == EVENTS[-1]
    err = capsys.readouterr().err
    assert "aaa" in err
    assert "bbb" in err


def test_image_rows() -> None:
    rows = cli._image_rows(
        [
            {
                "id": "sha256:0123456789abcdef",
                "repo_tags": ["a/b:1", "a/b:2"],
                "created": 0,
                "size": 2048,
            },
            {"id": "sha256:fedcba9876543210", "repo_tags": [], "size": 5 * 1024 * 1024},
        ]
    )
    assert rows[0][:3] == ["a/b", "1", "0123456789ab"]
    assert rows[1][:3] == ["a/b", "2", "0123456789ab"]
    assert rows[2][:3] == ["<none>", "<none>", "fedcba987654"]
    assert rows[0][4] == "2.0 KiB"
    assert rows[2][4] == "5.0 MiB"


def test_ports_and_sizes() -> None:
    ports = [
        {"private": 80, "public": 8080, "ip": "127.0.0.1", "protocol": "tcp"},
        {"private": 80, "public": 8080, "ip": "127.0.0.1", "protocol": "tcp"},
        {"private": 53, "protocol": "udp"},
    ]
    assert cli._ports(ports) == "127.0.0.1:8080->80/tcp, 53/udp"
    assert cli._bytes(None) == "-"
    assert cli._bytes(512) == "512 B"
    assert cli._bytes(3 * 1024**3) == "3.0 GiB"
    assert cli._ago(0) == "-"


def test_stats_row() -> None:
    row = cli._stats_row(
        {
            "name": "web",
            "cpu_percent": 12.345,
            "memory_usage": 2 * 1024**2,
            "memory_limit": 1024**3,
            "memory_percent": 0.195,
            "net_rx": 1100,
            "net_tx": 400,
            "block_read": 0,
            "block_write": 8192,
            "pids": 3,
        }
    )
    assert row == [
        "web",
        "12.35%",
        "2.0 MiB / 1.0 GiB",
        "0.20%",
        "1.1 KiB / 400 B",
        "0 B / 8.0 KiB",
        "3",
    ]
    assert len(row) == len(cli.STATS_HEADERS)
