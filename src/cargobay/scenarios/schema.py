"""The scenario file format: YAML VM test cases, validated with pydantic (strict, closed).

A scenario names the VMs it needs and the steps to run on them, in order::

    name: smoke
    vms:
      - {name: main, image: default, memory: 384, display: vga}
    steps:
      - wait_for: {qga_ping: true, timeout: 180}
      - name: the kernel is Linux
        qga_exec: {argv: [uname, -a], expect: {exit: 0, stdout_contains: Linux}}

Each step is a mapping with one action key (``qmp``, ``qga_exec``, ``file_put``,
``file_get``, ``file_check``, ``send_keys``, ``wait_for``, ``screenshot``, ``sleep``,
``assert_status``) and an optional ``name``.  ``vm`` may be left out when the scenario
has one VM.  Validation is strict (no type coercion: ``exit: "0"`` is an error) and
closed (an unknown key is an error), and every problem is reported with its field path
(``steps[3].qga_exec.expect.exit``), so a typo never silently becomes a default.
Cross-field rules pydantic cannot see (a step's VM exists, ``from:`` files exist) are
checked after the model is built, and reported the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from cargobay.errors import InvalidInput
from cargobay.machines.models import parse_size_mb
from cargobay.scenarios.keys import QCODES, text_to_chords

__all__ = [
    "ACTION_KINDS",
    "AssertStatusStep",
    "FileCheckStep",
    "FileGetStep",
    "FilePutStep",
    "MouseStep",
    "QgaExecStep",
    "QmpStep",
    "Scenario",
    "ScenarioError",
    "ScreenshotStep",
    "SendKeysStep",
    "SleepStep",
    "Step",
    "VMDef",
    "WaitForStep",
    "format_loc",
    "load_scenario",
    "parse_scenario",
]

_NAME = r"^[a-z0-9][a-z0-9-]{0,15}$"
_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

RunState = Literal[
    "debug",
    "inmigrate",
    "internal-error",
    "io-error",
    "paused",
    "postmigrate",
    "prelaunch",
    "finish-migrate",
    "restore-vm",
    "running",
    "save-vm",
    "shutdown",
    "suspended",
    "watchdog",
    "guest-panicked",
    "colo",
]
"""QMP's RunState values (what ``query-status`` answers)."""


class ScenarioError(InvalidInput):
    """A scenario file that cannot be run; ``problems`` are ``(field path, message)``."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {path or '(top level)'}: {msg}" for path, msg in self.problems)
        super().__init__(f"invalid scenario {source}:\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


def _exactly_one(model: BaseModel, names: Sequence[str], *, at_least: bool = False) -> None:
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) > 1 and not at_least:
        raise ValueError(f"give only one of {', '.join(names)} (got {', '.join(given)})")
    if not given:
        raise ValueError(f"give {'at least ' if at_least else ''}one of {', '.join(names)}")


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err}") from None
    return value


def _guest_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"guest paths must be absolute, got {value!r}")
    return value


# -- VMs ------------------------------------------------------------------------------------


class VMDef(_Model):
    name: str = Field(pattern=_NAME)
    image: str = "default"
    cpus: int = Field(default=1, ge=1, le=16)
    memory: int | str = 384
    """MiB as a number, or a size with a unit (``384MB``, ``1G``)."""
    machine: Literal["microvm", "q35"] | None = None
    """Default: q35 with a display, else microvm."""
    display: Literal["none", "vga"] = "none"
    """``vga`` adds a VGA device (q35 only) so ``screenshot`` has a screen to capture."""
    disk_mb: int = Field(default=256, ge=64, le=65536)
    """Size of the VM's (sparse) data disk (local QEMU VMs; libvirt VMs write to RAM)."""
    spice: bool = False
    """A Spice server on the VM's display (libvirt VMs; implies display: vga), so
    ``send_keys``/``mouse`` steps can go ``via: spice``."""
    host: str | None = Field(default=None, pattern=_NAME)
    """A libvirt host: an id from the scenario's ``hosts`` or, run through cargobayd, from
    its pool (``cargobay host add``).  None: cargobay's own QEMU on this machine."""

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: int | str) -> int | str:
        try:
            parse_size_mb(value, "memory")
        except InvalidInput as err:
            raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _display_needs_q35(self) -> VMDef:
        if self.display == "vga" and self.machine == "microvm":
            raise ValueError(
                "microvm has no display device; use machine: q35 (or leave machine out) "
                "with display: vga"
            )
        return self

    @model_validator(mode="after")
    def _spice_needs_libvirt(self) -> VMDef:
        if self.spice and self.host is None:
            raise ValueError(
                "spice: true needs a libvirt VM (give it a host:); local QEMU VMs take "
                "keys and mouse through QMP"
            )
        if self.spice and self.machine == "microvm":
            raise ValueError("spice needs a display: use machine: q35 (or leave machine out)")
        return self

    @property
    def memory_mb(self) -> int:
        return parse_size_mb(self.memory, "memory")

    @property
    def resolved_display(self) -> str:
        return "vga" if self.spice else self.display

    @property
    def resolved_machine(self) -> str:
        return self.machine or ("q35" if self.resolved_display == "vga" else "microvm")

    def describe(self) -> str:
        return (
            f"{self.name}: image={self.image} cpus={self.cpus} memory={self.memory_mb}MiB "
            f"machine={self.resolved_machine} display={self.resolved_display} "
            f"disk={self.disk_mb}MiB"
            + (f" host={self.host}" if self.host else "")
            + (" spice" if self.spice else "")
        )


