"""A generated population shared by the synth tests (made once per session)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugin.synth import Summary, generate

POPULATION = 5000
SEED = 20261127


@pytest.fixture(scope="session")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Summary]:
    out = tmp_path_factory.mktemp("synth") / "pop"
    summary = generate(out, patients=POPULATION, seed=SEED, as_of=date(2026, 6, 30), workers=2)
    return out, summary


@pytest.fixture(scope="session")
def resources(population: tuple[Path, Summary]) -> dict[str, dict[str, Any]]:
    """Every resource of the population by ``Type/id``."""
    out, _ = population
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("*.ndjson")):
        with open(path, "rb") as fh:
            for line in fh:
                res = orjson.loads(line)
                found[f"{res['resourceType']}/{res['id']}"] = res
    return found


@pytest.fixture(scope="session")
def by_encounter(resources: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Resources that point at an encounter, by ``Encounter/id``."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for res in resources.values():
        enc = res.get("encounter", {}).get("reference")
        if enc:
            out[enc].append(res)
    return out
