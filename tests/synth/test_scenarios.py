"""Every scenario, planted alone, fires (or, if built to be excluded, does not fire) its rule,
and the labeller agrees with the real rule engine on each chart."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from plugin.fhir.parse import timeline_from_resources
from plugin.rules import evaluate, load_rules
from plugin.synth.mix import SCENARIOS, cumulative
from plugin.synth.population import Frame, plant_patient

RULES = Path(__file__).resolve().parents[2] / "rules"
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)
SEEDS = range(6)


@pytest.fixture(scope="module")
def ruleset():
    return load_rules(RULES)


def test_weights_leave_room_for_background() -> None:
    assert cumulative()[-1] < 0.2


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_fires_its_trigger_as_the_engine_does(scenario, ruleset) -> None:
    rules = [r for r in ruleset.rules if r.trigger in {"SP-1", "SP-2", "SP-3", "ED-1", "PC-3",
                                                       "PC-4", "TR-1", "TR-7"}]
    frame = Frame.for_as_of(date(2026, 6, 30))
    fired = 0
    for seed in SEEDS:
        rng = random.Random(f"{scenario.name}:{seed}")
        chart, labels, excluded = plant_patient(rng, frame, scenario)
        mine = {(r.trigger, r.index_ref) for r in labels}
        tl = timeline_from_resources([res for _, _, res in chart.resources], validate="fast")
        engine = {(r.trigger, f.index_ref) for f in evaluate(rules, tl, as_of=AS_OF)
                  for r in rules if r.id == f.rule_id}
        assert mine == engine, (seed, mine ^ engine)
        primary = [r for r in labels if r.scenario == scenario.name]
        if scenario.excluded:
            assert not any(r.trigger == scenario.trigger for r in primary)
            assert [r.trigger for r in excluded] == [scenario.trigger]
        else:
            assert all(r.is_mod == int(scenario.is_mod) for r in primary)
            fired += any(r.trigger == scenario.trigger for r in primary)
    if not scenario.excluded:
        # background care can (rarely) exclude a case, e.g. a screening colonoscopy last year
        assert fired >= len(SEEDS) - 1, fired


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_resource_of_a_planted_chart_validates(scenario) -> None:
    """Rare shapes (outside reports, revoked orders, SNOMED dispositions) validate too."""
    chart, _, _ = plant_patient(random.Random(scenario.name), Frame.for_as_of(date(2026, 6, 30)),
                                scenario)
    for rtype, _, res in chart.resources:
        get_fhir_model_class(rtype).model_validate(res)
