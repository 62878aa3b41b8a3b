"""How many Locust users does one worker hold?  The ceiling per worker (docs/load.md).

Starts ``mqtt-token-sim up`` in a child process on free ports (scrypt cost 4, no
AppServer drain limit, WARNING logs), unless ``--host`` and ``--broker`` name a stack
already up; then runs one Locust process (one worker: the users are all in it) per
step of ``--users``, each for ``--seconds``:

* ``--kind busy`` -- ``MqttTokenUser`` (``scenarios/locustfile.py``) paced by
  ``--pacing`` (default 5-15 s between tasks, the locustfile's default);
* ``--kind idle`` -- the fleet shape (``scenarios/locust_fleet.py``): idle devices
  with keep-alive, held ``--seconds``.

Per step, from the run's load report (``--load-report``) and its stats: failures (the
stack's and the generator's apart), whether the generator was the limit (exit 3, and
why), CPU per user (share of one core), descriptors per user (above the process's own
start), resident KB per user, the worker's peak CPU share and event-loop lag, and
requests/s.  It stops at the first step where the generator was the limit; the
ceiling is the last step it was not (and when the stack fails first, it says so: then
the ceiling is above the last step, the stack's is not).

    python bench/locust_users.py --users 1000,2000,4000,6000 --seconds 60
    python bench/locust_users.py --kind idle --users 2500,5000,10000 --seconds 30
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _stack import start_up

ROOT = Path(__file__).resolve().parents[1]


def _step(args: argparse.Namespace, n: int, host: str, broker: str, out: Path) -> dict[str, Any]:
    report = out / f"load-{n}.json"
    cmd = [sys.executable, "-m", "locust", "--headless", "--only-summary"]
    cmd += ["--host", host, "--broker", broker, "--load-report", str(report)]
    cmd += ["--csv", str(out / f"lc-{n}"), "-u", str(n), "-r", str(args.spawn_rate)]
    if args.kind == "busy":
        cmd += ["-f", str(ROOT / "scenarios" / "locustfile.py"), "MqttTokenUser"]
        cmd += ["--run-time", f"{args.seconds + n / args.spawn_rate:.0f}s"]
        cmd += ["--mqtt-task-wait", args.pacing]
    else:
        cmd += ["-f", str(ROOT / "scenarios" / "locust_fleet.py")]
        cmd += ["--fleet-hold", str(args.seconds), "--connect-window", str(n / 1000)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out, check=False)
    doc = json.loads(report.read_text()) if report.exists() else {}
    gen = doc.get("generator", {})
    rows = list(csv.DictReader((out / f"lc-{n}_stats.csv").read_text().splitlines()))
    stack_failures = sum(
        int(r["Failure Count"])
        for r in rows
        if r["Name"] not in ("Aggregated", "generator:overloaded")
    )
    total = next((r for r in rows if r["Name"] == "Aggregated"), {})
    walls = [w.get("wall_s", 0.0) for w in doc.get("workers", {}).values()]
    requests = int(total.get("Request Count", 0) or 0)
    return {
        "users": n,
        "exit": proc.returncode,
        "generator_limit": bool(gen.get("was_the_limit")),
        "why": ",".join(gen.get("overload_reasons", [])) or "-",
        "generator_failures": int(gen.get("blamed_failures", 0)),
        "stack_failures": stack_failures,
        "cpu_per_user": gen.get("cpu_per_user"),
        "fds_per_user": gen.get("fds_per_user"),
        "kb_per_user": gen.get("rss_kb_per_user"),
        "peak_cpu": gen.get("peak_cpu_share"),
        "peak_lag_s": gen.get("peak_lag_s"),
        "req_per_s": requests / max(walls) if walls and max(walls) > 0 else None,
        "connected": gen.get("connected"),
        "log_tail": proc.stderr[-1500:] if proc.returncode not in (0, 1, 3) else "",
    }


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kind", choices=("busy", "idle"), default="busy")
    p.add_argument("--users", default="1000,2000,4000", help="steps, comma-separated")
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds per step")
    p.add_argument("--spawn-rate", type=float, default=100.0)
    p.add_argument("--pacing", default="5,15", help="busy: MIN,MAX s between tasks")
    p.add_argument("--host", help="AppServer of a stack already up")
    p.add_argument("--broker", help="broker of a stack already up")
    args = p.parse_args()
    steps = [int(x) for x in args.users.split(",") if x.strip()]

    out = Path(tempfile.mkdtemp(prefix="bench-locust-"))
    up = None
    try:
        if args.host and args.broker:
            host, broker = args.host, args.broker
        else:
            up, ends = start_up(out / "stack", drain_rate="100000")
            host, broker = ends["appserver"], ends["broker"]
        results = []
        for n in steps:
            r = _step(args, n, host, broker, out)
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if r["log_tail"]:
                print(r["log_tail"], file=sys.stderr)
            if r["generator_limit"]:
                break
    finally:
        if up is not None:
            up.terminate()
            up.wait(60)
        shutil.rmtree(out, ignore_errors=True)

    print(f"one Locust worker, {args.kind} users ({os.cpu_count()} cores, shared)")
    head = ("users", "gen. limit", "why", "fails stack/gen", "CPU/user", "fds/user", "KB/user")
    print("".join(f"{h:>16}" for h in (*head, "peak CPU", "peak lag s", "req/s")))
    for r in results:
        cells = [
            str(r["users"]),
            "yes" if r["generator_limit"] else "no",
            r["why"],
            f"{r['stack_failures']}/{r['generator_failures']}",
            _fmt(r["cpu_per_user"], ".5f"),
            _fmt(r["fds_per_user"], ".3f"),
            _fmt(r["kb_per_user"], ".1f"),
            _fmt(r["peak_cpu"], ".2f"),
            _fmt(r["peak_lag_s"], ".2f"),
            _fmt(r["req_per_s"], ".0f"),
        ]
        print("".join(f"{c:>16}" for c in cells))
    held = [r["users"] for r in results if not r["generator_limit"]]
    stack = [r["users"] for r in results if r["stack_failures"]]
    if len(held) == len(results):
        print(f"the generator was not the limit up to {max(held)} users per worker", end="")
    else:
        print(f"ceiling per worker: {max(held) if held else 'below the first step'} users", end="")
    print(f" (the stack failed first, from {min(stack)} users)" if stack else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
