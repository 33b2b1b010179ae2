"""The free text of a DiagnosticReport: what the report-text matcher reads.

``report_narrative(resource)`` joins, in this order and one per paragraph:

* ``conclusion`` (the impression);
* the text (``text``, else each coding's ``display``) of every ``conclusionCode``;
* every ``presentedForm`` attachment whose ``contentType`` is ``text/plain`` or
  ``text/html`` (tags stripped, entities decoded), from base64 ``data``; an attachment
  given only by ``url``, or in another format (PDF, RTF), is not read.

An attachment that does not decode (bad base64, not UTF-8/Latin-1 text) is left out rather
than failing the report: the report's codes still count. :func:`narrative_parts` says what
was readable for ``dxsafety profile``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

JSON = dict[str, Any]
TEXT_TYPES = ("text/plain", "text/html")


@dataclass(frozen=True, slots=True)
class NarrativeParts:
    conclusion: str | None
    codes: tuple[str, ...]
    forms: tuple[str, ...]  # decoded presentedForm texts
    unreadable: tuple[str, ...]  # contentType (or "url", "base64") of attachments not read

    @property
    def text(self) -> str | None:
        parts = [p for p in (self.conclusion, *self.codes, *self.forms) if p and p.strip()]
        return "\n\n".join(parts) if parts else None


class _Text(HTMLParser):
    """Text of an HTML fragment; block elements become line breaks (sentence ends)."""

    BLOCKS = frozenset({"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "section", "td"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.out))
    return re.sub(r"[ \t]*\n[ \t\n]*", "\n", text).strip()


def _decode(raw: bytes, charset: str | None) -> str | None:
    for enc in (charset, "utf-8", "latin-1") if charset else ("utf-8", "latin-1"):
        try:
            return raw.decode(enc or "utf-8").lstrip("\ufeff")
        except (UnicodeDecodeError, LookupError):
            continue
    return None


def _attachment(att: JSON) -> tuple[str | None, str | None]:
    """(text, None) or (None, why it was not read)."""
    ctype = att.get("contentType")
    kind = ctype.split(";")[0].strip().lower() if isinstance(ctype, str) else ""
    if kind not in TEXT_TYPES:
        return None, kind or "no contentType"
    data = att.get("data")
    if not isinstance(data, str):
        return None, "url" if att.get("url") else "no data"
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None, "base64"
    m = re.search(r"charset=([\w-]+)", ctype) if isinstance(ctype, str) else None
    text = _decode(raw, m.group(1) if m else None)
    if text is None:
        return None, "encoding"
    return (html_text(text) if kind == "text/html" else text), None


def narrative_parts(resource: JSON) -> NarrativeParts:
    conclusion = resource.get("conclusion")
    codes: list[str] = []
    for cc in resource.get("conclusionCode") or ():
        if not isinstance(cc, dict):
            continue
        label = cc.get("text")
        if isinstance(label, str) and label.strip():
            codes.append(label)
            continue
        codes += [
            c["display"]
            for c in cc.get("coding") or ()
            if isinstance(c, dict) and isinstance(c.get("display"), str)
        ]
    forms: list[str] = []
    unreadable: list[str] = []
    for att in resource.get("presentedForm") or ():
        if not isinstance(att, dict):
            continue
        text, why = _attachment(att)
        if text is not None:
            forms.append(text)
        elif why is not None:
            unreadable.append(why)
    return NarrativeParts(
        conclusion=conclusion if isinstance(conclusion, str) else None,
        codes=tuple(codes),
        forms=tuple(forms),
        unreadable=tuple(unreadable),
    )


def report_narrative(resource: JSON) -> str | None:
    """The report's free text (see the module doc), or None when it has none readable."""
    return narrative_parts(resource).text
