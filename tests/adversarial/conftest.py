"""The adversarial suite (docs/security.md): what an attacker on the ports can do, as
figures that must hold.

Two sizes of the same tests: the **short form** runs in the default suite (``pytest``);
the **long form** is ``pytest -m adversarial`` (exactly that marker expression), with the
counts the threat model asks for.  Every generator is seeded (``ADVERSARIAL_SEED``,
default :data:`DEFAULT_SEED`), so a run repeats and a failure names the case to rebuild.

The figures of every part go to one JSON report, written at the end of the run and its
path printed: ``$ADVERSARIAL_REPORT`` if set, else ``adversarial-report.json`` in the
current directory for the long form and in pytest's temporary directory for the short.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DEFAULT_SEED = 1201


@dataclass(frozen=True)
class Sizes:
    form: str
    #: Fuzzed requests per HTTP server (at least).
    http_requests: int
    #: Mutated CONNECTs and ``$SYS/uploadToken`` payloads against the broker.
    connects: int
    uploads: int
    #: Randomised attacker moves across accounts, instances and sessions.
    moves: int
    #: Refused large-password logins before the broker's memory is read again.
    flood_logins: int
    #: AuthServer outages a revocation is measured across.
    outage_rounds: int
    #: Per-test timeout (s): a bound for a hang, far above the measured time.
    timeout_s: int


SHORT = Sizes("short", http_requests=1_500, connects=3_000, uploads=600, moves=200,
              flood_logins=2_000, outage_rounds=1, timeout_s=120)  # fmt: skip
LONG = Sizes("long", http_requests=10_000, connects=10_000, uploads=2_000, moves=1_000,
             flood_logins=20_000, outage_rounds=5, timeout_s=1_200)  # fmt: skip


def sizes_of(config: pytest.Config) -> Sizes:
    markexpr = config.getoption("markexpr") or ""
    return LONG if re.fullmatch(r"\s*adversarial\s*", markexpr) else SHORT


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    timeout = sizes_of(config).timeout_s
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.timeout(timeout))


@dataclass
class Report:
    form: str
    seed: int
    path: Path
    started: float = field(default_factory=time.time)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, part: str, figures: dict[str, Any]) -> None:
        self.parts[part] = figures

    def write(self) -> Path:
        document = {
            "schema": 1,
            "suite": "mqtt-token-sim adversarial",
            "form": self.form,
            "seed": self.seed,
            "command": "pytest -m adversarial" if self.form == "long" else "pytest",
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "wall_s": round(time.time() - self.started, 1),
            "python": sys.version.split()[0],
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
            "parts": self.parts,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
        return self.path


_REPORT = pytest.StashKey[Report]()


@pytest.fixture(scope="session")
def sizes(pytestconfig: pytest.Config) -> Sizes:
    return sizes_of(pytestconfig)


@pytest.fixture(scope="session")
def seed() -> int:
    return int(os.environ.get("ADVERSARIAL_SEED", DEFAULT_SEED))


@pytest.fixture(scope="session")
def report(
    pytestconfig: pytest.Config, sizes: Sizes, seed: int, tmp_path_factory: pytest.TempPathFactory
) -> Report:
    if _REPORT not in pytestconfig.stash:
        path = os.environ.get("ADVERSARIAL_REPORT")
        if path is None:
            base = Path.cwd() if sizes.form == "long" else tmp_path_factory.getbasetemp()
            path = str(base / "adversarial-report.json")
        pytestconfig.stash[_REPORT] = Report(sizes.form, seed, Path(path))
    return pytestconfig.stash[_REPORT]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None:
        return
    path = report.write()
    terminalreporter.section("adversarial suite")
    terminalreporter.write_line(f"{report.form} form, seed {report.seed}: figures in {path}")
    for part, figures in report.parts.items():
        headline = {k: v for k, v in figures.items() if k in HEADLINE}
        terminalreporter.write_line(f"  {part}: {json.dumps(headline)}")


#: The figures the summary line of each part shows (all of them are in the JSON).
HEADLINE = {
    "requests", "status_5xx", "non_json_error_bodies", "forged_accepted", "connects",
    "uploads", "accepted_forgeries", "canary_lost", "moves", "escapes", "logins",
    "rss_delta_kib", "latency_s", "max_latency_s", "wall_s",
}  # fmt: skip
