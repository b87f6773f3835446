"""Instance CRUD in the SQLite store and the import of an older launcher database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from cargobay.apps.legacy import import_legacy, legacy_name
from cargobay.apps.models import DeployMode, Instance, InstanceCreate, StackConfig
from cargobay.apps.store import AppStore
from cargobay.errors import AppConflict, AppInputError, AppNotFound
from cargobay.store.sqlite import Store

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "legacy_launcher.sql"


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[AppStore]:
    store = Store.open(tmp_path / "state.db")
    yield AppStore(store)
    store.close()


@pytest.fixture
def legacy_db(tmp_path: Path) -> Path:
    path = tmp_path / "old" / "launcher.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE.read_text(encoding="utf-8"))
    conn.close()
    return path


def test_crud_and_name_clash(apps: AppStore) -> None:
    first = apps.insert(Instance(name="bot1", deploy_mode=DeployMode.DOCKER))
    assert apps.get("bot1").id == first.id
    assert apps.get(first.id).name == "bot1"
    with pytest.raises(AppConflict, match="'bot1'"):
        apps.insert(Instance(name="bot1", deploy_mode=DeployMode.LOCAL))
    changed = apps.save(first.model_copy(update={"version": "0.8.0"}))
    assert apps.get("bot1").version == "0.8.0"
    assert changed.updated_at >= first.updated_at
    assert [i.name for i in apps.list()] == ["bot1"]
    assert apps.delete(first.id)
    with pytest.raises(AppNotFound, match="'bot1'"):
        apps.get("bot1")


def test_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="name"):
        InstanceCreate(name="Bad Name")
    with pytest.raises(ValidationError, match="wsl_distro"):
        InstanceCreate(name="w", deploy_mode=DeployMode.WSL2_DOCKER)
    with pytest.raises(ValidationError, match="repo_url"):
        InstanceCreate(name="l", deploy_mode=DeployMode.LOCAL, repo_url="not a url")
    with pytest.raises(ValidationError, match="napcat_port 18001 is also webui_port"):
        StackConfig(napcat_port=18001)


def test_legacy_name() -> None:
    assert legacy_name("Old Bot", "x", lambda n: False) == "old-bot"
    assert legacy_name("麦麦主号", "x", lambda n: False).startswith("legacy-")
    assert legacy_name("bot", "x", lambda n: n == "bot") == "bot-2"


def test_legacy_import_loses_nothing_and_runs_once(apps: AppStore, legacy_db: Path) -> None:
    apps.insert(Instance(name="test-bot", deploy_mode=DeployMode.DOCKER))  # a clash to rename
    before = legacy_db.read_bytes()
    report = import_legacy(apps, legacy_db)

    assert legacy_db.read_bytes() == before  # the old file is untouched
    backup = Path(report["backup"])
    with sqlite3.connect(backup) as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 3
    # every row of every table is accounted for
    src = sqlite3.connect(legacy_db)
    tables = [
        r[0]
        for r in src.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in tables:
        n = src.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
        assert report["tables"][table] == n
        assert sum(report["accounted"][table].values()) == n
    src.close()
    imported = {i.legacy["name"]: i for i in apps.list() if i.legacy}
    assert set(imported) == {"麦麦主号", "test-bot", "Old Bot"}
    assert all(i.deploy_mode is DeployMode.LOCAL for i in imported.values())
    main = imported["麦麦主号"]
    assert main.paths["app"] == "D:\\MaiBot\\instances\\main"
    assert main.ports == {"maibot": 8000, "napcat-adapter": 8095, "napcat": 6099}
    assert len(main.legacy["services"]) == 3
    assert len(main.legacy["deployments"]) == 1
    assert main.legacy["token"] == "tok-aaa"
    assert main.legacy["status"] == "running"
    assert imported["test-bot"].name == "test-bot-2"  # the existing one kept its name
    assert imported["Old Bot"].name == "old-bot"
    assert str(imported["Old Bot"].created_at).startswith("2024-12-24 23:59:59")
    # the deployment whose instance was deleted long ago is kept in the report
    assert [r["id"] for r in report["unattached"]["deployments"]] == ["d-3"]
    assert report["unattached"]["alembic_version"][0]["version_num"] == "4b1c2d3e5f60"

    again = import_legacy(apps, legacy_db)
    assert again["already_imported"] is True
    assert again["backup"] == report["backup"]
    assert len(apps.list()) == 4


def test_legacy_import_of_a_foreign_file(apps: AppStore, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(AppInputError, match="no instances table"):
        import_legacy(apps, other)
    assert apps.list() == []
    assert not list(tmp_path.glob("*.bak"))
