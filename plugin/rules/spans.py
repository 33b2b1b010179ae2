"""YAML loading that keeps where every key and value came from.

PyYAML's composer gives nodes with ``start_mark``; we build plain Python data from
them and, beside it, a :class:`SourceMap` from data paths (tuples of keys and list
indexes) to 1-indexed ``line:col``. Duplicate keys and ``null`` values are reported
with their own location (pySigma loses both), every problem in the file at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plugin.errors import RuleProblem, SourceLocation

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Locations of one YAML file's values (``values``) and mapping keys (``keys``)."""

    path: str
    lines: tuple[str, ...]
    values: dict[Path_, SourceLocation] = field(default_factory=dict)
    keys: dict[Path_, SourceLocation] = field(default_factory=dict)

    def locate(self, data_path: Path_, *, key: bool = False) -> SourceLocation:
        """Best location for ``data_path``: the deepest known prefix."""
        table = self.keys if key else self.values
        for cut in range(len(data_path), -1, -1):
            loc = table.get(data_path[:cut]) or self.values.get(data_path[:cut])
            if loc is not None:
                return loc
        return SourceLocation(self.path, 1, 1)

    def context(self, loc: SourceLocation, before: int = 1) -> str:
        """The source line of ``loc`` (and ``before`` lines above it), numbered."""
        start = max(1, loc.line - before)
        out = []
        for n in range(start, min(loc.line, len(self.lines)) + 1):
            out.append(f"  {n:4d} | {self.lines[n - 1]}")
        if 1 <= loc.line <= len(self.lines):
            out.append("       | " + " " * (loc.col - 1) + "^")
        return "\n".join(out)

    def problem(
        self, data_path: Path_, code: str, message: str, *, key: bool = False
    ) -> RuleProblem:
        loc = self.locate(data_path, key=key)
        return RuleProblem(loc, code, message, self.context(loc))


def _loc(path: str, node: yaml.Node) -> SourceLocation:
    return SourceLocation(path, node.start_mark.line + 1, node.start_mark.column + 1)


def load_yaml(path: Path) -> tuple[Any, SourceMap, list[RuleProblem]]:
    """Parse one YAML file. Returns (data, source map, problems); data is None on syntax errors."""
    text = path.read_text(encoding="utf-8")
    return loads_yaml(text, str(path))


def loads_yaml(text: str, name: str) -> tuple[Any, SourceMap, list[RuleProblem]]:
    smap = SourceMap(name, tuple(text.splitlines()))
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = SourceLocation(name, (mark.line + 1) if mark else 1, (mark.column + 1) if mark else 1)
        what = f"{exc.context + ', ' if exc.context else ''}{exc.problem or 'invalid YAML'}"
        what += _quote_hint(smap, loc)
        return None, smap, [RuleProblem(loc, "R001", f"YAML syntax: {what}", smap.context(loc))]
    finally:
        loader.dispose()
    if node is None:
        loc = SourceLocation(name, 1, 1)
        return None, smap, [RuleProblem(loc, "R002", "empty file: expected a mapping")]
    problems: list[RuleProblem] = []
    data = _build(node, (), smap, problems, loader)
    return data, smap, problems


# ``key: > 10 mIU/L``: YAML reads ``>`` as the start of a folded block scalar (and refuses it
# inside ``{...}``), so an unquoted threshold fails with a message about block scalars.
_BARE_COMPARATOR = re.compile(r"([A-Za-z_]+):[ \t]*((?:>=|<=|>|<)[^,}\]#\n]*)")


def _quote_hint(smap: SourceMap, loc: SourceLocation) -> str:
    """A hint when the failing line has a value starting with ``>`` or ``<`` (else "")."""
    if not 1 <= loc.line <= len(smap.lines):
        return ""
    for m in _BARE_COMPARATOR.finditer(smap.lines[loc.line - 1]):
        if m.start(2) <= loc.col - 1 <= m.end(2):
            key, value = m.group(1), m.group(2).strip()
            return f'; quote values that start with > or <: {key}: "{value}"'
    return ""


def _build(
    node: yaml.Node, at: Path_, smap: SourceMap, problems: list[RuleProblem], loader: Any
) -> Any:
    smap.values[at] = _loc(smap.path, node)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            key = str(key)
            if key in out:
                loc = _loc(smap.path, key_node)
                first = smap.keys[(*at, key)]
                problems.append(
                    RuleProblem(
                        loc,
                        "R003",
                        f"duplicate key '{key}' (first defined at line {first.line})",
                        smap.context(loc),
                    )
                )
                continue
            smap.keys[(*at, key)] = _loc(smap.path, key_node)
            out[key] = _build(value_node, (*at, key), smap, problems, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(child, (*at, i), smap, problems, loader) for i, child in enumerate(node.value)
        ]
    value = loader.construct_object(node)
    if value is None and at:
        loc = smap.keys.get(at) or _loc(smap.path, node)
        problems.append(
            RuleProblem(
                loc,
                "R004",
                f"'{at[-1]}' has no value (null); remove the key or give a value",
                smap.context(loc),
            )
        )
    return value
