"""Load a rules directory: value sets, then rules, every problem reported at once.

``load_rules(path)`` parses each YAML file keeping locations (:mod:`.spans`), checks
its structure with pydantic (:mod:`.schema`), maps each pydantic error back to
``file:line:col`` with a "did you mean" for unknown keys, runs the semantic checks
(:mod:`.validators`), and compiles the rules (:mod:`.selectors`). Any problem in
any file raises one :class:`RuleValidationError` listing all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from plugin.errors import RuleProblem, RuleValidationError
from plugin.rules import validators
from plugin.rules.codesets import CodeSet
from plugin.rules.engine import CompiledCondition, Rule, RuleSet
from plugin.rules.schema import Condition, RuleSpec, ValueSetSpec, all_keys
from plugin.rules.selectors import compile_any, compile_selector
from plugin.rules.spans import Path_, SourceMap, load_yaml

_KEYS = all_keys()


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
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            msg = f"unknown key '{key}' in {'.'.join(str(p) for p in path[:-1]) or 'rule'}"
            msg += validators.did_you_mean(key, _KEYS)
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


def load_valuesets(
    directory: Path | None,
) -> tuple[dict[str, CodeSet], dict[str, ValueSetSpec], list[RuleProblem]]:
    specs: dict[str, ValueSetSpec] = {}
    problems: list[RuleProblem] = []
    if directory is None:
        return {}, specs, problems
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
                        validators_location(directory / f"{name}.yaml"),
                        "R304",
                        f"value set '{name}' {what}",
                    )
                )
                continue
            cs.update(build(inc, (*stack, inc)))
        compiled[name] = cs
        return cs

    for name in specs:
        build(name, (name,))
    return compiled, specs, problems


def validators_location(path: Path) -> Any:
    from plugin.errors import SourceLocation

    return SourceLocation(str(path), 1, 1)


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


def compile_rule(spec: RuleSpec, path: str, valuesets: Mapping[str, CodeSet]) -> Rule:
    logic = spec.logic

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

    return Rule(
        spec=spec,
        path=path,
        index=compile_any(logic.index, valuesets),
        outcome=compile_any(logic.outcome, valuesets) if logic.type == "sequence" else (),
        expect_any=(
            tuple(compile_selector(e, valuesets) for e in logic.expect_any)
            if logic.type == "absence"
            else ()
        ),
        require=tuple(cond(c) for c in logic.require),
        exclude=tuple(cond(c) for c in logic.exclude),
    )


def load_rules(path: str | Path, *, statuses: set[str] | None = None) -> RuleSet:
    """Load and compile every rule under ``path`` (a directory or one file).

    ``statuses`` keeps only rules with those statuses (e.g. ``{"stable"}``);
    deprecated and unsupported rules are never evaluated.
    Raises :class:`RuleValidationError` listing every problem found.
    """
    root = Path(path)
    if not root.exists():
        from plugin.errors import SourceLocation

        raise RuleValidationError(
            [RuleProblem(SourceLocation(str(root), 0, 0), "R000", "no such file or directory")]
        )
    valuesets, _, problems = load_valuesets(
        find_valueset_dir(root if root.is_dir() else root.parent)
    )
    names = set(valuesets)
    seen_ids: dict[str, str] = {}
    rules: list[Rule] = []
    for file in rule_files(root):
        data, spec, smap, probs = _parse(file, RuleSpec)
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
        rules.append(compile_rule(spec, str(file), valuesets))
    if problems:
        raise RuleValidationError(problems)
    keep = [r for r in rules if r.status.value not in {"deprecated", "unsupported"}]
    if statuses is not None:
        keep = [r for r in keep if r.status.value in statuses]
    return RuleSet(rules=tuple(keep), source=str(root), valuesets=dict(valuesets))
