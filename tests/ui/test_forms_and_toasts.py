"""What a new operator meets at 80x24 (issue 20): forms whose empty fields say their default and where
it comes from, never the param's name; and toasts that never cover the runbook's outcome lines."""

from __future__ import annotations

from typing import Any

import pytest
from textual.geometry import Region
from textual.widgets import Input
from textual.widgets._toast import Toast
from uikit import choose_env, finished, modal_of, notices, outcome, ready, runbook, wait_for

from console.screens.main import MainScreen
from services.catalog import all_actions
from widgets.confirm import ConfirmModal
from widgets.params import ParamsModal

pytestmark = pytest.mark.asyncio

SIZE = (80, 24)


def placeholders(form: ParamsModal) -> dict[str, str]:
    return {str(field.id).removeprefix("param-"): str(field.placeholder) for field in form.query(Input)}


async def test_the_restore_form_shows_the_configs_defaults_and_the_walkthrough_runs_with_them(
        make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        recovery = app.services.config.recovery
        await pilot.press("X")
        form = await modal_of(pilot, ParamsModal, "the restore's form")
        # Read from the loaded config here, not through the resolver the form uses.
        assert placeholders(form) == {
            "backup_id": "default: the newest complete backup",
            "health_tries": f"default {recovery.health_tries}, from recovery.health_tries",
            "health_interval_s": f"default {recovery.health_interval_s:g}, from recovery.health_interval_s",
        }
        for name in ("health_tries", "health_interval_s"):  # shown as the default, not typed in
            assert form.query_one(f"#param-{name}", Input).value == ""
        await pilot.press("enter")
        await modal_of(pilot, ConfirmModal, "the confirmation")
        await pilot.press("n")  # declined: the operation was built with the form's empty fields
        await finished(pilot, screen)
        titles = dict(runbook(screen).steps)
        assert titles["health"].endswith(f"({recovery.health_tries} tries, {recovery.health_interval_s:g}s apart)")


async def test_a_value_its_check_refuses_is_said_with_the_form_still_open_and_what_was_typed_kept(
        make_ui_app: Any) -> None:
    """The point-in-time restore's target, mistyped: the form stays, the field keeps "yesterday" and
    has the focus, the toast says what the target must be; corrected, it goes on to the confirmation."""
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "production")
        await pilot.press("5", "I")
        form = await modal_of(pilot, ParamsModal, "the point-in-time restore's form")
        await pilot.press(*"yesterday", "enter")
        await wait_for(pilot, lambda: any("target 'yesterday'" in n for n in notices(app)), "the refusal")
        target = form.query_one("#param-target", Input)
        assert app.screen is form and target.value == "yesterday" and target.has_focus
        target.value = ""
        await pilot.press(*"before:20240618160000_recipe_tags", "enter")
        confirm = await modal_of(pilot, ConfirmModal, "the confirmation")
        assert "20240618160000_recipe_tags" in confirm.prompt
        await pilot.press("escape")
        await finished(pilot, screen)


async def test_every_form_says_its_defaults_never_the_param_names(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE) as pilot:
        screen: MainScreen = await ready(pilot)
        config = app.services.config
        forms = {kind: spec for kind, spec in all_actions().items() if any(p.in_form for p in spec.params)}
        assert {"restore", "restore-drill", "deploy", "canary-start", "expand-add-column"} <= set(forms)
        for kind, spec in forms.items():
            screen.action_start(kind)
            form = await modal_of(pilot, ParamsModal, f"{kind}'s form")
            shown = placeholders(form)
            names = {p.name for p in spec.params}
            for param in (p for p in spec.params if p.in_form):
                text = shown[param.name]
                assert text and text not in names, (kind, param.name, text)
                if param.from_config:
                    section, key = param.from_config.split(".")
                    value = getattr(getattr(config, section), key)
                    assert text == f"default {value:g}, from {param.from_config}", (kind, text)
                elif param.default:
                    assert text == f"default {param.default}", (kind, text)
                elif param.default_is:
                    assert text == f"default: {param.default_is}", (kind, text)
                elif param.required:
                    assert text.startswith("required"), (kind, text)
                else:
                    assert text in ("optional", f"e.g. {param.example}"), (kind, text)
            await pilot.press("escape")
            await wait_for(pilot, lambda form=form: app.screen is not form, "the form to close")


def outcome_lines(screen: MainScreen) -> Region:
    """Where the runbook's last step (the RTO) and its outcome (SUCCEEDED/FAILED, next:) are on screen."""
    panel = runbook(screen)
    steps = panel.query_one("#runbook-steps")
    width = steps.size.width
    before, every = panel.render_steps(upto=len(panel.steps) - 1), panel.render_steps()
    before.rstrip()  # its last step's newline starts no line of its own
    above, total = (len(text.wrap(screen.app.console, width)) for text in (before, every))
    return Region(steps.region.x, steps.region.y + above, width, total - above)


def toasts(screen: Any) -> list[Toast]:
    return list(screen.query(Toast))


async def assert_toast_clear_of_the_outcome(pilot: Any, screen: MainScreen) -> None:
    await wait_for(pilot, lambda: toasts(screen), "the toast at the end")
    await pilot.pause()
    lines = outcome_lines(screen)
    view = runbook(screen).scrollable_content_region
    assert lines.height >= 2 and view.contains_region(lines), (lines, view)  # in view, whole
    for toast in toasts(screen):
        assert not toast.region.overlaps(runbook(screen).region), (toast.region, runbook(screen).region)
        assert not toast.region.overlaps(lines)


async def test_the_toast_leaves_the_drills_outcome_and_rto_in_view(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # Pilot hides toasts unless asked
        screen = await ready(pilot)
        await choose_env(pilot, screen, "staging")
        await pilot.press("D")
        await modal_of(pilot, ParamsModal, "the drill's form")
        await pilot.press("enter")
        await modal_of(pilot, ConfirmModal, "the confirmation")
        await pilot.press("y")
        await finished(pilot, screen)
        assert outcome(screen).startswith("SUCCEEDED")
        assert "RTO" in runbook(screen).details["report"]
        await assert_toast_clear_of_the_outcome(pilot, screen)


async def test_a_failures_longer_toast_leaves_its_next_options_in_view(make_ui_app: Any) -> None:
    app = make_ui_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await ready(pilot)
        await choose_env(pilot, screen, "development")  # no backup yet: the drill fails at its first step
        await pilot.press("D")
        await modal_of(pilot, ParamsModal, "the drill's form")
        await pilot.press("enter")
        await finished(pilot, screen)
        assert outcome(screen).startswith("FAILED") and "next:" in outcome(screen)
        await assert_toast_clear_of_the_outcome(pilot, screen)
