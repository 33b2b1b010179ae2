"""The internal timeline rules and the ranker read (never FHIR JSON).

* :mod:`plugin.timeline.model` — ``Event``, ``Timeline``, ``Finding`` ...
* :mod:`plugin.timeline.codes` — code-system short names and normalised codes
* :mod:`plugin.timeline.build` — ``build_timeline`` (sort, link, derive ``released``)
* :mod:`plugin.timeline.spec` — ``timeline_from_spec`` (the inline format of rule test cases;
  it imports ``build``, never the reverse)
"""
