"""Sentence splitting for report narrative: ConText scopes end at the sentence.

Rule-based, for radiology and pathology report text: a sentence ends at ``.``, ``!`` or
``?`` followed by whitespace (so ``2.1 cm`` stays whole), at a line break that ends a line
(reports put each finding or section on its own line), and never after a short list of
abbreviations (``Dr.``, ``e.g.``, ``vs.``, ``approx.``).
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset({"dr", "e.g", "i.e", "vs", "approx", "fig", "mr", "mrs", "ms"})
_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order, stripped, empty ones dropped."""
    out: list[str] = []
    start = 0
    for m in _END.finditer(text):
        piece = text[start : m.start()]
        tail = piece.rsplit(None, 1)[-1].lower().rstrip(".") if piece.strip() else ""
        if piece.endswith(".") and tail in _ABBREVIATIONS and "\n" not in m.group():
            continue  # "Dr. Smith": not the end of a sentence
        out.append(piece)
        start = m.end()
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]
