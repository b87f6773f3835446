"""``extends``: in the same file or another one, nested, with paths rebased, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.containers.compose.hashing import compose129_config_dict
from cargobay.containers.compose.loader import load_project
from cargobay.errors import ComposeFileError

BASE = """
services:
  base:
    image: busybox
    environment: [FROM_BASE=1, SHARED=base]
    volumes: ["./data:/data"]
    build: ./ctx
    cap_add: [SYS_TIME]
    ports: ["9000:90"]
  mid:
    extends: base
    environment: {MID: "1"}
"""

MAIN = """
services:
  local:
    image: busybox
    command: ["sleep", "1"]
    labels: {l: "1"}
  web:
    extends: {file: common/base.yml, service: mid}
    environment: [SHARED=web]
    ports: ["8080:80"]
    cap_add: [NET_ADMIN]
  web2:
    extends: local
    command: ["sleep", "2"]
"""


def write(tmp_path: Path, main: str = MAIN, base: str = BASE) -> None:
    (tmp_path / "common").mkdir(exist_ok=True)
    (tmp_path / "common" / "base.yml").write_text(base)
    (tmp_path / "docker-compose.yml").write_text(main)


def test_extends_other_file_and_same_file(tmp_path: Path) -> None:
    write(tmp_path)
    loaded = load_project(working_dir=tmp_path, env={}, project_name="p")
    web = loaded.project.services["web"]
    assert web.extends is None
    assert web.environment == {"FROM_BASE": "1", "SHARED": "web", "MID": "1"}
    assert [(v.source, v.target) for v in web.volumes] == [(str(tmp_path / "common/data"),
                                                            "/data")]  # fmt: skip
    assert web.build is not None
    assert web.build.context == str(tmp_path / "common" / "ctx")
    assert web.cap_add == ["SYS_TIME", "NET_ADMIN"]
    assert [p.target for p in web.ports] == [90, 80]
    web2 = loaded.project.services["web2"]
    assert (web2.image, web2.command, web2.labels) == ("busybox", ["sleep", "2"], {"l": "1"})
    # the hash sees 1.29's merge: sorted cap_add, the base's ports parsed, no extends key
    options = compose129_config_dict(loaded.project, "web", loaded.raw_services["web"], {}, None)[
        "options"
    ]
    assert options["cap_add"] == ["NET_ADMIN", "SYS_TIME"]
    assert "extends" not in options


@pytest.mark.parametrize(
    ("main", "base", "words"),
    [
        ("services:\n  a: {extends: nope, image: x}\n", BASE, "does not define"),
        ("services:\n  a: {extends: b}\n  b: {extends: a}\n", BASE, "circular extends"),
        ("services:\n  a: {extends: {file: common/base.yml, service: dep}}\n",
         "services:\n  dep: {image: x, depends_on: [other]}\n  other: {image: x}\n",
         "'depends_on' cannot be extended"),
        ("services:\n  a: {extends: {file: missing.yml, service: b}}\n", BASE, "cannot read"),
        ("services:\n  a: {extends: {service: b, flie: x}}\n  b: {image: x}\n", BASE,
         "unknown key 'flie'"),
    ],
)  # fmt: skip
def test_extends_errors(tmp_path: Path, main: str, base: str, words: str) -> None:
    write(tmp_path, main, base)
    with pytest.raises(ComposeFileError) as info:
        load_project(working_dir=tmp_path, env={})
    assert words in str(info.value)
    assert info.value.service == "a" or "circular" in words
    assert info.value.key == "extends"
