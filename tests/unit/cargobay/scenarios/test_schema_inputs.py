"""Scenario schema: the mouse step, send_keys via Spice, and spice: true on a VM."""

from __future__ import annotations

import pytest

from cargobay.scenarios.schema import MouseStep, ScenarioError, load_scenario


def _load(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_scenario(path)


def test_mouse_and_spice_keys_parse(tmp_path):
    scenario = _load(
        tmp_path,
        "name: m\nhosts: {h: 'qemu:///system'}\nvms: [{name: a, host: h, spice: true}]\n"
        "steps:\n  - mouse: {move_to: [10, 20], click: left, via: spice}\n"
        "  - send_keys: {text: hi, via: spice}\n  - mouse: {move_by: [-3, 4]}\n",
    )
    first = scenario.steps[0].action
    assert isinstance(first, MouseStep)
    assert first.describe() == "mouse to 10,20 click left via spice"
    assert scenario.steps[1].action.describe() == "send_keys text 'hi': h i via spice"
    assert scenario.steps[2].action.describe() == "mouse by -3,4"
    vm = scenario.vms[0]
    assert (vm.resolved_display, vm.resolved_machine) == ("vga", "q35")
    assert "spice" in scenario.describe()


@pytest.mark.parametrize(
    ("vms", "step", "message"),
    [
        ("[{name: a, spice: true}]", "{sleep: 1}", "spice: true needs a libvirt VM"),
        ("[{name: a}]", "{mouse: {via: spice}}", "needs move_to, move_by or click"),
        ("[{name: a}]", "{mouse: {move_to: [1, 2], move_by: [1, 1]}}", "not both"),
        ("[{name: a}]", "{mouse: {move_to: [1]}}", "two numbers"),
        ("[{name: a}]", "{mouse: {move_to: [-1, 2]}}", "non-negative"),
        ("[{name: a}]", "{mouse: {click: double}}", "click"),
        ("[{name: a}]", "{send_keys: {text: x, via: vnc}}", "via"),
    ],
)
def test_bad_input_steps_name_the_field(tmp_path, vms: str, step: str, message: str):
    with pytest.raises(ScenarioError, match=message):
        _load(tmp_path, f"name: bad\nvms: {vms}\nsteps: [{step}]\n")