# -- actions --------------------------------------------------------------------------------


class _Action(_Model):
    vm: str | None = None
    """Which VM; may be left out when the scenario has one."""

    def describe(self) -> str:
        raise NotImplementedError


class QmpExpect(_Model):
    return_: Any = Field(default=None, alias="return")
    """The reply must contain this (mappings: a subset, recursively; else equal)."""
    error: str | None = None
    """The command must fail with this QMP error class (``GenericError``, ...)."""


class QmpStep(_Action):
    command: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    expect: QmpExpect = Field(default_factory=QmpExpect)
    timeout: float = Field(default=10.0, gt=0)

    def describe(self) -> str:
        text = f"qmp {self.command}"
        if self.arguments:
            text += f" {self.arguments}"
        if self.expect.error is not None:
            text += f" expect error {self.expect.error}"
        elif self.expect.return_ is not None:
            text += f" expect return {self.expect.return_!r}"
        return text


class ExecExpect(_Model):
    exit: int | None = 0
    """The exit code (``null``: any)."""
    stdout_contains: str | None = None
    stdout_regex: str | None = None
    stderr_contains: str | None = None

    _regex = field_validator("stdout_regex")(_check_regex)

    def describe(self) -> str:
        parts = [f"exit={'any' if self.exit is None else self.exit}"]
        for key in ("stdout_contains", "stdout_regex", "stderr_contains"):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key}={value!r}")
        return " ".join(parts)


class QgaExecStep(_Action):
    argv: list[str] = Field(min_length=1)
    stdin: str | None = None
    expect: ExecExpect = Field(default_factory=ExecExpect)
    timeout: float = Field(default=60.0, gt=0)

    def describe(self) -> str:
        return f"qga_exec {self.argv} expect {self.expect.describe()}"


class FilePutStep(_Action):
    path: str
    content: str | None = None
    from_: str | None = Field(default=None, alias="from")
    """A host file, relative to the scenario file's directory."""
    timeout: float = Field(default=30.0, gt=0)

    _path = field_validator("path")(_guest_path)

    @model_validator(mode="after")
    def _source(self) -> FilePutStep:
        _exactly_one(self, ("content", "from_"))
        return self

    def describe(self) -> str:
        source = f"{len(self.content.encode())} bytes" if self.content is not None else self.from_
        return f"file_put {self.path} <- {source}"


