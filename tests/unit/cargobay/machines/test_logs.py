"""Unified machine logs: source names, line prefixes, the daemon-log filter, and the
follow merge (real files, appended while being followed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cargobay.errors import InvalidInput
from cargobay.machines.files import read_log
from cargobay.machines.logs import check_sources, merged_log, platform_log


def test_sources() -> None:
    assert check_sources([]) == ["console"]
    assert check_sources(["all"]) == ["console", "hypervisor", "platform", "app"]
    assert check_sources(["platform", "console", "platform"]) == ["platform", "console"]
    with pytest.raises(InvalidInput, match="bad log source 'kernel'"):
        check_sources(["kernel"])


async def _collect(it) -> str:  # type: ignore[no-untyped-def]
    return "".join([t async for t in it])


async def test_one_source_is_passed_through_and_several_are_prefixed(tmp_path: Path) -> None:
    console, qemu = tmp_path / "console.log", tmp_path / "qemu.log"
    console.write_text("boot 1\nboot 2\npartial")
    qemu.write_text("qemu: warning\n")

    def never() -> bool:
        return False

    one = await _collect(merged_log({"console": read_log(console, None, False, never)}, False))
    assert one == "boot 1\nboot 2\npartial"
    both = await _collect(
        merged_log(
            {
                "console": read_log(console, 2, False, never),
                "hypervisor": read_log(qemu, None, False, never),
            },
            False,
        )
    )
    assert both == "[console] boot 2\n[console] partial\n[hypervisor] qemu: warning\n"


async def test_platform_lines_name_the_machine(tmp_path: Path) -> None:
    log = tmp_path / "cargobayd.log"
    log.write_text("a machine box is running\nother thing\nplugin x: on_vm_start(box) failed\n")
    text = await _collect(platform_log(log, ("box",), None, False, lambda: False))
    assert text == "a machine box is running\nplugin x: on_vm_start(box) failed\n"
    last = await _collect(platform_log(log, ("box",), 1, False, lambda: False))
    assert last == "plugin x: on_vm_start(box) failed\n"


async def test_follow_merges_lines_as_they_come(tmp_path: Path) -> None:
    console, daemon = tmp_path / "console.log", tmp_path / "cargobayd.log"
    console.write_text("old console\n")
    daemon.write_text("old box line\n")
    running = True

    def still() -> bool:
        return running

    out: list[str] = []

    async def follow() -> None:
        streams = {
            "console": read_log(console, 0, True, still),
            "platform": platform_log(daemon, ("box",), 0, True, still),
        }
        async for line in merged_log(streams, True):
            out.append(line)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    with console.open("a") as f:
        f.write("new console\n")
    with daemon.open("a") as f:
        f.write("not ours\nnew box line\n")
    for _ in range(50):
        if len(out) == 2:
            break
        await asyncio.sleep(0.1)
    running = False
    await asyncio.wait_for(task, 5)
    assert sorted(out) == ["[console] new console\n", "[platform] new box line\n"]
