"""Mutated CONNECTs and uploads against a broker following a real AuthServer: no forgery
accepted, every genuine case accepted, and a canary subscriber and publisher of the same
instance lose nothing meanwhile (docs/security.md "Broker").

At least ``sizes.connects`` CONNECTs and ``sizes.uploads`` uploads (10,000 and 2,000 in
the long form), interleaved, from eight concurrent clients.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.broker.conftest import no_broker_errors  # noqa: F401  (autouse: no ERROR logged)

from .brokerworld import broker_world
from .conftest import Report, Sizes
from .mqttattacks import (
    Canary,
    UploadSession,
    attempt_connect,
    connect_case,
    upload_case,
)

pytestmark = pytest.mark.adversarial

WORKERS = 8
CANARY_EVERY = 10  # cases between two canary messages


def schedule(connects: int, uploads: int) -> list[tuple[str, int]]:
    """The cases in the order they are started: uploads spread evenly among connects."""
    total = connects + uploads
    order, c, u = [], 0, 0
    for k in range(total):
        if (k + 1) * uploads // total > k * uploads // total:
            order.append(("upload", u))
            u += 1
        else:
            order.append(("connect", c))
            c += 1
    return order


async def test_no_forged_connect_or_upload_is_accepted_and_the_canary_loses_nothing(
    tmp_path: Path, sizes: Sizes, seed: int, report: Report
) -> None:
    started = time.monotonic()
    problems: list[str] = []
    connects: Counter[str] = Counter()
    uploads: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    notices: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    async with broker_world(tmp_path, seed) as world:
        canary = Canary(world)
        await canary.start()
        ticks: asyncio.Queue[bool] = asyncio.Queue()

        async def publisher() -> None:
            while await ticks.get():
                await canary.publish()

        publishing = asyncio.create_task(publisher())
        todo = iter(enumerate(schedule(sizes.connects, sizes.uploads)))
        port = world.broker.port

        async def worker(name: str) -> None:
            session = UploadSession(world, name)
            try:
                for k, (kind, i) in todo:
                    if k % CANARY_EVERY == 0:
                        ticks.put_nowait(True)
                    rng = random.Random(f"{seed}/{kind}/{i}")
                    if kind == "connect":
                        case = connect_case(world, rng, i)
                        rc = await attempt_connect(port, case)
                        accepted = rc == 0
                        codes["closed" if rc is None else str(rc)] += 1
                        must_refuse, case_labels, tally = case.must_refuse, case.labels, connects
                        what = f"connect {i} {case.labels or 'genuine'}"
                    else:
                        up = upload_case(world, rng)
                        accepted, notice = await session.upload(up.payload)
                        notices[str(notice)] += 0 if accepted else 1
                        must_refuse, case_labels, tally = up.must_refuse, up.labels, uploads
                        what = f"upload {i} {up.labels or 'genuine'} (notice {notice})"
                    tally["total"] += 1
                    tally["forged" if must_refuse else "genuine"] += 1
                    tally["accepted"] += accepted
                    labels.update(case_labels)
                    if must_refuse and accepted:
                        tally["forged_accepted"] += 1
                        problems.append(f"ACCEPTED {what}")
                    elif not must_refuse and not accepted:
                        tally["genuine_refused"] += 1
                        problems.append(f"refused genuine {what}")
            finally:
                uploads["sessions"] += session.sessions
                session.close()

        async with asyncio.TaskGroup() as group:
            for n in range(WORKERS):
                group.create_task(worker(f"w{n}"))
        ticks.put_nowait(False)
        await publishing
        canary_figures = await canary.finish()
        metric = world.broker.metrics.value
        refused_logins = metric("mqtt_broker_refused_logins_total", source="127.0.0.1")
    figures = {
        "connects": connects["total"],
        "connects_genuine": connects["genuine"],
        "connects_forged": connects["forged"],
        "connects_forged_accepted": connects["forged_accepted"],
        "connects_genuine_refused": connects["genuine_refused"],
        "connack_codes": dict(sorted(codes.items())),
        "uploads": uploads["total"],
        "uploads_genuine": uploads["genuine"],
        "uploads_forged": uploads["forged"],
        "uploads_forged_accepted": uploads["forged_accepted"],
        "uploads_genuine_refused": uploads["genuine_refused"],
        "upload_notice_codes": dict(sorted(notices.items())),
        "upload_sessions": uploads["sessions"],
        "accepted_forgeries": connects["forged_accepted"] + uploads["forged_accepted"],
        "broker_refused_logins_metric": refused_logins,
        **canary_figures,
        "mutations": dict(labels.most_common()),
        "first_problems": problems[:20],
        "wall_s": round(time.monotonic() - started, 2),
    }
    report.add("broker_forgeries", figures)
    assert connects["total"] >= sizes.connects and uploads["total"] >= sizes.uploads
    assert not problems, "\n".join(problems[:20])
    assert connects["genuine"] > 0 and uploads["genuine"] > 0  # the oracle had work
    assert not canary_figures["canary_connection_lost"]
    assert canary_figures["canary_lost"] == 0 and canary_figures["canary_unexpected"] == 0
    assert canary_figures["canary_in_order"]
    assert canary_figures["canary_duplicates_without_dup_flag"] == 0
    assert canary_figures["canary_sent"] >= (sizes.connects + sizes.uploads) // CANARY_EVERY
