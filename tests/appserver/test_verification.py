"""Credential checks under concurrency (docs/appserver.md "Secrets"): concurrent checks
of one (client id, secret, stored hash) share one slow hash; a wrong secret never
shares a right one's answer; re-putting an account's secret unchanged keeps its
clients' verified credentials.

The slow hash is counted where the service calls it (``verify_secret``), and for the
tests that must hold every check in flight at once, gated on a thread event: the
counts are decided by behaviour, never by how fast the machine hashes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from sim.customer.appserver import service as service_module
from sim.customer.appserver.config import AppServerConfig
from sim.customer.appserver.errors import Unauthorized
from sim.customer.appserver.passwords import verify_secret
from sim.customer.appserver.policy import AccountBody, Grant
from sim.customer.appserver.service import TokenService
from sim.customer.appserver.store import Store
from sim.shared.clock import ManualClock
from sim.shared.waiting import wait_until

from .conftest import CHEAP, FakeUpstream

GRANT = (Grant(("dev/#",), frozenset({"R"})),)
N = 50


class CountingVerify:
    """``verify_secret`` counted; with ``gated``, every run waits for :meth:`release`."""

    def __init__(self, *, gated: bool = False):
        self.calls = 0
        self._lock = threading.Lock()
        self._gate = threading.Event()
        if not gated:
            self._gate.set()

    def __call__(self, secret: str, encoded: str) -> bool:
        with self._lock:
            self.calls += 1
        if not self._gate.wait(30):  # a guard against a hang, never a verdict
            raise TimeoutError("the test never released the gate")
        return verify_secret(secret, encoded)

    def release(self) -> None:
        self._gate.set()


@contextlib.contextmanager
def counted(*, gated: bool = False) -> Iterator[CountingVerify]:
    verify = CountingVerify(gated=gated)
    with mock.patch.object(service_module, "verify_secret", verify):
        try:
            yield verify
        finally:
            verify.release()


def make(tmp_path: Path | None = None, **overrides: object) -> TokenService:
    cfg: dict[str, object] = {"password_hash_cost": CHEAP, "seed": 5, "data_dir": tmp_path}
    cfg.update(overrides)
    config = AppServerConfig(**cfg)  # type: ignore[arg-type]
    return TokenService(config, ManualClock(), Store(config.db_path), FakeUpstream())


def joined(service: TokenService) -> float | None:
    return service.metrics.registry.get_sample_value("appserver_verification_joined_total")


def verifications(service: TokenService) -> float | None:
    return service.metrics.registry.get_sample_value("appserver_secret_verifications_total")


async def test_concurrent_identical_checks_run_one_slow_hash() -> None:
    """SPEC §5's thousand devices of one client starting at once: one scrypt, not N."""
    service = make()
    await service.put_account("c", AccountBody("pw", GRANT, True))
    with counted() as verify:
        accounts = await asyncio.gather(*(service.authenticate("c", "pw") for _ in range(N)))
    assert {a.client_id for a in accounts} == {"c"}
    assert verify.calls == 1
    assert verifications(service) == 1 and joined(service) == N - 1
    assert not service._verifying  # the flight is gone once settled


async def test_a_wrong_secret_never_shares_a_right_secrets_success() -> None:
    service = make()
    await service.put_account("c", AccountBody("pw", GRANT, True))
    with counted() as verify:
        results = await asyncio.gather(
            *(service.authenticate("c", "pw" if i % 2 else "wrong") for i in range(2 * N)),
            return_exceptions=True,
        )
        assert verify.calls == 2  # one flight per distinct secret
        for i, result in enumerate(results):
            if i % 2:
                assert not isinstance(result, BaseException) and result.client_id == "c"
            else:
                assert isinstance(result, Unauthorized)
        # A wrong secret is never remembered: the next try pays the slow hash again.
        with pytest.raises(Unauthorized):
            await service.authenticate("c", "wrong")
        assert verify.calls == 3
        await service.authenticate("c", "pw")  # remembered: no slow hash
        assert verify.calls == 3


