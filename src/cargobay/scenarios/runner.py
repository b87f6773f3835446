"""Run a scenario: boot its VMs together, run the steps in order, always tear down.

    result = await ScenarioRunner(scenario, QemuProvider(), report_dir).run()

The VMs boot concurrently (``asyncio.gather``); a VM that fails to boot fails the run
(the others are still torn down).  Steps run one after another, each timed; the first
step that fails stops the run (later steps are ``skipped``) unless ``keep_going``.
A step *fails* when the VM answered but not as expected, and is an *error* when it
could not run at all (a refused command, a broken channel).

Every QMP/QGA request and reply is recorded (``traffic``) with the step that sent it.
For a failed step the runner keeps, in ``failure/step-NN/``: that step's traffic, the
console log of its VM as it was at the failure, and a fresh screenshot (or the last one
taken) when the VM has a display.  At the end every VM's console log is copied to
``console/`` and the reports are written (JSON, JUnit XML, HTML: ``report``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cargobay.errors import CargoBayError, GuestError
from cargobay.scenarios import report
from cargobay.scenarios.provider import BootedVM, QgaChannel, VMProvider
from cargobay.scenarios.results import RunResult, StepResult, VMResult
from cargobay.scenarios.schema import (
    AssertStatusStep,
    FileCheckStep,
    FileGetStep,
    FilePutStep,
    MouseStep,
    QgaExecStep,
    QmpStep,
    Scenario,
    ScreenshotStep,
    SendKeysStep,
    SleepStep,
    Step,
    WaitForStep,
)
from cargobay.scenarios.traffic import TrafficLog
from cargobay.vmcontrol.qmp import QmpCommandError

if TYPE_CHECKING:
    from cargobay.vmcontrol.manager import TransportManager

# QKeyCode names (what chords are written in) where the Spice key table says otherwise
_SPICE_KEY_NAMES = {
    "ret": "enter",
    "spc": "space",
    "ctrl_r": "rctrl",
    "alt_r": "ralt",
    "shift_r": "rshift",
    "meta_l": "meta",
    "meta_r": "rmeta",
    "caps_lock": "capslock",
    "num_lock": "numlock",
    "scroll_lock": "scrolllock",
    "pgup": "pageup",
    "pgdn": "pagedown",
}

__all__ = ["ScenarioRunner", "StepFailed", "run_scenario"]

log = logging.getLogger(__name__)

OUTPUT_KEEP = 4096
"""Characters of a command's stdout/stderr kept in a step's details."""
STEP_GRACE = 10.0
"""A step is cut off this long after its own timeout (a hung channel must not hang the run)."""
CONSOLE_POLL = 0.25


class StepFailed(Exception):
    """The VM answered, but not as the step expected."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def _subset(expected: Any, actual: Any) -> bool:
    """``expected`` is in ``actual``: mappings recursively by key, everything else equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and _subset(value, actual[key]) for key, value in expected.items()
        )
    return bool(expected == actual)


def _text(data: bytes) -> str:
    text = data.decode(errors="replace")
    return text if len(text) <= OUTPUT_KEEP else text[:OUTPUT_KEEP] + "...[cut]"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ScenarioRunner:
    def __init__(
        self,
        scenario: Scenario,
        provider: VMProvider,
        report_dir: Path,
        *,
        keep_going: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.provider = provider
        self.report_dir = report_dir.absolute()
        self.keep_going = keep_going
        self.traffic = TrafficLog()
        self._progress = progress or (lambda line: None)
        self._vms: dict[str, BootedVM] = {}
        self._last_screenshot: dict[str, Path] = {}
        self._result: RunResult | None = None

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> RunResult:
        scenario = self.scenario
        self.report_dir.mkdir(parents=True, exist_ok=True)
        result = self._result = RunResult(
            scenario=scenario.name,
            source=scenario.source,
            run_id=secrets.token_hex(3),
            started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            vms=[VMResult(vm.name) for vm in scenario.vms],
            steps=[
                StepResult(i, s.kind, s.title, s.vm, s.action.describe())
                for i, s in enumerate(scenario.steps)
            ],
        )
        started = time.monotonic()
        try:
            if await self._boot_all(result):
                await self._run_steps(result)
            else:
                result.status = "error"
        finally:
            await asyncio.shield(self._teardown(result))
            result.duration_s = round(time.monotonic() - started, 3)
            report.write_reports(result, self.report_dir, self.traffic)
        return result

    async def _boot_all(self, result: RunResult) -> bool:
        self._progress(f"booting {len(self.scenario.vms)} VM(s)")

        async def boot(index: int) -> None:
            vm = self.scenario.vms[index]
            vm_result = result.vms[index]
            t0 = time.monotonic()
            try:
                booted = await self.provider.boot(
                    vm, run_id=result.run_id, index=index, traffic=self.traffic
                )
            except Exception as err:
                vm_result.status, vm_result.message = "failed", str(err)
                vm_result.boot_s = round(time.monotonic() - t0, 3)
                raise
            self._vms[vm.name] = booted
            vm_result.status, vm_result.info = "booted", dict(booted.info)
            vm_result.boot_s = round(booted.boot_seconds, 3)
            self._progress(f"  {vm.name}: started in {booted.boot_seconds:.1f}s ({booted.info})")

        outcomes = await asyncio.gather(
            *(boot(i) for i in range(len(self.scenario.vms))), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, Exception):
                raise failure  # cancellation, KeyboardInterrupt: the finally tears down
        if failures:
            result.message = "; ".join(
                f"VM {vm.name} did not boot: {vm.message}"
                for vm in result.vms
                if vm.status == "failed"
            )
            self._progress(result.message)
            return False
        return True

    async def _run_steps(self, result: RunResult) -> None:
        stop = False
        for index, step in enumerate(self.scenario.steps):
            step_result = result.steps[index]
            if stop:
                continue  # stays "skipped"
            self.traffic.step = index
            t0 = time.monotonic()
            try:
                await self._run_step(step, step_result)
                step_result.status = "passed"
            except StepFailed as err:
                step_result.status, step_result.message = "failed", str(err)
                step_result.details.update(err.details)
            except (CargoBayError, OSError, TimeoutError) as err:
                step_result.status = "error"
                step_result.message = f"{type(err).__name__}: {err}"
            finally:
                self.traffic.step = None
                step_result.duration_s = round(time.monotonic() - t0, 3)
            self._progress(
                f"  {index + 1:2d}/{len(self.scenario.steps)} {step_result.status:6s} "
                f"{step_result.duration_s:6.2f}s  {step_result.title}"
                + (f"\n       {step_result.message}" if step_result.message else "")
            )
            if step_result.status != "passed":
                result.status = "failed"
                await self._keep_failure_artefacts(step, step_result)
                stop = not self.keep_going

    async def _teardown(self, result: RunResult) -> None:
        console_dir = self.report_dir / "console"
        for vm_result in result.vms:
            booted = self._vms.get(vm_result.name)
            if booted is None:
                continue
            with contextlib.suppress(OSError):
                console_dir.mkdir(exist_ok=True)
                target = console_dir / f"{booted.name}.log"
                shutil.copyfile(booted.console_log, target)
                vm_result.console_log = str(target.relative_to(self.report_dir))
        vms = list(self._vms.values())
        self._vms.clear()
        outcomes = await asyncio.gather(
            *(self.provider.teardown(vm) for vm in vms), return_exceptions=True
        )
        for vm, outcome in zip(vms, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("tearing down VM %s failed: %s", vm.name, outcome)

    # -- failure artefacts ----------------------------------------------------------------

    async def _keep_failure_artefacts(self, step: Step, step_result: StepResult) -> None:
        folder = self.report_dir / "failure" / f"step-{step_result.index:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        kept: list[Path] = []
        traffic = folder / "traffic.json"
        traffic.write_text(self.traffic.dumps(self.traffic.for_step(step_result.index)))
        kept.append(traffic)
        names = [step.vm] if step.vm else list(self._vms)
        for name in names:
            booted = self._vms.get(name) if name else None
            if booted is None:
                continue
            with contextlib.suppress(OSError):
                console = folder / f"{name}-console.log"
                shutil.copyfile(booted.console_log, console)
                kept.append(console)
            shot = await self._failure_screenshot(name, booted, folder)
            if shot is not None:
                kept.append(shot)
        step_result.artifacts += [str(p.relative_to(self.report_dir)) for p in kept]

    async def _failure_screenshot(self, name: str, booted: BootedVM, folder: Path) -> Path | None:
        if self.scenario.vm(name).resolved_display == "none":
            return None
        target = folder / f"{name}-screen.png"
        try:
            await asyncio.wait_for(booted.qmp.screendump(target), timeout=10)
            return target
        except (CargoBayError, OSError, TimeoutError) as err:
            log.info("no failure screenshot of %s: %s", name, err)
        last = self._last_screenshot.get(name)
        if last is not None and last.exists():
            shutil.copyfile(last, target)
            return target
        return None

    # -- steps ----------------------------------------------------------------------------

    def _vm(self, name: str | None) -> BootedVM:
        assert name is not None  # filled in by the schema's resolution
        return self._vms[name]

    async def _spice(self, booted: BootedVM) -> Any:
        conn = booted.spice
        if conn is None:
            raise StepFailed(
                f"VM {booted.name} has no Spice server (give it spice: true; libvirt VMs only)"
            )
        if conn.state.value == "disconnected":
            await conn.connect()
        return conn

    async def _spice_keys(self, booted: BootedVM, step: SendKeysStep) -> None:
        spice = await self._spice(booted)
        if step.text is not None:
            await spice.type_text(step.text)
            return
        for chord in step.chords:
            await spice.send_keys("+".join(_SPICE_KEY_NAMES.get(k, k) for k in chord))

    async def _mouse(self, booted: BootedVM, step: MouseStep) -> None:
        if step.via == "spice":
            from cargobay.vmcontrol.spice.constants import MouseButton

            spice = await self._spice(booted)
            if step.move_to is not None:
                await spice.mouse_position(*step.move_to)
            if step.move_by is not None:
                await spice.mouse_motion(*step.move_by)
            if step.click is not None:
                await spice.mouse_click(MouseButton[step.click.upper()])
            return
        events: list[dict[str, Any]] = []
        if step.move_to is not None:
            x, y = step.move_to
            events += [
                {"type": "abs", "data": {"axis": "x", "value": x}},
                {"type": "abs", "data": {"axis": "y", "value": y}},
            ]
        if step.move_by is not None:
            dx, dy = step.move_by
            events += [
                {"type": "rel", "data": {"axis": "x", "value": dx}},
                {"type": "rel", "data": {"axis": "y", "value": dy}},
            ]
        if events:
            await booted.qmp.execute("input-send-event", {"events": events})
        if step.click is not None:
            for down in (True, False):
                button = {"type": "btn", "data": {"button": step.click, "down": down}}
                await booted.qmp.execute("input-send-event", {"events": [button]})

    def _qga(self, booted: BootedVM) -> QgaChannel:
        if booted.qga is None:
            raise StepFailed(f"VM {booted.name} has no qemu-guest-agent channel")
        return booted.qga

    async def _run_step(self, step: Step, out: StepResult) -> None:
        action = step.action
        if isinstance(action, SleepStep):
            await asyncio.sleep(action.seconds)
            return
        async with asyncio.timeout(action.timeout + STEP_GRACE):
            vm = self._vm(action.vm)
            if isinstance(action, QmpStep):
                await self._qmp(vm, action, out)
            elif isinstance(action, QgaExecStep):
                await self._qga_exec(vm, action, out)
            elif isinstance(action, FilePutStep):
                await self._file_put(vm, action, out)
            elif isinstance(action, FileGetStep):
                await self._file_get(vm, action, out)
            elif isinstance(action, FileCheckStep):
                await self._file_check(vm, action, out)
            elif isinstance(action, SendKeysStep):
                if action.via == "spice":
                    await self._spice_keys(vm, action)
                else:
                    for chord in action.chords:
                        await vm.qmp.send_keys(chord, hold_time_ms=action.hold_time_ms)
                out.details["chords"] = len(action.chords)
            elif isinstance(action, MouseStep):
                await self._mouse(vm, action)
            elif isinstance(action, WaitForStep):
                await self._wait_for(vm, action, out)
            elif isinstance(action, ScreenshotStep):
                await self._screenshot(vm, action, out)
            elif isinstance(action, AssertStatusStep):
                status = await vm.qmp.query_status()
                out.details["status"] = status
                if status != action.status:
                    raise StepFailed(f"VM {vm.name} is {status!r}, expected {action.status!r}")
            else:  # pragma: no cover - the schema has no other actions
                raise AssertionError(f"unhandled step {step.kind}")

    async def _qmp(self, vm: BootedVM, step: QmpStep, out: StepResult) -> None:
        expect = step.expect
        try:
            value = await vm.qmp.execute(step.command, step.arguments or None, timeout=step.timeout)
        except QmpCommandError as err:
            out.details["error"] = {"class": err.error_class, "desc": err.desc}
            if expect.error is None:
                raise
            if expect.error != err.error_class:
                raise StepFailed(
                    f"QMP {step.command} failed with {err.error_class}, expected "
                    f"{expect.error}: {err.desc}"
                ) from err
            return
        out.details["return"] = value
        if expect.error is not None:
            raise StepFailed(f"QMP {step.command} succeeded, expected error {expect.error}")
        if expect.return_ is not None and not _subset(expect.return_, value):
            raise StepFailed(
                f"QMP {step.command} returned {value!r}, expected it to contain {expect.return_!r}"
            )

    async def _qga_exec(self, vm: BootedVM, step: QgaExecStep, out: StepResult) -> None:
        stdin = step.stdin.encode() if step.stdin is not None else None
        done = await self._qga(vm).run(step.argv, input_data=stdin, timeout=step.timeout)
        stdout, stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        out.details.update(
            exit=done.exit_code,
            signal=done.signal,
            stdout=_text(done.stdout),
            stderr=_text(done.stderr),
        )
        expect = step.expect
        problems = []
        if expect.exit is not None and done.exit_code != expect.exit:
            got = f"signal {done.signal}" if done.signal else f"exit {done.exit_code}"
            problems.append(f"{got}, expected exit {expect.exit}")
        if expect.stdout_contains is not None and expect.stdout_contains not in stdout:
            problems.append(f"stdout does not contain {expect.stdout_contains!r}")
        if expect.stdout_regex is not None and not re.search(
            expect.stdout_regex, stdout, re.MULTILINE
        ):
            problems.append(f"stdout does not match /{expect.stdout_regex}/")
        if expect.stderr_contains is not None and expect.stderr_contains not in stderr:
            problems.append(f"stderr does not contain {expect.stderr_contains!r}")
        if problems:
            raise StepFailed(f"{' '.join(step.argv)}: " + "; ".join(problems))

    async def _file_put(self, vm: BootedVM, step: FilePutStep, out: StepResult) -> None:
        if step.content is not None:
            data = step.content.encode()
        else:
            data = self.scenario.host_file(step).read_bytes()
        await self._qga(vm).file_write(step.path, data)
        out.details.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def _file_get(self, vm: BootedVM, step: FileGetStep, out: StepResult) -> None:
        data = await self._qga(vm).file_read(step.path)
        target = self.report_dir / "files" / step.target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        out.details.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        out.artifacts.append(str(target.relative_to(self.report_dir)))

    async def _file_check(self, vm: BootedVM, step: FileCheckStep, out: StepResult) -> None:
        data = await self._qga(vm).file_read(step.path)
        digest = hashlib.sha256(data).hexdigest()
        out.details.update(bytes=len(data), sha256=digest)
        if step.contains is not None and step.contains.encode() not in data:
            raise StepFailed(
                f"{step.path} does not contain {step.contains!r}", head=_text(data[:512])
            )
        if step.sha256 is not None and digest != step.sha256:
            raise StepFailed(f"{step.path} has sha256 {digest}, expected {step.sha256}")

    async def _wait_for(self, vm: BootedVM, step: WaitForStep, out: StepResult) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + step.timeout
        if step.qga_ping:
            qga = self._qga(vm)
            last: Exception | None = None
            while (left := deadline - loop.time()) > 0:
                try:
                    await qga.ping(timeout=min(left, 10.0))
                    return
                except GuestError as err:
                    last = err
                    await asyncio.sleep(min(0.5, max(deadline - loop.time(), 0)))
            raise StepFailed(
                f"qemu-ga in {vm.name} did not answer guest-ping within {step.timeout:g}s"
                + (f" ({last})" if last else ""),
                console_tail=_tail(vm.console_log),
            )
        if step.qmp_event is not None:
            try:
                event = await vm.qmp.wait_event(step.qmp_event, timeout=step.timeout)
            except CargoBayError as err:
                raise StepFailed(f"no QMP event {step.qmp_event} within {step.timeout:g}s") from err
            out.details["event"] = event
            return
        assert step.console_regex is not None
        pattern = re.compile(step.console_regex, re.MULTILINE)
        while True:
            try:
                text = vm.console_log.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            match = pattern.search(text)
            if match:
                out.details["match"] = match.group(0)[:OUTPUT_KEEP]
                return
            if loop.time() >= deadline:
                raise StepFailed(
                    f"the console of {vm.name} did not match /{step.console_regex}/ within "
                    f"{step.timeout:g}s",
                    console_tail=_tail(vm.console_log),
                )
            await asyncio.sleep(CONSOLE_POLL)

    async def _screenshot(self, vm: BootedVM, step: ScreenshotStep, out: StepResult) -> None:
        target = self.report_dir / "screenshots" / f"{vm.name}-{step.filename}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            await vm.qmp.screendump(target)
        except QmpCommandError as err:
            raise StepFailed(
                f"VM {vm.name} cannot take a screenshot: {err.desc} (a VM needs a display: "
                "display: vga, machine q35)"
            ) from err
        if not target.is_file() or target.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            raise StepFailed(f"QEMU reported a screendump but {target} is not a PNG file")
        self._last_screenshot[vm.name] = target
        relative = str(target.relative_to(self.report_dir))
        out.artifacts.append(relative)
        assert self._result is not None
        self._result.screenshots.append(relative)


async def run_scenario(
    scenario: Scenario,
    report_dir: Path,
    *,
    provider: VMProvider | None = None,
    keep_going: bool = False,
    progress: Callable[[str], None] | None = None,
    pool: TransportManager | None = None,
) -> RunResult:
    """Run ``scenario`` with ``provider``; by default the local QEMU provider, routed to
    libvirt for VMs with ``host:`` (from the scenario's ``hosts:`` or from ``pool``, the
    daemon's host pool)."""
    manager = None
    if provider is None:
        from cargobay.scenarios.provider import QemuProvider

        provider = QemuProvider()
        if any(vm.host for vm in scenario.vms):
            from cargobay.scenarios.libvirt_provider import (
                LibvirtProvider,
                RoutingProvider,
                manager_for,
            )

            manager = await manager_for(scenario.hosts, pool)
            provider = RoutingProvider(provider, LibvirtProvider(manager))
    runner = ScenarioRunner(
        scenario, provider, report_dir, keep_going=keep_going, progress=progress
    )
    try:
        return await runner.run()
    finally:
        if manager is not None:
            await manager.close()
