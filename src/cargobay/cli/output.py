"""What the CLI prints: tables, JSON/YAML documents, progress, step timings.

stdout carries data only (tables, documents, a command's output), so it can be piped;
notes, progress and timings go to stderr.  Progress is a rich bar or spinner when stderr
is a terminal and plain lines otherwise (logs, CI, ``2>file``), never both.
"""

from __future__ import annotations

import enum
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from cargobay.cli.inputs import format_mib

__all__ = [
    "Format",
    "as_data",
    "emit_document",
    "image_rows",
    "machine_detail",
    "machine_rows",
    "note",
    "pick_format",
    "print_table",
    "progress_events",
    "spinner",
    "step",
]


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def pick_format(fmt: Format | None, json_flag: bool) -> Format:
    """``--json`` is shorthand for ``--format json``; saying both differently is an error."""
    from cargobay.errors import InvalidInput

    if json_flag and fmt not in (None, Format.JSON):
        raise InvalidInput(f"--json and --format {fmt} contradict each other; use one")
    if json_flag:
        return Format.JSON
    return fmt or Format.TABLE


def as_data(obj: Any) -> Any:
    """Plain JSON-able data from what the SDK returns (dicts, pydantic models, dataclasses)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if is_dataclass(obj) and not isinstance(obj, type):
        return as_data(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): as_data(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_data(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


def emit_document(data: Any, fmt: Format) -> None:
    """A JSON or YAML document on stdout."""
    data = as_data(data)
    if fmt is Format.YAML:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# -- consoles -------------------------------------------------------------------------


def _stdout_console() -> Console:
    # Created per call: tests and callers may swap sys.stdout.  Piped output is not cut
    # to 80 columns (rich's default off a terminal): scripts read whole rows, as they do
    # from `docker ps | ...`.  COLUMNS still wins when set.
    width = None
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        width = 4096
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def _stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def note(message: str) -> None:
    """One line of information on stderr."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)


def accel_notice(machine: Mapping[str, Any]) -> str | None:
    """The hypervisor's one line about its accelerator choice, when it fell back (KVM
    present but a test guest did not boot under it, so TCG), else ``None``."""
    handle = (machine.get("runtime") or {}).get("handle") or {}
    notice = (handle.get("extra") or {}).get("accel_notice")
    return str(notice) if notice else None


def print_table(headers: list[str], rows: Iterable[list[str]]) -> None:
    """A docker-style table on stdout: no box, columns separated by spaces."""
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for h in headers:
        table.add_column(h, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*row)
    _stdout_console().print(table)


def print_pairs(pairs: list[tuple[str, str]]) -> None:
    """A two-column key/value listing on stdout."""
    table = Table(box=None, show_header=False, show_edge=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, value)
    _stdout_console().print(table)


# -- machines and images ----------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def age(value: Any, now: datetime | None = None) -> str:
    """``2024-05-01T10:00:00Z`` -> ``3m``, ``2h``, ``4d`` ago (``-`` when unknown)."""
    when = _parse_time(value)
    if when is None:
        return "-"
    seconds = max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def state_text(machine: Mapping[str, Any]) -> str:
    state = machine.get("state") or {}
    if isinstance(state, str):
        return state
    kind = str(state.get("kind", "?"))
    reason = state.get("reason")
    return f"{kind}: {reason}" if kind == "error" and reason else kind


def _ports(config: Mapping[str, Any]) -> str:
    out = []
    for p in config.get("ports") or ():
        if isinstance(p, Mapping):
            out.append(f"{p.get('host')}:{p.get('guest')}/{p.get('protocol', 'tcp')}")
        else:
            out.append(str(p))
    return ",".join(out) or "-"


MACHINE_HEADERS = ["NAME", "STATE", "IMAGE", "CPUS", "MEMORY", "DISK", "PORTS", "AGE"]


def machine_rows(
    machines: Iterable[Mapping[str, Any]], now: datetime | None = None
) -> list[list[str]]:
    rows = []
    for m in machines:
        config = m.get("config") or {}
        rows.append(
            [
                str(m.get("name", "?")),
                state_text(m),
                str(config.get("image", "-")),
                str(config.get("cpus", "-")),
                format_mib(config.get("memory_mb")),
                format_mib(config.get("disk_mb")),
                _ports(config),
                age(m.get("created_at"), now),
            ]
        )
    return rows


