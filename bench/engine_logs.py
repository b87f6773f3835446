"""Container log throughput: the sans-IO decoder alone, and a real container's logs read
through ``cargobay.containers.logs`` versus the ``docker logs`` command, in one run.

1. decoder: ``Demuxer`` + ``LineAssembler`` over a synthetic multiplexed stream
   (``--lines`` lines of ``--width`` bytes, stdout and stderr interleaved, fed in 32 KiB
   chunks like the socket delivers them): MB/s and lines/s;
2. engine: a busybox container (imported from busybox-static like the tests do) prints
   ``--lines`` lines and exits; then its whole log is read ``--repeat`` times by
   ``follow_logs`` and by ``docker logs`` (if a docker CLI is on PATH; output to
   /dev/null), and the medians are compared.

    .venv/bin/python bench/engine_logs.py [--lines 200000] [--width 80] [--repeat 5]

Needs a running dockerd (root, or the docker group).  Results go to stdout and
bench/results/engine_logs-<time>.json.  Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.integration.containers.conftest import BUSYBOX_IMAGE, import_busybox  # noqa: E402

from cargobay.containers.engine import DockerEngine  # noqa: E402
from cargobay.containers.logs import Demuxer, LineAssembler, follow_logs  # noqa: E402

CHUNK = 32 * 1024


def synthetic_stream(lines: int, width: int) -> bytes:
    body = b"x" * (width - 1) + b"\n"
    frames = []
    for i in range(lines):
        frames.append(struct.pack(">BxxxL", 1 + (i % 2), len(body)) + body)
    return b"".join(frames)


def bench_decoder(lines: int, width: int, repeat: int) -> dict[str, float]:
    data = synthetic_stream(lines, width)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        demux, assembler, count = Demuxer(), LineAssembler("bench"), 0
        for offset in range(0, len(data), CHUNK):
            demux.receive_data(data[offset : offset + CHUNK])
            for frame in demux.frames():
                count += len(assembler.feed(frame))
        times.append(time.perf_counter() - started)
        assert count == lines
    median = statistics.median(times)
    return {"seconds": median, "MB/s": len(data) / median / 1e6, "lines/s": lines / median}


async def bench_engine(lines: int, width: int, repeat: int) -> dict[str, object]:
    await import_busybox("unix:///var/run/docker.sock")
    async with await DockerEngine.connect() as engine:
        cmd = f"yes $(head -c {width - 1} /dev/zero | tr '\\0' y) | head -n {lines}"
        cid = await engine.create_container(
            None, {"Image": BUSYBOX_IMAGE, "Cmd": ["sh", "-c", cmd]}
        )
        try:
            await engine.start_container(cid)
            await engine.wait_container(cid)
            ours = []
            for _ in range(repeat):
                started = time.perf_counter()
                count = 0
                async for _line in follow_logs(engine, [cid]):
                    count += 1
                ours.append(time.perf_counter() - started)
            result: dict[str, object] = {
                "lines_read": count,
                "cargobay_seconds": statistics.median(ours),
            }
            docker = shutil.which("docker")
            if docker:
                theirs = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await asyncio.to_thread(
                        subprocess.run,
                        [docker, "logs", cid],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        check=True,
                    )
                    theirs.append(time.perf_counter() - started)
                result["docker_cli_seconds"] = statistics.median(theirs)
                result["ratio_cargobay_over_docker"] = statistics.median(ours) / statistics.median(
                    theirs
                )
            return result
        finally:
            await engine.remove_container(cid, force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    decoder = bench_decoder(args.lines, args.width, args.repeat)
    print(
        f"decoder: {decoder['MB/s']:.0f} MB/s, {decoder['lines/s']:.0f} lines/s "
        f"({args.lines} lines of {args.width} bytes, median of {args.repeat})"
    )
    engine = asyncio.run(bench_engine(args.lines, args.width, args.repeat))
    line = f"engine: cargobay {engine['cargobay_seconds']:.3f} s for {engine['lines_read']} lines"
    if "docker_cli_seconds" in engine:
        line += (
            f"; docker logs {engine['docker_cli_seconds']:.3f} s "
            f"(ratio {engine['ratio_cargobay_over_docker']:.2f}x)"
        )
    print(line)
    out = ROOT / "bench" / "results" / f"engine_logs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "decoder": decoder, "engine": engine}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
