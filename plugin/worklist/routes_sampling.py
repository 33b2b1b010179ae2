"""Sampling per rule (issue 13): the admin page that sets a rule's sampling mode and draws
its sample, and the dashboard's design-based PPV (:func:`install` gives the dashboard
template ``review_loop()``, which reads :func:`plugin.worklist.stats.loop_stats`, and
``spade_latest()``, the last SPADE run saved by ``dxsafety measure spade --store``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from plugin.errors import SamplingError
from plugin.worklist import sampling, stats
from plugin.worklist import tables as t
from plugin.worklist.deps import AdminDep, FormDep, Pages, PagesDep, StoreDep
from plugin.worklist.store import Store
from plugin.worklist.users import Session

router = APIRouter(prefix="/worklist", tags=["worklist"])


def install(env: Environment, store: Store) -> None:
    """Let the dashboard template ask for the per-rule review-loop figures."""

    def review_loop() -> list[stats.LoopStats]:
        modes = {k: m.mode for k, m in sampling.get_modes(store).items()}
        return stats.loop_stats(store, modes)

    def spade_latest() -> dict[str, Any] | None:
        f = t.spade_runs
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(f).order_by(f.c.id.desc()).limit(1)).first()
        return dict(row._mapping) if row is not None else None

    env.globals["review_loop"] = review_loop
    env.globals["spade_latest"] = spade_latest  # issue 16: `measure spade --store` results


def _page(pages: Pages, session: Session, store: Store, message: str = "", kind: str = "info",
          status: int = 200) -> HTMLResponse:  # fmt: skip
    modes = sampling.get_modes(store)
    loop = stats.loop_stats(store, {k: m.mode for k, m in modes.items()})
    return pages.render("sampling.html", session=session, loop_rows=loop, modes=modes,
                        message=message, kind=kind, status=status)


@router.get("/admin/sampling", response_class=HTMLResponse)
def sampling_page(session: AdminDep, store: StoreDep, pages: PagesDep) -> HTMLResponse:
    return _page(pages, session, store)


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise SamplingError(f"{text!r} is not a number") from None


@router.post("/admin/sampling", response_class=HTMLResponse)
def sampling_post(session: AdminDep, form: FormDep, store: StoreDep,
                  pages: PagesDep) -> HTMLResponse:  # fmt: skip
    rule_id = str(form.get("rule_id") or "")
    try:
        mode = sampling.Mode(rule_id=rule_id, mode=str(form.get("mode") or ""),
                             size=_number(form.get("size"), int),
                             fraction=_number(form.get("fraction"), float))  # fmt: skip
        user = session.user
        sampling.set_mode(store, mode, user_id=user.id, username=user.username)
        drawn = sampling.draw(store, rule_id, user_id=user.id, username=user.username)
    except SamplingError as exc:
        return _page(pages, session, store, str(exc), "error", 400)
    return _page(pages, session, store, f"{drawn} case(s) of {rule_id} drawn for review.")
