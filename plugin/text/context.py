"""ConText (Harkema et al., J Biomed Inform 2009;42:839) over report narrative, in pure Python.

For each sentence: find the target concepts (``concepts.yaml``) and the trigger terms
(``lexicon.yaml``); drop triggers that lie inside a pseudo-trigger or inside a target (a
radiologist's "suspicious for" is part of the finding, not a hedge); then each remaining
trigger modifies the targets in its scope — after it (``forward``), before it (``backward``)
or both — up to the end of the sentence, a termination term, or ``max_scope_words`` words.
A mention is *affirmed* when no negated, possible, historical, hypothetical or experiencer
trigger modifies it. The data files say where every term comes from and where this departs
from the published lists (``lexicon.yaml`` header).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from plugin.errors import TextLexiconError
from plugin.text.sentences import sentences

HERE = Path(__file__).parent
LEXICON = HERE / "lexicon.yaml"
CONCEPTS = HERE / "concepts.yaml"

Category = Literal["negated", "possible", "historical", "hypothetical", "experiencer"]
CATEGORIES: tuple[Category, ...] = (
    "negated", "possible", "historical", "hypothetical", "experiencer",
)  # fmt: skip
Direction = Literal["forward", "backward", "bidirectional"]
_WORD = re.compile(r"\w+")


def compile_term(term: str) -> re.Pattern[str]:
    """A lexicon term as a regex: a space matches any whitespace (``" ?"`` any or none),
    word boundaries at both ends."""
    body = term.replace(" ?", r"\s*").replace(" ", r"\s+")
    return re.compile(rf"(?<![\w-])(?:{body})(?![\w])")


@dataclass(frozen=True, slots=True)
class Trigger:
    category: Category
    pattern: re.Pattern[str]
    direction: Direction
    term: str


@dataclass(frozen=True, slots=True)
class Lexicon:
    triggers: tuple[Trigger, ...]
    pseudo: tuple[re.Pattern[str], ...]
    termination: tuple[re.Pattern[str], ...]
    max_scope_words: int


@dataclass(frozen=True, slots=True)
class Concept:
    name: str
    title: str
    source: str
    terms: tuple[re.Pattern[str], ...]
    site: tuple[re.Pattern[str], ...] = ()
    examples_match: tuple[str, ...] = ()
    examples_no_match: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Mention:
    """One target found in a sentence, with the ConText categories that modify it."""

    concept: str
    text: str
    sentence: str
    modifiers: frozenset[Category] = field(default_factory=frozenset)

    @property
    def affirmed(self) -> bool:
        """An affirmed, current mention about the patient (no modifier at all)."""
        return not self.modifiers


def _rows(data: Any, key: str, where: Path) -> list[dict[str, Any]]:
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "term" in r for r in rows):
        raise TextLexiconError(f"{where}: '{key}' must be a list of {{term: ...}} rows")
    return rows


def _pattern(term: Any, where: str) -> re.Pattern[str]:
    try:
        return compile_term(str(term))
    except re.error as exc:
        raise TextLexiconError(f"{where}: term {term!r} is not a valid expression: {exc}") from exc


def load_lexicon(path: Path = LEXICON) -> Lexicon:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, dict) or set(cats) - set(CATEGORIES):
        raise TextLexiconError(f"{path}: 'categories' must map some of {', '.join(CATEGORIES)}")
    triggers = []
    for cat in cats:
        for row in _rows(cats, cat, path):
            direction = row.get("direction")
            if direction not in ("forward", "backward", "bidirectional") or "src" not in row:
                raise TextLexiconError(
                    f"{path}: {cat} term {row['term']!r} needs a direction "
                    "(forward|backward|bidirectional) and a src"
                )
            pattern = _pattern(row["term"], f"{path}: {cat}")
            triggers.append(Trigger(cat, pattern, direction, str(row["term"])))
    pseudo = tuple(_pattern(r["term"], f"{path}: pseudo") for r in _rows(data, "pseudo", path))
    stops = _rows(data, "termination", path)
    term = tuple(_pattern(r["term"], f"{path}: termination") for r in stops)
    scope = data.get("max_scope_words", 8)
    if not isinstance(scope, int) or scope < 1:
        raise TextLexiconError(f"{path}: max_scope_words must be a positive integer")
    return Lexicon(tuple(triggers), pseudo, term, scope)


def load_concepts(path: Path = CONCEPTS) -> dict[str, Concept]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = data.get("concepts") if isinstance(data, dict) else None
    if not isinstance(items, dict):
        raise TextLexiconError(f"{path}: expected a 'concepts' mapping")
    out: dict[str, Concept] = {}
    for name, spec in items.items():
        if not isinstance(spec, dict) or not spec.get("terms") or not spec.get("source"):
            raise TextLexiconError(f"{path}: concept {name!r} needs 'terms' and a 'source'")
        examples = spec.get("examples") or {}
        out[str(name)] = Concept(
            name=str(name),
            title=str(spec.get("title", name)),
            source=str(spec["source"]),
            terms=tuple(_pattern(t, f"{path}: {name}") for t in spec["terms"]),
            site=tuple(_pattern(t, f"{path}: {name}") for t in spec.get("site") or ()),
            examples_match=tuple(examples.get("match") or ()),
            examples_no_match=tuple(examples.get("no_match") or ()),
        )
    return out


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return load_lexicon()


@lru_cache(maxsize=1)
def default_concepts() -> Mapping[str, Concept]:
    return load_concepts()


def concept_names() -> frozenset[str]:
    """The concepts a rule's ``text:`` selector may name."""
    return frozenset(default_concepts())


