"""``cargobay app ...`` through a real cargobayd, on the stand-in MaiBot stack: create,
a name clash, deploy with progress, status, logs, compose, stop, rm; the legacy import."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path

from tests.integration.apps.conftest import free_port
from tests.integration.containers.conftest import CargoBayd

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "legacy_launcher.sql"


def _ok(result: object) -> None:
    assert getattr(result, "returncode", 1) == 0, (
        f"{getattr(result, 'args', '')}: {getattr(result, 'stderr', '')}"
    )


def test_app_cli_docker_lifecycle(cargobayd: CargoBayd, maibot_standins: dict[str, str]) -> None:
    webui = free_port()
    sets = [f"--set={k}={v}" for k, v in maibot_standins.items()]
    sets += [f"--set=webui_port={webui}", "--set=napcat_port=none", "--set=bind_address=127.0.0.1"]
    created = cargobayd.cli("app", "create", "cli-bot", "--json", *sets)
    _ok(created)
    assert json.loads(created.stdout)["stack"]["webui_port"] == webui

    clash = cargobayd.cli("app", "create", "cli-bot", *sets)
    assert clash.returncode == 4, clash.stderr
    assert "'cli-bot' already exists" in clash.stderr
    bad = cargobayd.cli("app", "create", "Bad Name")
    assert bad.returncode == 2
    assert "'name'" in bad.stderr

    deployed = cargobayd.cli("app", "deploy", "cli-bot")
    _ok(deployed)
    assert "cli-bot: 3 container(s), running" in deployed.stderr
    assert "containers" in deployed.stderr  # the progress lines name the steps

    with urllib.request.urlopen(f"http://127.0.0.1:{webui}/", timeout=5) as reply:
        assert reply.read().decode().startswith("role=core")

    status = cargobayd.cli("app", "status", "cli-bot", "--json")
    _ok(status)
    doc = json.loads(status.stdout)
    assert doc["instance"]["status"] == "running"
    assert sorted(c["service"] for c in doc["containers"]) == ["adapters", "core", "napcat"]

    listing = cargobayd.cli("app", "ls")
    _ok(listing)
    assert "cli-bot" in listing.stdout
    assert "running" in listing.stdout

    logs = cargobayd.cli("app", "logs", "cli-bot", "--service", "adapters")
    _ok(logs)
    assert "adapters | stand-in adapter listening on 8095" in logs.stdout

    compose = cargobayd.cli("app", "compose", "cli-bot")
    _ok(compose)
    assert "cargobay-test/maibot-standin:1" in compose.stdout

    edited = cargobayd.cli("app", "config", "cli-bot", "bot", "--set", "bot.nickname=cli-mai")
    _ok(edited)
    assert "restarted core" in edited.stderr
    shown = cargobayd.cli("app", "config", "cli-bot", "bot", "--json")
    assert json.loads(shown.stdout)["values"]["bot"]["nickname"] == "cli-mai"
    refused = cargobayd.cli("app", "config", "cli-bot", "bot", "--set", "nosuch.key=1")
    assert refused.returncode == 2, refused.stderr
    assert "nosuch" in refused.stderr

    secret = "sk-test-" + "0123456789abcdef"
    saved = cargobayd.cli(
        "app",
        "provider",
        "set",
        "cli-bot",
        "DeepSeek",
        "--base-url",
        "http://127.0.0.1:9/v1",
        env={"CARGOBAY_API_KEY": secret},
    )
    _ok(saved)
    providers = cargobayd.cli("app", "provider", "ls", "cli-bot", "--json")
    _ok(providers)
    assert secret not in providers.stdout + saved.stderr
    assert json.loads(providers.stdout)[0]["api_key"].endswith("cdef")
    model = json.loads(cargobayd.cli("app", "config", "cli-bot", "model", "--json").stdout)
    assert model["values"]["api_providers"][0]["name"] == "DeepSeek"
    assert secret not in json.dumps(model)

    backed = cargobayd.cli("app", "backup", "cli-bot", "--json")
    _ok(backed)
    archive = json.loads(backed.stdout)["archive"]
    _ok(cargobayd.cli("app", "restore", archive, "cli-copy"))
    copy = json.loads(cargobayd.cli("app", "config", "cli-copy", "bot", "--json").stdout)
    assert copy["values"]["bot"]["nickname"] == "cli-mai"
    _ok(cargobayd.cli("app", "rm", "cli-copy"))

    stopped = cargobayd.cli("app", "stop", "cli-bot", "--json")
    _ok(stopped)
    assert json.loads(stopped.stdout)["status"] == "stopped"

    _ok(cargobayd.cli("app", "rm", "cli-bot"))
    gone = cargobayd.cli("app", "show", "cli-bot")
    assert gone.returncode == 3


def test_app_cli_import_legacy(cargobayd: CargoBayd, tmp_path: Path) -> None:
    db = tmp_path / "launcher.db"
    conn = sqlite3.connect(db)
    conn.executescript(FIXTURE.read_text(encoding="utf-8"))
    conn.close()
    first = cargobayd.cli("app", "import-legacy", str(db), "--json")
    _ok(first)
    report = json.loads(first.stdout)
    assert report["tables"] == {
        "alembic_version": 1,
        "instances": 3,
        "services": 5,
        "deployments": 3,
    }
    assert Path(report["backup"]).is_file()
    second = cargobayd.cli("app", "import-legacy", str(db))
    _ok(second)
    assert "already imported" in second.stderr
    listing = json.loads(cargobayd.cli("app", "ls", "--json").stdout)
    modes = {i["name"]: i["deploy_mode"] for i in listing}
    assert modes["old-bot"] == "local"
    assert modes["test-bot"] == "local"
    for name in report["imported"]:
        _ok(cargobayd.cli("app", "rm", name, "--keep-data"))


def test_a_task_can_be_followed_from_any_point(cargobayd: CargoBayd) -> None:
    """A deploy started in the background, followed later (and again from event 2): a
    bad repository URL ends the task with an error event the SDK raises."""
    import pytest

    from cargobay.errors import AppDeployError
    from cargobay.paths import Paths
    from cargobay.sdk import CargoBayClient
    from cargobay.sdk.apps import AppsClient

    with CargoBayClient(paths=Paths.from_env({"CARGOBAY_HOME": str(cargobayd.home)})) as client:
        apps = AppsClient(client)
        apps.create(
            {
                "name": "follow-me",
                "deploy_mode": "local",
                "repo_url": "http://127.0.0.1:9/nothing.git",
            }
        )
        task = apps.deploy_background("follow-me")
        seen: list[dict[str, object]] = []

        def collect(into: list[dict[str, object]], since: int) -> None:
            into.extend(apps.follow("follow-me", task["id"], since=since))

        with pytest.raises(AppDeployError, match=r"127\.0\.0\.1:9"):
            collect(seen, 0)
        assert seen[0]["type"] == "step"
        assert seen[0]["step"] == "clone"
        later: list[dict[str, object]] = []
        with pytest.raises(AppDeployError):
            collect(later, 1)
        assert [e["seq"] for e in later] == [e["seq"] for e in seen[1:]]
        assert apps.task("follow-me", task["id"])["state"] == "failed"
        assert apps.get("follow-me")["status"] == "error"  # a failed deploy: error
        apps.delete("follow-me")
