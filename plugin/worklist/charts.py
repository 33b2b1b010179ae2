"""Server-side SVG: the case timeline and the dashboard's PPV bars. No JavaScript needed;
every mark carries a ``<title>`` (hover text, read by screen readers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from plugin.worklist.stats import RuleStats

LANES: tuple[tuple[str, str], ...] = (
    ("encounter", "Encounters"),
    ("transfer", "Transfers"),
    ("condition", "Diagnoses"),
    ("observation", "Labs & vitals"),
    ("report", "Imaging & reports"),
    ("procedure", "Procedures"),
    ("order", "Orders"),
    ("medication", "Medications"),
    ("death", "Death"),
)
SETTING_COLOURS = {"ED": "#d9822b", "IP": "#2b6cb0", "ICU": "#c53030", "OBS": "#805ad5",
                   "AMB": "#2f855a"}  # fmt: skip


def _t(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _ticks(start: datetime, stop: datetime, most: int = 10) -> list[datetime]:
    days = (stop - start).total_seconds() / 86400
    step = next((d for d in (1, 2, 7, 14, 30, 60, 90, 180, 365) if days / d <= most), 730)
    first = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    ticks = []
    while first <= stop:
        ticks.append(first)
        first += timedelta(days=step)
    return ticks


def _span(events: list[dict[str, Any]], finding: dict[str, Any]) -> tuple[datetime, datetime]:
    """The episode: the rule window with a margin either side (a tenth of the window, at
    least a day before and two days after). Events outside it are folded, not drawn, so an
    old risk-factor diagnosis does not shrink a three-day episode to a few pixels."""
    lo, hi = finding["index_start"], finding["window_end"]
    margin = max((hi - lo) * 0.1, timedelta(days=1))
    return lo - margin, hi + max(margin, timedelta(days=2))


def _folded(events: list[dict[str, Any]], start: datetime, stop: datetime) -> tuple[int, int]:
    """How many events lie wholly before and after the drawn span."""
    before = after = 0
    for ev in events:
        when = _t(ev.get("t"))
        end = _t(ev.get("end")) or when
        if when is None or end is None:
            continue
        if end < start:
            before += 1
        elif when > stop:
            after += 1
    return before, after


def _label(ev: dict[str, Any]) -> str:
    parts = [ev["t"][:16].replace("T", " "), ev.get("text") or ev.get("code") or ev["kind"]]
    if ev.get("code"):
        parts.append(f"[{ev['code']}]")
    if "value" in ev:
        parts.append(f"= {ev['value']:g} {ev.get('unit', '')}".rstrip())
    if ev.get("flags"):
        parts.append("flags " + ",".join(ev["flags"]))
    if ev.get("setting"):
        parts.append(f"setting {ev['setting']}")
    if ev.get("diagnoses"):
        parts.append("dx " + ", ".join(ev["diagnoses"][:6]))
    parts.append(ev["source"])
    return " · ".join(parts)


def timeline_svg(snapshot: dict[str, Any], finding: dict[str, Any], width: int = 980) -> Markup:
    """Lanes by event kind over the snapshot's time span; the rule window shaded."""
    events = sorted(snapshot.get("events", []), key=lambda e: bool(e.get("abnormal")))
    start, stop = _span(events, finding)
    present = {e["kind"] for e in events}
    lanes = [(k, name) for k, name in LANES if k in present or k == "encounter"]
    left, right, top, lane_h = 150, 16, 28, 34
    height = top + lane_h * len(lanes) + 30
    span = (stop - start).total_seconds()

    def x(moment: datetime) -> float:
        return left + (width - left - right) * (moment - start).total_seconds() / span

    marked = set(finding.get("evidence") or []) | {finding["index_ref"]}
    if finding.get("outcome_ref"):
        marked.add(finding["outcome_ref"])
    out = [f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="Patient timeline around the index event" '
           f'xmlns="http://www.w3.org/2000/svg" font-size="12">']  # fmt: skip
    before, after = _folded(events, start, stop)
    # folded history: under the lane names (earlier) and above the plot's right end (later)
    for count, at, y_at, anchor, text in (
        (before, 8, height - 8, "start", f"◀ {before} earlier event{'s' * (before > 1)}"),
        (after, width - right, top - 12, "end", f"{after} later event{'s' * (after > 1)} ▶"),
    ):
        if count:
            out.append(f'<text class="folded" x="{at}" y="{y_at}" text-anchor="{anchor}" '
                       f'font-size="10" fill="#718096">{escape(text)}</text>')  # fmt: skip
    wx0, wx1 = x(max(start, finding["index_start"])), x(min(stop, finding["window_end"]))
    out.append(f'<rect x="{wx0:.1f}" y="{top - 6}" width="{max(1.0, wx1 - wx0):.1f}" '
               f'height="{lane_h * len(lanes) + 6}" fill="#fff8d6"><title>rule window: '
               f'{escape(finding["index_start"].date())} to {escape(finding["window_end"].date())}'
               f'</title></rect>')  # fmt: skip
    for i, (_kind, name) in enumerate(lanes):
        y = top + i * lane_h
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y + lane_h / 2}" '
                   f'y2="{y + lane_h / 2}" stroke="#e2e8f0"/>'
                   f'<text x="8" y="{y + lane_h / 2 + 4}" fill="#2d3748">'
                   f"{escape(name)}</text>")  # fmt: skip
    for tick in _ticks(start, stop):
        tx = x(tick)
        if tx > width - right - 32:  # its date label would be cut off at the edge
            continue
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top - 6}" '
                   f'y2="{height - 24}" stroke="#edf2f7"/>'
                   f'<text x="{tx:.1f}" y="{height - 8}" text-anchor="middle" fill="#4a5568">'
                   f'{tick:%Y-%m-%d}</text>')  # fmt: skip
    ix = x(finding["index_start"])
    out.append(f'<line x1="{ix:.1f}" x2="{ix:.1f}" y1="{top - 10}" y2="{height - 24}" '
               f'stroke="#1a202c" stroke-width="2" stroke-dasharray="4 3"/>'
               f'<text x="{ix + 4:.1f}" y="{top - 12}" fill="#1a202c">'
               "index event</text>")  # fmt: skip
    lane_of = {k: i for i, (k, _) in enumerate(lanes)}
    crowd: dict[tuple[int, int], int] = {}
    last_label = -1e9  # x of the last encounter label, to keep labels from overlapping
    for ev in events:
        lane = lane_of.get(ev["kind"])
        when = _t(ev["t"])
        if lane is None or when is None:
            continue
        if (_t(ev.get("end")) or when) < start or when > stop:
            continue  # folded history (counted at the chart's edge)
        cy = top + lane * lane_h + lane_h / 2
        if ev["kind"] != "encounter":  # spread marks that fall on the same spot
            spot = (lane, round(x(when) / 8))
            crowd[spot] = crowd.get(spot, 0) + 1
            cy += (0, -8, 8, -4, 4, -12, 12)[(crowd[spot] - 1) % 7]
        key = ev["source"] in marked
        stroke = ' stroke="#000" stroke-width="2"' if key else ""
        title = f"<title>{escape(_label(ev))}{' (rule evidence)' if key else ''}</title>"
        if ev["kind"] == "encounter":
            end = _t(ev.get("end")) or when
            colour = "#c53030" if ev.get("icu") else SETTING_COLOURS.get(ev.get("setting", ""),
                                                                          "#718096")  # fmt: skip
            x0, x1 = x(max(when, start)), x(min(end, stop))
            label = ev.get("setting", "") if x0 - last_label > 28 else ""
            last_label = x0 if label else last_label
            out.append(f'<rect x="{x0:.1f}" y="{cy - 9}" width="{max(4.0, x1 - x0):.1f}" '
                       f'height="18" rx="3" fill="{colour}"{stroke}>{title}</rect>'
                       f'<text x="{x0:.1f}" y="{cy - 12}" font-size="10" fill="#2d3748">'
                       f"{escape(label)}</text>")  # fmt: skip
        elif ev["kind"] == "observation":
            colour = "#e53e3e" if ev.get("abnormal") else "#a0aec0"
            out.append(f'<circle cx="{x(when):.1f}" cy="{cy}" r="{6 if key else 4.5}" '
                       f'fill="{colour}"{stroke}>{title}</circle>')  # fmt: skip
        else:
            cx = x(when)
            out.append(f'<path d="M{cx:.1f} {cy - 7} L{cx + 6:.1f} {cy} L{cx:.1f} {cy + 7} '
                       f'L{cx - 6:.1f} {cy} Z" fill="#4a5568"{stroke}>{title}</path>')  # fmt: skip
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every text value above passes through escape()


