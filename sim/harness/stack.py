"""The one stack: AuthServer, broker and AppServer in this process (SPEC §1, §6).

``run_stack(StackConfig(...), clock=...)`` starts the three parts of docs/CONTRACTS.md
with ONE clock object and ONE data dir, and yields a :class:`StackHandle`: advancing a
:class:`~sim.shared.clock.ManualClock` (through :meth:`StackHandle.advance`, or
``POST /admin/clock/advance`` on the AuthServer) moves every part at once.  The broker
follows the AuthServer over its admin feed, as it would in separate processes.

* A part given by URL (``authserver_url`` / ``broker_url``) is not started: the others
  use the external one.  A part named in ``without`` is neither started nor used (an
  AppServer test needs no broker).
* :meth:`StackHandle.restart` stops one part and starts it again on the same port and
  data dir (a broker restart drops every client; an AppServer restart keeps its cache);
  :meth:`StackHandle.stop` and :meth:`StackHandle.start` do it in two steps (an outage).
* :meth:`StackHandle.advance` returns once what the clock woke has run, and
  :meth:`StackHandle.idle` waits for that point without advancing
  (:mod:`sim.harness.idle`); :meth:`StackHandle.wait_feed` waits until the broker has
  applied the AuthServer's revocation feed up to a position.
* ``handle.admin`` is the one admin client (:mod:`sim.harness.admin`) on the parts.

The fresh stack has the dev account of :mod:`sim.shared.devaccount` on the AuthServer
and, unless ``dev_client=False``, the AppServer's dev client.

Layout of the data dir: ``authserver/`` (SQLite: tokens, revocations, accounts) and
``appserver/`` (SQLite: accounts, token cache); a temporary one, removed at the end,
when ``data_dir`` is None.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import types
import typing
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from mock_authserver.config import DEFAULT_PORT as AUTHSERVER_PORT
from mock_authserver.config import AuthServerConfig
from mock_broker.config import BrokerConfig
from sim.customer.appserver.config import AppServerConfig
from sim.shared.clock import Clock, ClockSpec, ManualClock, clock_from_spec
from sim.shared.devaccount import (
    DEV_CLIENT_ACTIONS,
    DEV_CLIENT_ID,
    DEV_CLIENT_RESOURCES,
    DEV_CLIENT_SECRET,
)
from sim.shared.exits import os_error_of, why_not_listening
from sim.shared.waiting import wait_until

from .admin import AdminClient, ClientAccount
from .errors import PartDidNotStart, StackError

if TYPE_CHECKING:  # pragma: no cover - the runners import aiohttp apps and amqtt
    from mock_authserver.runner import AuthServerHandle
    from mock_broker.broker import BrokerHandle
    from sim.customer.appserver.runner import AppServerHandle

__all__ = ["PARTS", "HandleView", "Part", "StackConfig", "StackHandle", "run_stack"]

log = logging.getLogger(__name__)

Part = Literal["authserver", "broker", "appserver"]
PARTS: tuple[Part, ...] = get_args(Part)

#: Real seconds a restarted part may wait for its port (a socket of the stopped one
#: may linger for a moment).
REBIND_TIMEOUT_S = 10.0
#: Rounds of "run what woke, fire the timers that fell due meanwhile" in one advance.
MAX_SETTLE_ROUNDS = 1000
#: Busy loop turns after which :meth:`StackHandle.advance` stops waiting for an idle
#: loop: a task of the caller's that never waits (a publisher in a tight loop) keeps it
#: busy for ever.  The stack's own chains of wake-ups take 40 turns at most.
ADVANCE_MAX_TURNS = 1000


@dataclass(frozen=True)
class StackConfig:
    """One stack: the three parts' own configurations plus what ties them together.

    The stack sets, in the parts' configurations: the AuthServer's ``data_dir`` and
    ``clock``, the broker's and the AppServer's ``authserver_url``, the AppServer's
    ``data_dir``.  Leave those at their defaults.  Ports are the parts' own (``0``: a
    free port; :meth:`with_free_ports` sets all three)."""

    #: One data dir for every part; None: a temporary one, removed at the end.
    data_dir: Path | None = Path("data")
    #: How the stack builds its one clock when ``run_stack`` is given none.
    clock: ClockSpec = field(default_factory=ClockSpec)
    authserver: AuthServerConfig = field(
        default_factory=lambda: AuthServerConfig(port=AUTHSERVER_PORT)
    )
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    appserver: AppServerConfig = field(default_factory=AppServerConfig)
    #: Use this AuthServer instead of starting one (broker and AppServer follow it).
    authserver_url: str | None = None
    #: Use this broker instead of starting one (only reported to clients).
    broker_url: str | None = None
    #: Parts neither started nor used ("broker" and/or "appserver").
    without: frozenset[Part] = frozenset()
    #: Create the AppServer's dev client (sim.shared.devaccount) at start-up.
    dev_client: bool = True

    def __post_init__(self) -> None:
        if self.data_dir is not None and not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not isinstance(self.without, frozenset):
            object.__setattr__(self, "without", frozenset(self.without))
        unknown = set(self.without) - set(PARTS)
        if unknown:
            raise ValueError(f"without: unknown parts {sorted(unknown)}; parts are {PARTS}")
        if "authserver" in self.without:
            raise ValueError("without: the AuthServer cannot be left out (give authserver_url)")
        for name, url, schemes in (
            ("authserver_url", self.authserver_url, ("http://", "https://")),
            ("broker_url", self.broker_url, ("mqtt://", "tcp://")),
        ):
            if url is not None and not url.startswith(schemes):
                raise ValueError(f"{name} must start with {' or '.join(schemes)}, got {url!r}")
        if self.broker_url is not None and "broker" in self.without:
            raise ValueError("broker_url and without={'broker'} exclude each other")
        if self.authserver.data_dir is not None or self.appserver.data_dir is not None:
            raise ValueError(
                "the stack sets the parts' data dirs (data_dir/authserver, data_dir/appserver):"
                " give StackConfig.data_dir instead"
            )
        if self.dev_client and "appserver" in self.without:
            object.__setattr__(self, "dev_client", False)

    @property
    def profile(self) -> str:
        """The broker's profile (``"provider"`` | ``"mqtt"``, docs/broker.md); change it
        with ``with_broker(profile=...)``."""
        return self.broker.profile

    def with_free_ports(self) -> StackConfig:
        """The same stack on free ports (tests, scenarios)."""
        return replace(
            self,
            authserver=replace(self.authserver, port=0),
            broker=replace(self.broker, port=0),
            appserver=replace(self.appserver, port=0),
        )

    def with_authserver(self, **changes: Any) -> StackConfig:
        return replace(self, authserver=replace(self.authserver, **changes))

    def with_broker(self, **changes: Any) -> StackConfig:
        return replace(self, broker=replace(self.broker, **changes))

    def with_appserver(self, **changes: Any) -> StackConfig:
        return replace(self, appserver=replace(self.appserver, **changes))

    # -- a JSON form, to hand a configuration to a child process (scenarios.stack_proc) --
    def to_json(self) -> dict[str, Any]:
        return dict(_encode(self))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> StackConfig:
        """The configuration :meth:`to_json` wrote: every part's configuration rebuilt
        from its type hints (and validated again by its own ``__post_init__``)."""
        config = _decode(cls, doc)
        assert isinstance(config, cls)
        return config


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, frozenset):
        return sorted(_encode(v) for v in value)
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    """``value`` (JSON) as the type ``hint``: dataclasses, Paths, tuples, frozensets and
    optional values; anything else as it is (the dataclasses check their fields)."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        kinds = [a for a in args if a is not type(None)]
        return _decode(kinds[0], value) if len(kinds) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise ValueError(f"{hint.__name__}: expected an object, got {value!r}")
        hints = typing.get_type_hints(hint)
        known = {f.name for f in dataclasses.fields(hint) if f.init}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"{hint.__name__}: unknown fields {sorted(unknown)}")
        return hint(**{k: _decode(hints[k], v) for k, v in value.items()})
    if hint is Path:
        return Path(value)
    if origin is tuple:
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return tuple(_decode(item, v) for v in value)
    if origin is frozenset:
        return frozenset(_decode(args[0] if args else Any, v) for v in value)
    return value


