"""Loading an application for ``deploy``: directories, archives, manifests, escapes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from cargobay.errors import InvalidInput
from cargobay.machines.deploy import load_app, pack, tail_command


def make_tar(path: Path, members: dict[str, bytes], link: tuple[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            archive.addfile(info)
    return path


def test_directory_with_manifest(tmp_path: Path) -> None:
    app = tmp_path / "web"
    app.mkdir()
    (app / "cargobay-app.yaml").write_text("name: site\ncommand: python3 -m http.server\n")
    (app / "index.html").write_text("hi")
    loaded = load_app(app, None, tmp_path)
    assert (loaded.name, loaded.command, loaded.root) == ("site", "python3 -m http.server", app)
    assert load_app(app, "true", tmp_path).command == "true"  # --command wins
    with tarfile.open(fileobj=io.BytesIO(pack(app))) as archive:
        assert sorted(archive.getnames()) == ["cargobay-app.yaml", "index.html"]


def test_archive_is_unpacked_and_named_after_its_file(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "bot.tar.gz", {"run.sh": b"echo hi\n"})
    work = tmp_path / "work"
    work.mkdir()
    loaded = load_app(archive, "sh run.sh", work)
    assert loaded.name == "bot"
    assert (loaded.root / "run.sh").read_bytes() == b"echo hi\n"


@pytest.mark.parametrize(
    ("members", "link"),
    [({"../evil": b"x"}, None), ({}, ("out", "/etc/passwd")), ({}, ("out", "../../x"))],
)
def test_archive_escapes_are_refused(
    tmp_path: Path, members: dict[str, bytes], link: tuple[str, str] | None
) -> None:
    archive = make_tar(tmp_path / "bad.tar", members, link)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InvalidInput, match="cannot unpack"):
        load_app(archive, "true", work)
    assert not (tmp_path / "evil").exists()


def test_absolute_member_names_land_inside_the_target(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "abs.tar", {"/etc/cb-test-evil": b"x"})
    work = tmp_path / "work"
    work.mkdir()
    loaded = load_app(archive, "true", work)
    assert (loaded.root / "etc" / "cb-test-evil").read_bytes() == b"x"
    assert not Path("/etc/cb-test-evil").exists()


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no application"):
        load_app(tmp_path / "missing", "true", tmp_path)
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(InvalidInput, match="neither a directory"):
        load_app(tmp_path / "plain.txt", "true", tmp_path)
    app = tmp_path / "a"
    app.mkdir()
    with pytest.raises(InvalidInput, match="no command"):
        load_app(app, None, tmp_path)
    (app / "cargobay-app.yaml").write_text("name: ../x\ncommand: 'true'\n")
    with pytest.raises(InvalidInput, match="bad application name"):
        load_app(app, None, tmp_path)


def test_tail_command() -> None:
    assert tail_command(["a"], 5, False) == ["tail", "-n", "5", "/root/apps/a.log"]
    assert tail_command(["a", "b"], None, True)[:4] == ["tail", "-n", "+1", "-F"]
