"""Load rules directories: value sets, then rules, every problem reported at once.

``load_rules(path_or_paths)`` parses each YAML file keeping locations (:mod:`.spans`),
checks its structure with pydantic (:mod:`.schema`, the logic block through the registry
of :mod:`.logic`), maps each pydantic error back to ``file:line:col`` with a "did you
mean" for unknown keys and logic types, runs the semantic checks (:mod:`.validators`),
and compiles the rules (:mod:`.selectors`, the logic type's own compile). Any problem in
any file raises one :class:`RuleValidationError` listing all of them.

Several roots (the packaged catalogue, then a site's own rules) load as one ruleset:
later roots add rules and override a rule with the same ``id`` and a value set with the
same ``name``. Each rule records its ``origin`` root and its ``version``; the ruleset a
``catalogue_version`` digest of every rule and value-set file read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from plugin.errors import RuleProblem, RuleValidationError, SourceLocation
from plugin.rules import logic, validators
from plugin.rules.codesets import CodeSet
from plugin.rules.engine import CompiledCondition, Rule, RuleSet
from plugin.rules.followup import codes_of, order_for
from plugin.rules.schema import Condition, RuleSpec, ValueSetSpec, all_keys
from plugin.rules.selectors import compile_any, compile_selector
from plugin.rules.spans import Path_, SourceMap, load_yaml


def _keys() -> set[str]:
    return all_keys() | logic.spec_keys()


def _data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[Path_, bool]:
    """Map a pydantic ``loc`` onto the data (dropping union-branch tags).

    Returns (path, is_key): is_key when the last element is a key that exists
    (extra key) rather than a value.
    """
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
    return tuple(path), False


def _expected(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "missing":
        return "is required"
    msg = msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:]


def pydantic_problems(exc: ValidationError, data: Any, smap: SourceMap) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    seen: set[tuple[Path_, str]] = set()
    errors = [(err, _data_path(data, tuple(err["loc"]))[0]) for err in exc.errors()]
    deepest = [path for _, path in errors]
    for err, path in errors:
        loc = tuple(err["loc"])
        if err["type"] == "list_type" and any(
            len(p) > len(path) and p[: len(path)] == path for p in deepest
        ):
            continue  # the "or a list" branch of a union whose other branch said more
        dotted = ".".join(str(p) for p in path) or "<file>"
        ctx = err.get("ctx", {})
        if err["type"] == "union_tag_invalid" and ctx.get("discriminator") == "'type'":
            tag = str(err["ctx"]["tag"])
            msg = (
                f"unknown logic type '{tag}' (expected one of {', '.join(logic.names())})"
                + validators.did_you_mean(tag, logic.names())
            )
            problem = smap.problem((*path, "type"), "R106", msg)
        elif err["type"] == "union_tag_not_found":
            problem = smap.problem(
                path,
                "R102",
                f"missing key 'type' in {dotted} (one of {', '.join(logic.names())})",
                key=True,
            )
        elif err["type"] == "extra_forbidden":
            key = str(loc[-1])
            msg = f"unknown key '{key}' in {'.'.join(str(p) for p in path[:-1]) or 'rule'}"
            msg += validators.did_you_mean(key, _keys())
            problem = smap.problem(path, "R101", msg, key=True)
        elif err["type"] == "missing":
            missing = str(loc[-1])
            where = dotted if path else "rule"
            problem = smap.problem(path, "R102", f"missing key '{missing}' in {where}", key=True)
        else:
            got = err.get("input")
            shown = (
                ""
                if isinstance(got, dict | list) or "got" in str(err["msg"])
                else f" (got {got!r})"
            )
            problem = smap.problem(path, "R103", f"{dotted}: {_expected(err)}{shown}")
        sig = (path, problem.message)
        if sig not in seen:  # unions report one error per branch; keep one
            seen.add(sig)
            problems.append(problem)
    return problems


def _parse(path: Path, model: type[BaseModel]) -> tuple[Any, Any, SourceMap, list[RuleProblem]]:
    data, smap, problems = load_yaml(path)
    if data is None:
        return None, None, smap, problems
    if not isinstance(data, dict):
        return None, None, smap, [*problems, smap.problem((), "R005", "expected a mapping")]
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        return data, None, smap, problems + pydantic_problems(exc, data, smap)
    return data, spec, smap, problems


def find_valueset_dir(path: Path) -> Path | None:
    for base in (path, *path.parents[:3]):
        if (base / "valuesets").is_dir():
            return base / "valuesets"
    return None


def _read_valuesets(directory: Path) -> tuple[dict[str, ValueSetSpec], list[RuleProblem]]:
    specs: dict[str, ValueSetSpec] = {}
    problems: list[RuleProblem] = []
    for file in sorted(directory.glob("*.yaml")):
        data, spec, smap, probs = _parse(file, ValueSetSpec)
        problems += probs
        if data is not None:
            problems += validators.check_valueset_codes(data, smap)
        if spec is None:
            continue
        if spec.name in specs:
            problems.append(smap.problem(("name",), "R302", f"duplicate value set '{spec.name}'"))
        if file.stem != spec.name:
            problems.append(
                smap.problem(
                    ("name",), "R303", f"value set name '{spec.name}' differs from file name"
                )
            )
        specs[spec.name] = spec
    return specs, problems


def _compile_valuesets(
    specs: Mapping[str, ValueSetSpec], files: Mapping[str, Path]
) -> tuple[dict[str, CodeSet], list[RuleProblem]]:
    problems: list[RuleProblem] = []
    compiled: dict[str, CodeSet] = {}

    def build(name: str, stack: tuple[str, ...]) -> CodeSet:
        if name in compiled:
            return compiled[name]
        spec = specs[name]
        cs = CodeSet()
        for system, codes in spec.codes.items():
            for code in codes:
                cs.add(system, str(code))
        for inc in spec.include:
            if inc in stack or inc not in specs:
                what = "includes itself" if inc in stack else f"includes unknown '{inc}'"
                problems.append(
                    RuleProblem(
                        SourceLocation(str(files[name]), 1, 1), "R304", f"value set '{name}' {what}"
                    )
                )
                continue
            cs.update(build(inc, (*stack, inc)))
        compiled[name] = cs
        return cs

    for name in specs:
        build(name, (name,))
    return compiled, problems


def load_valuesets(
    directory: Path | None,
) -> tuple[dict[str, CodeSet], dict[str, ValueSetSpec], list[RuleProblem]]:
    """One value-set directory: (compiled sets, their specs, problems)."""
    if directory is None:
        return {}, {}, []
    specs, problems = _read_valuesets(directory)
    compiled, more = _compile_valuesets(specs, {n: directory / f"{n}.yaml" for n in specs})
    return compiled, specs, problems + more


def rule_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*.yaml")
        if not p.name.endswith(".test.yaml")
        and "valuesets" not in p.parts
        and not p.name.startswith(".")
    )


def compile_rule(
    spec: RuleSpec,
    path: str,
    valuesets: Mapping[str, CodeSet],
    specs: Mapping[str, ValueSetSpec] | None = None,
) -> Rule:
    """A validated rule spec, compiled by its registered logic type."""
    kind = logic.get(spec.logic.type)

    def cond(c: Condition) -> CompiledCondition:
        return CompiledCondition(
            matcher=compile_selector(c.event, valuesets) if c.event is not None else None,
            between=c.between,
            same_encounter=c.same_encounter,
            before_outcome=c.before_outcome,
            relative_to=c.relative_to,
            any=tuple(cond(x) for x in c.any or ()),
            age=c.age,
            died_within=c.died_within,
            sex=frozenset(c.sex) if c.sex is not None else None,
        )

    followups = kind.followups(spec.logic)
    return Rule(
        spec=spec,
        path=path,
        logic_type=kind,
        index=compile_any(spec.logic.index, valuesets),
        parts=kind.compile(spec.logic, valuesets),
        require=tuple(cond(c) for c in spec.logic.require),
        exclude=tuple(cond(c) for c in spec.logic.exclude),
        closing=codes_of(followups, valuesets),
        followup=order_for(followups, specs or {}),
    )


def _content(file: Path) -> bytes:
    # Line endings normalised: a Windows checkout (autocrlf) gives the same versions.
    return file.read_bytes().replace(b"\r\n", b"\n")


def _short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def rule_version(spec: RuleSpec, file: Path) -> str:
    """``<modified or date>+<8 hex of the file>`` (``2025-03-01+3f2a9c1e``); the hash
    alone when the file has no date."""
    digest = _short_hash(_content(file))
    when = spec.modified or spec.date
    return f"{when}+{digest}" if when is not None else digest


def catalogue_version(files: Sequence[tuple[str, Path]]) -> str:
    """Digest (12 hex) of ``(relative name, file)`` pairs in the order given: the same
    files give the same digest on every machine."""
    h = hashlib.sha256()
    for name, file in files:
        h.update(name.encode() + b"\0" + _content(file) + b"\0")
    return h.hexdigest()[:12]


def _roots(path_or_paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(path_or_paths, str | Path):
        return [Path(path_or_paths)]
    return [Path(p) for p in path_or_paths]


def _trigger_tags(data: Mapping[str, Any], smap: SourceMap) -> list[RuleProblem]:
    tags = data.get("tags")
    problems: list[RuleProblem] = []
    for i, tag in enumerate(tags if isinstance(tags, list) else []):
        if isinstance(tag, str) and tag.startswith("trigger."):
            want = tag.split(".", 1)[1].upper()
            problems.append(
                smap.problem(
                    ("tags", i),
                    "R107",
                    f"the catalogue id is the rule's 'trigger:' key, not a tag: "
                    f"write 'trigger: {want}' and remove the '{tag}' tag",
                )
            )
    return problems


def load_rules(
    path_or_paths: str | Path | Sequence[str | Path], *, statuses: set[str] | None = None
) -> RuleSet:
    """Load and compile every rule under one root (a directory or one file) or several.

    With several roots, later ones extend the earlier: a rule with the same ``id``
    replaces the earlier one, a value set with the same ``name`` too, and rules of any
    root may use the value sets of every root. ``statuses`` keeps only rules with those
    statuses (e.g. ``{"stable"}``); deprecated and unsupported rules are never evaluated.
    Raises :class:`RuleValidationError` listing every problem found.
    """
    roots = _roots(path_or_paths)
    if not roots:
        raise RuleValidationError(
            [RuleProblem(SourceLocation("rules", 0, 0), "R000", "no rules directory given")]
        )
    problems: list[RuleProblem] = []
    for root in roots:
        if not root.exists():
            problems.append(
                RuleProblem(SourceLocation(str(root), 0, 0), "R000", "no such file or directory")
            )
    if problems:
        raise RuleValidationError(problems)

    # Value sets of every root, later names replacing earlier ones.
    specs: dict[str, ValueSetSpec] = {}
    vs_files: dict[str, Path] = {}
    digest_files: list[tuple[str, Path]] = []
    seen_dirs: set[Path] = set()
    for n, root in enumerate(roots):
        vs_dir = find_valueset_dir(root if root.is_dir() else root.parent)
        if vs_dir is None or vs_dir.resolve() in seen_dirs:
            continue
        seen_dirs.add(vs_dir.resolve())
        found, probs = _read_valuesets(vs_dir)
        problems += probs
        for name in found:
            vs_files[name] = vs_dir / f"{name}.yaml"
            digest_files.append((f"{n}/valuesets/{name}.yaml", vs_files[name]))
        specs.update(found)
    valuesets, probs = _compile_valuesets(specs, vs_files)
    problems += probs
    names = set(valuesets)

    model = logic.rule_model()
    by_id: dict[str, Rule] = {}
    for n, root in enumerate(roots):
        seen_ids: dict[str, str] = {}
        base = root if root.is_dir() else root.parent
        for file in rule_files(root):
            digest_files.append((f"{n}/{file.relative_to(base).as_posix()}", file))
            data, spec, smap, probs = _parse(file, model)
            problems += probs
            if data is None:
                continue
            if not validators.FILE_NAME.match(file.name):
                problems.append(
                    smap.problem(
                        (), "R104", f"file name '{file.name}' must match [a-z0-9_]{{10,90}}.yaml"
                    )
                )
            problems += validators.check_rule_refs(data, smap, names)
            problems += _trigger_tags(data, smap)
            rid = str(data.get("id", ""))
            if rid:
                if rid in seen_ids:
                    problems.append(
                        smap.problem(
                            ("id",), "R105", f"duplicate rule id {rid} (also in {seen_ids[rid]})"
                        )
                    )
                else:
                    seen_ids[rid] = str(file)
            if spec is None or any(p.location.path == str(file) for p in problems):
                continue
            rule = compile_rule(spec, str(file), valuesets, specs)
            by_id[rule.id] = dataclasses.replace(
                rule, origin=str(root), version=rule_version(spec, file)
            )
    if problems:
        raise RuleValidationError(problems)
    version = catalogue_version(digest_files)
    rules = [dataclasses.replace(r, catalogue_version=version) for r in by_id.values()]
    keep = [r for r in rules if r.status.value not in {"deprecated", "unsupported"}]
    if statuses is not None:
        keep = [r for r in keep if r.status.value in statuses]
    return RuleSet(
        rules=tuple(keep),
        source=os.pathsep.join(str(r) for r in roots),
        valuesets=valuesets,
        valueset_specs=specs,
        roots=tuple(str(r) for r in roots),
        catalogue_version=version,
    )
