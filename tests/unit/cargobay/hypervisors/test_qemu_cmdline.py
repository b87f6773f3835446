"""The QEMU argv builder against the boot contract (qemu_cmdline's docstring)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargobay.errors import InvalidInput
from cargobay.hypervisors.base import VMSpec
from cargobay.hypervisors.qemu_cmdline import (
    QemuLayout,
    QemuOptions,
    build_argv,
    kernel_cmdline,
    opt,
    parse_ports,
)

RUN = Path("/run/cb/vm/abc")
STATE = Path("/var/lib/cb/machines/abc")


def make_spec(**changes: object) -> VMSpec:
    fields: dict[str, object] = {
        "vm_id": "abc123",
        "name": "box",
        "cpus": 2,
        "memory_mb": 384,
        "kernel": Path("/img/vmlinuz"),
        "initrd": Path("/img/initrd.img"),
        "rootfs": Path("/img/rootfs.ext4"),
        "data_disk": Path("/data/abc/disk.img"),
        "run_dir": RUN,
        "state_dir": STATE,
        "cmdline": "console=ttyS0 reboot=t panic=-1 quiet",
    }
    fields.update(changes)
    return VMSpec(**fields)  # type: ignore[arg-type]


def options_of(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` (flags taking one value)."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def kv(option: str) -> tuple[str, dict[str, str]]:
    """Split ``driver,key=value,...`` (no escaped commas in these tests' values)."""
    head, *rest = option.split(",")
    return head, dict(item.split("=", 1) for item in rest)


def devices(argv: list[str], driver: str) -> list[dict[str, str]]:
    return [props for head, props in map(kv, options_of(argv, "-device")) if head == driver]


def chardev(argv: list[str], ident: str) -> tuple[str, dict[str, str]]:
    found = [(h, p) for h, p in map(kv, options_of(argv, "-chardev")) if p.get("id") == ident]
    assert len(found) == 1, found
    return found[0]


def drive(argv: list[str], ident: str) -> dict[str, str]:
    found = [p for p in (kv("x," + d)[1] for d in options_of(argv, "-drive")) if p["id"] == ident]
    assert len(found) == 1
    return found[0]


def test_microvm_tcg_machine_and_process_options() -> None:
    argv = build_argv("/usr/bin/qemu-system-x86_64", make_spec(), QemuOptions(accel="tcg"))
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    machine, props = kv(options_of(argv, "-machine")[0])
    assert machine == "microvm"
    assert props["accel"] == "tcg"
    assert props["acpi"] == "on"  # the power button for graceful stop
    assert "-cpu" not in argv
    assert options_of(argv, "-m") == ["384"]
    assert options_of(argv, "-smp") == ["2"]
    for flag in ("-nodefaults", "-no-user-config", "-no-reboot", "-daemonize"):
        assert flag in argv
    assert options_of(argv, "-pidfile") == [str(RUN / "qemu.pid")]
    assert options_of(argv, "-D") == [str(STATE / "qemu.log")]
    assert options_of(argv, "-display") == ["none"]


def test_kvm_uses_the_host_cpu() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions(accel="kvm"))
    assert kv(options_of(argv, "-machine")[0])[1]["accel"] == "kvm"
    assert options_of(argv, "-cpu") == ["host"]


def test_kernel_initrd_and_cmdline() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions(extra_kernel_params=("tsc=reliable",)))
    assert options_of(argv, "-kernel") == ["/img/vmlinuz"]
    assert options_of(argv, "-initrd") == ["/img/initrd.img"]
    (append,) = options_of(argv, "-append")
    assert append.split() == [
        "console=ttyS0",
        "reboot=t",
        "panic=-1",
        "quiet",
        "cargobay.name=box",
        "tsc=reliable",
        "pci=off",
    ]
    no_initrd = build_argv("qemu", make_spec(initrd=None), QemuOptions())
    assert "-initrd" not in no_initrd


