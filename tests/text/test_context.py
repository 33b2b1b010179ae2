"""The ConText report-text matcher: its own data-file examples, each modifier category, scope
ends, and the rule selector that reads it."""

from __future__ import annotations

import pytest

from plugin.errors import TextLexiconError
from plugin.text import affirmed_concepts, default_concepts, mentions, sentences
from plugin.text.context import load_lexicon

CONCEPTS = default_concepts()
MATCH = [(n, ex) for n, c in CONCEPTS.items() for ex in c.examples_match]
NO_MATCH = [(n, ex) for n, c in CONCEPTS.items() for ex in c.examples_no_match]


@pytest.mark.parametrize(("name", "text"), MATCH)
def test_documented_affirmed_examples_match(name, text):
    assert name in affirmed_concepts(text), [(m.text, m.modifiers) for m in mentions(text)]


@pytest.mark.parametrize(("name", "text"), NO_MATCH)
def test_documented_non_examples_do_not_match(name, text):
    assert name not in affirmed_concepts(text)


def test_every_concept_has_examples_both_ways():
    assert len(CONCEPTS) >= 2
    for c in CONCEPTS.values():
        assert c.examples_match and c.examples_no_match and c.source


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("No suspicious pulmonary nodule.", "negated"),
        ("Spiculated lung mass is not seen.", "negated"),
        ("Cannot exclude a spiculated lung nodule.", "possible"),
        ("Spiculated nodule in the left lung versus scar.", "possible"),
        ("History of spiculated lung mass, resected.", "historical"),
        ("Known spiculated lung mass.", "historical"),
        ("Return if a spiculated lung nodule is seen on screening.", "hypothetical"),
        ("Family history of spiculated lung mass in her father.", "experiencer"),
    ],
)
def test_each_category_is_found(text, category):
    found = mentions(text, ["suspicious_lung_lesion"])
    assert found, text
    assert all(category in m.modifiers for m in found), [(m.text, m.modifiers) for m in found]


def test_the_same_finding_without_the_trigger_is_affirmed():
    # each case above is a real negative only if the bare finding matches
    assert "suspicious_lung_lesion" in affirmed_concepts("Spiculated lung mass.")


def test_scope_ends_at_the_sentence():
    text = "No pleural effusion. Spiculated 2 cm nodule in the right upper lobe."
    assert "suspicious_lung_lesion" in affirmed_concepts(text)


def test_scope_ends_at_a_termination_term():
    text = "No effusion but a spiculated nodule in the right upper lobe."
    assert "suspicious_lung_lesion" in affirmed_concepts(text)


def test_scope_is_capped_in_a_long_list():
    text = (
        "No pleural effusion, pneumothorax, cardiomegaly, hilar adenopathy or rib fracture "
        "is seen on this study, and there is a spiculated nodule in the right upper lobe."
    )
    assert "suspicious_lung_lesion" in affirmed_concepts(text)


def test_pseudo_trigger_compared_with_prior_is_not_history():
    text = "Compared with prior CT, new spiculated nodule in the left lower lobe."
    assert "suspicious_lung_lesion" in affirmed_concepts(text)
    assert "suspicious_lung_lesion" not in affirmed_concepts("Prior spiculated lung nodule.")


def test_site_words_keep_a_mammogram_out_of_the_lung_concept():
    text = "Left breast: spiculated mass suspicious for malignancy. BI-RADS 5."
    assert affirmed_concepts(text) == {"birads_suspicious"}


def test_sentences_keep_decimals_and_abbreviations():
    got = sentences("Nodule 2.1 cm, see Dr. Smith. IMPRESSION:\nLung-RADS 4A.")
    assert got == ["Nodule 2.1 cm, see Dr. Smith.", "IMPRESSION:", "Lung-RADS 4A."]


def test_a_bad_lexicon_term_is_reported_with_the_file(tmp_path):
    bad = tmp_path / "lexicon.yaml"
    bad.write_text(
        "categories:\n  negated:\n    - {term: 'no (', direction: forward, src: negex}\n"
        "pseudo: []\ntermination: []\n"
    )
    with pytest.raises(TextLexiconError, match=r"lexicon\.yaml.*not a valid expression"):
        load_lexicon(bad)


def test_a_trigger_without_a_source_is_refused(tmp_path):
    bad = tmp_path / "lexicon.yaml"
    bad.write_text(
        "categories:\n  negated:\n    - {term: 'no', direction: forward}\n"
        "pseudo: []\ntermination: []\n"
    )
    with pytest.raises(TextLexiconError, match="src"):
        load_lexicon(bad)


def test_rules_lint_warns_when_a_concept_example_breaks(monkeypatch):
    import dataclasses

    import plugin.text
    from plugin.rules.lint import text_concept_warnings

    assert text_concept_warnings() == []
    lung = CONCEPTS["suspicious_lung_lesion"]
    broken = dataclasses.replace(lung, examples_no_match=("Spiculated lung mass.",))
    monkeypatch.setattr(plugin.text, "default_concepts", lambda: {lung.name: broken})
    (warning,) = text_concept_warnings()
    assert warning.code == "R401" and warning.severity == "warning"
    assert "should not match" in warning.message
