"""No artefact separates planted MOD index events from look-alikes.

The signal must come from clinical content, never from structure: no key of the index
resource, and no resource type or code recorded in the index encounter, is present in all MOD
cases and in none of the others (or the reverse); ids, file position and time of day carry
no information about is_mod.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from plugin.synth import Summary, read_labels

MAIN = {"SP-1", "ED-1", "PC-3", "TR-1", "TR-7"}


def _paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _paths(value, path)
    elif isinstance(node, list):
        for item in node:
            yield from _paths(item, prefix)


def _auroc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _separators(groups: dict[int, list[set[str]]]) -> list[tuple[str, float, float]]:
    mod, other = groups[1], groups[0]
    keys = set().union(*mod, *other)
    out = []
    for key in sorted(keys):
        a = sum(key in s for s in mod) / len(mod)
        b = sum(key in s for s in other) / len(other)
        if abs(a - b) >= 0.9:
            out.append((key, a, b))
    return out


def _rows(population: tuple[Path, Summary]):
    out, _ = population
    return [r for r in read_labels(out / "labels.csv") if r.trigger in MAIN]


def test_no_key_of_the_index_resource_separates(population, resources) -> None:
    for trigger in MAIN:
        groups: dict[int, list[set[str]]] = defaultdict(list)
        for r in _rows(population):
            if r.trigger == trigger:
                groups[r.is_mod].append(set(_paths(resources[r.index_ref])))
        assert len(groups[1]) >= 3 and len(groups[0]) >= 3, trigger
        assert _separators(groups) == [], trigger


def test_no_code_or_type_in_the_index_encounter_separates(population, resources,
                                                          by_encounter) -> None:
    for trigger in ("SP-1", "ED-1", "PC-3"):
        groups: dict[int, list[set[str]]] = defaultdict(list)
        for r in _rows(population):
            if r.trigger != trigger:
                continue
            seen = set()
            for res in by_encounter[r.index_ref]:
                seen.add(res["resourceType"])
                seen.update(f"{res['resourceType']}:{c['code']}"
                            for c in res.get("code", {}).get("coding", []))
                seen.update(f"{res['resourceType']}.{p}" for p in _paths(res))
            groups[r.is_mod].append(seen)
        assert _separators(groups) == [], trigger


def _line_numbers(out: Path) -> dict[str, int]:
    where = {}
    for path in sorted(out.glob("*.ndjson")):
        rtype = path.name.split(".")[0]
        for i, line in enumerate(path.read_bytes().splitlines()):
            rid = line.split(b'"id":"', 1)[1][:36].decode()
            where[f"{rtype}/{rid}"] = i
    return where


def test_ids_order_and_time_of_day_carry_no_label(population, resources) -> None:
    out, _ = population
    rows = _rows(population)
    lines = _line_numbers(out)
    features = {
        "file position of the index resource": lambda r: lines[r.index_ref],
        "file position of the patient": lambda r: lines[f"Patient/{r.patient_id}"],
        "index id": lambda r: int(r.index_ref.split("/")[1][:8], 16),
        "patient id": lambda r: int(r.patient_id[:8], 16),
        "hour of day (UTC)": lambda r: datetime.fromisoformat(r.index_time[:19]).hour,
        "local minute of day": lambda r: _local_minutes(resources[r.index_ref]),
    }
    for name, f in features.items():
        pos = [f(r) for r in rows if r.is_mod]
        neg = [f(r) for r in rows if not r.is_mod]
        auc = _auroc(pos, neg)
        assert 0.35 <= auc <= 0.65, (name, auc)


def _local_minutes(res: dict[str, Any]) -> int:
    when = res["period"]["start"] if "period" in res else res["effectiveDateTime"]
    t = datetime.fromisoformat(when.replace("Z", "+00:00"))  # wall-clock time at the site
    return t.hour * 60 + t.minute


def test_labels_file_is_not_mod_first(population) -> None:
    out, _ = population
    rows = read_labels(out / "labels.csv")
    positions = [i / len(rows) for i, r in enumerate(rows) if r.is_mod]
    assert 0.4 <= sum(positions) / len(positions) <= 0.6
