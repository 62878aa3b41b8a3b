"""The command-line options and event listeners every locustfile of ours loads.

Importing this module (after ``import locust``) adds the options below to Locust's
parser and makes one :class:`~.runtime.Runtime` per process at ``init``.  Options are
sent by the master to its workers with each spawn message (Locust does that for every
option a locustfile adds), so workers need none on their command line.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

from locust import events

from sim.customer.adapter import AdapterError
from sim.shared.limits import raise_nofile_limit

from .runtime import Runtime, runtime_of
from .users import parse_pacing

__all__: list[str] = []

# spawning_complete carries no environment: the runtimes of this process (one).
_RUNTIMES: list[Runtime] = []


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _add_arguments(parser: Any) -> None:
    g = parser.add_argument_group("mqtt-token-sim")
    g.add_argument(
        "--broker", default="mqtt://127.0.0.1:1883", help="token broker (mqtt://host:port)"
    )
    g.add_argument(
        "--authserver",
        default="",
        help="AuthServer base URL, to read upstream applies from its /admin/metrics "
        "(storm figures); empty: not measured",
    )
    g.add_argument(
        "--adapter",
        default="",
        metavar="FILE",
        help="ask any AppServer (--host) as this adapter file says, as its [clients]"
        " (docs/your-appserver.md); empty or 'builtin': the reference AppServer",
    )
    g.add_argument(
        "--adapter-block",
        type=int,
        default=0,
        help="with --adapter: client numbers per worker (0: the adapter's count shared"
        " among --processes)",
    )
    g.add_argument("--topic-root", default="locust", help="first topic level of every device")
    g.add_argument("--mqtt-keepalive", type=int, default=60, help="MQTT keep-alive (s)")
    g.add_argument("--mqtt-timeout", type=float, default=10.0, help="answer timeout (s)")
    g.add_argument(
        "--mqtt-task-wait",
        default="5,15",
        help="MqttTokenUser: MIN,MAX seconds between two tasks (uniform)",
    )
    g.add_argument("--mqtt-qos1-payload", type=int, default=64, help="bytes per QoS 1 publish")
    g.add_argument(
        "--http-pool",
        type=int,
        default=64,
        help="keep-alive connections to the AppServer per process, shared by its users",
    )
    g.add_argument(
        "--reconnect-window",
        type=float,
        default=2.0,
        help="a device's first retry after a loss is drawn uniformly from this many "
        "seconds (full jitter, SPEC §6); size it to N / the broker's connect rate",
    )
    g.add_argument(
        "--generator-max-cpu",
        type=float,
        default=0.9,
        help="a worker whose event loop uses this share of one core (3 s window) is overloaded",
    )
    g.add_argument(
        "--generator-max-lag",
        type=float,
        default=1.0,
        help="a worker whose event loop wakes this many seconds late (CPU starved, "
        "collector pauses) is overloaded",
    )
    g.add_argument("--load-report", default="", help="write the run's figures here (JSON)")
    g.add_argument(
        "--setup-timeout",
        type=float,
        default=600.0,
        help="shapes: seconds for every device to get its token and connect",
    )
    g.add_argument("--storm-rounds", type=int, default=1, help="storm shape: rounds")
    g.add_argument(
        "--storm-settle", type=float, default=2.0, help="storm shape: seconds before a kick"
    )
    g.add_argument(
        "--storm-deadline",
        type=float,
        default=120.0,
        help="storm shape: seconds for every device to come back",
    )
    g.add_argument(
        "--storm-kick-url",
        default="",
        help="storm shape: POST here makes the broker drop every client (e.g. "
        "scenarios.stack_proc's /kick); empty: every device cuts its own connection",
    )
    g.add_argument(
        "--fleet-hold",
        type=float,
        default=10.0,
        help="fleet shape: seconds to hold every device connected",
    )
    g.add_argument(
        "--connect-window",
        type=float,
        default=0.0,
        help="fleet shape: once every device holds a token, each connects at a moment "
        "drawn uniformly from this many seconds (0: all at once)",
    )
    g.add_argument(
        "--stack-pid",
        type=int,
        default=0,
        help="fleet shape: the stack's process, for its memory (0: the one listening "
        "on the broker's port)",
    )


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Any, **_kw: Any) -> None:
    opts = environment.parsed_options
    if opts is not None:
        try:
            parse_pacing(str(opts.mqtt_task_wait))
            urlsplit(str(opts.broker)).port  # noqa: B018  (raises on a bad port)
        except ValueError as exc:
            sys.stderr.write(f"mqtt-token-sim load: {exc}\n")
            sys.exit(2)
    # One descriptor per MQTT session: lift the soft limit to the hard one.
    raise_nofile_limit()
    try:
        rt = Runtime(environment)
    except (AdapterError, ValueError) as exc:  # a bad --adapter: one line, before any user
        sys.stderr.write(f"mqtt-token-sim load: {exc}\n")
        sys.exit(2)
    _RUNTIMES.append(rt)
    if environment.runner is not None:
        rt.install_messages()


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _on_test_start(environment: Any, **_kw: Any) -> None:
    runtime_of(environment).on_test_start()


@events.spawning_complete.add_listener  # type: ignore[untyped-decorator]
def _on_spawning_complete(environment: Any = None, **_kw: Any) -> None:
    for rt in _RUNTIMES:
        rt.on_spawning_complete()


@events.test_stopping.add_listener  # type: ignore[untyped-decorator]
def _on_test_stopping(environment: Any, **_kw: Any) -> None:
    runtime_of(environment).on_test_stopping()


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _on_quitting(environment: Any, **_kw: Any) -> None:
    runtime_of(environment).on_quitting()
