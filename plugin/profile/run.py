"""Profile a source on disk through the one population pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from plugin.fhir.read import ReadReport
from plugin.fhir.stage import iter_timelines
from plugin.profile.measure import Profile, build_profile
from plugin.rules import RuleSet


def profile_source(
    paths: Sequence[str | Path], ruleset: RuleSet, *, report: ReadReport | None = None
) -> tuple[Profile, ReadReport]:
    """The profile of the FHIR files under ``paths`` and the read report."""
    report = report if report is not None else ReadReport()
    timelines = iter_timelines([Path(p) for p in paths], validate="fast", report=report)
    source = ", ".join(str(p) for p in paths)
    return build_profile(timelines, ruleset, report, source=source), report
