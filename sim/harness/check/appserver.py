"""``check appserver``: the checks of :mod:`.rules`, run against any AppServer through its
adapter, observed at the mock AuthServer it is pointed at (:mod:`.observe`) and on the
broker (:mod:`.probe`).  Each check asks as its own fresh clients (the adapter's
``[clients]``, numbers handed out in order), so no check sees another's tokens; what the
observations mean is decided in :mod:`.verdicts`.

Order matters only for time: the checks that break the AuthServer come after those that
need it whole, and the one that moves the clock comes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from sim.customer.adapter import (
    Adapter,
    AskError,
    BadAnswer,
    ClientIdentity,
    ClientTemplates,
    Credentials,
    Refused,
    Unauthenticated,
    Unavailable,
    ask_token,
    provision_clients,
)
from sim.customer.client.transport import parse_broker_url
from sim.shared.protocol import covers, parse_username
from sim.shared.protocol.errors import WireFormatError

from .model import CheckResult, Outcome, Report, Status
from .observe import AdminError, AuthServerObserver
from .probe import probe_token
from .rules import CHECK_NAMES, CHECKS
from .timeline import Timeline, TimelineError
from .verdicts import (
    Ask,
    AskKind,
    ProbeFacts,
    grant_problems,
    judge_beyond,
    judge_connect,
    judge_drain,
    judge_expiry,
    judge_forged,
    judge_outage_cached,
    judge_outage_new,
    judge_repeat,
    judge_restart,
    judge_single_flight,
    judge_stale,
    peak_per_window,
)

__all__ = ["CannotRun", "CheckOptions", "check_appserver"]

log = logging.getLogger(__name__)

#: An AuthServer outage as the checks inject it (CONTRACTS.md "Faults"): every token
#: operation fails with 503 until the check removes it.
OUTAGE = {"operation": "*", "kind": "outage", "seconds": 86_400, "probability": 1.0}
#: Life a token keeps when the stale-fallback check lets the clock run up to its expiry.
STALE_LIFE_LEFT_S = 30.0


class CannotRun(Exception):
    """The run cannot start: an endpoint unreachable, an adapter without clients."""


@dataclass(frozen=True)
class CheckOptions:
    appserver_url: str
    authserver_url: str
    broker_url: str
    #: shell command that restarts the AppServer (and returns; the check waits for it)
    restart_cmd: str | None = None
    #: shell command that moves the AppServer's clock ``{seconds}`` forward
    advance_cmd: str | None = None
    #: run only these checks (default: all)
    only: tuple[str, ...] = ()
    #: the first client number to use (default: the adapter's ``[clients] first``)
    first_client: int | None = None
    #: identical asks at once (concurrent-single-flight)
    concurrency: int = 20
    #: asks of one client in a row (repeat-uses-cache)
    repeats: int = 5
    #: clients queued during the outage (recovery-drain)
    backlog: int = 20
    #: the least life a served token must have left, seconds (repeat-uses-cache)
    min_life_s: float = 60.0
    #: real seconds one ask may take before it counts as no answer
    ask_timeout_s: float = 10.0
    #: real seconds the backlog may take to drain after the outage
    drain_timeout_s: float = 180.0
    #: real seconds the AppServer may take to answer again after --restart-cmd
    restart_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("concurrency", "repeats", "backlog"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2")
        unknown = set(self.only) - set(CHECK_NAMES)
        if unknown:
            raise ValueError(f"no check {sorted(unknown)}: the checks are {', '.join(CHECK_NAMES)}")

    def clients_needed(self) -> int:
        # forged 1, beyond 1, repeat 1, single flight 1, restart 3, connect 1,
        # outage: cached 2 and new 2, backlog, stale 1
        return 13 + self.backlog


@dataclass
class _Seen:
    """A token a check received: who asked, the answer, the observation."""

    client: ClientIdentity
    creds: Credentials
    ask: Ask


@dataclass
class _Context:
    adapter: Adapter
    options: CheckOptions
    session: aiohttp.ClientSession
    admin: AuthServerObserver
    timeline: Timeline
    templates: ClientTemplates
    numbers: list[int]
    seen: list[_Seen] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: client id -> its number, for the clients taken so far
    number_of: dict[str, int] = field(default_factory=dict)
    #: (instance, parent topic) known to exist
    parents: set[tuple[str, str]] = field(default_factory=set)

    def take(self, k: int) -> list[tuple[int, ClientIdentity]]:
        if len(self.numbers) < k:
            raise CannotRun("the adapter's [clients] count is too small for the checks")
        taken, self.numbers = self.numbers[:k], self.numbers[k:]
        out = [(n, self.templates.identity(n)) for n in taken]
        self.number_of.update((c.client_id, n) for n, c in out)
        return out

    def outside_of(self, client: ClientIdentity) -> list[str]:
        """A filter outside ``client``'s resources: a forbidden one, or another's."""
        n = self.number_of.get(client.client_id, self.templates.first)
        wanted = [*self.templates.forbidden_for(n), *self.templates.resources_for(n + 1_000_000)]
        return [f for f in wanted if not any(covers(r, f) for r in client.resources)][:1]

    async def ensure_parents(self, creds: Credentials, client: ClientIdentity) -> None:
        """The provider's broker refuses topics outside the instance's parent topics (SPEC
        §4a); the user creates them in the console, the check on the mock -- as soon as it
        knows the instance, so the broker has followed the change before any probe."""
        try:
            instance = parse_username(creds.username).instance_id
        except WireFormatError:
            return
        filters = [*client.resources, *self.outside_of(client)]
        wanted = {(instance, f.split("/", 1)[0]) for f in filters if f.split("/", 1)[0] not in "+#"}
        if wanted <= self.parents:
            return
        with contextlib.suppress(AdminError):
            made = await self.admin.ensure_parent_topics(instance, {p for _, p in wanted})
            self.notes += [
                f"created parent topic {p!r} on instance {instance} (SPEC §4a)" for p in made
            ]
            self.parents |= wanted

    async def ask(self, client: ClientIdentity, label: str, *, keep: bool = True) -> Ask:
        kind: AskKind
        try:
            creds = await ask_token(
                self.session,
                self.adapter,
                self.options.appserver_url,
                client,
                timeout_s=self.options.ask_timeout_s,
                now_ms=self.timeline.now_ms,
            )
        except AskError as exc:
            kind = (
                "unauthenticated"
                if isinstance(exc, Unauthenticated)
                else "refused"
                if isinstance(exc, Refused)
                else "unavailable"
                if isinstance(exc, Unavailable)
                else "bad_answer"
            )
            retry = exc.retry_after if isinstance(exc, Unavailable) else 0.0
            return Ask(label, kind, exc.status, _clean(str(exc)), retry)
        ids = await self.admin.token_ids(creds.password)
        await self.ensure_parents(creds, client)
        ask = Ask(
            label, "credentials", 200, token_ids=ids, expire_ms=creds.expire_ms, stale=creds.stale
        )
        if keep:
            self.seen.append(_Seen(client, creds, ask))
        return ask

    async def applies(self) -> Counter[str]:
        return await self.admin.apply_counts()

    async def lives_s(self, asks: Sequence[Ask]) -> list[float]:
        now = (await self.admin.clock()).now_ms
        out = []
        for a in asks:
            facts = await self.admin.token(a.token_ids[0]) if a.token_ids else None
            out.append(-1.0 if facts is None else (facts.expire_ms - now) / 1000)
        return out

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        fault_id = await self.admin.add_fault(dict(OUTAGE))
        try:
            yield
        finally:
            await self.admin.delete_fault(fault_id)


def _clean(message: str) -> str:
    return message.replace("\n", " ")[:200]


def _total(counts: Counter[str]) -> int:
    return sum(counts.values())


# -- the checks ----------------------------------------------------------------------


async def forged_identity(ctx: _Context) -> Outcome:
    ((_, client),) = ctx.take(1)
    stranger = ctx.templates.identity(f"forged-{secrets.token_hex(3)}")
    before = await ctx.applies()
    asks = [
        await ctx.ask(
            dataclasses.replace(client, secret=client.secret + "-forged"),
            f"{client.client_id} with a wrong secret",
            keep=False,
        ),
        await ctx.ask(stranger, f"unknown client {stranger.client_id}", keep=False),
        await ctx.ask(
            dataclasses.replace(client, secret=""),
            f"{client.client_id} with an empty secret",
            keep=False,
        ),
    ]
    return judge_forged(asks, _total(await ctx.applies()) - _total(before))


async def beyond_permissions(ctx: _Context) -> Outcome:
    ((n, client),) = ctx.take(1)
    own = client.resources
    other = ctx.templates.resources_for(n + 1_000_000)  # another tenant's topics
    wanted = [*ctx.templates.forbidden_for(n), *other, "#"]
    beyond = [f for f in dict.fromkeys(wanted) if not any(covers(r, f) for r in own)]
    if not beyond:
        return Outcome.not_measured("every filter tried is inside the client's own resources")
    before = await ctx.applies()
    asks = [
        await ctx.ask(dataclasses.replace(client, resources=(f,)), f"asks for {f}", keep=False)
        for f in beyond
    ]
    asks.append(
        await ctx.ask(
            dataclasses.replace(client, resources=(*own, beyond[0])),
            f"asks for its own resources and {beyond[0]}",
            keep=False,
        )
    )
    return judge_beyond(asks, _total(await ctx.applies()) - _total(before))


async def repeat_uses_cache(ctx: _Context) -> Outcome:
    ((_, client),) = ctx.take(1)
    asks = [await ctx.ask(client, f"{client.client_id} ask 1")]
    if not asks[0].ok:
        return Outcome.error(f"the client got no first token: {asks[0].describe()}")
    before = await ctx.applies()
    for i in range(2, ctx.options.repeats + 1):
        asks.append(await ctx.ask(client, f"{client.client_id} ask {i}", keep=i == 2))
    applies = _total(await ctx.applies()) - _total(before)
    return judge_repeat(asks, applies, await ctx.lives_s(asks), ctx.options.min_life_s)


async def concurrent_single_flight(ctx: _Context) -> Outcome:
    ((_, client),) = ctx.take(1)
    before = await ctx.applies()
    n = ctx.options.concurrency
    asks = await asyncio.gather(
        *(ctx.ask(client, f"{client.client_id} ask {i + 1}/{n}", keep=i == 0) for i in range(n))
    )
    return judge_single_flight(asks, _total(await ctx.applies()) - _total(before))


async def restart_keeps_cache(ctx: _Context) -> Outcome:
    cmd = ctx.options.restart_cmd
    if not cmd:
        return Outcome.not_measured(
            "no --restart-cmd: give a command that restarts the AppServer (and returns) "
            "to check that its cache survives"
        )
    clients = [c for _, c in ctx.take(3)]
    before = [await ctx.ask(c, f"{c.client_id} before") for c in clients]
    failed = [a for a in before if not a.ok]
    if failed:
        return Outcome.error(f"a client got no token before the restart: {failed[0].describe()}")
    proc = await asyncio.create_subprocess_shell(cmd)
    try:
        code = await asyncio.wait_for(proc.wait(), ctx.options.restart_timeout_s)
    except TimeoutError:
        proc.kill()
        return Outcome.error(
            f"--restart-cmd did not return within {ctx.options.restart_timeout_s:g} s"
        )
    if code != 0:
        return Outcome.error(f"--restart-cmd exited {code}")
    deadline = time.monotonic() + ctx.options.restart_timeout_s
    counts = await ctx.applies()
    after = [await _ask_when_back(ctx, c, f"{c.client_id} after", deadline) for c in clients]
    if any(a.status is None for a in after):
        return Outcome.failed(
            f"the AppServer did not answer within {ctx.options.restart_timeout_s:g} s "
            "of the restart",
            *(a.describe() for a in after),
        )
    return judge_restart(before, after, _total(await ctx.applies()) - _total(counts))


async def _ask_when_back(ctx: _Context, client: ClientIdentity, label: str, deadline: float) -> Ask:
    """Ask, again while the AppServer does not answer at all (it is restarting: the
    command may return before the old process is gone or the new one listens)."""
    while True:
        ask = await ctx.ask(client, label, keep=False)
        if ask.status is not None or time.monotonic() >= deadline:
            return ask
        await asyncio.sleep(0.1)  # a process starting up: nothing to wait on but time


async def tokens_connect(ctx: _Context) -> Outcome:
    ((_, client),) = ctx.take(1)
    await ctx.ask(client, f"{client.client_id} ask")  # tried last: the earlier first
    address = parse_broker_url(ctx.options.broker_url)
    probes: list[ProbeFacts] = []
    done: set[tuple[str, ...]] = set()
    for seen in list(ctx.seen):
        if seen.ask.token_ids in done:
            continue
        done.add(seen.ask.token_ids)
        c = seen.client
        problems: list[str] = []
        for tid in seen.ask.token_ids:
            facts = await ctx.admin.token(tid)
            if facts is None:
                problems.append(f"a token this AuthServer did not issue ({tid})")
            else:
                problems += grant_problems(c.actions, c.resources, facts)
        outside = ctx.outside_of(c)
        facts_probe = await probe_token(address, c, seen.creds, outside=outside)
        probes.append(dataclasses.replace(facts_probe, grant=tuple(problems)))
    return judge_connect(probes)


async def states_expiry(ctx: _Context) -> Outcome:
    stated = []
    for seen in ctx.seen:
        facts = await ctx.admin.token(seen.ask.token_ids[0]) if seen.ask.token_ids else None
        if facts is not None:
            stated.append((seen.ask.label, seen.ask.expire_ms, facts.expire_ms))
    return judge_expiry(stated)


async def outage_cached_clients(ctx: _Context) -> Outcome:
    clients = [c for _, c in ctx.take(2)]
    before = [await ctx.ask(c, f"{c.client_id} before the outage", keep=False) for c in clients]
    failed = [a for a in before if not a.ok]
    if failed:
        return Outcome.error(f"a client got no token before the outage: {failed[0].describe()}")
    async with ctx.outage():
        during = [await ctx.ask(c, f"{c.client_id} during", keep=False) for c in clients]
    return judge_outage_cached(before, during)


async def outage_new_clients(ctx: _Context) -> Outcome:
    clients = [c for _, c in ctx.take(2)]
    async with ctx.outage():
        during = [await ctx.ask(c, f"new client {c.client_id}", keep=False) for c in clients]
    after = await ctx.ask(clients[0], f"{clients[0].client_id} after the outage", keep=False)
    return judge_outage_new(during, after)


async def recovery_drain(ctx: _Context) -> Outcome:
    clients = [c for _, c in ctx.take(ctx.options.backlog)]
    c0 = await ctx.applies()
    async with ctx.outage():
        queued = await asyncio.gather(
            *(ctx.ask(c, f"{c.client_id} during the outage", keep=False) for c in clients)
        )
        c1 = await ctx.applies()
    deadline = time.monotonic() + ctx.options.drain_timeout_s
    drained = await asyncio.gather(*(_until_served(ctx, c, deadline) for c in clients))
    c2 = await ctx.applies()
    issued = []
    for a in drained:
        facts = await ctx.admin.token(a.token_ids[0]) if a.ok and a.token_ids else None
        if facts is not None:
            issued.append(facts.issued_ms)
    return judge_drain(
        queued,
        _total(c1) - _total(c0),
        drained,
        c2["429"] - c1["429"],
        peak_per_window(issued),
    )


async def _until_served(ctx: _Context, client: ClientIdentity, deadline: float) -> Ask:
    """Ask until served, refused for good, or out of time; waits what the AppServer says
    (Retry-After, else 1 s) -- the same for every client: the worst case, a synchronised
    backlog."""
    attempt = 0
    while True:
        attempt += 1
        ask = await ctx.ask(client, f"{client.client_id} retry {attempt}", keep=False)
        if ask.kind != "unavailable" or time.monotonic() >= deadline:
            return ask
        await ctx.timeline.sleep(max(ask.retry_after, 1.0))


async def outage_stale_fallback(ctx: _Context) -> Outcome:
    if not ctx.timeline.can_jump:
        return Outcome.not_measured(
            "the AppServer's clock cannot be moved: run the mock AuthServer on a manual "
            "clock the AppServer follows, or give --advance-cmd"
        )
    ((_, client),) = ctx.take(1)
    before = await ctx.ask(client, f"{client.client_id} before", keep=False)
    facts = await ctx.admin.token(before.token_ids[0]) if before.ok and before.token_ids else None
    if facts is None:
        return Outcome.error(f"the client got no token of this AuthServer: {before.describe()}")
    async with ctx.timeline.paused():
        ahead = (facts.expire_ms - ctx.timeline.now_ms()) / 1000 - STALE_LIFE_LEFT_S
        if ahead > 0:
            await ctx.timeline.jump(ahead)
        async with ctx.outage():
            during = await ctx.ask(client, f"{client.client_id} near expiry", keep=False)
        life_left = (facts.expire_ms - ctx.timeline.now_ms()) / 1000
    return judge_stale(before, during, life_left, valid=life_left > 0)


CheckFn = Callable[[_Context], Awaitable[Outcome]]
_CHECKS: dict[str, CheckFn] = {
    "forged-identity": forged_identity,
    "beyond-permissions": beyond_permissions,
    "repeat-uses-cache": repeat_uses_cache,
    "concurrent-single-flight": concurrent_single_flight,
    "restart-keeps-cache": restart_keeps_cache,
    "tokens-connect": tokens_connect,
    "states-expiry": states_expiry,
    "outage-cached-clients": outage_cached_clients,
    "outage-new-clients": outage_new_clients,
    "recovery-drain": recovery_drain,
    "outage-stale-fallback": outage_stale_fallback,
}
assert tuple(_CHECKS) == CHECK_NAMES


# -- the run -------------------------------------------------------------------------


async def _preflight(session: aiohttp.ClientSession, options: CheckOptions) -> None:
    try:
        async with session.get(
            options.appserver_url, timeout=aiohttp.ClientTimeout(total=options.ask_timeout_s)
        ):
            pass
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise CannotRun(
            f"the AppServer at {options.appserver_url} does not answer ({type(exc).__name__})"
        ) from None
    address = parse_broker_url(options.broker_url)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address.host, address.port), 10)
        writer.close()
    except (OSError, TimeoutError) as exc:
        raise CannotRun(f"the broker at {options.broker_url} does not answer ({exc})") from None


async def check_appserver(
    adapter: Adapter,
    options: CheckOptions,
    *,
    progress: Callable[[CheckResult], object] | None = None,
) -> Report:
    """Run the checks; raises :class:`CannotRun` if the run cannot start."""
    if adapter.clients is None:
        raise CannotRun(f"the adapter {adapter.source} has no [clients]: the checks need them")
    templates = adapter.clients
    first = templates.first if options.first_client is None else options.first_client
    numbers = [n for n in templates.numbers() if n >= first][: options.clients_needed()]
    if len(numbers) < options.clients_needed():
        raise CannotRun(
            f"the checks need {options.clients_needed()} clients from number {first}: "
            f"the adapter's [clients] has {templates.count} from {templates.first}"
        )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        admin = AuthServerObserver(session, options.authserver_url)
        try:
            await admin.health()
            timeline = await Timeline.detect(admin, options.advance_cmd)
        except AdminError as exc:
            raise CannotRun(f"the AuthServer's admin API does not answer: {exc}") from None
        await _preflight(session, options)
        ctx = _Context(adapter, options, session, admin, timeline, templates, numbers)
        if adapter.provision is not None:
            idents = [templates.identity(n) for n in numbers]
            try:
                await provision_clients(session, adapter, options.appserver_url, idents)
            except Exception as exc:
                raise CannotRun(f"provisioning the clients failed: {exc}") from None
            ctx.notes.append(f"created {len(idents)} client accounts ({adapter.provision})")
        target = {
            "appserver": options.appserver_url,
            "adapter": f"{adapter.name} ({adapter.source})",
            "authserver": options.authserver_url,
            "broker": options.broker_url,
            "clock": timeline.describe(),
            "clients": f"{templates.id} from n = {numbers[0]}",
        }
        await timeline.start()
        try:
            results = await _run_all(ctx, progress)
        finally:
            await timeline.stop()
    return Report(target, tuple(results), tuple(ctx.notes), started, time.perf_counter() - t0)


async def _run_all(
    ctx: _Context, progress: Callable[[CheckResult], Any] | None
) -> list[CheckResult]:
    results: list[CheckResult] = []
    status: dict[str, Status] = {}
    for spec in CHECKS:
        if ctx.options.only and spec.name not in ctx.options.only:
            continue
        t = time.perf_counter()
        missing = [n for n in spec.needs if status.get(n, Status.PASSED) is not Status.PASSED]
        if missing:
            outcome = Outcome.not_measured(
                f"needs {', '.join(missing)}, which did not pass: nothing to measure"
            )
        else:
            try:
                outcome = await _CHECKS[spec.name](ctx)
            except (CannotRun, AdminError, TimelineError, BadAnswer) as exc:
                outcome = Outcome.error(str(exc))
            except Exception as exc:  # a check must not stop the others
                log.exception("check %s stopped", spec.name)
                outcome = Outcome.error(f"the check stopped: {type(exc).__name__}: {exc}")
        result = CheckResult(spec, outcome, time.perf_counter() - t)
        status[spec.name] = result.status
        results.append(result)
        if progress is not None:
            progress(result)
    return results
