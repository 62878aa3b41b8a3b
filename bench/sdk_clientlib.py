"""Which MQTT client library holds thousands of connections in one asyncio process?

Opens N idle MQTT 3.1.1 connections from ONE process against a broker on loopback, with
each candidate library, and reports connect time, memory per connection and idle CPU.
The baseline, measured in the same run, is a bare asyncio stream per connection that
writes a hand-built CONNECT and reads the CONNACK (the least any library can cost).

    python bench/sdk_clientlib.py --clients 5000                 # stock amqtt broker
    python bench/sdk_clientlib.py --clients 5000 --port 1883     # an existing broker

Each library runs in its own subprocess so that memory figures do not mix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time

from sim.shared.limits import raise_nofile_limit
from sim.shared.procstats import cpu_seconds, rss_kb
from sim.shared.stats import percentile

LIBS = ("raw", "gmqtt", "aiomqtt")


def _connect_packet(client_id: str, keepalive: int) -> bytes:
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", keepalive)
    payload = struct.pack("!H", len(cid)) + cid
    body = var + payload
    return b"\x10" + bytes([len(body)]) + body


async def _open_raw(port: int, cid: str) -> object:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_connect_packet(cid, 600))
    connack = await reader.readexactly(4)
    if connack[3] != 0:
        raise RuntimeError(f"CONNACK {connack[3]}")
    return writer


async def _close_raw(w: object) -> None:
    w.write(b"\xe0\x00")  # type: ignore[attr-defined]
    w.close()  # type: ignore[attr-defined]


async def _open_gmqtt(port: int, cid: str) -> object:
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv311

    c = gmqtt.Client(cid, clean_session=True)
    await c.connect("127.0.0.1", port, keepalive=600, version=MQTTv311)
    return c


async def _close_gmqtt(c: object) -> None:
    await c.disconnect()  # type: ignore[attr-defined]


async def _open_aiomqtt(port: int, cid: str) -> object:
    import aiomqtt

    c = aiomqtt.Client("127.0.0.1", port, identifier=cid, keepalive=600, timeout=60)
    await c.__aenter__()
    return c


async def _close_aiomqtt(c: object) -> None:
    await c.__aexit__(None, None, None)  # type: ignore[attr-defined]


async def _worker(lib: str, port: int, n: int, idle: float, concurrency: int) -> dict[str, float]:
    raise_nofile_limit()
    opener = {"raw": _open_raw, "gmqtt": _open_gmqtt, "aiomqtt": _open_aiomqtt}[lib]
    closer = {"raw": _close_raw, "gmqtt": _close_gmqtt, "aiomqtt": _close_aiomqtt}[lib]
    # Import the library before the baseline so that its code is not counted per connection.
    if lib != "raw":
        __import__(lib)
    rss0 = rss_kb()
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> object:
        async with sem:
            t = time.perf_counter()
            c = await opener(port, f"GID_bench@@@{lib}-{i}")
            latencies.append(time.perf_counter() - t)
            return c

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    clients = await asyncio.gather(*(one(i) for i in range(n)))
    connect_s = time.perf_counter() - t0
    connect_cpu = cpu_seconds() - cpu0
    rss1 = rss_kb()
    cpu1 = cpu_seconds()
    await asyncio.sleep(idle)  # measuring idle cost: the sleep IS the measurement
    idle_cpu = cpu_seconds() - cpu1
    for c in clients:
        await closer(c)
    latencies.sort()
    return {
        "clients": n,
        "connect_s": connect_s,
        "connects_per_s": n / connect_s,
        "connect_cpu_ms_per_conn": connect_cpu * 1000 / n,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "rss_kb_per_conn": (rss1 - rss0) / n,
        "idle_cpu_pct": idle_cpu / idle * 100,
    }


_BROKER = """
import asyncio, sys
from amqtt.broker import Broker
async def main():
    b = Broker({"listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d",
                                          "max_connections": 0}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                            {"allow_anonymous": True}}})
    await b.start()
    print("ready", flush=True)
    await asyncio.Event().wait()
import resource
s, h = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--port", type=int, default=0, help="existing broker (default: start amqtt)")
    p.add_argument("--libs", default=",".join(LIBS))
    p.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        out = asyncio.run(
            _worker(args.worker, args.port, args.clients, args.idle, args.concurrency)
        )
        print(json.dumps(out))
        return 0

    broker = None
    port = args.port
    if not port:
        port = _free_port()
        broker = subprocess.Popen(
            [sys.executable, "-c", _BROKER % port], stdout=subprocess.PIPE, text=True
        )
        assert broker.stdout is not None
        if broker.stdout.readline().strip() != "ready":
            raise SystemExit("broker did not start")
    results: dict[str, dict[str, float]] = {}
    try:
        for lib in args.libs.split(","):
            cmd = [sys.executable, __file__, "--worker", lib, "--port", str(port)]
            cmd += ["--clients", str(args.clients), "--idle", str(args.idle)]
            cmd += ["--concurrency", str(args.concurrency)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode:
                print(f"{lib}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            results[lib] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    base = results.get("raw")
    cols = ("connects_per_s", "p50_ms", "p99_ms", "connect_cpu_ms_per_conn")
    cols += ("rss_kb_per_conn", "idle_cpu_pct")
    print(f"{args.clients} idle connections, one process each, broker on loopback")
    print(f"{'lib':8} " + " ".join(f"{c:>24}" for c in cols))
    for lib, r in results.items():
        cells = []
        for c in cols:
            ratio = f" ({r[c] / base[c]:.2f}x)" if base and base[c] else ""
            cells.append(f"{r[c]:>14.2f}{ratio:>10}")
        print(f"{lib:8} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
