"""Two validation modes for incoming resources.

``"full"``: the resource is validated against the ``fhir.resources`` **R4B** model of its type
(``get_fhir_model_class(type).model_validate(resource)``; R4B because the default R5 models
reject R4 Encounters), then read as in fast mode. About 4–5k resources/s per core: use it for
small inputs, for onboarding a new data source, or in CI on fixtures. (The R4B models coerce a
number written as a string, ``"12.1"``; the typed read after them does not, so such a resource is
rejected in both modes.)

``"fast"``: no pydantic. The converters of :mod:`plugin.fhir.convert` read every field through
typed accessors that reject a wrong JSON type, an unparseable date or a non-numeric value, so a
resource is rejected exactly when something the timeline reads is malformed. Fields the timeline
does not read are not checked. ``tests/fhir/test_parse.py`` shows both modes give the same
timeline on the shared data for the resources full validation accepts.

``"none"``: for resources already validated upstream (:func:`plugin.fhir.stage.iter_patients`
and :func:`~plugin.fhir.stage.iter_timelines` validate, with file and line, per patient). No
pydantic; the converters still read through the typed accessors, so a malformed field is
still skipped, never fatal.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ValidationError

Mode = Literal["fast", "full", "none"]
MODES: tuple[Mode, ...] = ("fast", "full", "none")


_NO_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


def _with_offsets(node: Any) -> Any:
    """A copy with ``Z`` added to date-times that have a time and no offset, or ``node``
    itself when there are none."""
    if isinstance(node, dict):
        items = {k: _with_offsets(v) for k, v in node.items()}
        return items if any(items[k] is not v for k, v in node.items()) else node
    if isinstance(node, list):
        values = [_with_offsets(v) for v in node]
        return values if any(a is not b for a, b in zip(values, node, strict=True)) else node
    if isinstance(node, str) and _NO_OFFSET.match(node):
        return node + "Z"
    return node


def check_full(resource: dict[str, Any]) -> str | None:
    """None if the resource validates under its R4B model, else the reason (first 3 errors).

    A date-time with a time and no UTC offset is checked as if it had one: the R4B models
    refuse it, but the typed read that follows reads it (in ``--assume-tz``, or as UTC with a
    warning; :mod:`plugin.fhir.values`), so full validation does not drop what fast keeps."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        resource = _with_offsets(resource)
    except RecursionError:  # nested deeper than the models can check anyway (see below)
        return None

    rtype = resource.get("resourceType")
    try:
        model = get_fhir_model_class(str(rtype))
    except (ValueError, KeyError):
        return f"not an R4B resource type: {rtype!r}"
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:3]
        ]
        more = exc.error_count() - len(problems)
        return "invalid: " + "; ".join(problems) + (f" (+{more} more)" if more > 0 else "")
    except (ValueError, TypeError) as exc:  # fhir.resources raises these for some shapes
        return f"invalid: {exc}"
    except RecursionError:
        # The models validate nested elements recursively in Python: JSON nested a few
        # hundred levels (valid, and read by orjson up to 1,024) exhausts the stack. Such a
        # resource is left to the typed read that follows, as in fast mode.
        return None
    return None
