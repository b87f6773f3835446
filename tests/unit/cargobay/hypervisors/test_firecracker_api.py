"""Firecracker requests against Firecracker's published swagger (tests/fixtures/firecracker).

Every body a builder produces is validated with the swagger's own schema for its path and
method; wrong bodies are shown to fail the same validation, so the check can fail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cargobay.errors import HypervisorError
from cargobay.hypervisors import firecracker_api as api
from cargobay.hypervisors.base import VMSpec
from cargobay.hypervisors.firecracker import JailerSettings, availability, jailer_argv

SWAGGER = yaml.safe_load(
    (Path(__file__).parents[3] / "fixtures" / "firecracker" / "firecracker.yaml").read_text()
)


def operation(request: api.ApiRequest) -> dict[str, Any]:
    for template, ops in SWAGGER["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, request.path) and request.method.lower() in ops:
            return dict(ops[request.method.lower()])
    raise AssertionError(f"{request.method} {request.path} is not in Firecracker's API")


def validate(request: api.ApiRequest) -> None:
    op = operation(request)
    body = [p for p in op.get("parameters", []) if p.get("in") == "body"]
    if request.body is None:
        assert not any(p.get("required") for p in body)
        return
    (param,) = body
    schema = {**param["schema"], "definitions": SWAGGER["definitions"]}
    jsonschema.Draft4Validator(schema).validate(request.body)


SPEC = VMSpec(
    vm_id="0123456789abcdef",
    name="fc1",
    cpus=2,
    memory_mb=512,
    kernel=Path("/img/vmlinux"),
    initrd=Path("/img/initrd.img"),
    rootfs=Path("/img/rootfs.ext4"),
    data_disk=Path("/data/fc1/disk.img"),
    run_dir=Path("/run/cb/vm/0123"),
    state_dir=Path("/var/lib/cb/machines/0123"),
    cmdline="console=ttyS0 quiet",
)

ALL = [
    api.machine_config(2, 512),
    api.boot_source("/k", "console=ttyS0", "/i"),
    api.boot_source("/k", "console=ttyS0"),
    api.drive("root", "/r.ext4", read_only=True),
    api.network_interface("eth0", "cbtap0", "06:00:00:00:00:01"),
    api.vsock("/run/v.sock"),
    api.logger("/var/log/fc.log"),
    api.metrics("/var/log/fc.metrics"),
    api.action("InstanceStart"),
    api.action("SendCtrlAltDel"),
    api.vm_state("Paused"),
    api.vm_state("Resumed"),
    api.snapshot_create("/s/state", "/s/mem"),
    api.snapshot_create("/s/state", "/s/mem", diff=True),
    api.snapshot_load("/s/state", "/s/mem", resume=False),
    api.describe(),
    *api.boot_requests(SPEC, vsock_uds="/run/v.sock", log_path="/l", tap="cbtap0"),
]


@pytest.mark.parametrize("request_", ALL, ids=lambda r: f"{r.method} {r.path}")
def test_every_request_matches_the_swagger(request_: api.ApiRequest) -> None:
    validate(request_)


@pytest.mark.parametrize(
    "bad",
    [
        api.ApiRequest("PUT", "/machine-config", {"vcpu_count": 2}),  # mem_size_mib missing
        api.ApiRequest("PUT", "/machine-config", {"vcpu_count": "2", "mem_size_mib": 512}),
        api.ApiRequest("PUT", "/actions", {"action_type": "Reboot"}),
        api.ApiRequest("PATCH", "/vm", {"state": "Stopped"}),
        api.ApiRequest("PUT", "/drives/x", {"drive_id": "x"}),  # is_root_device missing
    ],
)
def test_the_validation_catches_wrong_bodies(bad: api.ApiRequest) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_boot_sequence_follows_the_boot_contract() -> None:
    requests = api.boot_requests(SPEC, vsock_uds="/run/v.sock", log_path="/l")
    assert [(r.method, r.path) for r in requests] == [
        ("PUT", "/logger"),
        ("PUT", "/machine-config"),
        ("PUT", "/boot-source"),
        ("PUT", "/drives/root"),
        ("PUT", "/drives/data"),
        ("PUT", "/vsock"),
        ("PUT", "/actions"),
    ]
    boot = requests[2].body or {}
    assert boot["kernel_image_path"] == "/img/vmlinux"
    assert boot["initrd_path"] == "/img/initrd.img"
    args = boot["boot_args"].split()
    assert "cargobay.name=fc1" in args
    assert args.count("console=ttyS0") == 1
    root, data = (r.body or {} for r in requests[3:5])
    assert (root["is_read_only"], data["is_read_only"]) == (True, False)
    assert not root["is_root_device"]
    assert not data["is_root_device"]
    assert requests[-1].body == {"action_type": "InstanceStart"}


def test_faults_become_clear_errors() -> None:
    err = api.parse_fault(400, b'{"fault_message": "Invalid kernel path"}', api.describe())
    assert isinstance(err, HypervisorError)
    assert "GET / (HTTP 400): Invalid kernel path" in str(err)
    assert "not json" in str(api.parse_fault(500, b"not json", api.describe()))


def test_jailer_argv() -> None:
    argv = jailer_argv(JailerSettings(uid=900, gid=900), "/usr/bin/firecracker", "vm1", SPEC)
    assert argv[0] == "jailer"
    pairs = dict(zip(argv[1:-4:2], argv[2:-4:2], strict=False))
    assert pairs["--uid"] == "900"
    assert pairs["--exec-file"] == "/usr/bin/firecracker"
    assert "cpu.max=200000 100000" in argv
    assert argv[-3:] == ["--", "--api-sock", "/run/fc.sock"][-3:]


def test_availability_verdicts(tmp_path: Path) -> None:
    missing = availability(
        tmp_path, env={"CARGOBAY_FIRECRACKER": str(tmp_path / "nope"), "PATH": ""}
    )
    assert not missing.ok
    assert "no firecracker binary" in missing.reason
    binary = tmp_path / "firecracker"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    env = {"CARGOBAY_FIRECRACKER": str(binary)}
    no_kvm = availability(tmp_path, env=env, kvm_device=tmp_path / "kvm")
    assert not no_kvm.ok
    assert "needs KVM" in no_kvm.reason
    unproven = availability(tmp_path, env=env, kvm_device=Path("/dev/null"))
    assert not unproven.ok
    assert "no guest has booted under KVM" in unproven.reason
