"""Plugin discovery through real ``importlib.metadata`` entry points: each test writes a
``*.dist-info`` (METADATA + entry_points.txt) and a module into a temporary directory on
``sys.path``, then loads the group with :class:`PluginManager`."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from cargobay.paths import Paths
from cargobay.plugins import PluginContext, PluginManager, PluginState

GOOD = """
import json, pathlib

class Recorder:
    name = "recorder"
    version = "1.2.3"

    def initialize(self, context):
        self.out = pathlib.Path(OUT)
        self.out.write_text(json.dumps(["init", context.daemon_version]) + "\\n")

    async def on_vm_start(self, vm):
        with self.out.open("a") as f:
            f.write(json.dumps(["start", vm.name]) + "\\n")

    def on_vm_stop(self, vm):
        with self.out.open("a") as f:
            f.write(json.dumps(["stop", vm.name]) + "\\n")
"""

BAD_INIT = """
class BadInit:
    name = "bad-init"
    version = "0"
    def initialize(self, context):
        raise RuntimeError("no config for bad-init")
    def on_vm_start(self, vm): pass
    def on_vm_stop(self, vm): pass
"""

BAD_HOOK = """
import time

class BadHook:
    name = "bad-hook"
    version = "0"
    def initialize(self, context): pass
    def on_vm_start(self, vm):
        raise ValueError("start hook broke")
    async def on_vm_stop(self, vm):
        import asyncio
        await asyncio.sleep(60)
"""

NOT_A_PLUGIN = """
thing = object()
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    """A directory on sys.path, a unique entry-point group and module prefix."""
    root = tmp_path / "site"
    root.mkdir()
    group = f"cargobay.test_plugins_{uuid.uuid4().hex[:8]}"
    prefix = f"cbplug_{uuid.uuid4().hex[:8]}_"
    sys.path.insert(0, str(root))
    try:
        yield root, group, prefix
    finally:
        sys.path.remove(str(root))
        for mod in [m for m in sys.modules if m.startswith(prefix)]:
            del sys.modules[mod]


def install(root: Path, dist: str, group: str, entries: dict[str, str]) -> None:
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{group}]"] + [f"{name} = {value}" for name, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def context_for(tmp_path: Path) -> object:
    def make(name: str) -> PluginContext:
        return PluginContext(
            paths=Paths(tmp_path, tmp_path, tmp_path, tmp_path),
            logger=logging.getLogger(f"cargobay.plugins.{name}"),
            daemon_version="9.9.9",
        )

    return make


async def test_good_plugin_loads_and_its_hooks_run(site, tmp_path: Path) -> None:
    root, group, prefix = site
    out = tmp_path / "events.jsonl"
    (root / f"{prefix}good.py").write_text(f"OUT = {str(out)!r}\n" + GOOD)
    install(root, "good-plugin", group, {"rec": f"{prefix}good:Recorder"})

    manager = PluginManager(group=group, timeout=5)
    infos = await manager.load(context_for(tmp_path))  # type: ignore[arg-type]

    assert [(i.entry_point, i.name, i.version, i.state) for i in infos] == [
        ("rec", "recorder", "1.2.3", PluginState.ACTIVE)
    ]
    assert infos[0].distribution == "good-plugin"
    await manager.vm_started(SimpleNamespace(name="vm1"))
    await manager.vm_stopped(SimpleNamespace(name="vm1"))
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events == [["init", "9.9.9"], ["start", "vm1"], ["stop", "vm1"]]


async def test_broken_plugins_are_recorded_and_the_good_one_still_runs(
    site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, group, prefix = site
    out = tmp_path / "events.jsonl"
    (root / f"{prefix}good.py").write_text(f"OUT = {str(out)!r}\n" + GOOD)
    (root / f"{prefix}broken.py").write_text("import cargobay_no_such_module_xyz\n")
    (root / f"{prefix}badinit.py").write_text(BAD_INIT)
    (root / f"{prefix}notplugin.py").write_text(NOT_A_PLUGIN)
    install(
        root,
        "mixed-plugins",
        group,
        {
            "a-broken": f"{prefix}broken:Plugin",
            "b-badinit": f"{prefix}badinit:BadInit",
            "c-notplugin": f"{prefix}notplugin:thing",
            "d-good": f"{prefix}good:Recorder",
        },
    )

    manager = PluginManager(group=group, timeout=5)
    with caplog.at_level(logging.WARNING):
        infos = {i.entry_point: i for i in await manager.load(context_for(tmp_path))}  # type: ignore[arg-type]

    assert infos["a-broken"].state is PluginState.FAILED
    assert "cargobay_no_such_module_xyz" in (infos["a-broken"].error or "")
    assert infos["b-badinit"].state is PluginState.FAILED
    assert infos["b-badinit"].name == "bad-init"
    assert "no config for bad-init" in (infos["b-badinit"].error or "")
    assert infos["c-notplugin"].state is PluginState.FAILED
    assert "lacks name, version, initialize" in (infos["c-notplugin"].error or "")
    assert infos["d-good"].state is PluginState.ACTIVE
    assert "plugin bad-init" in caplog.text
    assert "no config for bad-init" in caplog.text

    await manager.vm_started(SimpleNamespace(name="vm2"))
    assert json.loads(out.read_text().splitlines()[-1]) == ["start", "vm2"]


async def test_a_raising_or_hanging_hook_is_recorded_and_never_raises(
    site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, group, prefix = site
    (root / f"{prefix}badhook.py").write_text(BAD_HOOK)
    install(root, "bad-hook", group, {"bh": f"{prefix}badhook:BadHook"})

    manager = PluginManager(group=group, timeout=0.2)
    await manager.load(context_for(tmp_path))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        await manager.vm_started(SimpleNamespace(name="vm3"))
        await manager.vm_stopped(SimpleNamespace(name="vm3"))

    (info,) = manager.infos()
    assert info.state is PluginState.ACTIVE
    assert info.hook_errors == 2
    assert info.last_hook_error == "on_vm_stop: did not finish within 0.2 s"
    assert "bad-hook: on_vm_start(vm3) ValueError: start hook broke" in caplog.text


async def test_no_plugins_in_the_group(site, tmp_path: Path) -> None:
    _root, group, _prefix = site
    manager = PluginManager(group=group)
    assert await manager.load(context_for(tmp_path)) == []  # type: ignore[arg-type]
    await manager.vm_started(SimpleNamespace(name="x"))  # nothing to call
