"""The pytest plugin of mqtt-token-sim (entry point ``pytest11: mqtt_token_sim``).

Installed with the package's ``plugin`` extra (``pip install -e
'/path/to/mqtt-token-sim[plugin]'``, which brings pytest-asyncio), any project's tests
get (docs/stack.md "pytest plugin"):

* ``mqtt_stack_config`` -- the :class:`~sim.harness.stack.StackConfig` of a test's stack
  (override it: TTLs, notice lead, ...);
* ``mqtt_stack`` -- AuthServer, broker and AppServer in the test's loop on a manual
  clock that starts at the real now; a ``SimStack`` with levers;
* ``mqtt_client_factory`` / ``mqtt_fleet_factory`` -- started, connected SDK clients and
  fleets on it;
* ``mqtt_session_stack`` (and ``mqtt_session_stack_config``) -- one stack for the whole
  session on the real clock, in a background thread: sync helpers, for suites that share
  one stack;
* options ``--mqtt-profile provider|mqtt`` and ``--mqtt-keep-data``; the marker
  ``@pytest.mark.mqtt_profile("mqtt")``.

This module has a name no project plausibly has, and imports nothing of the harness
until a fixture is used: a session whose tests use none of them is never broken by it
-- not by a project's own ``sim`` package that hides ours (``python -m pytest``, and
test files beside it, put it first on ``sys.path``), not by a missing pytest-asyncio.
A test that uses a fixture then fails with one message saying what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

__all__: list[str] = []

#: The top-level packages of mqtt-token-sim the fixtures import: a project's own module
#: of one of these names hides ours.
OUR_PACKAGES = ("sim", "mock_authserver", "mock_broker")
PROFILES = ("provider", "mqtt")
INSTALL_HINT = "pip install -e '/path/to/mqtt-token-sim[plugin]'"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mqtt-token-sim", "mqtt-token-sim stack (docs/stack.md)")
    group.addoption(
        "--mqtt-profile",
        choices=PROFILES,
        default=None,
        help="the broker profile of every mqtt-token-sim stack: provider (default: the"
        " provider's limits, SPEC §4a) or mqtt (plain MQTT 3.1.1); a test's"
        " @pytest.mark.mqtt_profile wins",
    )
    group.addoption(
        "--mqtt-keep-data",
        action="store_true",
        default=False,
        help="keep the stacks' data dirs (SQLite stores) under the test's tmp_path, and"
        " say where in the test's report; default: removed with the stack",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mqtt_profile(name): the broker profile of this test's mqtt_stack, 'provider'"
        " (SPEC §4a) or 'mqtt' (plain MQTT 3.1.1) (mqtt-token-sim)",
    )


# --------------------------------------------------------------------------- loading


def _ours(name: str) -> str | None:
    """Where the module ``name`` that would be imported lives, when it is not the one
    installed beside this file (None: it is ours, or there is none)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    home = (Path(__file__).resolve().parent / name).resolve()
    places = [spec.origin] if spec.origin else []
    places += list(spec.submodule_search_locations or [])
    for place in places:
        path = Path(place).resolve()
        if path == home or home in path.parents:
            return None
    return str(places[0]) if places else name


def _implementation() -> ModuleType:
    """``sim.harness.pytest_plugin``, or a failed test saying why it cannot be loaded."""
    clashes = {name: where for name in OUR_PACKAGES if (where := _ours(name)) is not None}
    if not clashes:
        try:
            return importlib.import_module("sim.harness.pytest_plugin")
        except ImportError as exc:
            pytest.fail(
                f"mqtt-token-sim's pytest fixtures cannot be loaded: {exc}. Install it"
                f" with its plugin extra: {INSTALL_HINT}",
                pytrace=False,
            )
    hidden = ", ".join(f"{name!r} ({where})" for name, where in clashes.items())
    pytest.fail(
        f"mqtt-token-sim's pytest fixtures cannot be loaded: this project's own {hidden}"
        f" hides mqtt-token-sim's package of that name ({', '.join(OUR_PACKAGES)} are"
        " its), and one process cannot import both. Rename the project's package, or"
        " keep the tests that use these fixtures where it is not on sys.path (`python -m"
        " pytest`, and test files beside the package, put its directory there). Tests"
        " that use no mqtt_* fixture are not affected.",
        pytrace=False,
    )


