"""Cross-instance, cross-account and session-resume escapes: none, over randomised
attacker moves (docs/security.md "Broker"; tests/adversarial/escapes.py says what a move
is and what counts as an escape)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.broker.conftest import no_broker_errors  # noqa: F401  (autouse: no ERROR logged)

from .brokerworld import broker_world
from .conftest import Report, Sizes
from .escapes import Arena, EscapeFigures

pytestmark = pytest.mark.adversarial


async def test_no_attacker_move_escapes_its_namespace_or_its_resources(
    tmp_path: Path, sizes: Sizes, seed: int, report: Report
) -> None:
    started = time.monotonic()
    figures = EscapeFigures()
    async with broker_world(tmp_path, seed) as world:
        arena = Arena(world, figures)
        await arena.start()
        for n in range(sizes.moves):
            await arena.move(random.Random(f"{seed}/move/{n}"), n)
        await arena.close()
    summary = {**figures.to_json(), "wall_s": round(time.monotonic() - started, 2)}
    report.add("escapes", summary)
    assert sum(figures.moves.values()) >= sizes.moves
    assert not figures.problems, "\n".join(figures.problems[:20])
    assert summary["escapes"] == 0 and figures.victim_lost == 0
    assert figures.messages_judged > 0  # the oracle had work
