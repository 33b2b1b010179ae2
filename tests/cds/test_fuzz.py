"""Issue 14 item 4: no request makes the service answer 5xx. Two generators, in CI:

* schemathesis, from our OpenAPI description of the endpoints (:mod:`plugin.cds.openapi`),
  in positive and negative (schema-violating) modes, for the hook and feedback routes;
* mutations of every request and feedback example in ``/work/shared/cds-hooks-examples``
  (a field deleted, a value replaced by another JSON type, a string stretched, a list
  emptied, nested at any depth), each re-signed with the test key and sent to its service
  (and to the other services). A FIT patient's prefetch is mutated too, so the deep paths
  (timeline, rules, cards) see the damage, not just the request validation.

Every answer must be a non-5xx, and every non-2xx an OperationOutcome (401 has no body).
Deterministic (fixed seeds): 1,680 mutations + ~400 schemathesis cases = ~2,100 requests
(about 10 ms of CPU each, TestClient included).
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from typing import Any

import orjson
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from plugin.cds.openapi import openapi
from plugin.cds.services import SERVICES
from tests.cds import patients as P
from tests.cds.helpers import BASE, EXAMPLES, NOW, bearer

SCHEMA = schemathesis.openapi.from_dict(openapi())
HOOK_SERVICE = {s.hook: s.id for s in SERVICES.values()}
MUTATIONS_PER_EXAMPLE = 80
SCHEMATHESIS_EXAMPLES = 100  # per operation and mode


def _check(r: Any, what: str, counts: Counter[int]) -> None:
    counts[r.status_code] += 1
    assert r.status_code < 500, (what, r.status_code, r.text[:500])
    if r.status_code >= 400 and r.status_code != 401:
        assert r.json()["resourceType"] == "OperationOutcome", (what, r.text[:300])


def _examples() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(EXAMPLES.rglob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            continue
        if "hook" in data and "context" in data:
            out.append(("hook", data))
        elif path.name.endswith("-context.json") or "-context-" in path.name:
            hook = path.name.split("-context")[0]
            out.append(("hook", {"hook": hook, "hookInstance": path.stem, **data}))
        elif path.name.startswith("feedback-"):
            out.append(("feedback", data))
    # one of ours with a full prefetch, so mutations reach the timeline and the rules
    prefetch = P.full_prefetch(P.fit_patient("p", NOW))
    ctx = {"userId": "Practitioner/u", "patientId": "p",
           "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": P.colonoscopy_order("p")}]}}  # fmt: skip  # noqa: E501
    for hook in ("patient-view", "order-sign"):
        out.append(("hook", {"hook": hook, "hookInstance": "x", "context": ctx, "prefetch": prefetch}))  # fmt: skip  # noqa: E501
    return out


ODD_VALUES: list[Any] = [None, 0, -1, 1e308, True, "", "x" * 5000, "\u0000\ud7ff", [], {}, [1],
                         {"resourceType": "OperationOutcome", "issue": 7}, "2026-13-45",
                         {"reference": 5}, [{"coding": "x"}]]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(body: Any, rng: random.Random) -> Any:
    body = copy.deepcopy(body)
    for _ in range(rng.choice((1, 1, 2, 3))):
        paths = [p for p in _paths(body) if p]
        if not paths:
            return rng.choice(ODD_VALUES)
        path = rng.choice(paths)
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        move = rng.random()
        if move < 0.25 and isinstance(parent, dict):
            del parent[last]
        elif move < 0.35 and isinstance(parent[last], str):
            parent[last] = parent[last] * rng.choice((0, 50))
        elif move < 0.45 and isinstance(parent[last], list):
            parent[last] = parent[last][:0] if rng.random() < 0.5 else parent[last] * 3
        else:
            parent[last] = copy.deepcopy(rng.choice(ODD_VALUES))
    return body


def test_mutated_spec_examples_never_get_a_5xx(client: Any, token: Any) -> None:
    rng = random.Random(14)
    counts: Counter[int] = Counter()
    sent = 0
    for kind, example in _examples():
        service = HOOK_SERVICE.get(example.get("hook", ""), "dxsafety-patient-view")
        for i in range(MUTATIONS_PER_EXAMPLE):
            body = _mutate(example, rng)
            target = service if i % 5 else rng.choice(sorted(SERVICES))
            path = f"/cds-services/{target}" + ("/feedback" if kind == "feedback" else "")
            raw = orjson.dumps(body) if i % 17 else orjson.dumps(body)[: rng.randint(0, 40)]
            r = client.post(
                path,
                content=raw,
                headers={**bearer(token(BASE + path)), "Content-Type": "application/json"},
            )
            _check(r, f"{kind} {path} {raw[:200]!r}", counts)
            sent += 1
    assert sent >= 1_600
    assert counts[200] > 50 and sum(v for k, v in counts.items() if 400 <= k < 500) > 500


def test_schemathesis_against_the_openapi_description(client: Any, token: Any) -> None:
    counts: Counter[int] = Counter()
    operations = [
        SCHEMA["/cds-services/{service_id}"]["POST"],
        SCHEMA["/cds-services/{service_id}/feedback"]["POST"],
    ]
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=SCHEMATHESIS_EXAMPLES, deadline=None, database=None,
                      derandomize=True, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                path = case.formatted_path
                body = case.body
                # stdlib json: big integers and lone surrogates (escaped) go through as sent
                raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
                r = client.post(
                    path,
                    content=raw,
                    headers={**bearer(token(BASE + path)), "Content-Type": "application/json"},
                )
                _check(r, f"{case.method} {path} {raw[:200]!r}", counts)

            run()
    assert sum(counts.values()) >= 350, counts
