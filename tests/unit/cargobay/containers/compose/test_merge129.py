"""docker-compose 1.29's merge of several files, replayed for the config hash."""

from __future__ import annotations

from pathlib import Path

from cargobay.containers.compose.loader import load_project
from cargobay.containers.compose.merge129 import merge_files, merge_service


def test_single_file_is_left_alone() -> None:
    files = [{"a": {"image": "x", "x-note": 1, "cap_add": ["B", "A"]}}]
    assert merge_files(files) == {"a": {"image": "x", "x-note": 1, "cap_add": ["B", "A"]}}


def test_merge_normalizes_like_compose_129() -> None:
    base = {
        "image": "x",
        "environment": ["A=1", "B"],
        "labels": ["l=1"],
        "cap_add": ["SYS_TIME", "NET_ADMIN"],
        "volumes": ["/z:/zz", "/a:/aa"],
        "ports": ["8080:80", {"target": 90}],
        "extra_hosts": ["h:10.0.0.1"],
        "depends_on": ["db"],
        "networks": {"n": {"aliases": ["b"], "ipv4_address": "10.1.0.5", "mac_address": "m"}},
        "dns": "8.8.8.8",
        "x-note": "dropped",
        "pull_policy": "never",
        "deploy": {"replicas": 1, "resources": {"limits": {"memory": "1M"}}},
    }
    override = {
        "environment": {"B": "2"},
        "cap_add": ["CHOWN", "NET_ADMIN"],
        "volumes": ["/b:/aa:ro"],
        "ports": [{"target": 80, "published": 8080}],
        "networks": {"n": {"aliases": ["a"]}},
        "dns": ["1.1.1.1"],
        "deploy": {"resources": {"limits": {"cpus": 0.5}}},
    }
    merged = merge_service(base, override)
    assert merged["environment"] == {"A": "1", "B": "2"}
    assert merged["labels"] == {"l": "1"}
    assert merged["cap_add"] == ["CHOWN", "NET_ADMIN", "SYS_TIME"]
    assert merged["volumes"] == ["/b:/aa:ro", "/z:/zz"]
    assert merged["ports"] == [(80, 8080, None, None, None), (90, None, None, None, None)]
    assert merged["extra_hosts"] == {"h": "10.0.0.1"}
    assert merged["depends_on"] == {"db": {"condition": "service_started"}}
    assert merged["networks"] == {"n": {"aliases": ["a", "b"], "ipv4_address": "10.1.0.5"}}
    assert merged["dns"] == ["8.8.8.8", "1.1.1.1"]
    assert "x-note" not in merged
    assert "pull_policy" not in merged
    assert merged["deploy"] == {"replicas": 1,
                                "resources": {"limits": {"memory": "1M", "cpus": 0.5}}}  # fmt: skip


def test_loader_hashes_the_129_merge_of_an_override(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  a:\n    image: x\n    cap_add: [B, A]\n    x-note: 1\n"
    )
    (tmp_path / "docker-compose.override.yml").write_text("services:\n  a:\n    tty: true\n")
    loaded = load_project(working_dir=tmp_path, env={})
    assert loaded.raw_services["a"] == {"image": "x", "cap_add": ["A", "B"], "tty": True}
    assert loaded.project.services["a"].cap_add == ["B", "A"]  # the engine keeps the order