def _profile(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("mqtt_profile")
    profile = (
        marker.args[0] if marker and marker.args else request.config.getoption("--mqtt-profile")
    )
    profile = profile or "provider"
    if profile not in PROFILES:
        pytest.fail(f"mqtt_profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return str(profile)


_KEPT = pytest.StashKey[list[str]]()


def _data_dir(request: pytest.FixtureRequest, base: Path) -> Path | None:
    """None (a temporary data dir, removed with the stack) unless ``--mqtt-keep-data``:
    then a dir under ``base``, named in the test's report and at the end of the run."""
    if not request.config.getoption("--mqtt-keep-data"):
        return None
    path = base / "mqtt-stack"
    request.config.stash.setdefault(_KEPT, []).append(str(path))
    if isinstance(request.node, pytest.Item):
        request.node.add_report_section("setup", "mqtt-token-sim", f"stack data kept in {path}")
    return path


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, [])
    if kept:
        terminalreporter.write_line(
            f"mqtt-token-sim: {len(kept)} stack data dir(s) kept, e.g. {kept[0]}"
        )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def mqtt_stack_config(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The StackConfig of ``mqtt_stack``; override it to change the stack."""
    impl = _implementation()
    return impl.stack_config(_data_dir(request, tmp_path), _profile(request))


@pytest.fixture(scope="session")
def mqtt_session_stack_config(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """The StackConfig of ``mqtt_session_stack``; override it (session scope) to change it."""
    impl = _implementation()
    base = tmp_path_factory.mktemp("mqtt-session")
    profile = request.config.getoption("--mqtt-profile") or "provider"
    return impl.stack_config(_data_dir(request, base), profile)


@pytest.fixture(scope="session")
def mqtt_session_stack(mqtt_session_stack_config: Any) -> Iterator[Any]:
    """One stack for the session, on the real clock, in a background thread."""
    impl = _implementation()
    with impl.open_session_stack(mqtt_session_stack_config) as stack:
        yield stack


try:
    import pytest_asyncio
except ImportError:  # the fixtures below say what is missing when used
    pytest_asyncio = None  # type: ignore[assignment]


def _needs_pytest_asyncio() -> None:
    pytest.fail(
        "mqtt-token-sim's async fixtures (mqtt_stack, mqtt_client_factory,"
        f" mqtt_fleet_factory) need pytest-asyncio: {INSTALL_HINT}, or pip install"
        " pytest-asyncio; then mark async tests @pytest.mark.asyncio",
        pytrace=False,
    )


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def mqtt_stack(mqtt_stack_config: Any) -> AsyncIterator[Any]:
        """The whole stack in this test's loop, on a manual clock."""
        async with _implementation().open_stack(mqtt_stack_config) as stack:
            yield stack

    @pytest_asyncio.fixture
    async def mqtt_client_factory(mqtt_stack: Any, tmp_path: Path) -> AsyncIterator[Any]:
        """``await make(client_id=None, resources=("test/#",), *, mode="upload",
        connect=True, account=True, **config)`` -> a started, connected TokenClient."""
        async with _implementation().client_factory(mqtt_stack, tmp_path / "tokens") as make:
            yield make

    @pytest_asyncio.fixture
    async def mqtt_fleet_factory(mqtt_stack: Any, tmp_path: Path) -> AsyncIterator[Any]:
        """``await make(n, **FleetConfig fields)`` -> a started Fleet (all connected)."""
        async with _implementation().fleet_factory(mqtt_stack, tmp_path) as make:
            yield make

else:

    @pytest.fixture
    def mqtt_stack() -> None:
        _needs_pytest_asyncio()

    @pytest.fixture
    def mqtt_client_factory() -> None:
        _needs_pytest_asyncio()

    @pytest.fixture
    def mqtt_fleet_factory() -> None:
        _needs_pytest_asyncio()
