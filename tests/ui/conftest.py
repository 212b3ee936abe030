"""UI fixtures: the sandbox console built through the shared factory, isolated in tmp_path.

Every app here comes from `console.app.make_app(config, sandbox=True, seed=7, ...)` with its
journal, audit log and locks under tmp_path, and XDG_STATE_HOME / XDG_CONFIG_HOME pointing
there too, so no test sees the operator's real state or config. Helpers live in uikit.py.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from uikit import FAST, ORIGIN, SEED, Messages

from console.app import ReleaseConsole, make_app
from services import factory
from services.core import identity


@pytest.fixture
def snap_compare(snap_compare: Callable[..., bool]) -> Callable[..., bool]:
    """The plugin's snap_compare, failing at once when run_before fails. Textual runs run_before as
    the headless app's auto-pilot, and a failure there is not raised: the app would go on running
    until the test's timeout (300 s), with the failing wait's message lost. Here the app exits, the
    error is printed (shown with the test's failure) and the comparison fails."""

    def compare(*args: Any, run_before: Callable[[Pilot[Any]], Awaitable[None]] | None = None, **kwargs: Any) -> bool:
        async def guarded(pilot: Pilot[Any]) -> None:
            assert run_before is not None
            try:
                await run_before(pilot)
            except BaseException:
                print(f"run_before failed:\n{traceback.format_exc()}")
                pilot.app.exit(return_code=1)
                raise

        return snap_compare(*args, run_before=None if run_before is None else guarded, **kwargs)

    return compare


@pytest.fixture
def ui_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # never the operator's release.toml
    monkeypatch.chdir(tmp_path)  # nor one in the working directory
    # The audit records who acted; pin it so screens do not depend on the machine.
    # Who comes from the OS (uid -> name), never from $USER: pin the OS's answer itself.
    monkeypatch.setattr(identity, "os_user", lambda: "operator")
    # A short host name, as on the machine the snapshots were first taken on: a longer one wraps the
    # environment pane's lock line so that the holder's pid (different every run) shows at a modal's edge.
    monkeypatch.setattr(identity, "hostname", lambda: "vm")
    monkeypatch.delenv("SSH_CLIENT", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tmp_path


@pytest.fixture
def make_ui_app(ui_state: Path, request: pytest.FixtureRequest) -> Callable[..., ReleaseConsole]:
    """make_ui_app(time_scale=FAST) -> a sandbox console (seed 7) whose state lives in tmp_path.

    With the `frozen_clock` fixture, its world's clock starts at ORIGIN. `monitor`: [monitor]
    after_deploy, off unless a test is about the post-deploy monitor.
    """
    origin = ORIGIN if "frozen_clock" in request.fixturenames else None

    def make(time_scale: float = FAST, monitor: str = "off") -> ReleaseConsole:
        config = factory.load_config(None, True)
        config = config.model_copy(update={"monitor": config.monitor.model_copy(update={"after_deploy": monitor}),
                                           # One health poll per app: the sparklines never grow during a snapshot.
                                           "health": config.health.model_copy(update={"interval_s": 3600})})
        return make_app(config, sandbox=True, seed=SEED, time_scale=time_scale, state=ui_state, origin=origin)

    return make


@pytest.fixture
def frozen_clock() -> float:
    """Asks make_ui_app to start the sandbox clock at ORIGIN, so simulated dates and backup ids repeat."""
    return ORIGIN


@pytest.fixture
def messages() -> Messages:
    """Pass as run_test(message_hook=messages); then messages.of(SomeMessage)."""
    return Messages()
