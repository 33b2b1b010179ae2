"""Logic types: what happens after a rule's index event, one module per type.

A logic type is a :class:`LogicType` subclass with a pydantic spec model (a
:class:`~plugin.rules.schema.LogicSpec` subclass whose ``type`` is a ``Literal``), a
compile step and a completion step, registered here with :func:`register`. Everything
that dispatches on ``logic.type`` goes through this registry: the rule model's
discriminated union (:func:`rule_model`), the loader's compile, the engine, the rules API
that CDS calls, and the "unknown logic type" load error. Adding a type is one module and
one :func:`register` call.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, create_model

from plugin.rules.logic.absence import ABSENCE
from plugin.rules.logic.base import LogicType
from plugin.rules.logic.sequence import SEQUENCE
from plugin.rules.schema import LogicSpec, RuleSpec

_REGISTRY: dict[str, LogicType] = {}
_models: dict[tuple[type[LogicSpec], ...], type[RuleSpec]] = {}


def register(logic_type: LogicType) -> LogicType:
    """Add a logic type (its ``name`` must be new and equal its spec's ``type`` literal)."""
    if logic_type.name in _REGISTRY:
        raise ValueError(f"logic type {logic_type.name!r} is already registered")
    literal = logic_type.spec.model_fields["type"].annotation
    if getattr(literal, "__args__", None) != (logic_type.name,):
        raise ValueError(f"{logic_type.spec.__name__}.type must be Literal[{logic_type.name!r}]")
    _REGISTRY[logic_type.name] = logic_type
    return logic_type


def unregister(name: str) -> None:
    """Remove a logic type (tests that register their own)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> LogicType:
    """The registered type ``name``; KeyError when there is none."""
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


def types() -> list[LogicType]:
    return [_REGISTRY[n] for n in names()]


def rule_model() -> type[RuleSpec]:
    """The rule-file model whose ``logic`` is the discriminated union of the registered
    types (built once per set of registered types)."""
    specs = tuple(t.spec for t in types())
    model = _models.get(specs)
    if model is None:
        field: Any = (
            (specs[0], ...)
            if len(specs) == 1  # a union of one has no tag to discriminate on
            else (Annotated[Union[specs], Field(discriminator="type")], ...)  # noqa: UP007
        )
        model = create_model("RuleSpec", __base__=RuleSpec, logic=field)
        _models[specs] = model
    return model


def spec_keys() -> set[str]:
    """Every key the registered logic types accept (for "did you mean")."""
    out: set[str] = set()
    for t in _REGISTRY.values():
        out.update(t.spec.model_fields)
    return out


# The built-in types. A new type is a module like these plus one line here.
register(SEQUENCE)
register(ABSENCE)

__all__ = [
    "LogicType",
    "get",
    "names",
    "register",
    "rule_model",
    "spec_keys",
    "types",
    "unregister",
]
