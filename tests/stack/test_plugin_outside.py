"""The pytest plugin as another project meets it (docs/stack.md "pytest plugin"): a fresh
project with pytest-asyncio's default strict mode, a project with a ``sim`` package of its
own, a project without pytest-asyncio; the options, the marker, the session stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "stack.md"


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def _pytest(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``project`` (its directory first on sys.path, as a user
    typing it there gets), with no configuration of ours: strict mode."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=project,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _documented_example() -> str:
    text = DOCS.read_text()
    section = text[text.index("A test in a fresh project") :]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    readme = (DOCS.parents[1] / "README.md").read_text()
    assert f"```python\n{example}```" in readme  # the README shows the same test
    return example


def test_the_documented_example_passes_as_written_in_strict_mode(tmp_path: Path) -> None:
    project = _project(tmp_path, {"test_doc.py": _documented_example()})
    proc = _pytest(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    header = _pytest(project, "--co", "-v").stdout
    assert "mode=Mode.STRICT" in header  # pytest-asyncio's default


def test_a_project_with_its_own_sim_package(tmp_path: Path) -> None:
    """Its own ``sim`` hides ours: the session runs; only a test using a fixture fails
    (an error at its setup), with a message saying why and what to do."""
    project = _project(
        tmp_path,
        {
            "sim/__init__.py": "WHO = 'the project'\n",
            "test_mine.py": """
                import pytest
                import sim

                def test_own_package():
                    assert sim.WHO == "the project"

                @pytest.mark.asyncio
                async def test_uses_the_stack(mqtt_stack):
                    pass
                """,
        },
    )
    proc = _pytest(project)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 passed, 1 error" in out
    assert "Error while loading plugin" not in out and "Traceback" not in out
    assert re.search(r"this project's own 'sim' \(.*sim.*\) hides mqtt-token-sim's", out), out


def test_without_pytest_asyncio_a_clear_message_on_use(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        {
            # pytest_asyncio is not importable in this run (as if not installed)
            "blocked/pytest_asyncio/__init__.py": "raise ImportError('not installed')\n",
            "tests/test_x.py": """
                def test_plain():
                    pass

                def test_uses_the_stack(mqtt_stack):
                    pass
                """,
        },
    )
    env = {"PYTHONPATH": str(project / "blocked")}
    proc = _pytest(project, "-p", "no:asyncio", "-p", "no:aiohttp", "tests", env=env)
    out = proc.stdout + proc.stderr
    assert "1 passed, 1 error" in out, out
    assert "fixture 'mqtt_stack' not found" not in out
    assert "need pytest-asyncio: pip install -e '/path/to/mqtt-token-sim[plugin]'" in out


def test_options_and_marker_are_shown(tmp_path: Path) -> None:
    helped = _pytest(tmp_path, "--help").stdout
    assert "mqtt-token-sim" in helped and "--mqtt-profile" in helped
    assert "--mqtt-keep-data" in helped
    assert "@pytest.mark.mqtt_profile(name)" in _pytest(tmp_path, "--markers").stdout


def test_profile_option_marker_session_stack_and_kept_data(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        {
            "test_shared.py": """
                import json
                import urllib.request
                from base64 import b64encode

                import paho.mqtt.client as mqtt
                import pytest

                SEEN = []

                @pytest.mark.asyncio
                async def test_option_sets_the_profile(mqtt_stack):
                    assert mqtt_stack.handle.config.profile == "mqtt"
                    (mqtt_stack.data_dir / "x").write_text("kept")
                    SEEN.append(str(mqtt_stack.data_dir))

                @pytest.mark.asyncio
                @pytest.mark.mqtt_profile("provider")
                async def test_marker_wins(mqtt_stack):
                    assert mqtt_stack.handle.broker.config.profile == "provider"

                def test_session_stack_sync(mqtt_session_stack):
                    s = mqtt_session_stack
                    s.create_account("GID_app@@@dev-7", "pw", ["app/#"])
                    req = urllib.request.Request(
                        s.appserver_url + "/v1/tokens",
                        data=json.dumps({"resources": ["app/#"], "actions": "R,W"}).encode(),
                        headers={"Content-Type": "application/json", "Authorization":
                                 "Basic " + b64encode(b"GID_app@@@dev-7:pw").decode()})
                    token = json.loads(urllib.request.urlopen(req, timeout=10).read())
                    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="GID_app@@@dev-7")
                    c.username_pw_set(token["username"], token["password"])
                    host, port = s.broker_url.removeprefix("mqtt://").split(":")
                    assert c.connect(host, int(port)) == 0
                    c.disconnect()
                    SEEN.append(s.broker_url)

                @pytest.mark.asyncio
                async def test_session_stack_is_shared(mqtt_session_stack):
                    assert SEEN[-1] == mqtt_session_stack.broker_url
                    assert mqtt_session_stack.metric("appserver", "appserver_token_requests") >= 1
                    assert mqtt_session_stack.fidelity().profile == "mqtt"
                    assert mqtt_session_stack.audit().clean
                    s = mqtt_session_stack
                    assert s.add_fault(operation="apply", kind="outage", seconds=60)
                    s.clear_faults()

                def test_kept(tmp_path_factory):
                    assert open(SEEN[0] + "/x").read() == "kept"
                """,
        },
    )
    proc = _pytest(project, "-p", "no:randomly", "--mqtt-profile", "mqtt", "--mqtt-keep-data")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


def test_client_factory_during_an_outage_says_what_it_waited_for(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        {
            "test_outage.py": """
                import pytest

                @pytest.mark.asyncio
                async def test_outage(mqtt_stack, mqtt_client_factory):
                    await mqtt_stack.add_fault(operation="apply", kind="outage", seconds=60)
                    with pytest.raises(AssertionError) as info:
                        await mqtt_client_factory()
                    text = str(info.value)
                    print(text)
                    assert "client GID_test@@@c1 to connect failed" in text
                    assert "'backoff'" in text and "mqtt_stack.advance" in text
                    assert "apply outage" in text and "timed out" not in text
                """,
        },
    )
    proc = _pytest(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