class StackHandle:
    """A running stack: URLs, the parts' handles, the levers (docs/stack.md)."""

    def __init__(self, config: StackConfig, clock: Clock, data_dir: Path):
        self.config = config
        self.clock = clock
        self.data_dir = data_dir
        #: The in-process parts; None when external, left out, or stopped.
        self.authserver: AuthServerHandle | None = None
        self.broker: BrokerHandle | None = None
        self.appserver: AppServerHandle | None = None
        self._parts: dict[Part, contextlib.AsyncExitStack] = {}
        self._ports: dict[Part, int] = {}
        self._admin: AdminClient | None = None

    # -- where things are ----------------------------------------------------------------
    @property
    def authserver_url(self) -> str:
        if self.config.authserver_url is not None:
            return self.config.authserver_url
        if self.authserver is None:
            raise self._missing("authserver")
        return self.authserver.url

    @property
    def broker_url(self) -> str:
        if self.config.broker_url is not None:
            return self.config.broker_url
        if self.broker is None:
            raise self._missing("broker")
        return self.broker.url

    @property
    def appserver_url(self) -> str:
        if self.appserver is None:
            raise self._missing("appserver")
        return self.appserver.url

    def endpoints(self) -> dict[str, str]:
        """The URL of every part this stack has (started or external)."""
        out = {"authserver": self.authserver_url}
        if "broker" not in self.config.without:
            out["broker"] = self.broker_url
        if "appserver" not in self.config.without:
            out["appserver"] = self.appserver_url
        return out

    @property
    def admin(self) -> AdminClient:
        """The one admin client, on this stack's AuthServer and AppServer."""
        if self._admin is None:
            raise StackError("the stack is not running")
        return self._admin

    def _missing(self, part: Part) -> StackError:
        why = (
            "left out (StackConfig.without)"
            if part in self.config.without
            else "external"
            if part in self._external()
            else "not running"
        )
        return StackError(f"this stack's {part} is {why}")

    def _external(self) -> set[Part]:
        out: set[Part] = set()
        if self.config.authserver_url is not None:
            out.add("authserver")
        if self.config.broker_url is not None:
            out.add("broker")
        return out

    def _started_here(self) -> list[Part]:
        skip = self._external() | set(self.config.without)
        return [p for p in PARTS if p not in skip]

    # -- time ---------------------------------------------------------------------------
    @property
    def manual_clock(self) -> ManualClock:
        if not isinstance(self.clock, ManualClock):
            raise StackError(f"this stack runs on the {self.clock.mode} clock, not a manual one")
        return self.clock

    async def advance(self, seconds: float) -> int:
        """Advance the manual clock of every part; return once what it woke has run (see
        :meth:`idle`), or -- when a task of the caller's keeps the loop busy for ever --
        after :data:`ADVANCE_MAX_TURNS` loop turns.  Returns the number of timers fired."""
        fired = self.manual_clock.advance(seconds)
        return fired + await self.idle(max_turns=ADVANCE_MAX_TURNS)

    async def idle(
        self,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - a hang guard, not a cancel scope
        max_turns: int | None = None,
    ) -> int:
        """Wait until nothing in this process can make progress without a timer or an
        outside peer: the tasks that were woken, the messages they sent to in-process
        parts and the thread-pool jobs they started have all run.  On a manual clock,
        timers that fell due meanwhile (scheduled at or before "now") fire too, and the
        wait repeats; returns how many fired.  A loop that never rests raises
        :class:`~sim.harness.errors.LoopNotIdle` after ``timeout`` real seconds, or,
        with ``max_turns``, is left busy after that many loop turns
        (:func:`~sim.harness.idle.wait_idle`)."""
        from .idle import wait_idle

        fired = 0
        for _ in range(MAX_SETTLE_ROUNDS):
            if not await wait_idle(timeout=timeout, max_turns=max_turns):
                return fired  # busy for ever: what the clock woke had its turns
            more = self.clock.advance(0) if isinstance(self.clock, ManualClock) else 0
            if not more:
                return fired
            fired += more
        raise StackError(
            f"timers kept falling due at the same instant for {MAX_SETTLE_ROUNDS} rounds"
        )

    # -- levers -------------------------------------------------------------------------
    async def kick_all(self) -> int:
        """Drop every broker client at once (wills are published); return how many."""
        if self.broker is None:
            raise self._missing("broker")
        return await self.broker.kick_all()

    async def wait_feed(
        self,
        seq: int | None = None,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - a hang guard the error names
    ) -> int:
        """Wait until the broker has applied the AuthServer's revocation feed up to
        ``seq``, then until the stack is idle, so that what the broker does about it
        (closing sessions) has happened too.  By default ``seq`` is the AuthServer's
        position once the stack is idle: after what in-process work was sending it (the
        AppServer's revocation queue, as far as its rate limit lets it go now).
        ``timeout`` (real seconds) only guards against a feed that never arrives."""
        if self.broker is None:
            raise self._missing("broker")
        if seq is None:
            await self.idle()
            seq = await self.admin.authserver.feed_position()
        target = seq

        def applied() -> bool:
            broker = self.broker
            return broker is not None and broker.authority.seq >= target

        await wait_until(
            applied,
            timeout=timeout,
            what=f"the broker to apply the AuthServer's feed up to seq {target}",
        )
        await self.idle()
        return target

    async def restart(self, part: Part) -> None:
        """Stop ``part`` and start it again on the same port and data dir."""
        await self.stop(part)
        await self.start(part)

    async def stop(self, part: Part) -> None:
        """Stop one part (an outage of it); :meth:`start` brings it back."""
        self._check_own(part)
        await self._stop_part(part)

    async def start(self, part: Part) -> None:
        """Start a part stopped by :meth:`stop` again, on its port and data dir."""
        self._check_own(part)
        if getattr(self, part) is None:
            await self._start_part(part, retry_bind=True)

    def _check_own(self, part: Part) -> None:
        if part not in PARTS:
            raise StackError(f"unknown part {part!r}; parts are {PARTS}")
        if part not in self._started_here():
            raise self._missing(part)

    # -- start and stop -----------------------------------------------------------------
    async def _start(self) -> None:
        from .idle import track_loop

        track_loop()  # before any part submits thread-pool work (see idle())
        for part in self._started_here():
            await self._start_part(part)
        self._admin = AdminClient(
            self.authserver_url,
            None if "appserver" in self.config.without else self.appserver_url,
        )
        if self.config.dev_client:
            await self.admin.appserver.import_accounts(
                [
                    ClientAccount(
                        DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_CLIENT_RESOURCES, DEV_CLIENT_ACTIONS
                    )
                ]
            )

    async def _start_part(self, part: Part, *, retry_bind: bool = False) -> None:
        async def attempt() -> bool:
            try:
                await self._enter(part)
            except Exception as exc:
                if retry_bind and os_error_of(exc) is not None:
                    log.debug("restarting the %s: port %s still taken", part, self._ports[part])
                    return False
                why = why_not_listening(exc)
                if why is None:
                    raise
                part_config = getattr(self.config, part)
                port = self._ports.get(part, part_config.port)
                raise PartDidNotStart(part, part_config.host, port, why) from exc
            return True

        if retry_bind:
            await wait_until(
                attempt,
                timeout=REBIND_TIMEOUT_S,
                interval=0.05,
                what=f"the {part} to listen again on port {self._ports[part]}",
            )
        else:
            await attempt()

    async def _enter(self, part: Part) -> None:
        exits = contextlib.AsyncExitStack()
        try:
            handle = await exits.enter_async_context(self._runner(part))
        except BaseException:
            await exits.aclose()
            raise
        self._parts[part] = exits
        self._ports[part] = handle.port
        setattr(self, part, handle)

    def _runner(self, part: Part) -> contextlib.AbstractAsyncContextManager[Any]:
        cfg = self.config
        if part == "authserver":
            from mock_authserver.runner import run_authserver

            auth = replace(
                cfg.authserver,
                data_dir=self.data_dir / "authserver",
                clock=cfg.clock,
                port=self._ports.get(part, cfg.authserver.port),
            )
            return run_authserver(auth, clock=self.clock)
        if part == "broker":
            from mock_broker.broker import run_broker

            broker = replace(
                cfg.broker,
                authserver_url=self.authserver_url,
                port=self._ports.get(part, cfg.broker.port),
            )
            return run_broker(broker, self.clock)
        from sim.customer.appserver.runner import run_appserver

        app = replace(
            cfg.appserver,
            authserver_url=self.authserver_url,
            data_dir=self.data_dir / "appserver",
            port=self._ports.get(part, cfg.appserver.port),
        )
        return run_appserver(app, clock=self.clock)

    async def _stop_part(self, part: Part) -> None:
        exits = self._parts.pop(part, None)
        setattr(self, part, None)
        if exits is not None:
            await exits.aclose()

    async def _stop(self) -> None:
        errors: list[BaseException] = []
        if self._admin is not None:
            await self._admin.close()
        for part in reversed(PARTS):
            try:
                await self._stop_part(part)
            except Exception as exc:  # stop the others anyway; report the first
                log.error("stopping the %s failed", part, exc_info=True)
                errors.append(exc)
        if errors:
            raise errors[0]