async def test_unknown_client_ids_cost_one_shared_dummy_check() -> None:
    """An unknown id is checked against the dummy hash through the same flights: a
    burst of one unknown id costs what a burst of one wrong secret costs."""
    service = make()
    with counted(gated=True) as verify:
        tasks = [asyncio.create_task(service.authenticate("nobody", "pw")) for _ in range(N)]
        await wait_until(
            lambda: joined(service) == N - 1, timeout=30, what="every check joined the first"
        )
        verify.release()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Unauthorized) for r in results)
    assert verify.calls == 1


async def test_a_client_hanging_up_does_not_cancel_the_shared_check() -> None:
    service = make()
    await service.put_account("c", AccountBody("pw", GRANT, True))
    with counted(gated=True) as verify:
        tasks = [asyncio.create_task(service.authenticate("c", "pw")) for _ in range(N)]
        await wait_until(
            lambda: joined(service) == N - 1, timeout=30, what="every check joined the first"
        )
        tasks[0].cancel()  # the one that started the slow hash
        verify.release()
        results = await asyncio.gather(*tasks[1:])
    assert {a.client_id for a in results} == {"c"}
    assert tasks[0].cancelled()
    assert verify.calls == 1


async def test_a_secret_changed_during_the_check_fails_it() -> None:
    """The flight is keyed by the hash it verifies against: a check begun before a
    secret change answers 401 (the old secret), a check begun after it runs anew."""
    service = make()
    await service.put_account("c", AccountBody("old", GRANT, True))
    with counted(gated=True) as verify:
        old = asyncio.create_task(service.authenticate("c", "old"))
        await wait_until(lambda: verify.calls == 1, timeout=30, what="the first check")
        await service.put_account("c", AccountBody("new", None, None))
        new = asyncio.create_task(service.authenticate("c", "new"))
        await wait_until(lambda: verify.calls == 2, timeout=30, what="a check of its own")
        verify.release()
        with pytest.raises(Unauthorized):
            await old
        assert (await new).client_id == "c"
    with pytest.raises(Unauthorized):
        await service.authenticate("c", "old")


async def test_reputting_the_same_secret_keeps_verified_credentials() -> None:
    """A PUT (or bulk import) that sets the secret an account has, verified within
    ``credential_cache_s``, keeps the stored hash: its clients are not sent through the
    slow hash again.  A different secret, or one not verified lately, is hashed anew."""
    service = make()
    account, _, _ = await service.put_account("c", AccountBody("pw", GRANT, True))
    first_hash = account.secret_hash
    with counted() as verify:
        await service.authenticate("c", "pw")
        assert verify.calls == 1
        account, _, _ = await service.put_account("c", AccountBody("pw", GRANT, True))
        assert account.secret_hash == first_hash
        report = await service.bulk_import([{"client_id": "c", "secret": "pw"}])
        assert report["updated"] == 1 and service.accounts["c"].secret_hash == first_hash
        await service.authenticate("c", "pw")
        assert verify.calls == 1  # still remembered
        # Another secret: a new hash, and the old one no longer opens the account.
        account, _, _ = await service.put_account("c", AccountBody("other", None, None))
        assert account.secret_hash != first_hash
        with pytest.raises(Unauthorized):
            await service.authenticate("c", "pw")
        second_hash = account.secret_hash
        # The same secret, not verified within the period: hashed anew (a fresh salt).
        assert isinstance(service.clock, ManualClock)
        service.clock.advance(service.config.credential_cache_s)
        account, _, _ = await service.put_account("c", AccountBody("other", None, None))
        assert account.secret_hash != second_hash
        assert (await service.authenticate("c", "other")).client_id == "c"


async def test_reputting_the_same_secret_upgrades_a_hash_of_another_cost(tmp_path: Path) -> None:
    old = make(tmp_path, password_hash_cost=CHEAP)
    await old.put_account("c", AccountBody("pw", GRANT, True))
    old.store.close()
    service = make(tmp_path, password_hash_cost=CHEAP + 1)
    await service.authenticate("c", "pw")
    account, _, _ = await service.put_account("c", AccountBody("pw", None, None))
    assert account.secret_hash.startswith(f"scrypt${CHEAP + 1}$")
    assert (await service.authenticate("c", "pw")).client_id == "c"