def machine_detail(m: Mapping[str, Any], now: datetime | None = None) -> list[tuple[str, str]]:
    config = m.get("config") or {}
    runtime = m.get("runtime") or {}
    boot = runtime.get("boot_seconds")
    pairs = [
        ("name", str(m.get("name", "?"))),
        ("id", str(m.get("id", "-"))),
        ("state", state_text(m)),
        ("agent", "ready" if m.get("agent_ready") else "not ready"),
        ("image", str(config.get("image", "-"))),
        ("template", str(config.get("template") or "-")),
        ("cpus", str(config.get("cpus", "-"))),
        ("memory", format_mib(config.get("memory_mb"))),
        ("disk", format_mib(config.get("disk_mb"))),
        ("ports", _ports(config)),
        ("backend", str(config.get("backend", "-"))),
        ("accel", str(runtime.get("accel") or "-")),
        ("boot", f"{boot:.2f} s" if isinstance(boot, int | float) else "-"),
        ("started", str(runtime.get("started_at") or "-")),
        ("restart", _restart(config, runtime)),
        ("apps", ", ".join(sorted(config.get("apps") or {})) or "-"),
        ("limits", _limits(runtime)),
        ("created", f"{m.get('created_at', '-')} ({age(m.get('created_at'), now)} ago)"),
    ]
    return pairs


def _restart(config: Mapping[str, Any], runtime: Mapping[str, Any]) -> str:
    policy = str(config.get("restart") or "no")
    restarts = runtime.get("restarts") or 0
    text = policy if not restarts else f"{policy} ({restarts} automatic restart(s))"
    last = runtime.get("last_exit")
    return f"{text}; last end: {last}" if last else text


def _limits(runtime: Mapping[str, Any]) -> str:
    extra = (runtime.get("handle") or {}).get("extra") or {}
    if "cgroups" in extra:
        return f"cgroup v{extra.get('cgroup_version')}: {extra['cgroups']}"
    return str(extra.get("cgroup_note") or "-")


IMAGE_HEADERS = ["NAME", "KERNEL", "ROOTFS", "AGENT", "BUILT"]


def _size(nbytes: Any) -> str:
    if not isinstance(nbytes, int | float):
        return "-"
    return format_mib(round(nbytes / (1024 * 1024), 1)) if nbytes >= 1024 * 1024 else "<1 MiB"


def image_rows(images: Iterable[Mapping[str, Any]], now: datetime | None = None) -> list[list[str]]:
    rows = []
    for img in images:
        rootfs = img.get("rootfs") or {}
        rows.append(
            [
                str(img.get("name", "?")),
                str(img.get("kernel_version", "-")),
                _size(rootfs.get("size")),
                str(img.get("agent_version", "-")),
                f"{age(img.get('built_at'), now)} ago",
            ]
        )
    return rows


# -- progress -----------------------------------------------------------------------------


@contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner on a terminal; one plain line otherwise."""
    if stderr_is_tty():
        with _stderr_console().status(message):
            yield
    else:
        note(message)
        yield


PLAIN_EVERY = 5.0
"""Seconds between plain progress lines within one tenth of a step."""


def progress_events(events: Iterable[Mapping[str, Any]], title: str) -> Mapping[str, Any] | None:
    """Show NDJSON progress events (``step``, ``fraction``, ``message``); return the
    ``done`` event, or None when the stream ended without one."""
    if stderr_is_tty():
        return _progress_bar(events, title)
    done = None
    shown: tuple[Any, int] | None = None
    shown_at = 0.0
    for ev in events:
        if ev.get("type") == "done":
            done = ev
            continue
        if ev.get("type") != "progress":
            continue
        raw = ev.get("fraction")
        known = isinstance(raw, int | float)
        fraction = float(raw) if isinstance(raw, int | float) else 0.0
        # One line per step, per tenth of a step, and at least every PLAIN_EVERY seconds:
        # a debootstrap reports hundreds of packages, a log needs a few dozen lines.
        key = (ev.get("step"), int(fraction * 10) if known else -1)
        now = time.monotonic()
        if key == shown and now - shown_at < PLAIN_EVERY:
            continue
        shown, shown_at = key, now
        pct = f"{fraction * 100:3.0f}%" if known else "    "
        note(f"{title}: {pct} {ev.get('step', '')}: {ev.get('message', '')}".rstrip(": "))
    return done


def _progress_bar(events: Iterable[Mapping[str, Any]], title: str) -> Mapping[str, Any] | None:
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    done = None
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
        console=_stderr_console(),
        transient=False,
    ) as progress:
        task = progress.add_task(title, total=1.0, detail="")
        for ev in events:
            if ev.get("type") == "done":
                done = ev
                progress.update(task, completed=1.0, detail="done")
                continue
            if ev.get("type") != "progress":
                continue
            fraction = ev.get("fraction")
            detail = " ".join(str(ev.get(k) or "") for k in ("step", "message")).strip()
            if isinstance(fraction, int | float):
                progress.update(task, completed=max(0.0, min(1.0, float(fraction))), detail=detail)
            else:
                progress.update(task, detail=detail)
    return done


class Stopwatch:
    """Step timings: ``step("boot", "run-1a2b3c, tcg")`` prints ``boot   3.42 s  ...``."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.mark = self.start

    def lap(self) -> float:
        now = time.monotonic()
        elapsed, self.mark = now - self.mark, now
        return elapsed

    def total(self) -> float:
        return time.monotonic() - self.start


def step(name: str, seconds: float, detail: str = "") -> None:
    note(f"{name:<8}{seconds:7.2f} s  {detail}".rstrip())
