"""Normalisation as data: the CSV tables every engine reads, and their typed look-ups.

* :mod:`plugin.normalize.tables` — loader (``read_table``, ``version``, ``table_path``)
* :mod:`plugin.normalize.lookups` — code systems, setting chain, locations, dispositions,
  admit sources, planned markers, interpretations, qualitative answers, unit spellings
* :mod:`plugin.normalize.units` — UCUM reading and conversion (ucumvert + pint)
* :mod:`plugin.normalize.results` — abnormal / positive with provenance, comparators
* :mod:`plugin.normalize.coverage` — per-field mapping coverage for ``dxsafety profile``
* :mod:`plugin.normalize.check` — table consistency checks for ``rules lint``

The tables and their columns: ``plugin/normalize/README.md``.
"""
