"""Machine templates (profiles scaled to the host, shipped template files) and one
machine's settings (``config NAME set``): all-or-nothing, keys named in refusals."""

from __future__ import annotations

import pytest

from cargobay.errors import ConfigError, Conflict, InvalidInput
from cargobay.machines.models import PortForward, VMConfig, VMInstance, VMState, VMStateKind
from cargobay.machines.settings import machine_settings, plan_changes
from cargobay.machines.templates import (
    known_templates,
    resolve_template,
    scaled_profiles,
    shipped_templates,
)

CI_HOST = (2, 24 * 1024)


def test_shipped_templates_load_and_name_real_profiles() -> None:
    shipped = shipped_templates()
    assert {"mcp-server", "agent", "inference"} <= set(shipped)
    for t in shipped.values():
        assert t.profile in {"minimal", "standard", "performance"}
        assert t.description
    assert known_templates()[:3] == ["minimal", "standard", "performance"]


def test_a_shipped_template_is_its_profile_scaled_plus_image_ports_env() -> None:
    t = resolve_template("mcp-server", host=CI_HOST)
    assert t.profile == scaled_profiles(*CI_HOST)["minimal"]
    assert (t.profile.cpus, t.profile.memory_mib, t.profile.disk_mib) == (1, 1024, 5 * 1024)
    assert t.image == "default"
    assert t.ports == ("18000:8000",)
    assert t.env["MCP_TRANSPORT"] == "streamable-http"
    big = resolve_template("inference", host=(16, 64 * 1024))
    assert (big.profile.cpus, big.profile.memory_mib) == (8, 16 * 1024)


def test_a_profile_name_is_a_template_without_extras() -> None:
    t = resolve_template(" Standard ", host=CI_HOST)
    assert t.name == "standard"
    assert (t.image, t.ports, t.env) == (None, (), {})


def test_unknown_template_lists_every_known_name() -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_template("huge", host=CI_HOST)
    for name in ("minimal", "standard", "performance", "mcp-server", "agent", "inference"):
        assert name in str(info.value)


def _vm(state: VMStateKind = VMStateKind.STOPPED, **config: object) -> VMInstance:
    return VMInstance(name="box", state=VMState(kind=state), config=VMConfig(**config))  # type: ignore[arg-type]


def test_settings_list() -> None:
    vm = _vm(cpus=2, memory_mb=768, ports=(PortForward(host=8080, guest=80),), env={"A": "1"})
    s = machine_settings(vm)
    assert s["cpus"] == 2
    assert s["memory"] == "768MB"
    assert s["ports"] == ["8080:80/tcp"]
    assert s["env"] == {"A": "1"}
    assert s["image"] == "default"


def test_set_several_at_once_and_restart_notes() -> None:
    plan = plan_changes(
        _vm(VMStateKind.RUNNING),
        {"cpus": "2", "memory": "768MB", "ports": "8080:80,5353:53/udp", "env": "A=1,B=x=y"},
        [],
    )
    assert plan.config.cpus == 2
    assert plan.config.memory_mb == 768
    assert [str(p) for p in plan.config.ports] == ["8080:80/tcp", "5353:53/udp"]
    assert plan.config.env == {"A": "1", "B": "x=y"}
    assert set(plan.restart_required) == {"cpus", "memory", "ports", "env"}
    stopped = plan_changes(_vm(), {"memory": 1024}, [])
    assert stopped.changed == ("memory",)
    assert stopped.restart_required == ()
    same = plan_changes(_vm(memory_mb=512), {"memory": "512MB"}, [])
    assert same.changed == ()


@pytest.mark.parametrize(
    ("changes", "prefix"),
    [
        ({"memory": "lots"}, "memory: "),
        ({"memory": "32MB"}, "memory: '32MB' is too small"),
        ({"cpus": "0"}, "cpus: "),
        ({"cpus": 65}, "cpus: "),
        ({"cpus": True}, "cpus: "),
        ({"disk": "1GB"}, "disk: '1GB' is smaller"),
        ({"ports": "80"}, "ports: bad port mapping"),
        ({"ports": "80:80,80:81"}, "ports: host port 80/tcp is forwarded twice"),
        ({"env": "1A=x"}, "env: '1A' is not a variable name"),
        ({"env": "NOEQUALS"}, "env: 'NOEQUALS' is not KEY=VALUE"),
        ({"image": "other"}, "image: is fixed"),
        ({"colour": "red"}, "colour: unknown setting"),
        ({"cpus": 2, "memory": "lots"}, "memory: "),  # one bad value: nothing applies
    ],
)
def test_bad_values_are_refused_naming_the_key(changes: dict[str, object], prefix: str) -> None:
    vm = _vm(disk_mb=2048)
    with pytest.raises(ConfigError) as info:
        plan_changes(vm, changes, [])
    assert str(info.value).startswith(prefix), str(info.value)


def test_disk_grows_only_on_a_stopped_machine_and_ports_conflict() -> None:
    plan = plan_changes(_vm(disk_mb=2048), {"disk": "3GB"}, [])
    assert plan.grow_disk_to_mb == 3072
    with pytest.raises(Conflict, match="stop it to grow"):
        plan_changes(_vm(VMStateKind.RUNNING, disk_mb=2048), {"disk": "3GB"}, [])
    other = VMInstance(name="other", config=VMConfig(ports=(PortForward(host=8080, guest=80),)))
    with pytest.raises(Conflict, match="already forwarded to machine 'other'"):
        plan_changes(_vm(), {"ports": ["8080:80"]}, [other])