class HandleView:
    """Where a running stack's parts are, for the objects that wrap a :class:`StackHandle`
    (the pytest plugin's stacks, :class:`~sim.harness.background.BackgroundStack`)."""

    @property
    def handle(self) -> StackHandle:  # pragma: no cover - each wrapper has its own
        raise NotImplementedError

    @property
    def authserver_url(self) -> str:
        return self.handle.authserver_url

    @property
    def broker_url(self) -> str:
        return self.handle.broker_url

    @property
    def appserver_url(self) -> str:
        return self.handle.appserver_url

    @property
    def data_dir(self) -> Path:
        return self.handle.data_dir

    def endpoints(self) -> dict[str, str]:
        return self.handle.endpoints()


@contextlib.asynccontextmanager
async def run_stack(
    config: StackConfig, *, clock: Clock | None = None
) -> AsyncIterator[StackHandle]:
    """Start the parts, yield a :class:`StackHandle`, stop them (data flushed) on exit."""
    clock = clock if clock is not None else clock_from_spec(config.clock)
    with contextlib.ExitStack() as tmp:
        if config.data_dir is None:
            data_dir = Path(tmp.enter_context(tempfile.TemporaryDirectory(prefix="mqtt-stack-")))
        else:
            data_dir = config.data_dir
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stack = StackHandle(config, clock, data_dir)
        try:
            await stack._start()
            yield stack
        finally:
            await stack._stop()
