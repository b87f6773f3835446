"""``cargobay compose`` through a real cargobayd (CLI and SDK): the CLI's environment
drives interpolation, progress and --json output, typed errors and exit codes."""

from __future__ import annotations

import json
import socket

import pytest
import yaml

from cargobay.errors import ComposeError, ComposeFileError
from cargobay.paths import Paths
from cargobay.sdk import AsyncCargoBayClient, CargoBayClient
from cargobay.sdk.compose import AsyncComposeClient, ComposeClient, ProjectSpec
from tests.integration.containers.conftest import CargoBayd

from .conftest import StackFactory

pytestmark = pytest.mark.integration

STACK = """
services:
  app:
    image: BUSYBOX
    command: ["sh", "-c", "echo started-${GREETING:?say hello}; exec sleep 300"]
    stop_signal: SIGKILL
    depends_on: [side]
  side:
    image: BUSYBOX
    command: ["sleep", "300"]
    stop_signal: SIGKILL
    container_name: ${SIDE_NAME:-side}
"""


def test_cli(cargobayd: CargoBayd, stack: StackFactory) -> None:
    s = stack(STACK)
    file = str(s.directory / "docker-compose.yml")
    env = {"GREETING": "hi", "SIDE_NAME": f"{s.name}-side"}

    def cli(*args: str) -> tuple[int, str, str]:
        result = cargobayd.cli("compose", "-f", file, "-p", s.name, *args, env=env)
        return result.returncode, result.stdout, result.stderr

    code, out, err = cli("config", "--json")
    assert code == 0, err
    config = json.loads(out)
    assert config["name"] == s.name
    assert config["services"]["app"]["command"][2].startswith("echo started-hi;")
    assert config["services"]["side"]["container_name"] == f"{s.name}-side"

    code, out, err = cli("up", "-d", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["type"] == "done"
    assert events[-1]["changed"] is True
    assert {"type": "progress", "resource": "container", "name": f"{s.name}_app_1",
            "status": "Started", "service": "app"} in events  # fmt: skip

    code, out, err = cli("up", "-d")
    assert code == 0, err
    assert "is up to date" in err

    code, out, err = cli("ps", "--json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert set(rows) == {f"{s.name}_app_1", f"{s.name}-side"}
    assert {row["state"] for row in rows.values()} == {"running"}
    code, out, err = cli("ps")
    assert f"{s.name}_app_1" in out

    code, out, err = cli("logs", "app")
    assert code == 0, err
    assert f"{s.name}_app_1  | started-hi" in out

    code, out, err = cli("export", "--swarm")
    assert code == 0, err
    assert yaml.safe_load(out)["services"]["app"]["deploy"]["replicas"] == 1
    assert "container_name" in err
    code, out, err = cli("export", "--kubernetes")
    assert [d["kind"] for d in yaml.safe_load_all(out)] == ["Deployment", "Deployment"]

    code, out, err = cli("stop")
    assert code == 0, err
    code, out, err = cli("start")
    assert code == 0, err
    code, out, err = cli("restart", "app")
    assert code == 0, err

    code, out, err = cli("down", "-v")
    assert code == 0, err
    code, out, err = cli("ps", "--json")
    assert json.loads(out) == []

    # the caller's environment, not the daemon's: without GREETING the file is invalid
    bad = cargobayd.cli("compose", "-f", file, "-p", s.name, "config")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ")
    assert "service 'app'" in bad.stderr
    assert "say hello" in bad.stderr
    (s.directory / "bad.yml").write_text("services:\n  web:\n    imagee: x\n")
    bad = cargobayd.cli("compose", "-f", str(s.directory / "bad.yml"), "ps")
    assert bad.returncode == 2
    assert "bad.yml: service 'web': key 'imagee': unknown key" in bad.stderr


async def test_sdk(cargobayd: CargoBayd, stack: StackFactory) -> None:
    paths = Paths.from_env({"CARGOBAY_HOME": str(cargobayd.home)})
    s = stack(STACK)
    spec = ProjectSpec.here(
        ["docker-compose.yml"],
        working_dir=s.directory,
        project_name=s.name,
        env={"GREETING": "x", "SIDE_NAME": f"{s.name}-side"},
    )
    with CargoBayClient(paths=paths) as client:
        with pytest.raises(ComposeFileError) as info:
            ComposeClient(client, ProjectSpec.here(["nope.yml"], working_dir=s.directory)).ps()
        assert "nope.yml: no such file" in str(info.value)

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        (s.directory / "docker-compose.override.yml").write_text(
            f"services:\n  app:\n    ports: ['127.0.0.1:{port}:80']\n"
        )
        spec = ProjectSpec.here(
            ["docker-compose.yml", "docker-compose.override.yml"],
            working_dir=s.directory,
            project_name=s.name,
            env=dict(spec.env),
        )
        async with AsyncCargoBayClient(paths=paths) as client:
            compose = AsyncComposeClient(client, spec)
            seen: list[dict[str, object]] = []

            async def up() -> None:
                async for event in compose.up():
                    seen.append(event)

            with pytest.raises(ComposeError) as failed:
                await up()
            assert "service 'app'" in str(failed.value)
            assert any(e.get("status") == "Started" for e in seen)  # side ran, then rolled back
            assert await compose.ps() == []
