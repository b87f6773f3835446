"""yamux echo throughput, one run, same Unix socket kind for every pair of peers.

Pairs (client <-> server): Go<->Go (hashicorp/yamux, Debian's 2019 snapshot), Python client
<->Go server, Go client<->Python server, Python<->Python (virga, ``python -m virga``), and
py-libp2p<->py-libp2p (its ``Yamux`` driven over a Unix socket by libp2p_yamux_peer.py, in a
separate virtualenv that this script creates on first use).  Workloads: one stream of
``--single-bytes`` and ``--streams`` streams of ``--stream-bytes`` at once.  Every peer
speaks the same echo framing (8-byte length, then the bytes, echoed back) and each client
times its own echo (after connecting, data generated beforehand), so process start-up is
not measured.  Each measurement is repeated ``--repeat`` times; the table shows medians.

    .venv/bin/python bench/yamux_throughput.py [--repeat 5] [--no-libp2p] [--quick]

Results go to stdout (a table and the goal ratios) and to bench/results/*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.peers.goyamux import (  # noqa: E402
    GoUnavailable,
    PeerProcess,
    PeerProcesses,
    build,
    virga_command,
)

BENCH = Path(__file__).resolve().parent
LIBP2P_PEER = BENCH / "libp2p_yamux_peer.py"
DEFAULT_LIBP2P_VENV = BENCH / ".venv-libp2p"

IMPLS = ("go", "python", "libp2p")
PAIRS = [
    ("go", "go"),
    ("python", "go"),
    ("go", "python"),
    ("python", "python"),
    ("libp2p", "libp2p"),
]
LABEL = {"go": "Go", "python": "Python", "libp2p": "py-libp2p"}


@dataclass
class Measurement:
    client: str
    server: str
    workload: str
    streams: int
    bytes_per_stream: int
    runs_mb_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs_mb_s) if self.runs_mb_s else None


class Peers:
    """Commands for each implementation."""

    def __init__(self, goyamux: Path | None, libp2p_python: Path | None) -> None:
        self.goyamux = goyamux
        self.libp2p_python = libp2p_python

    def available(self, impl: str) -> bool:
        return {"go": self.goyamux, "python": True, "libp2p": self.libp2p_python}[impl] is not None

    def server(self, impl: str, address: str) -> list[str]:
        if impl == "go":
            return [str(self.goyamux), "serve-echo", "--listen", address]
        if impl == "python":
            return virga_command("serve-echo", "--listen", address)
        return [str(self.libp2p_python), str(LIBP2P_PEER), "serve-echo", "--listen", address]

    def client(self, impl: str, address: str, streams: int, nbytes: int) -> list[str]:
        args = ["echo-client", "--connect", address, "--streams", str(streams)]
        args += ["--bytes", str(nbytes)]
        if impl == "go":
            return [str(self.goyamux), *args]
        if impl == "python":
            return virga_command(*args)
        return [str(self.libp2p_python), str(LIBP2P_PEER), *args]


def parse_rate(peer: PeerProcess) -> float:
    for line in peer.lines:
        if line.startswith("ok "):
            fields = dict(item.split("=", 1) for item in line.split()[1:])
            return float(fields["MB/s"])
    tail = (peer.stderr_text.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"exit {peer.proc.returncode}: {tail}")


async def measure_pair(
    peers: Peers, client: str, server: str, workloads: list[tuple[str, int, int]], repeat: int
) -> list[Measurement]:
    """Run every workload ``repeat`` times; a failed or hung run is recorded, the server
    restarted, and the next run goes on."""
    results = [Measurement(client, server, name, n, size) for name, n, size in workloads]
    with tempfile.TemporaryDirectory(prefix="yamux-bench-") as tmp:
        address = f"unix:{tmp}/echo.sock"
        procs = PeerProcesses()
        srv: PeerProcess | None = None
        try:
            for m in results:
                limit = 60 + m.streams * m.bytes_per_stream / 1e6  # >= 1 MB/s or it hung
                for _ in range(repeat):
                    try:
                        if srv is None:
                            srv = await procs.start(
                                peers.server(server, address), name=f"{server} server"
                            )
                            await srv.wait_line("listening", within=30)
                        run = await procs.run(
                            peers.client(client, address, m.streams, m.bytes_per_stream),
                            within=limit,
                        )
                        m.runs_mb_s.append(parse_rate(run))
                    except (AssertionError, RuntimeError) as err:
                        first = str(err).splitlines()[0][:300]
                        m.failures.append(first)
                        if srv is not None:
                            await srv.stop()
                            srv = None
        finally:
            await procs.close()
    return results


def libp2p_python(venv: Path, install: bool) -> tuple[Path | None, str]:
    """The py-libp2p interpreter, installing libp2p into ``venv`` if asked; or why not."""
    python = venv / "bin" / "python"
    if not python.exists() and install:
        print(f"installing py-libp2p into {venv} (once) ...", file=sys.stderr, flush=True)
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return None, f"cannot create {venv}: {made.stderr.strip()[-300:]}"
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "libp2p"], capture_output=True, text=True
        )
        if pip.returncode != 0:
            return None, f"pip install libp2p failed: {pip.stderr.strip()[-500:]}"
    if not python.exists():
        return None, f"no py-libp2p virtualenv at {venv} (run without --no-libp2p to create it)"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, libp2p.stream_muxer.yamux.yamux as y, trio; "
            "print(m.version('libp2p'))",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return None, f"py-libp2p does not import: {probe.stderr.strip()[-300:]}"
    return python, f"libp2p {probe.stdout.strip()}"


def versions(goyamux: Path | None) -> dict[str, str]:
    go = shutil.which("go")
    go_version = (
        subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip()
        if go
        else "absent"
    )
    return {
        "python": platform.python_version(),
        "go": go_version,
        "goyamux": str(goyamux) if goyamux else "absent",
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def report(measurements: list[Measurement], notes: dict[str, str]) -> dict[str, object]:
    by_key = {(m.client, m.server, m.workload): m for m in measurements}
    workloads = list(dict.fromkeys(m.workload for m in measurements))
    headers = ["client <-> server", *workloads]
    rows = []
    for client, server in PAIRS:
        row = [f"{LABEL[client]} <-> {LABEL[server]}"]
        for w in workloads:
            m = by_key.get((client, server, w))
            if m is None:
                row.append("skipped")
            elif m.median is None:
                row.append(f"failed {len(m.failures)}/{len(m.failures)}")
            else:
                spread = f"{min(m.runs_mb_s):.0f}-{max(m.runs_mb_s):.0f}"
                failed = f", {len(m.failures)} failed" if m.failures else ""
                row.append(f"{m.median:7.1f} MB/s ({spread}{failed})")
        rows.append(row)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))

    def med(c: str, s: str, w: str) -> float | None:
        m = by_key.get((c, s, w))
        return m.median if m else None

    ratios: dict[str, float | None] = {}
    for w in workloads:
        ratios[f"{w}: Python<->Python / Go<->Go"] = ratio(
            med("python", "python", w), med("go", "go", w)
        )
        ratios[f"{w}: Python<->Python / py-libp2p"] = ratio(
            med("python", "python", w), med("libp2p", "libp2p", w)
        )
    print()
    goals = {"Python<->Python / Go<->Go": 0.5, "Python<->Python / py-libp2p": 5.0}
    for name, value in ratios.items():
        goal = next((g for k, g in goals.items() if name.endswith(k)), None)
        shown = "n/a" if value is None else f"{value:.2f}x"
        verdict = ""
        if value is not None and goal is not None:
            verdict = f"  (goal >= {goal:.1f}x: {'met' if value >= goal else 'NOT met'})"
        print(f"  {name:45} {shown}{verdict}")
    for m in measurements:
        for failure in dict.fromkeys(m.failures):
            count = m.failures.count(failure)
            print(f"  ! {LABEL[m.client]} <-> {LABEL[m.server]} {m.workload}: {count}x {failure}")
    for key, note in notes.items():
        print(f"  note: {key}: {note}")
    return {"ratios": ratios}


async def run(args: argparse.Namespace) -> int:
    notes: dict[str, str] = {}
    try:
        goyamux: Path | None = build()
    except GoUnavailable as err:
        goyamux = None
        notes["go"] = str(err)
    lp_python: Path | None = None
    if args.no_libp2p:
        notes["py-libp2p"] = "skipped (--no-libp2p)"
    else:
        lp_python, why = libp2p_python(args.libp2p_venv, install=True)
        notes["py-libp2p"] = why
    peers = Peers(goyamux, lp_python)

    workloads = [
        (f"1 x {args.single_bytes >> 20} MiB", 1, args.single_bytes),
        (f"{args.streams} x {args.stream_bytes >> 10} KiB", args.streams, args.stream_bytes),
    ]
    measurements: list[Measurement] = []
    for client, server in PAIRS:
        if not (peers.available(client) and peers.available(server)):
            continue
        print(f"measuring {LABEL[client]} client <-> {LABEL[server]} server ...", flush=True)
        measurements += await measure_pair(peers, client, server, workloads, args.repeat)

    summary = report(measurements, notes)
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out_dir / f"yamux_throughput-{stamp}.json"
    document = {
        "benchmark": "yamux echo throughput over a Unix socket",
        "when": stamp,
        "repeat": args.repeat,
        "versions": versions(goyamux),
        "notes": notes,
        "measurements": [asdict(m) | {"median_mb_s": m.median} for m in measurements],
        **summary,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--single-bytes", type=int, default=64 << 20)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--stream-bytes", type=int, default=256 << 10)
    parser.add_argument("--no-libp2p", action="store_true", help="leave py-libp2p out")
    parser.add_argument("--libp2p-venv", type=Path, default=DEFAULT_LIBP2P_VENV)
    parser.add_argument(
        "--quick", action="store_true", help="3 runs, 16 MiB single stream (a smoke run)"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.single_bytes = 3, 16 << 20
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