class FileGetStep(_Action):
    path: str
    to: str | None = None
    """Where to save it, relative to the report directory's files/ (default: its name)."""
    timeout: float = Field(default=30.0, gt=0)

    _path = field_validator("path")(_guest_path)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in Path(value).parts):
            raise ValueError("must be a relative path inside the report directory")
        return value

    @property
    def target(self) -> str:
        return self.to or (Path(self.path).name or "file")

    def describe(self) -> str:
        return f"file_get {self.path} -> files/{self.target}"


class FileCheckStep(_Action):
    path: str
    contains: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    timeout: float = Field(default=30.0, gt=0)

    _path = field_validator("path")(_guest_path)

    @model_validator(mode="after")
    def _something(self) -> FileCheckStep:
        _exactly_one(self, ("contains", "sha256"), at_least=True)
        return self

    def describe(self) -> str:
        checks = []
        if self.contains is not None:
            checks.append(f"contains {self.contains!r}")
        if self.sha256 is not None:
            checks.append(f"sha256 {self.sha256}")
        return f"file_check {self.path} {' and '.join(checks)}"


class SendKeysStep(_Action):
    keys: list[list[str]] | None = None
    """Chords pressed one after another: ``[["ctrl", "alt", "delete"]]``."""
    text: str | None = None
    """Typed one character at a time (US layout, shift added where needed)."""
    hold_time_ms: int | None = Field(default=None, ge=1, le=10000)
    via: Literal["qmp", "spice"] = "qmp"
    """``spice`` sends PC-AT scancodes on the VM's Spice inputs channel (``spice: true``)."""
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        for chord in value or []:
            if not chord:
                raise ValueError("an empty chord presses nothing")
            unknown = [key for key in chord if key not in QCODES]
            if unknown:
                raise ValueError(
                    f"unknown QKeyCode {', '.join(map(repr, unknown))} (names like ctrl, alt, "
                    "delete, ret, spc, a, f1: see QEMU's qapi/ui.json QKeyCode)"
                )
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None:
            if not value:
                raise ValueError("empty text types nothing")
            try:
                text_to_chords(value)
            except InvalidInput as err:
                raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _one(self) -> SendKeysStep:
        _exactly_one(self, ("keys", "text"))
        return self

    @property
    def chords(self) -> list[list[str]]:
        return self.keys if self.keys is not None else text_to_chords(self.text or "")

    def describe(self) -> str:
        chords = " ".join("+".join(chord) for chord in self.chords)
        what = f"text {self.text!r}: " if self.text is not None else ""
        via = " via spice" if self.via == "spice" else ""
        return f"send_keys {what}{chords}{via}"