def ppv_svg(stats: Sequence[RuleStats], width: int = 980) -> Markup:
    """One row per rule: PPV bar, Wilson 95 % CI whiskers, published PPV as a diamond."""
    rows = [s for s in stats if s.reviewed or s.published_ppv is not None]
    if not rows:
        return Markup('<p class="muted">No reviewed cases yet.</p>')
    left, right, top, row_h = 300, 150, 30, 34
    height = top + row_h * len(rows) + 30
    plot = width - left - right

    def x(p: float) -> float:
        return left + plot * p

    out = [f'<svg class="ppv" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="PPV per rule with 95% confidence intervals" '
           f'xmlns="http://www.w3.org/2000/svg" font-size="12">']  # fmt: skip
    for pct in range(0, 101, 20):
        px = x(pct / 100)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top - 8}" y2="{height - 24}" '
                   f'stroke="#e2e8f0"/><text x="{px:.1f}" y="{height - 8}" '
                   f'text-anchor="middle" fill="#4a5568">{pct}%</text>')  # fmt: skip
    out.append(f'<text x="{left}" y="14" fill="#4a5568">bar: PPV (confirmed MOD / reviewed) · '
               f'whiskers: 95% Wilson CI · ◆ published PPV</text>')  # fmt: skip
    for i, s in enumerate(rows):
        y = top + i * row_h
        mid = y + row_h / 2
        title = s.title if len(s.title) <= 44 else s.title[:43] + "…"
        out.append(f'<text x="8" y="{mid + 4}" fill="#1a202c">{escape(title)}'
                   f'<title>{escape(s.rule_id)}: {escape(s.title)}</title></text>')  # fmt: skip
        if s.ppv is not None and s.ci is not None:
            lo, hi = s.ci
            out.append(f'<rect x="{left}" y="{mid - 8}" width="{plot * s.ppv:.1f}" height="16" '
                       f'fill="#3182ce"><title>PPV {s.ppv:.0%} ({s.confirmed}/{s.reviewed}), '
                       f'95% CI {lo:.0%}–{hi:.0%}</title></rect>'
                       f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{mid}" y2="{mid}" '
                       f'stroke="#1a202c" stroke-width="1.5"/>'
                       f'<line x1="{x(lo):.1f}" x2="{x(lo):.1f}" y1="{mid - 6}" y2="{mid + 6}" '
                       f'stroke="#1a202c" stroke-width="1.5"/>'
                       f'<line x1="{x(hi):.1f}" x2="{x(hi):.1f}" y1="{mid - 6}" y2="{mid + 6}" '
                       f'stroke="#1a202c" stroke-width="1.5"/>')  # fmt: skip
            text = f"{s.ppv:.0%} ({s.confirmed}/{s.reviewed})"
        else:
            text = "not reviewed"
        if s.published_ppv is not None:
            px = x(s.published_ppv)
            n = f", n={s.published_n}" if s.published_n else ""
            out.append(f'<path d="M{px:.1f} {mid - 8} L{px + 7:.1f} {mid} L{px:.1f} {mid + 8} '
                       f'L{px - 7:.1f} {mid} Z" fill="#dd6b20"><title>published PPV '
                       f'{s.published_ppv:.0%}{n}</title></path>')  # fmt: skip
        out.append(f'<text x="{width - right + 8}" y="{mid + 4}" fill="#1a202c">'
                   f'{escape(text)}</text>')  # fmt: skip
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every text value above passes through escape()
