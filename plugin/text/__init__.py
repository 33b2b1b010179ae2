"""Report text: a ConText matcher (negation, uncertainty, history, hypothetical, experiencer)
over the narrative of diagnostic reports, with its trigger lexicon and target concepts as data
(``lexicon.yaml``, ``concepts.yaml``: every term with its source).

:func:`affirmed_concepts` (what a rule's ``text:`` selector asks), :func:`mentions` (each
mention with its modifiers), :func:`concept_names`. Reading the text out of a FHIR
DiagnosticReport is :func:`plugin.text.narrative.report_narrative` (kept out of this
namespace: the rules import this package, and the FHIR edge stays in ``plugin/fhir``).
"""

from plugin.text.context import (
    Concept,
    Mention,
    affirmed_concepts,
    concept_names,
    default_concepts,
    mentions,
)
from plugin.text.sentences import sentences

__all__ = [
    "Concept",
    "Mention",
    "affirmed_concepts",
    "concept_names",
    "default_concepts",
    "mentions",
    "sentences",
]
