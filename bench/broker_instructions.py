"""Benchmark: instructions per CONNECT of the token broker against the same broker with
auth off, counted by callgrind -- a figure that machine load does not move (run to run
under 1 %, where bench/broker.py's requests/s ratios move by 0.15-0.25 on a shared
machine; docs/benchmarks.md "Noise").

Each broker of bench/broker.py (``serve token`` / ``serve open``) runs under ``valgrind
--tool=callgrind --instr-atstart=no``; a warm-up connects every device of the bench's
fleet once, then instrumentation is switched on (``callgrind_control``) for ``--connects``
CONNECT/CONNACK/DISCONNECT exchanges by 16 workers.  Prints Ir per CONNECT of each and
their ratio (auth off / token: 1.0 would be a token check for free).  Needs valgrind
(Debian: ``apt-get install valgrind``); exits 2 with one line without it.

    python bench/broker_instructions.py [--connects 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import broker as bench  # noqa: E402  (bench/broker.py: its brokers, fleet and packets)

WORKERS = 16


async def _connects(port: int, kind: str, count: int) -> None:
    passwords = bench._passwords(kind)
    user = bench.USER if kind == "token" else None
    seq = itertools.count()

    async def worker() -> None:
        while (k := next(seq)) < count:
            packet = bench.connect_packet(
                f"GID_bench@@@b{k % bench.FLEET}", user, passwords[k % len(passwords)]
            )
            await bench._one_connect(port, packet)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


def _instructions(kind: str, connects: int, workdir: str) -> int:
    out = os.path.join(workdir, f"callgrind-{kind}.out")
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(ROOT / "bench" / "broker.py"),
            "serve",
            kind,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        asyncio.run(_connects(port, kind, bench.FLEET))  # warm-up: every device once
        for command in ("--instr=on", "--zero"):
            subprocess.run(["callgrind_control", command, str(proc.pid)], check=True,
                           capture_output=True)  # fmt: skip
        asyncio.run(_connects(port, kind, connects))
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True,
                       capture_output=True)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(120)
    dumps = sorted(Path(workdir).glob(f"callgrind-{kind}.out.*"))
    summary = next(
        line for line in dumps[-1].read_text().splitlines() if line.startswith("summary")
    )
    return int(summary.split()[1]) // connects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connects", type=int, default=1500, help="measured connects")
    args = parser.parse_args()
    if args.connects < 100:
        parser.error("--connects must be at least 100")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("broker_instructions: valgrind is needed (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-cg-") as workdir:
        token = _instructions("token", args.connects, workdir)
        open_ = _instructions("open", args.connects, workdir)
    print(f"instructions per CONNECT ({args.connects} connects, callgrind):")
    print(f"  token {token:>9,}   auth off {open_:>9,}")
    print(f"ratio auth off / token = {open_ / token:.3f} (1.0: the token check is free)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
