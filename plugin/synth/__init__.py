"""Synthetic FHIR population with planted missed diagnoses (``dxsafety synth``).

:func:`generate` writes a Bulk-export NDJSON population and ``labels.csv`` (one row per
trigger-positive index event: ``patient_id,index_ref,index_time,trigger,scenario,is_mod,
missed_dx``). See :mod:`plugin.synth.mix` for the scenarios and their rates.
"""

from plugin.synth.population import Label
from plugin.synth.writer import LABEL_COLUMNS, RESOURCE_TYPES, Summary, generate, read_labels

__all__ = ["LABEL_COLUMNS", "RESOURCE_TYPES", "Label", "Summary", "generate", "read_labels"]
