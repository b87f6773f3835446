"""A machine's metrics (``GET /v1/machines/{name}/metrics``) as label/value rows for
``cargobay vm status NAME`` and ``aiva status NAME``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["metrics_pairs"]


def _mib(nbytes: Any) -> str:
    return "-" if nbytes is None else f"{int(nbytes) / (1024 * 1024):.1f} MiB"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1f} %"


def _secs(value: Any) -> str:
    if value is None:
        return "-"
    s = int(value)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def metrics_pairs(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rows for a running machine's metrics; nothing for one with no process."""
    if m.get("pid") is None:
        return []
    rows = [
        ("host cpu", f"{_pct(m.get('cpu_percent'))} (of one CPU; {m.get('cpu_seconds')} s used)"),
        ("host rss", f"{_mib(m.get('rss_bytes'))} of {_mib(m.get('memory_limit_bytes'))}"),
        ("uptime", _secs(m.get("uptime_seconds"))),
    ]
    for d in m.get("disks") or []:
        rows.append(
            (
                f"disk {d['drive']}",
                f"read {_mib(d['read_bytes'])} ({d['read_ops']} ops), "
                f"written {_mib(d['write_bytes'])} ({d['write_ops']} ops)",
            )
        )
    if m.get("disk_error"):
        rows.append(("disk", str(m["disk_error"])))
    net = m.get("network")
    if net:
        if net.get("rx_bytes") is None:
            rows.append(("network", str(net.get("note") or "-")))
        else:
            rows.append(("network", f"rx {_mib(net['rx_bytes'])}, tx {_mib(net['tx_bytes'])}"))
    guest = m.get("guest")
    if guest:
        mem = guest["memory"]
        rows += [
            ("guest cpu", _pct(guest.get("cpu_percent"))),
            (
                "guest memory",
                f"{mem['used_mb']} MiB used, {mem['available_mb']} available, "
                f"{mem['cache_mb']} cache, {mem['total_mb']} total",
            ),
            ("guest uptime", _secs(guest.get("uptime_seconds"))),
        ]
    elif m.get("guest_error"):
        rows.append(("guest", str(m["guest_error"])))
    return rows