def test_console_and_qmp_sockets() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions())
    backend, props = chardev(argv, "console")
    assert backend == "file"
    assert props["path"] == str(STATE / "console.log")
    assert options_of(argv, "-serial") == ["chardev:console"]
    backend, props = chardev(argv, "qmp")
    assert backend == "socket"
    assert props == {"id": "qmp", "path": str(RUN / "qmp.sock"), "server": "on", "wait": "off"}
    assert options_of(argv, "-mon") == ["chardev=qmp,mode=control"]


def test_virtio_serial_ports_for_the_agent_and_qemu_ga() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions())
    (serial,) = devices(argv, "virtio-serial-device")
    ports = {p["name"]: p for p in devices(argv, "virtserialport")}
    assert set(ports) == {"cargobay.agent", "org.qemu.guest_agent.0"}
    for name, sock in (("cargobay.agent", "agent.sock"), ("org.qemu.guest_agent.0", "qga.sock")):
        port = ports[name]
        assert port["bus"] == f"{serial['id']}.0"
        backend, props = chardev(argv, port["chardev"])
        assert backend == "socket"
        assert props["path"] == str(RUN / sock)
        assert props["server"] == "on"
        assert props["wait"] == "off"


def test_root_disk_read_only_and_data_disk_writable() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions())
    root, data = drive(argv, "root"), drive(argv, "data")
    assert root["file"] == "/img/rootfs.ext4"
    assert root["readonly"] == "on"
    assert data["file"] == "/data/abc/disk.img"
    assert "readonly" not in data
    assert root["format"] == data["format"] == "raw"
    assert data["discard"] == "unmap"
    blk = devices(argv, "virtio-blk-device")
    assert [d["drive"] for d in blk] == ["root", "data"]


def test_q35_uses_pci_devices_and_keeps_pci() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions(machine="q35"))
    assert kv(options_of(argv, "-machine")[0])[0] == "q35"
    heads = [kv(d)[0] for d in options_of(argv, "-device")]
    assert "virtio-blk-pci" in heads
    assert "virtio-serial-pci" in heads
    assert not any(h.endswith("-device") for h in heads)
    assert "pci=off" not in options_of(argv, "-append")[0]


def test_vga_display_only_on_q35() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions(machine="q35", display="vga"))
    assert "VGA" in options_of(argv, "-device")
    assert "VGA" not in options_of(
        build_argv("qemu", make_spec(), QemuOptions(machine="q35")), "-device"
    )
    with pytest.raises(InvalidInput, match="q35"):
        build_argv("qemu", make_spec(), QemuOptions(display="vga"))


def test_ports_add_a_user_nic_bound_to_loopback() -> None:
    none = build_argv("qemu", make_spec(), QemuOptions())
    assert "-netdev" not in none
    argv = build_argv(
        "qemu", make_spec(), QemuOptions(ports=(("tcp", 8080, 80), ("udp", 5353, 53)))
    )
    assert options_of(argv, "-netdev")[0] == (
        "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:5353-:53"
    )
    assert devices(argv, "virtio-net-device") == [{"netdev": "net0"}]


def test_vsock_device_only_with_a_cid() -> None:
    assert not devices(build_argv("qemu", make_spec(), QemuOptions()), "vhost-vsock-device")
    argv = build_argv("qemu", make_spec(), QemuOptions(vsock_cid=1234))
    assert devices(argv, "vhost-vsock-device") == [{"guest-cid": "1234"}]
    with pytest.raises(InvalidInput):
        build_argv("qemu", make_spec(), QemuOptions(vsock_cid=2))


def test_commas_in_paths_are_escaped() -> None:
    spec = make_spec(rootfs=Path("/img/a,b.ext4"), state_dir=Path("/s,1"))
    argv = build_argv("qemu", spec, QemuOptions())
    assert "id=root,file=/img/a,,b.ext4,format=raw,if=none,readonly=on" in argv
    assert "file,id=console,path=/s,,1/console.log" in argv
    assert opt("a,b,,c") == "a,,b,,,,c"


def test_socket_paths_must_fit_sun_path() -> None:
    spec = make_spec(run_dir=Path("/tmp/" + "x" * 100))
    with pytest.raises(InvalidInput, match="longer than 107"):
        build_argv("qemu", spec, QemuOptions())


