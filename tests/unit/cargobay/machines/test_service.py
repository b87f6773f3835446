"""MachineService without VMs: create-request validation, refusals by state, one lifecycle
operation at a time, and how recovery settles records a killed daemon left behind
(records without a VM process, so no hypervisor is involved)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargobay.errors import Conflict, GuestError, InvalidInput, NotFound
from cargobay.hypervisors.base import Hypervisor
from cargobay.images.store import ImageStore
from cargobay.machines.agent import ExecRequest
from cargobay.machines.files import tail_lines, tail_offset
from cargobay.machines.models import (
    RuntimeInfo,
    VMConfig,
    VMInstance,
    VMState,
    VMStateKind,
    parse_port,
)
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.store import Store

K = VMStateKind


def no_hypervisor(name: str) -> Hypervisor:
    raise AssertionError(f"the service asked for a hypervisor ({name}) in a unit test")


class NoAgents:
    async def wait_ready(self, address: str, timeout: float) -> Any:
        raise GuestError("no guest agents in unit tests")

    async def connect(self, address: str, timeout: float) -> Any:
        raise GuestError("no guest agents in unit tests")


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths.from_env({"CARGOBAY_HOME": str(tmp_path)})
    p.ensure()
    return p


@pytest.fixture
def store(paths: Paths) -> Iterator[Store]:
    s = Store.open(paths.db)
    yield s
    s.close()


@pytest.fixture
def service(paths: Paths, store: Store) -> MachineService:
    return MachineService(paths, store, no_hypervisor, ImageStore(paths.images), NoAgents())


def put(store: Store, name: str, *path: VMStateKind, **config: Any) -> VMInstance:
    vm = VMInstance(name=name, config=VMConfig(**config))
    store.insert_machine(vm)
    for kind in path:
        state = VMState.error("test") if kind is K.ERROR else VMState(kind=kind)
        vm = store.transition(vm, state)
    return vm


# -- validation ---------------------------------------------------------------------------


def test_validate_builds_the_config(service: MachineService) -> None:
    vm = service.validate(
        "box", cpus=2, memory="384MB", disk="1GB", ports=["8080:80", "53:53/udp"], template="t"
    )
    assert vm.name == "box"
    assert vm.state.kind is K.CREATING
    assert (vm.config.cpus, vm.config.memory_mb, vm.config.disk_mb) == (2, 384, 1024)
    assert [str(p) for p in vm.config.ports] == ["8080:80/tcp", "53:53/udp"]
    assert vm.config.template == "t"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": "Box"}, "bad machine name 'Box'"),
        ({"name": "box", "memory": "8XB"}, "bad memory '8XB'"),
        ({"name": "box", "memory": "32MB"}, "at least 64MB"),
        ({"name": "box", "disk": "8MB"}, "at least 16MB"),
        ({"name": "box", "cpus": 65}, "1 to 64"),
        ({"name": "box", "ports": ["1:2", "1:3"]}, "forwarded twice"),
        ({"name": "box", "image": "../etc"}, "bad image name"),
    ],
)
def test_validate_refuses_bad_input(
    service: MachineService, kwargs: dict[str, Any], words: str
) -> None:
    name = kwargs.pop("name")
    with pytest.raises(InvalidInput) as info:
        service.validate(name, **kwargs)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_validate_refuses_a_host_port_another_machine_uses(
    service: MachineService, store: Store
) -> None:
    put(store, "web", K.STOPPED, ports=(parse_port("8080:80"),))
    with pytest.raises(Conflict, match="already forwarded to machine 'web'"):
        service.validate("api", ports=["8080:8000"])
    service.validate("api", ports=["8080:8000/udp"])  # another protocol is fine


async def test_create_with_a_missing_image_leaves_nothing(
    service: MachineService, store: Store, paths: Paths
) -> None:
    vm = service.validate("box", image="nosuch")
    with pytest.raises(NotFound, match="cargobay image build nosuch"):
        await service.create(vm, start=False)
    assert store.list_machines() == []
    assert list(paths.machines.iterdir()) == []


async def test_create_of_an_existing_name_is_a_conflict(
    service: MachineService, store: Store
) -> None:
    put(store, "box", K.STOPPED)
    with pytest.raises(Conflict, match="already exists"):
        await service.create(service.validate("box"), start=False)


async def test_bad_boot_timeout(service: MachineService, store: Store) -> None:
    put(store, "box", K.STOPPED)
    with pytest.raises(InvalidInput, match="boot_timeout"):
        await service.start("box", boot_timeout=-1)
    with pytest.raises(InvalidInput, match="timeout"):
        await service.stop("box", timeout=-1)


# -- refusals by state --------------------------------------------------------------------


async def test_second_start_of_a_running_machine_is_a_conflict(
    service: MachineService, store: Store
) -> None:
    vm = put(store, "box", K.RUNNING)
    with pytest.raises(Conflict, match="'box' is already running"):
        await service.start("box")
    assert len(store.events(vm.id)) == 2  # nothing persisted by the refusal


async def test_operations_refused_by_state(service: MachineService, store: Store) -> None:
    put(store, "stopped", K.STOPPED)
    put(store, "paused", K.RUNNING, K.PAUSED)
    put(store, "creating")
    with pytest.raises(Conflict, match="resume"):
        await service.start("paused")
    with pytest.raises(Conflict, match="settle"):
        await service.start("creating")
    with pytest.raises(Conflict, match="being created"):
        await service.stop("creating")
    with pytest.raises(Conflict, match="only a running machine"):
        await service.pause("stopped")
    with pytest.raises(Conflict, match="only a paused machine"):
        await service.resume("stopped")
    with pytest.raises(Conflict, match="cargobay vm start stopped"):
        await service.exec("stopped", ExecRequest(argv=["true"]))
    with pytest.raises(Conflict, match="--force"):
        await service.delete("paused")
    with pytest.raises(InvalidInput, match="argv"):
        await service.exec("stopped", ExecRequest(argv=[]))


async def test_a_second_operation_while_one_runs_is_refused_at_once(
    service: MachineService, store: Store
) -> None:
    put(store, "box", K.STOPPED)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def long_operation() -> None:
        async with service._operation("box", "starting"):
            entered.set()
            await release.wait()

    task = asyncio.create_task(long_operation())
    await entered.wait()
    try:
        with pytest.raises(Conflict, match="'box' is starting right now"):
            await service.stop("box")
        with pytest.raises(Conflict, match="starting right now"):
            await service.delete("box")
        # Another machine is not affected.
        put(store, "other", K.STOPPED)
        await service.stop("other")
    finally:
        release.set()
        await task
    await service.stop("box")  # free again


# -- recovery of records left by a killed daemon ------------------------------------------


async def test_recover_settles_records_without_a_vm(
    service: MachineService, store: Store, paths: Paths
) -> None:
    lost = put(store, "lost", K.RUNNING)  # no handle: its VM cannot be found
    halted = put(store, "halted", K.RUNNING, K.STOPPING)
    fresh = put(store, "fresh")  # a create that never finished
    (paths.machines / fresh.id).mkdir()
    (paths.machines / fresh.id / "data.ext4").write_bytes(b"")
    restarted = put(store, "restarted", K.STOPPED, K.CREATING)  # a start that never finished
    kept = put(store, "kept", K.STOPPED)

    await service.recover()

    assert store.get_machine("lost").state.kind is K.ERROR
    assert "ended while cargobayd was not running" in (store.get_machine("lost").state.reason or "")
    assert store.get_machine("halted").state.kind is K.STOPPED
    assert store.find_machine("fresh") is None
    assert not (paths.machines / fresh.id).exists()
    got = store.get_machine("restarted")
    assert got.state.kind is K.ERROR
    assert "start it again" in (got.state.reason or "")
    assert store.get_machine("kept") == kept
    # Each settlement was one persisted transition.
    assert [e.to_state for e in store.events(lost.id)][-1] is K.ERROR
    assert [e.to_state for e in store.events(halted.id)][-2:] == [K.STOPPING, K.STOPPED]
    assert [e.to_state for e in store.events(restarted.id)][-1] is K.ERROR


async def test_stop_of_an_error_machine_without_a_process(
    service: MachineService, store: Store
) -> None:
    vm = put(store, "box", K.ERROR)
    stopped = await service.stop("box")
    assert stopped.state.kind is K.STOPPED
    assert [e.to_state for e in store.events(vm.id)][-2:] == [K.STOPPING, K.STOPPED]


async def test_logs_of_a_stopped_machine(
    service: MachineService, store: Store, tmp_path: Path
) -> None:
    log = tmp_path / "console.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    vm = put(store, "box", K.STOPPED)
    store.save_machine(vm.model_copy(update={"runtime": RuntimeInfo(console_log=str(log))}))
    chunks = [c async for c in service.logs("box", tail=3)]
    assert "".join(chunks) == "line 97\nline 98\nline 99\n"
    everything = "".join([c async for c in service.logs("box")])
    assert everything == log.read_text()
    # follow on a stopped machine ends after what is there.
    followed = "".join([c async for c in service.logs("box", tail=1, follow=True)])
    assert followed == "line 99\n"


def test_tail_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"
    assert tail_lines(path, 5) == []
    path.write_bytes(b"".join(b"%06d\n" % i for i in range(50_000)))
    assert tail_lines(path, 3) == ["049997", "049998", "049999"]
    assert tail_lines(path, 0) == []
    path.write_bytes(b"one\r\ntwo\r\nthree\r\n")
    assert path.read_bytes()[tail_offset(path, 2) :] == b"two\r\nthree\r\n"
    assert tail_offset(path, 3) == 0
    assert tail_offset(path, 9) == 0
    assert tail_offset(path, 0) == path.stat().st_size
    path.write_bytes(b"a\nb\nno newline at the end \xff")
    assert tail_lines(path, 2) == ["b", "no newline at the end \ufffd"]
    assert tail_lines(path, 10) == ["a", "b", "no newline at the end \ufffd"]