class MouseStep(_Action):
    """Move the pointer (``move_to`` absolute, ``move_by`` relative) and/or click."""

    move_to: list[int] | None = None
    move_by: list[int] | None = None
    click: Literal["left", "middle", "right"] | None = None
    via: Literal["qmp", "spice"] = "qmp"
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("move_to", "move_by")
    @classmethod
    def _pair(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(value) != 2:
            raise ValueError("give two numbers: [x, y]")
        return value

    @model_validator(mode="after")
    def _something(self) -> MouseStep:
        if self.move_to is not None and self.move_by is not None:
            raise ValueError("give move_to or move_by, not both")
        if self.move_to is None and self.move_by is None and self.click is None:
            raise ValueError("a mouse step needs move_to, move_by or click")
        if self.move_to is not None and min(self.move_to) < 0:
            raise ValueError("move_to needs non-negative coordinates")
        return self

    def describe(self) -> str:
        parts = []
        if self.move_to is not None:
            parts.append(f"to {self.move_to[0]},{self.move_to[1]}")
        if self.move_by is not None:
            parts.append(f"by {self.move_by[0]},{self.move_by[1]}")
        if self.click is not None:
            parts.append(f"click {self.click}")
        via = " via spice" if self.via == "spice" else ""
        return f"mouse {' '.join(parts)}{via}"


class WaitForStep(_Action):
    qga_ping: bool | None = None
    qmp_event: str | None = None
    console_regex: str | None = None
    """Searched in the whole serial console log so far (re.MULTILINE)."""
    timeout: float = Field(default=60.0, gt=0)

    _regex = field_validator("console_regex")(_check_regex)

    @field_validator("qga_ping")
    @classmethod
    def _ping(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError("qga_ping: false waits for nothing; use true or leave it out")
        return value

    @model_validator(mode="after")
    def _one(self) -> WaitForStep:
        _exactly_one(self, ("qga_ping", "qmp_event", "console_regex"))
        return self

    def describe(self) -> str:
        if self.qga_ping:
            what = "qga_ping"
        elif self.qmp_event is not None:
            what = f"qmp_event {self.qmp_event}"
        else:
            what = f"console_regex {self.console_regex!r}"
        return f"wait_for {what} (timeout {self.timeout:g}s)"


class ScreenshotStep(_Action):
    name: str = Field(pattern=_FILE_NAME)
    timeout: float = Field(default=10.0, gt=0)

    @property
    def filename(self) -> str:
        return self.name if self.name.endswith(".png") else f"{self.name}.png"

    def describe(self) -> str:
        return f"screenshot {self.filename}"


class SleepStep(_Model):
    seconds: float = Field(gt=0, le=3600)

    def describe(self) -> str:
        return f"sleep {self.seconds:g}s"


class AssertStatusStep(_Action):
    status: RunState
    timeout: float = Field(default=10.0, gt=0)

    def describe(self) -> str:
        return f"assert_status {self.status}"


Action = (
    QmpStep
    | QgaExecStep
    | FilePutStep
    | FileGetStep
    | FileCheckStep
    | SendKeysStep
    | MouseStep
    | WaitForStep
    | ScreenshotStep
    | SleepStep
    | AssertStatusStep
)

ACTION_KINDS = (
    "qmp",
    "qga_exec",
    "file_put",
    "file_get",
    "file_check",
    "send_keys",
    "mouse",
    "wait_for",
    "screenshot",
    "sleep",
    "assert_status",
)


class Step(_Model):
    name: str | None = None
    qmp: QmpStep | None = None
    qga_exec: QgaExecStep | None = None
    file_put: FilePutStep | None = None
    file_get: FileGetStep | None = None
    file_check: FileCheckStep | None = None
    send_keys: SendKeysStep | None = None
    mouse: MouseStep | None = None
    wait_for: WaitForStep | None = None
    screenshot: ScreenshotStep | None = None
    sleep: SleepStep | None = None
    assert_status: AssertStatusStep | None = None

    @field_validator("sleep", mode="before")
    @classmethod
    def _sleep_shorthand(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"seconds": value}  # `- sleep: 2`
        return value

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        given = [kind for kind in ACTION_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a step has exactly one action ({', '.join(ACTION_KINDS)}); "
                + (f"got {', '.join(given)}" if given else "got none")
            )
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in ACTION_KINDS if getattr(self, kind) is not None)

    @property
    def action(self) -> Action:
        action: Action = getattr(self, self.kind)
        return action

    @property
    def vm(self) -> str | None:
        action = self.action
        return action.vm if isinstance(action, _Action) else None

    @property
    def title(self) -> str:
        return self.name or self.action.describe()


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    hosts: dict[str, str] = Field(default_factory=dict)
    """libvirt hosts the VMs may run on: id -> URI (qemu:///system, qemu+ssh://...)."""
    vms: list[VMDef] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: dict[str, str]) -> dict[str, str]:
        from cargobay.vmcontrol.uri import LibvirtUri, LibvirtUriError

        for host_id, uri in value.items():
            if not re.fullmatch(_NAME, host_id):
                raise ValueError(f"host id {host_id!r} is not a valid name")
            try:
                LibvirtUri.parse(uri)
            except LibvirtUriError as err:
                raise ValueError(f"host {host_id!r}: {err}") from None
        return value

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str = PrivateAttr(default="<scenario>")

    @property
    def base_dir(self) -> Path:
        """Where ``from:`` paths are resolved (the scenario file's directory)."""
        return self._base_dir

    @property
    def source(self) -> str:
        return self._source

    def vm(self, name: str) -> VMDef:
        return next(vm for vm in self.vms if vm.name == name)

    def host_file(self, step: FilePutStep) -> Path:
        assert step.from_ is not None
        return (self._base_dir / step.from_).resolve()

    def describe(self) -> str:
        """The resolved scenario, one line per VM and step (what ``--dry-run`` prints)."""
        lines = [f"scenario {self.name} ({self._source})"]
        if self.description:
            lines.append(f"  {self.description}")
        if self.hosts:
            lines.append("hosts:")
            lines += [f"  {host_id}: {uri}" for host_id, uri in self.hosts.items()]
        lines.append("vms:")
        lines += [f"  {vm.describe()}" for vm in self.vms]
        lines.append("steps:")
        for n, step in enumerate(self.steps, 1):
            action = step.action
            if isinstance(action, FilePutStep) and action.from_ is not None:
                text = f"file_put {action.path} <- {self.host_file(action)}"
            else:
                text = action.describe()
            where = f"[{step.vm}] " if step.vm else ""
            label = f" ({step.name})" if step.name else ""
            lines.append(f"  {n:2d}. {where}{text}{label}")
        return "\n".join(lines)


