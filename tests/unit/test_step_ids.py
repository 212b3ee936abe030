"""Every action, as the catalog builds it for a production and a staging environment (with the
confirmations, dependency checks and post-deploy monitor it adds), names each of its steps once: the
runbook, the journal's readers and the events tell steps apart by id."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from rig.opkit import sandbox_services

from services.catalog import ACTIONS, build_operation
from services.migrations.expand.params import PHASES

PARAMS = {"version": "1.4.1", "table": "Ingredient", "column": "note", "new_column": "note2", "weight": 25,
          "replicas": 3, "release": "r1", "applied": "20240901120000_broken",
          "target": "before:20240618160000_recipe_tags"}


@pytest.mark.parametrize("env", ["staging", "production"])
def test_no_action_repeats_a_step_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    services = sandbox_services(tmp_path, monkeypatch, monitor="act")
    built = {}
    for kind, spec in ACTIONS.items():
        params = {p.name: PARAMS[p.name] for p in spec.params if p.name in PARAMS}
        phased = any(p.name == "phase" for p in spec.params)
        for phase in PHASES if phased else [None]:
            with_phase = params | {"phase": phase} if phased else params
            ids = [step.id for step in build_operation(services, kind, env, with_phase).steps]
            built[kind, phase] = [step_id for step_id, count in Counter(ids).items() if count > 1]
    assert {built_as: repeated for built_as, repeated in built.items() if repeated} == {}
    assert len(built) >= len(ACTIONS) + 2 * (len(PHASES) - 1)  # both expand actions in every phase


def test_a_canary_asks_twice_under_two_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = sandbox_services(tmp_path, monkeypatch)
    ids = [step.id for step in build_operation(services, "canary", "production", {"version": "1.4.1"}).steps]
    assert ids.index("confirm") < ids.index("start") < ids.index("confirm-promote") < ids.index("apply")
