"""Scenario files: validation errors name the field path; the dry run shows resolved steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cargobay.scenarios import ScenarioError, load_scenario, parse_scenario
from cargobay.scenarios.__main__ import main
from cargobay.scenarios.schema import FilePutStep, SendKeysStep, format_loc

REPO = Path(__file__).resolve().parents[4]
SMOKE = REPO / "examples" / "scenarios" / "smoke.yaml"


def scenario(steps: list[Any], vms: list[Any] | None = None) -> dict[str, Any]:
    return {"name": "t", "vms": vms or [{"name": "main"}], "steps": steps}


def problems(data: object, base_dir: Path | None = None) -> dict[str, str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, base_dir=base_dir)
    return dict(caught.value.problems)


def test_format_loc() -> None:
    assert format_loc(("steps", 3, "qga_exec", "expect", "exit")) == "steps[3].qga_exec.expect.exit"
    assert format_loc(("vms", 0)) == "vms[0]"


def test_the_smoke_example_is_valid() -> None:
    loaded = load_scenario(SMOKE)
    assert loaded.name == "smoke"
    assert [vm.resolved_machine for vm in loaded.vms] == ["q35"]
    assert all(step.vm == "main" for step in loaded.steps if step.kind != "sleep")
    kinds = {step.kind for step in loaded.steps}
    assert {"wait_for", "qga_exec", "file_put", "file_check", "send_keys", "screenshot"} <= kinds


def test_a_wrong_type_is_not_coerced_and_is_named_by_path() -> None:
    found = problems(
        scenario(
            [
                {"sleep": 1},
                {"wait_for": {"qga_ping": True}},
                {"qga_exec": {"argv": ["true"], "expect": {"exit": "0"}}},
            ]
        )
    )
    assert set(found) == {"steps[2].qga_exec.expect.exit"}
    assert "integer" in found["steps[2].qga_exec.expect.exit"]


def test_unknown_keys_are_rejected_everywhere() -> None:
    found = problems(
        {
            "name": "t",
            "colour": "red",
            "vms": [{"name": "main", "ram": 512}],
            "steps": [{"qga_exec": {"argv": ["true"], "expect": {"exitcode": 0}}}, {"reboot": {}}],
        }
    )
    assert set(found) == {
        "colour",
        "vms[0].ram",
        "steps[0].qga_exec.expect.exitcode",
        "steps[1].reboot",
    }
    assert all("Extra inputs are not permitted" in msg for msg in found.values())


def test_a_step_has_exactly_one_action() -> None:
    found = problems(scenario([{"name": "two", "sleep": 1, "qmp": {"command": "stop"}}, {}]))
    assert "got qmp, sleep" in found["steps[0]"]
    assert "got none" in found["steps[1]"]


def test_alternatives_must_be_given_once() -> None:
    found = problems(
        scenario(
            [
                {"file_put": {"path": "/tmp/x"}},
                {"file_put": {"path": "/tmp/x", "content": "a", "from": "b"}},
                {"file_check": {"path": "/tmp/x"}},
                {"send_keys": {"keys": [["a"]], "text": "a"}},
                {"wait_for": {"qmp_event": "RESET", "console_regex": "x"}},
                {"file_get": {"path": "relative"}},
            ]
        )
    )
    assert "give one of content, from_" in found["steps[0].file_put"]
    assert "give only one" in found["steps[1].file_put"]
    assert "at least one of contains, sha256" in found["steps[2].file_check"]
    assert "keys, text" in found["steps[3].send_keys"]
    assert "qmp_event, console_regex" in found["steps[4].wait_for"]
    assert "absolute" in found["steps[5].file_get.path"]


def test_values_are_checked() -> None:
    found = problems(
        scenario(
            [
                {"send_keys": {"keys": [["ctrl", "alt", "del"]]}},
                {"send_keys": {"text": "naïve"}},
                {"wait_for": {"console_regex": "(unclosed", "timeout": 5}},
                {"wait_for": {"qga_ping": True, "timeout": -1}},
                {"assert_status": {"status": "sleeping"}},
                {"file_check": {"path": "/x", "sha256": "abc"}},
                {"screenshot": {"name": "../evil"}},
            ],
            vms=[{"name": "main", "memory": "lots", "cpus": 0}],
        )
    )
    assert "'del'" in found["steps[0].send_keys.keys"]
    assert "'ï'" in found["steps[1].send_keys.text"]
    assert "regular expression" in found["steps[2].wait_for.console_regex"]
    assert "greater than 0" in found["steps[3].wait_for.timeout"]
    assert "steps[4].assert_status.status" in found
    assert "steps[5].file_check.sha256" in found
    assert "steps[6].screenshot.name" in found
    assert "bad memory 'lots'" in found["vms[0].memory"]
    assert "vms[0].cpus" in found


def test_vm_references_are_resolved_or_rejected(tmp_path: Path) -> None:
    two = [{"name": "a"}, {"name": "b"}]
    found = problems(
        scenario(
            [
                {"qga_exec": {"argv": ["true"]}},
                {"qga_exec": {"vm": "c", "argv": ["true"]}},
                {"file_put": {"vm": "a", "path": "/x", "from": "missing.txt"}},
            ],
            vms=two,
        ),
        base_dir=tmp_path,
    )
    assert "say which VM" in found["steps[0].qga_exec.vm"]
    assert "unknown VM 'c'" in found["steps[1].qga_exec.vm"]
    assert str(tmp_path / "missing.txt") in found["steps[2].file_put.from"]
    dup = problems(scenario([{"sleep": 1}], vms=[{"name": "a"}, {"name": "a"}]))
    assert "duplicate" in dup["vms[1].name"]


def test_display_rules() -> None:
    found = problems(scenario([{"screenshot": {"name": "s"}}]))
    assert "give it display: vga" in found["steps[0].screenshot.vm"]
    found = problems(
        scenario([{"sleep": 1}], vms=[{"name": "m2", "machine": "microvm", "display": "vga"}])
    )
    assert "microvm has no display" in found["vms[0]"]


def test_yaml_errors_and_non_mappings(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nvms: [\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(bad)
    assert "not valid YAML" in str(caught.value)
    assert "line " in caught.value.problems[0][0]
    assert problems(["a", "list"]) == {"": "a scenario is a mapping with name, vms and steps"}
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")


def test_defaults_and_resolution(tmp_path: Path) -> None:
    (tmp_path / "payload.bin").write_bytes(b"x")
    loaded = parse_scenario(
        scenario(
            [
                {"sleep": 1.5},
                {"file_put": {"path": "/tmp/p", "from": "payload.bin"}},
                {"send_keys": {"text": "Hi!\n"}},
                {"qga_exec": {"argv": ["true"]}},
            ],
            vms=[{"name": "main", "memory": "1G"}],
        ),
        base_dir=tmp_path,
    )
    assert loaded.vms[0].memory_mb == 1024
    assert loaded.vms[0].resolved_machine == "microvm"
    assert loaded.steps[0].kind == "sleep"
    assert loaded.steps[0].vm is None
    put = loaded.steps[1].action
    assert isinstance(put, FilePutStep)
    assert put.vm == "main"
    assert loaded.host_file(put) == tmp_path / "payload.bin"
    keys = loaded.steps[2].action
    assert isinstance(keys, SendKeysStep)
    assert keys.chords == [["shift", "h"], ["i"], ["shift", "1"], ["ret"]]
    exec_step = loaded.steps[3].action
    assert exec_step.describe() == "qga_exec ['true'] expect exit=0"


def test_dry_run_prints_the_resolved_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "payload.txt").write_text("data")
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: dry\n"
        "vms: [{name: box, memory: 256MB}]\n"
        "steps:\n"
        "  - wait_for: {qga_ping: true, timeout: 30}\n"
        "  - file_put: {path: /tmp/p, from: payload.txt}\n"
        "  - name: greet\n"
        "    send_keys: {text: 'ok'}\n"
        "  - sleep: 2\n"
    )
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"scenario dry ({path})"
    assert (
        "  box: image=default cpus=1 memory=256MiB machine=microvm display=none disk=256MiB" in out
    )
    assert "   1. [box] wait_for qga_ping (timeout 30s)" in out
    assert f"   2. [box] file_put /tmp/p <- {tmp_path / 'payload.txt'}" in out
    assert "   3. [box] send_keys text 'ok': o k (greet)" in out
    assert "   4. sleep 2s" in out


def test_cli_rejects_an_invalid_file_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nvms: [{name: a}]\nsteps: [{qga_exec: {argv: []}}]\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "steps[0].qga_exec.argv" in err