Span = tuple[int, int]


def _spans(patterns: Iterable[re.Pattern[str]], text: str) -> list[Span]:
    return [m.span() for p in patterns for m in p.finditer(text)]


def _inside(inner: Span, outer: Span) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _modifies(trigger: Span, direction: Direction, target: Span, s: str, lex: Lexicon,
              stops: list[Span]) -> bool:  # fmt: skip
    """Is ``target`` in the scope of a trigger at ``trigger``?"""
    if direction != "backward" and target[1] > trigger[1] and target[0] >= trigger[0]:
        gap: Span = (trigger[1], max(trigger[1], target[0]))
    elif direction != "forward" and target[0] < trigger[0] and target[1] <= trigger[1]:
        gap = (min(target[1], trigger[0]), trigger[0])
    else:
        return False
    if _words(s[gap[0] : gap[1]]) > lex.max_scope_words:
        return False
    return not any(_inside(stop, gap) for stop in stops)


def _sentence_mentions(s: str, concepts: Iterable[Concept], lex: Lexicon) -> list[Mention]:
    targets = [(c.name, m.span()) for c in concepts for p in c.terms for m in p.finditer(s)]
    if not targets:
        return []
    pseudo = _spans(lex.pseudo, s)
    stops = _spans(lex.termination, s)
    found = [
        (t, m.span())
        for t in lex.triggers
        for m in t.pattern.finditer(s)
        if not any(_inside(m.span(), p) for p in pseudo)
    ]
    out = []
    for name, span in targets:
        cuts = [x for x in stops if not _overlaps(x, span)]  # a stop inside the finding is its own
        mods = frozenset(
            t.category
            for t, tspan in found
            if not _inside(tspan, span) and _modifies(tspan, t.direction, span, s, lex, cuts)
        )
        out.append(Mention(concept=name, text=s[span[0] : span[1]], sentence=s, modifiers=mods))
    return out


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def mentions(
    text: str,
    names: Iterable[str] | None = None,
    *,
    concepts: Mapping[str, Concept] | None = None,
    lexicon: Lexicon | None = None,
) -> list[Mention]:
    """Every mention of the concepts ``names`` (default: all) in ``text``, with modifiers.
    A concept with ``site`` terms gives no mention unless one of them occurs in ``text``."""
    lex = lexicon or default_lexicon()
    known = concepts if concepts is not None else default_concepts()
    wanted = [known[n] for n in (names if names is not None else known)]
    low = text.lower()
    wanted = [c for c in wanted if not c.site or any(p.search(low) for p in c.site)]
    if not wanted:
        return []
    return [m for s in sentences(low) for m in _sentence_mentions(s, wanted, lex)]


@lru_cache(maxsize=8192)
def affirmed_concepts(text: str) -> frozenset[str]:
    """The concepts with at least one affirmed mention in ``text`` (cached: a rule set asks
    this of the same report once per rule that reads text)."""
    return frozenset(m.concept for m in mentions(text) if m.affirmed)
