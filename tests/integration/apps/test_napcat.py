"""The NapCat installer (cargobay.apps.napcat) against Debian's nginx on loopback serving a
zip built by the test: install, the same version again (no request reaches nginx), a
checksum mismatch (an error, the previous install intact), and the ``napcat`` step of a
local-mode deploy."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from cargobay.apps.downloads import DownloadProgress
from cargobay.apps.models import DeployMode, InstanceCreate, NapCatSource
from cargobay.apps.napcat import VERSION_FILE, install_napcat, installed
from cargobay.apps.service import AppService
from cargobay.errors import ChecksumMismatch
from tests.integration.apps.test_downloads import Nginx, nginx  # noqa: F401 - fixture
from tests.integration.apps.test_local_mode import repo_url, service  # noqa: F401 - fixtures


def _release(nginx: Nginx, name: str, files: dict[str, bytes]) -> str:  # noqa: F811
    """A zip holding ``files`` published as ``name``; returns its SHA-256."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    (nginx.root / name).write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _requests(nginx: Nginx, name: str) -> int:  # noqa: F811
    return nginx.access_log.read_text().count(f"GET /{name} ")


async def test_install_reinstall_and_checksum_mismatch(
    nginx: Nginx,  # noqa: F811
    tmp_path: Path,
) -> None:
    v1 = {"napcat.mjs": b"// NapCat 1 stand-in\n", "config/onebot11.json": b"{}\n"}
    sha1 = _release(nginx, "NapCat.Shell-1.zip", v1)
    target = tmp_path / "instance" / "napcat"
    source = NapCatSource(url=nginx.url("NapCat.Shell-1.zip"), sha256=sha1, version="1.0.0")
    events: list[DownloadProgress] = []

    result = await install_napcat(target, source, on_progress=events.append)
    assert result.changed
    assert result.version == "1.0.0"
    assert result.files == 2
    assert (target / "napcat.mjs").read_bytes() == v1["napcat.mjs"]
    assert (target / "config" / "onebot11.json").read_bytes() == b"{}\n"
    assert json.loads((target / VERSION_FILE).read_text())["version"] == "1.0.0"
    assert installed(target) == {"version": "1.0.0", "sha256": sha1, "url": source.url}
    assert events[-1].state == "done"
    assert _requests(nginx, "NapCat.Shell-1.zip") == 1
    assert list((tmp_path / "instance" / "downloads").iterdir()) == []  # archive not kept

    # the same version again: nothing fetched, nothing touched
    (target / "config" / "onebot11.json").write_bytes(b'{"edited": true}\n')
    again = await install_napcat(target, source)
    assert not again.changed
    assert _requests(nginx, "NapCat.Shell-1.zip") == 1
    assert (target / "config" / "onebot11.json").read_bytes() == b'{"edited": true}\n'

    # version 2 published, but the checksum given is wrong: error, version 1 stays
    _release(nginx, "NapCat.Shell-2.zip", {"napcat.mjs": b"// NapCat 2 stand-in\n"})
    bad = NapCatSource(url=nginx.url("NapCat.Shell-2.zip"), sha256="0" * 64, version="2.0.0")
    with pytest.raises(ChecksumMismatch):
        await install_napcat(target, bad)
    assert (target / "napcat.mjs").read_bytes() == v1["napcat.mjs"]
    assert (target / "config" / "onebot11.json").read_bytes() == b'{"edited": true}\n'
    assert installed(target) == {"version": "1.0.0", "sha256": sha1, "url": source.url}
    assert sorted(p.name for p in target.parent.iterdir()) == ["downloads", "napcat"]

    # and with the right checksum, version 2 replaces version 1 as a whole
    good = bad.model_copy(update={"sha256": hashlib.sha256(
        (nginx.root / "NapCat.Shell-2.zip").read_bytes()).hexdigest()})  # fmt: skip
    upgraded = await install_napcat(target, good)
    assert upgraded.changed
    assert upgraded.version == "2.0.0"
    assert (target / "napcat.mjs").read_bytes() == b"// NapCat 2 stand-in\n"
    assert not (target / "config").exists()
    assert installed(target)["version"] == "2.0.0"  # type: ignore[index]


def test_napcat_source_is_validated() -> None:
    with pytest.raises(ValidationError, match="sha256"):
        NapCatSource(url="http://127.0.0.1/x.zip", sha256="abc", version="1")
    with pytest.raises(ValidationError, match="http"):
        NapCatSource(url="ftp://127.0.0.1/x.zip", sha256="a" * 64, version="1")
    with pytest.raises(ValidationError, match="version"):
        NapCatSource(url="http://127.0.0.1/x.zip", sha256="a" * 64, version="../1")
    with pytest.raises(ValidationError, match="only for deploy_mode local"):
        InstanceCreate(
            name="dock",
            napcat=NapCatSource(url="http://127.0.0.1/x.zip", sha256="a" * 64, version="1"),
        )


async def test_local_deploy_installs_napcat_with_progress(
    service: AppService,  # noqa: F811
    repo_url: str,  # noqa: F811
    nginx: Nginx,  # noqa: F811
) -> None:
    sha = _release(nginx, "NapCat.Shell-deploy.zip", {"napcat.mjs": b"x" * 200_000})
    source = NapCatSource(url=nginx.url("NapCat.Shell-deploy.zip"), sha256=sha, version="4.1")
    service.create(
        InstanceCreate(
            name="withnc", deploy_mode=DeployMode.LOCAL, repo_url=repo_url, napcat=source
        )
    )
    task = service.deploy("withnc")
    events = [e async for e in service.tasks.follow(task.id)]
    assert events[-1].type == "done", [e.message for e in events]
    assert [e.step for e in events if e.type == "step"][-1] == "napcat"
    assert any(e.type == "progress" and e.step == "napcat" for e in events)
    instance = service.get("withnc")
    napcat_dir = Path(instance.paths["napcat"])
    assert (napcat_dir / "napcat.mjs").stat().st_size == 200_000
    assert installed(napcat_dir)["version"] == "4.1"  # type: ignore[index]

    final = await service.tasks.wait(service.deploy("withnc").id)
    assert final.state == "succeeded", final.error
    assert "NapCat 4.1 already installed" in final.log
    assert _requests(nginx, "NapCat.Shell-deploy.zip") == 1
