"""Deploy, canary steering and canary monitoring driven by the keyboard at 80x24 (sandbox):
plans in the confirmations, the environments pane's revisions, the ask countdown, the trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Label, Static
from uikit import (
    cancel_confirmed,
    choose_env,
    confirm_modal,
    finished,
    modal_of,
    notices,
    outcome,
    ready,
    runbook,
    text_of,
    wait_for,
)

from services.core.events import StepStatus
from widgets.canary import CanaryPane
from widgets.environments import EnvironmentsPane
from widgets.params import ParamsModal

SIZE = (80, 24)
pytestmark = pytest.mark.asyncio


async def fill_form(pilot: Any, **values: str) -> None:
    form = await modal_of(pilot, ParamsModal, "the parameters form")
    for name, value in values.items():
        box = form.query_one(f"#param-{name}", Input)
        box.value = value
    await pilot.press("enter")
    await wait_for(pilot, lambda: pilot.app.screen is not form, "the form to close")


def env_detail(screen: Any) -> str:
    return text_of(screen.query_one(EnvironmentsPane).query_one("#env-detail", Static))


async def test_deploy_start_a_canary_and_promote_it_with_keys(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        world = app.services.world

        await pilot.press("t")
        await fill_form(pilot, version="1.4.1")
        modal = await confirm_modal(pilot)
        digest = app.services.registry.digest("ghcr.io/example/food-management:1.4.1")
        assert modal.prompt == ("Deploy ghcr.io/example/food-management:1.4.1 in staging?\n"
                                f"Plan: update replicas image; runs 1.4.1 at {digest[:19]}")
        await pilot.press("y")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED") and world.envs["staging"].version == "1.4.1"

        await pilot.press("s")
        await fill_form(pilot, version="1.5.0", weight="25")
        modal = await confirm_modal(pilot)
        assert modal.prompt.startswith("Start canary ghcr.io/example/food-management:1.5.0 at 25% in staging?")
        await pilot.press("y")
        await finished(pilot, screen)
        await wait_for(pilot, lambda: "canary  1.5.0 at 25%, 1 ready" in env_detail(screen), "the canary row")

        await pilot.press("o")
        modal = await confirm_modal(pilot)
        assert "Plan: update replicas image, update replicas canary, update replicas weight" in modal.prompt
        await pilot.press("y")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        assert (world.envs["staging"].version, world.envs["staging"].canary_version) == ("1.5.0", None)
        await wait_for(pilot, lambda: "#5 1.5.0 promote" in env_detail(screen), "the promotion in the history")
        assert "#4 1.4.1 deploy" in env_detail(screen)


async def test_ctrl_x_stops_a_deploy_waiting_for_its_rollout(make_ui_app: Any) -> None:
    """ctrl+x while the target waits for replicas: the wait wakes, what it changed is put back, and
    the journal keeps the apply step for resume."""
    app = make_ui_app(time_scale=1.0)  # 4 s per replica: the rollout is still waiting when ctrl+x comes
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        staging = app.services.world.envs["staging"]
        before = staging.version

        await pilot.press("t")
        await fill_form(pilot, version="1.4.1")
        await confirm_modal(pilot)
        await pilot.press("y")
        await wait_for(pilot, lambda: runbook(screen).status.get("apply") is StepStatus.RUNNING, "the rollout")
        await pilot.press("ctrl+x")
        await confirm_modal(pilot)
        await cancel_confirmed(pilot, screen, "apply", timeout=6)
        assert (staging.version, staging.ready) == (before, staging.desired)  # put back: the old one serves
        assert staging.events[-1] == f"rollout of 1.4.1 cancelled; {before} serves"


async def test_an_ask_rule_counts_down_then_takes_its_default(make_ui_app: Any) -> None:
    app = make_ui_app()
    canary = app.services.config.canary
    policy = canary.model_copy(update={"automation": {**canary.automation, "error_rate": "ask"}, "ask_timeout_s": 2})
    app.services.config = app.services.config.model_copy(update={"canary": policy})
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press("c")
        await fill_form(pilot, version="1.5.0")
        modal = await confirm_modal(pilot)  # the error-rate rule, in ask mode
        assert modal.prompt.startswith("error_rate: ") and modal.prompt.endswith("Roll back now?")
        # The countdown says the default and the seconds left of the 2 configured, whichever tick it is at.
        assert modal.default_yes and modal.remaining is not None and 0 < modal.remaining <= 2
        assert str(modal.query_one("#countdown", Label).render()) == f"No answer: yes in {round(modal.remaining)}s"
        await wait_for(pilot, lambda: app.screen is screen, "the countdown to run out", timeout=10)
        await finished(pilot, screen)
        assert outcome(screen).startswith("FAILED: rolled back at check")
        assert app.services.world.envs["development"].canary_version is None


async def test_the_canary_pane_shows_the_judge_and_T_exports_the_trace(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press("c")
        await fill_form(pilot, version="1.5.0")
        await finished(pilot, screen)
        pane = screen.query_one(CanaryPane)

        def verdict() -> str:
            return text_of(pane.query_one("#canary-verdict", Static))

        # The pane may first show the judge of an earlier poll (no rule line yet): wait for the last one.
        await wait_for(pilot, lambda: "error_rate: BREACH -> rollback (act)" in verdict(), "the rules' verdict")
        assert "judge: not enough data yet" in verdict()
        assert "share %" in text_of(pane.query_one("#canary-values", Static))
        assert "Canary 1.5.0 in development" in str(pane.query_one("#canary-title", Label).render())

        await pilot.press("T")
        await wait_for(pilot, lambda: any("decision trace of" in n for n in notices(app)), "the export notice")
        notice = next(n for n in notices(app) if "decision trace of" in n)
        markdown, data = (Path(line) for line in notice.splitlines()[1:])
        assert markdown.read_text().startswith("# Canary ghcr.io/example/food-management:1.5.0 in development")
        assert json.loads(data.read_text())["decision"]["action"] == "rollback"
        assert runbook(screen).status["monitor"].value == "failed"


async def test_the_sandbox_fills_in_its_demo_canary_version(make_ui_app: Any) -> None:
    """The version is required; the sandbox offers its degrading release (1.5.0), which no action
    hard-codes: real mode's form is empty (tests/unit/test_cli.py checks the CLI's side)."""
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("c")
        form = await modal_of(pilot, ParamsModal, "the canary's form")
        assert form.query_one("#param-version", Input).value == "1.5.0"
        assert "version *" in [str(label.render()) for label in form.query(Label)]
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is not form, "the form to close")
        await pilot.press("t")  # a deploy's version: the sandbox offers none
        form = await modal_of(pilot, ParamsModal, "the deploy's form")
        assert form.query_one("#param-version", Input).value == ""


async def test_a_hand_change_shows_drift_in_the_pane_and_a_adopts_it(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        world = app.services.world
        assert "DRIFT" not in env_detail(screen)
        with world.lock:
            world.envs["staging"].version = "1.4.0"  # a hotfix by hand: the history still says 1.4.2

        image = "ghcr.io/example/food-management"
        await wait_for(pilot, lambda: f"DRIFT   image changed outside the console: runs {image}:1.4.0"
                       in env_detail(screen), "the drift in the pane")
        table = screen.query_one(EnvironmentsPane).query_one("#env-table", DataTable)
        assert table.get_cell_at(Coordinate(1, 1)).plain == "!1.4.0"

        await pilot.press("a")
        modal = await confirm_modal(pilot)
        assert modal.prompt == f"Record {image}:1.4.0 (what runs now) as a new revision in staging?"
        await pilot.press("y")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        await wait_for(pilot, lambda: "DRIFT" not in env_detail(screen) and "#4 1.4.0 adopt" in env_detail(screen),
                       "the drift gone and the adopted revision in the history")
