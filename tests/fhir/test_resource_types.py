"""One table of FHIR types (plugin/fhir/resource_types.py): every type list derives from it."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from datetime import date

from plugin.fhir import client, parse, remote, resource_types
from plugin.fhir.resource_types import R4_TYPES, TYPES
from plugin.fhir.stage import iter_patients
from plugin.synth import writer
from plugin.synth.population import generate_chunk
from plugin.timeline.model import Kind
from tests.paths import ROOT


def test_every_list_is_a_projection_of_the_table() -> None:
    from plugin.cds import prefetch, services

    patient = tuple(t.name for t in TYPES if not t.shared)
    assert client.RESOURCE_TYPES == patient == writer.RESOURCE_TYPES
    assert client.DATE_PARAMS == {t.name: t.date_param for t in TYPES if t.date_param}
    assert remote.BULK_TYPES == tuple(t.name for t in TYPES if t.bulk)
    assert parse.CONVERTERS == {t.name: t.converter for t in TYPES if t.converter}
    assert parse.TIMELINE_TYPES == {t.name for t in TYPES}
    assert inspect.signature(iter_patients).parameters["types"].default == parse.TIMELINE_TYPES
    keys = [t.prefetch.key for t in TYPES if t.prefetch]
    assert list(prefetch.PATIENT_TEMPLATES) == keys
    assert services.PATIENT_TEMPLATES is prefetch.PATIENT_TEMPLATES
    assert services.ENCOUNTER_TEMPLATES is prefetch.ENCOUNTER_TEMPLATES


def test_the_table_is_consistent() -> None:
    names = [t.name for t in TYPES]
    assert len(names) == len(set(names))
    assert set(names) <= R4_TYPES
    assert TYPES[0].name == "Patient"  # the client reads it by id when no search brings it
    assert {k for t in TYPES for k in t.kinds} == set(Kind)  # every kind comes from a type
    for t in TYPES:
        assert bool(t.kinds) == (t.converter is not None), t.name
        if t.shared:
            assert t.patient_param is None and t.prefetch is None and not t.bulk, t.name


def test_converters_yield_only_the_kinds_of_their_row() -> None:
    kinds = {t.name: set(t.kinds) for t in TYPES}
    charts, _labels, _excluded = generate_chunk(3, 0, 60, date(2025, 6, 1))
    seen: set[Kind] = set()
    for chart in charts:
        timeline = parse.timeline_from_resources([r for _, _, r in chart.resources])
        for event in timeline.events:
            assert event.kind in kinds[event.source.split("/")[0]], event.source
            seen.add(event.kind)
    assert len(seen) >= 6  # the synthetic charts exercise most types


def test_the_prefetch_templates_are_the_spec_queries() -> None:
    from plugin.cds.prefetch import ENCOUNTER_TEMPLATES, PATIENT_TEMPLATES

    assert PATIENT_TEMPLATES["patient"] == "Patient/{{context.patientId}}"
    assert PATIENT_TEMPLATES["reports"] == "DiagnosticReport?patient={{context.patientId}}"
    assert ENCOUNTER_TEMPLATES["encounter"] == "Encounter/{{context.encounterId}}"


# Adds a row before anything else reads the table, as adding it to the source would.
ADD_A_ROW = """
import json
from plugin.fhir import resource_types as rt
from plugin.timeline.model import Kind

rt.TYPES = (*rt.TYPES, rt.FhirType(
    name="Immunization", converter=lambda r, ctx: [], kinds=(Kind.OBSERVATION,),
    date_param="date", prefetch=rt.Prefetch(key="immunizations"),
))

from plugin.cds import prefetch, services
from plugin.fhir import client, parse, remote
from plugin.fhir.capabilities import Capabilities, ServerType
from plugin.fhir.stage import iter_patients
from plugin.synth import writer
import inspect

fhir = client.FhirClient("https://ehr.test/fhir")
fhir._capabilities = Capabilities(server_type=ServerType.OTHER, everything=False,
                                  export=frozenset())
print(json.dumps({
    "client": client.RESOURCE_TYPES,
    "plan": [[rtype, params] for rtype, params in fhir.search_plan("p1", None)],
    "date_params": dict(client.DATE_PARAMS),
    "bulk": remote.BULK_TYPES,
    "synth": writer.RESOURCE_TYPES,
    "prefetch": services.SERVICES["dxsafety-patient-view"].definition().prefetch,
    "converters": sorted(parse.CONVERTERS),
    "staged": sorted(inspect.signature(iter_patients).parameters["types"].default),
}))
"""


def test_a_new_type_is_one_row() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ADD_A_ROW], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["client"][-1] == "Immunization"
    assert ["Immunization", [["patient", "p1"], ["_count", "200"]]] in got["plan"]
    assert got["date_params"]["Immunization"] == "date"
    assert "Immunization" in got["bulk"] and "Immunization" in got["synth"]
    assert got["prefetch"]["immunizations"] == "Immunization?patient={{context.patientId}}"
    assert "Immunization" in got["converters"] and "Immunization" in got["staged"]


def test_the_projections_read_the_table() -> None:
    assert resource_types.patient_types() == tuple(t.name for t in TYPES if not t.shared)
    assert resource_types.shared_types() == {"Location", "Medication"}
    assert [t.name for t in resource_types.searched_types()] == list(client.RESOURCE_TYPES[1:])
