"""The FHIR edge: the only code that reads FHIR JSON.

* :mod:`plugin.fhir.read` — files (NDJSON, Bundles, single resources) → resources or reported errors
* :mod:`plugin.fhir.stage` — a population grouped by patient with bounded memory
* :mod:`plugin.fhir.parse` — one patient's resources → :class:`plugin.timeline.model.Timeline`
  (with :mod:`~plugin.fhir.convert`, :mod:`~plugin.fhir.refs`, :mod:`~plugin.fhir.values`,
  :mod:`~plugin.fhir.vocab`, :mod:`~plugin.fhir.validate`)
* :mod:`plugin.fhir.client`, :mod:`~plugin.fhir.bulk`, :mod:`~plugin.fhir.remote` — FHIR servers
"""
