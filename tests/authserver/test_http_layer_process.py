"""Both servers as users run them (``python -m sim ...``, logging at the default INFO):
their log shows no credential sent in a malformed request, and a flood of connections
past the descriptor limit does not write megabytes (docs/authserver.md "Security")."""

from __future__ import annotations

import asyncio
import gzip
import os
import resource
import signal
import sys
from pathlib import Path

import pytest

from .rawhttp import RawConn, exchange
from .test_http_layer import BASIC, MALFORMED, SECRETS


async def start(*args: str, nofile: int | None = None) -> tuple[asyncio.subprocess.Process, int]:
    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=limit,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert "listening on http://127.0.0.1:" in line, line
    url = next(w for w in line.split() if w.startswith("http://"))
    return proc, int(url.rsplit(":", 1)[1])


async def stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return err.decode()


SERVERS = {
    "authserver": ["authserver", "--port", "0"],
    "appserver": ["appserver", "--port", "0", "--authserver", "http://127.0.0.1:9"],
}


@pytest.mark.parametrize("kind", sorted(SERVERS))
async def test_the_process_log_shows_no_credential(kind: str, tmp_path: Path) -> None:
    proc, port = await start(*SERVERS[kind], "--data-dir", str(tmp_path))
    try:
        for request in MALFORMED:
            assert (await exchange(port, request.encode("latin-1"))).status == 400
        # A body that fails its coding, behind credentials and a signature.
        garbage = (
            f"POST /token/apply?signature={SECRETS[0]} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Basic {BASIC}\r\nContent-Encoding: gzip\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\n"
            "not gzip at "
        ).encode()
        assert (await exchange(port, garbage)).status in (200, 400, 401, 404)
        truncated = gzip.compress(f"token={SECRETS[2]}".encode())[:20]
        head = (
            f"POST /token/query HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(truncated)}\r\n\r\n"
        ).encode()
        assert (await exchange(port, head + truncated)).status < 500
    finally:
        log = await stop(proc)
    for secret in SECRETS:
        assert secret not in log, log
    assert "Traceback" not in log, log


async def test_a_connection_flood_past_the_descriptor_limit_writes_a_few_lines(
    tmp_path: Path,
) -> None:
    # 64 descriptors: the server runs out after a few dozen connections; asyncio then
    # logs every failed accept() with a traceback (megabytes a second without the guard).
    proc, port = await start(
        *SERVERS["authserver"], "--data-dir", str(tmp_path), "--header-timeout", "60", nofile=64
    )
    held: list[RawConn] = []
    try:
        for _ in range(150):
            try:
                held.append(await asyncio.wait_for(RawConn.open(port), 5))
            except (OSError, TimeoutError):
                break
        # Hold them while asyncio fails to accept: the soak time is the flood under test.
        await asyncio.sleep(3)
    finally:
        for conn in held:
            await conn.close()
        log = await stop(proc)
    assert "out of system resource" in log  # the server did run out of descriptors
    assert log.count("socket.accept() out of system resource") <= 10, log[:3000]
    assert len(log) < 64 * 1024, f"{len(log)} bytes of log"
