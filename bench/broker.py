"""Benchmark: CONNECT/CONNACK rate and memory per idle connection of the token broker,
against the same broker with auth off and against stock amqtt 0.12.1, in one run.

Targets (docs/broker.md): token auth / auth off >= 0.95; token auth / stock amqtt >= 1.3;
memory per idle connection ours / stock <= 1.2.

Each broker runs in its own process (``python bench/broker.py serve KIND``), the load
generator in another; brokers are measured in turn, ``--rounds`` times, interleaved, and
the median of each is reported.  A connect is timed from TCP open to CONNACK; the
client then sends DISCONNECT and closes.  The generator plays a fleet of 1000 devices,
each with its own token, reconnecting in turn (client ids repeat, so every CONNECT after
the first thousand is also a session take-over/clean start).  Stock amqtt runs with its own
AnonymousAuthPlugin only (the least work it can do per CONNECT).

    python bench/broker.py [--duration 3] [--workers 16] [--rounds 3] [--idle 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.shared.procstats import cpu_seconds, rss_kb  # noqa: E402
from sim.shared.shutdown import StopRequest, stop_requested  # noqa: E402
from tests.broker.rawmqtt import connect_packet, packet  # noqa: E402

KINDS = ("token", "open", "stock")
KEY = bytes(range(32))
FLEET = 1000  # distinct devices (and tokens) cycled by the load generator
USER = "Token|dev-ak|mqtt-dev"


# -- the broker processes ---------------------------------------------------------------------


async def _serve(kind: str) -> None:
    async with stop_requested() as stop:
        await _serve_until(kind, stop)


async def _serve_until(kind: str, stop: StopRequest) -> None:
    if kind == "stock":
        from amqtt.broker import Broker

        broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await broker.start()
        port = broker._servers["default"].instance.sockets[0].getsockname()[1]
        print(port, flush=True)
        await stop.wait()
        await broker.shutdown()
        return
    from mock_broker.authority import TokenAuthority
    from mock_broker.broker import run_broker
    from mock_broker.config import BrokerConfig
    from mock_broker.decision import AccountInfo

    authority = TokenAuthority()
    authority.set_keys({"k1": KEY}, "k1")
    authority.set_account(AccountInfo("dev-ak", "dev-sk", frozenset({"mqtt-dev"})))
    config = BrokerConfig(port=0, auth_enabled=kind == "token")
    async with run_broker(config, authority=authority) as broker:
        print(broker.port, flush=True)
        await stop.wait()


# -- the load generator ------------------------------------------------------------------------


@functools.cache
def _passwords(kind: str, count: int = FLEET) -> list[str | None]:
    """One token per device of a fleet of ``count``, each device reconnecting in turn
    (minted once per generator process: the warm-up connects present the same tokens
    as the measured ones, as a fleet with persisted tokens does)."""
    if kind != "token":
        return [None]
    from sim.shared.protocol.tokens import TokenClaims, TokenCodec

    codec = TokenCodec({"k1": KEY}, "k1")
    now = int(time.time() * 1000)
    return [
        "RW|" + codec.encode(
            TokenClaims(f"bench-{i}", "dev-ak", "mqtt-dev", frozenset({"R", "W"}), (f"d/{i}/#",),
                        now + 86_400_000, now)
        )
        for i in range(count)
    ]  # fmt: skip


async def _one_connect(port: int, payload: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    head = await reader.readexactly(4)
    if head[0] >> 4 != 2 or head[3] != 0:
        raise RuntimeError(f"CONNACK refused: {head!r}")
    writer.write(packet(14, 0, b""))
    writer.close()


async def _rate(kind: str, port: int, duration: float, workers: int) -> float:
    passwords = _passwords(kind)
    username = USER if kind == "token" else None
    done = 0
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            n = next(counter)
            password = passwords[n % len(passwords)]
            await _one_connect(
                port, connect_packet(f"GID_bench@@@b{n % FLEET}", username, password)
            )
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.perf_counter() - started)


async def _idle_memory(kind: str, port: int, pid: int, count: int) -> float:
    """KiB of broker RSS per idle connection (connected, subscribed to nothing)."""
    passwords = _passwords(kind, count + 50)
    username = USER if kind == "token" else None
    held = []
    warm = []
    for i in range(50):  # warm the broker's allocator and caches first
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(connect_packet(f"GID_bench@@@w{i}", username, passwords[-1 - i % len(passwords)]))
        await r.readexactly(4)
        warm.append(w)
    await asyncio.sleep(0.5)
    before = rss_kb(pid)
    for i in range(count):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(connect_packet(f"GID_bench@@@i{i}", username, passwords[i % len(passwords)]))
        await r.readexactly(4)
        held.append((r, w))
    await asyncio.sleep(1.0)
    after = rss_kb(pid)
    for _, w in held + [(None, w) for w in warm]:
        w.close()
    return (after - before) / count


def _start(kind: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", kind],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _load(
    kind: str, port: int, pid: int, duration: float, workers: int, idle: int
) -> tuple[float, float]:
    """Run the load generator in its own process; return (connects/s, KiB/connection)."""
    out = subprocess.run(
        [sys.executable, __file__, "load", kind, str(port), str(pid),
         str(duration), str(workers), str(idle)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    rate, cpu_rate, mem = out.stdout.split()
    return float(rate), float(cpu_rate), float(mem)


async def _load_main(
    kind: str, port: int, pid: int, duration: float, workers: int, idle: int
) -> None:
    rate = cpu_rate = 0.0
    if duration > 0:
        await _rate(kind, port, 0.5, workers)  # warm-up
        cpu0 = cpu_seconds(pid)
        rate = await _rate(kind, port, duration, workers)
        # Connects per CPU-second of the broker: what the broker costs, whatever else
        # the (shared) machine is doing meanwhile.
        cpu_rate = rate * duration / max(cpu_seconds(pid) - cpu0, 1e-9)
    mem = await _idle_memory(kind, port, pid, idle) if idle else 0.0
    print(rate, cpu_rate, mem)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(_serve(sys.argv[2]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        kind, port, pid, duration, workers, idle = sys.argv[2:8]
        asyncio.run(_load_main(kind, int(port), int(pid), float(duration), int(workers), int(idle)))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=3.0, help="seconds of CONNECT load per run"
    )
    parser.add_argument("--workers", type=int, default=16, help="concurrent connecting clients")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds (median reported)"
    )
    parser.add_argument(
        "--idle", type=int, default=1000, help="idle connections for the memory figure"
    )
    args = parser.parse_args()
    rates: dict[str, list[float]] = {k: [] for k in KINDS}
    cpu_rates: dict[str, list[float]] = {k: [] for k in KINDS}
    mems: dict[str, list[float]] = {k: [] for k in KINDS}
    for round_no in range(args.rounds):
        for kind in KINDS:
            proc, port = _start(kind)  # a fresh broker for the connect rate ...
            try:
                rate, cpu_rate, _ = _load(kind, port, proc.pid, args.duration, args.workers, 0)
            finally:
                _stop(proc)
            proc, port = _start(kind)  # ... and another for memory (no freed arenas to reuse)
            try:
                _, _, mem = _load(kind, port, proc.pid, 0, args.workers, args.idle)
            finally:
                _stop(proc)
            rates[kind].append(rate)
            cpu_rates[kind].append(cpu_rate)
            mems[kind].append(mem)
            print(
                f"round {round_no + 1} {kind:>5}: {rate:7.0f} CONNECT/s wall,"
                f" {cpu_rate:7.0f} per broker CPU-second, {mem:5.1f} KiB/idle conn",
                flush=True,
            )
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_rates.items()}
    mem = {k: statistics.median(v) for k, v in mems.items()}
    print()
    print(
        f"medians of {args.rounds} rounds, {args.workers} connecting clients,"
        f" {args.duration:g} s each"
    )
    for label, figures in (("wall-clock", med), ("per broker CPU-s", cpu)):
        print(
            f"CONNECT/CONNACK {label:>16}: token {figures['token']:6.0f}, auth off"
            f" {figures['open']:6.0f}, stock amqtt 0.12.1 {figures['stock']:6.0f}"
        )
    for label, figures in (("wall-clock", med), ("per broker CPU-s", cpu)):
        print(
            f"ratio token/auth-off ({label}) = {figures['token'] / figures['open']:.2f}"
            f" (target >= 0.95); token/stock = {figures['token'] / figures['stock']:.2f}"
            " (target >= 1.3)"
        )
    if mem["stock"] > 0:
        print(
            f"memory per idle connection: token {mem['token']:.1f} KiB,"
            f" stock {mem['stock']:.1f} KiB"
        )
        print(
            f"ratio memory token / stock        = {mem['token'] / mem['stock']:.2f}"
            "   (target <= 1.2)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
