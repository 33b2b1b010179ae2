"""Our own schema of the CDS Hooks 2.0 response rules, applied to the JSON that leaves.

There is no official JSON Schema for 2.0 (the 1.0 OpenAPI was removed upstream), so the
rules of spec §"CDS Service Response" and the logical-model invariants are written out
here as plain checks over the dumped JSON. Every problem comes back with a JSON path, so a
failing test or a log line says exactly what was wrong.

Rules checked:

* no ``null`` anywhere; no empty string, array or object, except the top-level ``cards: []``;
* card: ``summary`` (< 140 chars), ``indicator`` (info|warning|critical) and ``source``
  (with ``label``) required; ``uuid`` required by *our* rule (feedback needs it);
* ``selectionBehavior`` (at-most-one|any) required when there are suggestions;
* each suggestion has ``label`` and (our rule) ``uuid``; ``actionSelectionBehavior`` never sent;
* action: ``type`` create|update|delete and ``description`` required; create/update carry a
  ``resource`` object with a ``resourceType``; delete carries ``resourceId`` and no resource;
* ``overrideReasons``: Codings with ``code``, ``system`` and ``display`` (cds-resp-4);
* links: ``label``, ``url``, ``type`` absolute|smart; ``appContext`` only on smart links;
  absolute URLs only.
"""

from __future__ import annotations

from typing import Any

INDICATORS = frozenset({"info", "warning", "critical"})
SELECTION = frozenset({"at-most-one", "any"})
ACTION_TYPES = frozenset({"create", "update", "delete"})
LINK_TYPES = frozenset({"absolute", "smart"})


def _empties(value: Any, path: str, out: list[str]) -> None:
    if value is None:
        out.append(f"{path}: null is not allowed")
    elif isinstance(value, str):
        if value == "":
            out.append(f"{path}: empty string")
    elif isinstance(value, list):
        if not value and path != "$.cards":
            out.append(f"{path}: empty array")
        for i, item in enumerate(value):
            _empties(item, f"{path}[{i}]", out)
    elif isinstance(value, dict):
        if not value:
            out.append(f"{path}: empty object")
        for key, item in value.items():
            _empties(item, f"{path}.{key}", out)


def _require(obj: dict[str, Any], keys: tuple[str, ...], path: str, out: list[str]) -> None:
    for key in keys:
        if key not in obj:
            out.append(f"{path}: missing {key}")


def _coding(c: Any, path: str, out: list[str], *, need_display: bool) -> None:
    if not isinstance(c, dict):
        out.append(f"{path}: not a Coding object")
        return
    keys = ("code", "system", "display") if need_display else ("code",)
    _require(c, keys, path, out)


def _action(a: Any, path: str, out: list[str], *, need_description: bool = True) -> None:
    if not isinstance(a, dict):
        out.append(f"{path}: not an object")
        return
    _require(a, ("type", "description") if need_description else ("type",), path, out)
    kind = a.get("type")
    if kind not in ACTION_TYPES:
        out.append(f"{path}.type: {kind!r} is not create|update|delete")
    resource = a.get("resource")
    if kind in ("create", "update"):
        if not isinstance(resource, dict) or "resourceType" not in resource:
            out.append(f"{path}.resource: {kind} needs a FHIR resource object")
    if kind == "delete":
        if "resourceId" not in a:
            out.append(f"{path}: delete needs resourceId")
        if resource is not None:
            out.append(f"{path}: delete must not carry a resource (cds-resp-2)")


def _link(link: Any, path: str, out: list[str]) -> None:
    if not isinstance(link, dict):
        out.append(f"{path}: not an object")
        return
    _require(link, ("label", "url", "type"), path, out)
    if link.get("type") not in LINK_TYPES:
        out.append(f"{path}.type: {link.get('type')!r} is not absolute|smart")
    if "appContext" in link and link.get("type") != "smart":
        out.append(f"{path}: appContext only on smart links (cds-resp-3)")
    url = link.get("url")
    if isinstance(url, str) and not url.startswith(("https://", "http://")):
        out.append(f"{path}.url: not an absolute URL")


def _card(card: Any, path: str, out: list[str]) -> None:
    if not isinstance(card, dict):
        out.append(f"{path}: not an object")
        return
    _require(card, ("uuid", "summary", "indicator", "source"), path, out)
    summary = card.get("summary")
    if isinstance(summary, str) and len(summary) >= 140:
        out.append(f"{path}.summary: {len(summary)} characters, must be < 140")
    if card.get("indicator") not in INDICATORS:
        out.append(f"{path}.indicator: {card.get('indicator')!r} is not info|warning|critical")
    source = card.get("source")
    if not isinstance(source, dict) or "label" not in source:
        out.append(f"{path}.source: needs a label")
    elif "topic" in source:
        _coding(source["topic"], f"{path}.source.topic", out, need_display=False)
    suggestions = card.get("suggestions")
    if suggestions is not None:
        if card.get("selectionBehavior") not in SELECTION:
            out.append(f"{path}.selectionBehavior: required with suggestions (at-most-one|any)")
        for i, s in enumerate(suggestions if isinstance(suggestions, list) else []):
            spath = f"{path}.suggestions[{i}]"
            if not isinstance(s, dict):
                out.append(f"{spath}: not an object")
                continue
            _require(s, ("label", "uuid"), spath, out)
            if "actionSelectionBehavior" in s:
                out.append(f"{spath}: actionSelectionBehavior needs documented client support")
            for j, a in enumerate(s.get("actions") or []):
                _action(a, f"{spath}.actions[{j}]", out)
    for i, reason in enumerate(card.get("overrideReasons") or []):
        _coding(reason, f"{path}.overrideReasons[{i}]", out, need_display=True)
    for i, link in enumerate(card.get("links") or []):
        _link(link, f"{path}.links[{i}]", out)


def check_response(body: Any) -> list[str]:
    """Every rule the response breaks, as ``$.path: problem`` lines (empty when valid)."""
    out: list[str] = []
    if not isinstance(body, dict) or not isinstance(body.get("cards"), list):
        return ["$: a response is an object with a cards array"]
    _empties(body, "$", out)
    for i, card in enumerate(body["cards"]):
        _card(card, f"$.cards[{i}]", out)
    for i, a in enumerate(body.get("systemActions") or []):
        _action(a, f"$.systemActions[{i}]", out)
    return out


def check_discovery(body: Any) -> list[str]:
    """Rules of the discovery document: ``hook``, ``description`` and ``id`` per service."""
    out: list[str] = []
    if not isinstance(body, dict) or not isinstance(body.get("services"), list):
        return ["$: discovery is an object with a services array"]
    for i, service in enumerate(body["services"]):
        path = f"$.services[{i}]"
        if not isinstance(service, dict):
            out.append(f"{path}: not an object")
            continue
        _empties(service, path, out)
        _require(service, ("hook", "description", "id"), path, out)
        for key, template in (service.get("prefetch") or {}).items():
            if not isinstance(template, str):
                out.append(f"{path}.prefetch.{key}: a template is a string")
    return out
