"""The FHIR edge: the only code that reads FHIR JSON.

* :mod:`plugin.fhir.read` — files (NDJSON, Bundles, single resources) → resources or reported errors
* :mod:`plugin.fhir.stage` — a population → one timeline per patient, bounded memory:
  ``iter_timelines(sources, validate=..., report=...)``, the one population pipeline
* :mod:`plugin.fhir.parse` — one patient's resources → :class:`plugin.timeline.model.Timeline`
  (with :mod:`~plugin.fhir.convert`, :mod:`~plugin.fhir.refs`, :mod:`~plugin.fhir.values`,
  :mod:`~plugin.fhir.vocab`, :mod:`~plugin.fhir.validate`)
* :mod:`plugin.fhir.client`, :mod:`~plugin.fhir.bulk`, :mod:`~plugin.fhir.remote` — FHIR servers
"""