def test_layout_names() -> None:
    layout = QemuLayout(RUN, STATE)
    assert layout.sockets() == (RUN / "qmp.sock", RUN / "agent.sock", RUN / "qga.sock")
    assert layout.console_log == STATE / "console.log"


@pytest.mark.parametrize(
    ("cmdline", "params", "expected"),
    [
        ("console=ttyS0", (), "console=ttyS0 cargobay.name=box"),
        ("", ("a=1",), "cargobay.name=box a=1"),
        ("console=ttyS0 -- init-arg", ("a=1",), "console=ttyS0 cargobay.name=box a=1 -- init-arg"),
        ("console=ttyS0 --", (), "console=ttyS0 cargobay.name=box --"),
        # the image's own value wins; no duplicates
        ("tsc=unstable cargobay.name=x", ("tsc=reliable",), "tsc=unstable cargobay.name=x"),
    ],
)
def test_kernel_cmdline(cmdline: str, params: tuple[str, ...], expected: str) -> None:
    assert kernel_cmdline(make_spec(cmdline=cmdline), params) == expected


@pytest.mark.parametrize("name", ["two words", "a,b", 'q"uote', "", "-lead", "x\ny"])
def test_names_unfit_for_the_kernel_cmdline_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="kernel command line"):
        kernel_cmdline(make_spec(name=name))


def test_parse_ports() -> None:
    assert parse_ports("") == ()
    assert parse_ports("8080:80/tcp, 5353:53/udp,2222:22") == (
        ("tcp", 8080, 80),
        ("udp", 5353, 53),
        ("tcp", 2222, 22),
    )
    for bad in ("8080", "a:b", "0:80", "8080:80/sctp", "70000:1"):
        with pytest.raises(InvalidInput):
            parse_ports(bad)


def test_too_small_a_vm_is_refused() -> None:
    with pytest.raises(InvalidInput):
        build_argv("qemu", make_spec(cpus=0), QemuOptions())


# -- memory backends and restores (machines.snapshots) -----------------------------------


def test_guest_ram_is_always_the_memory_backend_named_mem() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions())
    machine = options_of(argv, "-machine")[0]
    assert kv(machine)[1]["memory-backend"] == "mem"
    assert "memory-backend-ram,id=mem,size=384M" in options_of(argv, "-object")
    assert "-incoming" not in argv
    assert "-S" not in argv


@pytest.mark.parametrize(("share", "flag"), [(True, "on"), (False, "off")])
def test_template_ram_in_a_file(share: bool, flag: str) -> None:
    options = QemuOptions(memory_file="/snap/t1/memory.ram", memory_share=share)
    argv = build_argv("qemu", make_spec(), options)
    backends = [kv(o) for o in options_of(argv, "-object") if o.startswith("memory-backend")]
    assert backends == [
        (
            "memory-backend-file",
            {"id": "mem", "size": "384M", "mem-path": "/snap/t1/memory.ram", "share": flag},
        )
    ]


def test_incoming_and_paused_start() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions(incoming=True, start_paused=True))
    assert options_of(argv, "-incoming") == ["defer"]
    assert "-S" in argv


def test_user_nic_without_forwards_keeps_the_device_layout() -> None:
    with_ports = build_argv("qemu", make_spec(), QemuOptions(ports=(("tcp", 8080, 80),)))
    bare = build_argv("qemu", make_spec(), QemuOptions(user_nic=True))
    assert options_of(bare, "-netdev") == ["user,id=net0"]
    assert devices(bare, "virtio-net-device") == devices(with_ports, "virtio-net-device")
    assert "-netdev" not in build_argv("qemu", make_spec(), QemuOptions())


def test_seccomp_sandbox_is_on_unless_turned_off() -> None:
    argv = build_argv("qemu", make_spec(), QemuOptions())
    (sandbox,) = options_of(argv, "-sandbox")
    head, props = kv(sandbox)
    assert head == "on"
    assert props == {"obsolete": "deny", "resourcecontrol": "deny"}
    assert "-sandbox" not in build_argv("qemu", make_spec(), QemuOptions(sandbox=False))