# -- loading --------------------------------------------------------------------------------


def format_loc(loc: Sequence[int | str]) -> str:
    """``("steps", 3, "qga_exec", "expect", "exit")`` -> ``steps[3].qga_exec.expect.exit``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _resolve(scenario: Scenario) -> list[tuple[str, str]]:
    """Fill in default VMs and check what pydantic cannot: names, references, files."""
    problems: list[tuple[str, str]] = []
    names = [vm.name for vm in scenario.vms]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append((f"vms[{i}].name", f"duplicate VM name {name!r}"))
    only = names[0] if len(names) == 1 else None
    for i, step in enumerate(scenario.steps):
        action = step.action
        where = f"steps[{i}].{step.kind}"
        if isinstance(action, _Action):
            if action.vm is None:
                if only is None:
                    problems.append(
                        (f"{where}.vm", f"say which VM: the scenario has {', '.join(names)}")
                    )
                else:
                    action.vm = only
            elif action.vm not in names:
                problems.append(
                    (f"{where}.vm", f"unknown VM {action.vm!r} (VMs: {', '.join(names)})")
                )
        if isinstance(action, FilePutStep) and action.from_ is not None:
            host = scenario.host_file(action)
            if not host.is_file():
                problems.append((f"{where}.from", f"no such file: {host}"))
        if (
            isinstance(action, ScreenshotStep)
            and action.vm in names
            and scenario.vm(action.vm).resolved_display == "none"
        ):
            problems.append(
                (
                    f"{where}.vm",
                    f"VM {action.vm!r} has no display to capture: give it display: vga",
                )
            )
    return problems


def parse_scenario(
    data: object, *, source: str = "<scenario>", base_dir: Path | None = None
) -> Scenario:
    """Validate already-parsed YAML; raises ``ScenarioError`` naming every bad field."""
    if not isinstance(data, dict):
        raise ScenarioError(source, [("", "a scenario is a mapping with name, vms and steps")])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(
            source,
            [(format_loc(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in err.errors()],
        ) from None
    scenario._source = source
    scenario._base_dir = (base_dir or Path.cwd()).resolve()
    problems = _resolve(scenario)
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ScenarioError(str(path), [("", f"cannot read it: {err.strerror}")]) from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ScenarioError(str(path), [(where, f"not valid YAML: {err}")]) from None
    return parse_scenario(data, source=str(path), base_dir=path.parent)
