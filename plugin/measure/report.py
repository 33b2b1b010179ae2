"""The SPADE report: JSON and CSV for the warehouse, and one HTML page a quality officer
reads (daily curve, trend, funnel and look-back table, each with a caption in plain words and
the method stated). Plots are matplotlib SVG inlined in the page, so the file stands alone."""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from plugin.measure.spade import Z95, LookBackRow, PairResult

METHOD = (
    "Look-forward (SPADE, Liberman & Newman-Toker, BMJ Qual Saf 2018): among treat-and-release "
    "visits with the symptom, <em>observed</em> is the number followed by an admission with the "
    "disease within the window; <em>expected</em> is how many such admissions the same number "
    "of visits would have had anyway, from the comparator (the same patients' later baseline, "
    "or a comparator symptom cohort). Observed − expected per 10,000 visits estimates the harm "
    "from possibly missed diagnoses; no chart review is needed. The 95 % interval treats "
    "observed and the comparator count as independent Poisson counts (Var = O + r²·B); the rate "
    "ratio has an exact conditional-binomial interval. Index visits whose window is not fully "
    "in the data are left out. A pair's principal-diagnosis outcome falls back to any listed "
    "diagnosis when the record does not say which diagnosis is principal."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    source: str
    generated: datetime
    patients: int
    span: tuple[datetime | None, datetime | None]
    results: list[PairResult]
    lookback: list[LookBackRow]
    principal_unknown: int = 0
    case_links: Mapping[str, str] = field(default_factory=dict)  # index ref -> worklist URL


def to_json(rep: Report) -> dict[str, Any]:
    def day(t: datetime | None) -> str | None:
        return t.date().isoformat() if t else None

    return {
        "source": rep.source, "generated": rep.generated.isoformat(timespec="seconds"),
        "patients": rep.patients, "from": day(rep.span[0]), "to": day(rep.span[1]),
        "principal_unknown_outcome_visits": rep.principal_unknown,
        "method": html.unescape(METHOD.replace("<em>", "").replace("</em>", "")),
        "pairs": [{
            "id": r.pair.id, "title": r.pair.title, "status": r.pair.status,
            "measure": r.pair.measure, "window_days": r.pair.window,
            "comparator": r.comparator, "censored_index_visits": r.censored,
            **r.total.as_dict(),
            "daily": [{"day": d, "observed": o, "expected": round(e, 4)}
                      for d, o, e in zip(r.days, r.daily_observed, r.daily_expected, strict=True)],
            "strata": [{"by": s.dimension, "value": s.value, **s.estimate.as_dict()}
                       for s in r.strata],
            "funnel": {"overall_per_10k": round(r.funnel_rate_per_10k, 2),
                       "sites": [{"site": f.site, "n": f.n,
                                  "rate_per_10k": round(f.rate_per_10k, 2),
                                  "outside_95": f.outside_95, "outside_99_8": f.outside_998}
                                 for f in r.funnel]},
            "benchmarks": [b.model_dump() for b in r.benchmarks],
            "observed_cases": [{"patient_id": c.patient_id, "index_ref": c.ref,
                                "index_start": c.start.isoformat(), "outcome_ref": c.outcome_ref,
                                "day": c.outcome_day,
                                "worklist": rep.case_links.get(f"{c.patient_id}|{c.ref}")}
                               for c in r.cases],
        } for r in rep.results],
        "lookback": [{"disease": b.disease, "symptom": b.symptom, "admissions": b.admissions,
                      "with_prior": b.with_prior, "share": round(b.share, 5),
                      "expected_share": round(b.expected_share, 5),
                      "ratio": None if b.ratio is None else round(b.ratio, 3),
                      "excess_share_ci95": [round(x, 5) for x in b.ci]} for b in rep.lookback],
    }  # fmt: skip


CSV_FIELDS = ("pair_id", "by", "value", "n", "observed", "expected", "excess_per_10k",
              "ci95_low", "ci95_high", "rate_ratio")  # fmt: skip


def write_csv(rep: Report, out: TextIO) -> int:
    """One row per pair (``by`` = all) and per stratum: the warehouse table."""
    w = csv.writer(out)
    w.writerow(CSV_FIELDS)
    n = 0
    for r in rep.results:
        for by, value, est in [("all", "all", r.total),
                               *((s.dimension, s.value, s.estimate) for s in r.strata)]:
            lo, hi = est.ci
            rr = est.rate_ratio
            w.writerow([r.pair.id, by, value, est.n, est.observed, f"{est.expected:.3f}",
                        f"{est.excess_per_10k:.2f}", f"{lo:.2f}", f"{hi:.2f}",
                        "" if rr is None else f"{rr:.3f}"])  # fmt: skip
            n += 1
    return n


# --- HTML ---------------------------------------------------------------------------------
def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _plots(r: PairResult) -> tuple[str, str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = r.pair.window
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    ax.axvspan(0.5, w + 0.5, color="#fde2e1", label=f"window (days 1-{w})")
    ax.bar(r.days, r.daily_observed, color="#b03a2e", width=0.9, label="observed admissions")
    ax.plot(r.days, r.daily_expected, color="#1f4e79", lw=2, label="expected (comparator)")
    ax.set_xlabel("days after the treat-and-release visit")
    ax.set_ylabel("admissions")
    ax.legend(fontsize=8, frameon=False)
    curve = _svg(fig)

    quarters = [s for s in r.strata if s.dimension == "quarter"]
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    if quarters:
        xs = list(range(len(quarters)))
        ys = [s.estimate.excess_per_10k for s in quarters]
        lo = [y - s.estimate.ci[0] for y, s in zip(ys, quarters, strict=True)]
        hi = [s.estimate.ci[1] - y for y, s in zip(ys, quarters, strict=True)]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", color="#b03a2e", capsize=2,
                    label="observed − expected per 10,000 (95 % CI)")
        ax.set_xticks(xs, [s.value for s in quarters], rotation=60, fontsize=7)
    ax.axhline(0, color="#888", lw=0.8)
    ax.axhline(r.total.excess_per_10k, color="#b03a2e", ls=":", lw=1, label="all quarters")
    for b in r.benchmarks:
        if b.kind == "excess_per_10k":
            ax.axhline(b.value, color="#1f4e79", ls="--", lw=1,
                       label=f"published {b.value:g} per 10,000 ({b.label.split(':')[0]})")
    ax.set_ylabel("excess per 10,000 visits")
    ax.legend(fontsize=7, frameon=False)
    trend = _svg(fig)

    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    p = r.funnel_rate_per_10k / 10_000
    if r.funnel:
        nmax = max(f.n for f in r.funnel) * 1.2
        ns = [max(1.0, nmax * i / 200) for i in range(1, 201)]
        for z, style in ((Z95, "--"), (3.09, ":")):
            upper = [10_000 * (p + z * math.sqrt(p * (1 - p) / n)) for n in ns]
            ax.plot(ns, upper, "k", ls=style, lw=0.8)
            ax.plot(ns, [10_000 * max(0.0, p - z * math.sqrt(p * (1 - p) / n)) for n in ns], "k",
                    ls=style, lw=0.8)
        for i, f in enumerate(r.funnel):
            color = "#b03a2e" if f.outside_95 else "#1f4e79"
            ax.plot(f.n, f.rate_per_10k, "o", color=color)
            # staggered so that sites of similar size stay readable
            ax.annotate(f.site, (f.n, f.rate_per_10k), fontsize=7, xytext=(4, 3 + 9 * (i % 4)),
                        textcoords="offset points")
    ax.axhline(r.funnel_rate_per_10k, color="#888", lw=0.8)
    ax.set_xlabel("index visits at the site")
    ax.set_ylabel("admissions in window per 10,000")
    funnel = _svg(fig)
    return curve, trend, funnel


_CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:24px auto;color:#222;padding:0 16px}
h1{font-size:24px}h2{font-size:19px;border-top:2px solid #ddd;padding-top:14px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;
padding:3px 7px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.headline{font-size:18px;background:#f7f3e8;padding:10px 14px;border-left:4px solid #b03a2e}
.caption{color:#555;font-size:13px;margin:2px 0 14px}.method{background:#f3f6fa;padding:10px 14px;
font-size:13px}.small{font-size:12px;color:#666}
"""


def _fmt_ci(lo: float, hi: float) -> str:
    return f"{lo:.1f} to {hi:.1f}"


def _pair_html(r: PairResult, rep: Report) -> str:
    e = r.total
    lo, hi = e.ci
    esc = html.escape
    rr = "—" if e.rate_ratio is None else f"{e.rate_ratio:.2f}"
    if e.rr_ci is not None:
        rr += f" (95 % CI {e.rr_ci[0]:.2f} to {e.rr_ci[1]:.2f})"
    small = " Small numbers: read the interval, not the point estimate." if e.observed < 20 else ""
    bench = "".join(f"<li>{esc(b.label)} — <span class=small>{esc(b.citation)}</span></li>"
                    for b in r.benchmarks) or "<li>none published</li>"  # fmt: skip
    rows = "".join(
        f"<tr><td>{esc(s.dimension)}</td><td>{esc(s.value)}</td><td>{s.estimate.n:,}</td>"
        f"<td>{s.estimate.observed}</td><td>{s.estimate.expected:.1f}</td>"
        f"<td>{s.estimate.excess_per_10k:.1f}</td><td>{_fmt_ci(*s.estimate.ci)}</td></tr>"
        for s in r.strata if s.dimension != "quarter")  # fmt: skip
    cases = []
    for c in r.cases[:50]:
        url = rep.case_links.get(f"{c.patient_id}|{c.ref}")
        ref = f'<a href="{esc(url)}">{esc(c.ref)}</a>' if url else esc(c.ref)
        cases.append(f"<tr><td>{ref}</td><td>{c.start.date()}</td><td>{c.outcome_day}</td>"
                     f"<td>{esc(c.site)}</td></tr>")  # fmt: skip
    more = f"<p class=small>… and {len(r.cases) - 50} more (all in the JSON).</p>" \
        if len(r.cases) > 50 else ""  # fmt: skip
    measure = f" · implements {esc(r.pair.measure)}" if r.pair.measure else ""
    if not e.n:
        return f"""
<h2 id="{esc(r.pair.id)}">{esc(r.pair.title)}</h2>
<p class=small>pair <code>{esc(r.pair.id)}</code> · status {esc(r.pair.status)}{measure}</p>
<p class=headline>No treat-and-release visits for {esc(r.pair.symptom.name)} with a complete
{r.pair.window}-day window in these data ({r.censored:,} too recent): nothing to measure.</p>
"""
    curve, trend, funnel = _plots(r)
    return f"""
<h2 id="{esc(r.pair.id)}">{esc(r.pair.title)}</h2>
<p class=small>pair <code>{esc(r.pair.id)}</code> · status {esc(r.pair.status)}{measure}</p>
<p class=headline>Of <b>{e.n:,}</b> treat-and-release visits for {esc(r.pair.symptom.name)},
<b>{e.observed}</b> were followed by an admission for {esc(r.pair.disease.name)} within
{r.pair.window} days, where <b>{e.expected:.1f}</b> were expected: <b>{e.excess_per_10k:.1f}
excess per 10,000 visits</b> (95 % CI {_fmt_ci(lo, hi)}); rate ratio {rr}.{small}</p>
<p class=caption>Expected comes from {esc(r.comparator)}. {r.censored:,} visits too recent
for a full window are not counted.</p>
{curve}
<p class=caption>Admissions by day after the visit. Bars above the blue line inside the shaded
window are the excess; harm from a missed diagnosis clusters in the first days.</p>
{trend}
<p class=caption>Excess by quarter with 95 % intervals; dashed lines are published figures.
Quarters with few visits have wide intervals.</p>
{funnel}
<p class=caption>Funnel plot: each site's admission rate in the window against its number of
visits. Dashed and dotted lines are the 95 % and 99.8 % limits around the overall rate; a red
site lies outside the 95 % limits (by chance alone, 1 site in 20 would).</p>
<table><tr><th>by</th><th>group</th><th>visits</th><th>observed</th><th>expected</th>
<th>excess /10k</th><th>95 % CI</th></tr>{rows}</table>
<p>Published benchmarks:</p><ul>{bench}</ul>
<details><summary>Visits counted as observed ({len(r.cases)})</summary>
<table><tr><th>index visit</th><th>date</th><th>day of admission</th><th>site</th></tr>
{"".join(cases)}</table>{more}</details>
"""


def to_html(rep: Report) -> str:
    esc = html.escape
    lb = "".join(
        f"<tr><td>{esc(b.disease)}</td><td>{esc(b.symptom)}</td><td>{b.admissions:,}</td>"
        f"<td>{b.with_prior}</td><td>{100 * b.share:.2f} %</td>"
        f"<td>{100 * b.expected_share:.2f} %</td>"
        f"<td>{'—' if b.ratio is None else f'{b.ratio:.1f}'}</td></tr>"
        for b in rep.lookback)  # fmt: skip
    toc = "".join(f'<li><a href="#{esc(r.pair.id)}">{esc(r.pair.title)}</a>: '
                  f"{r.total.excess_per_10k:.1f} per 10,000 ({_fmt_ci(*r.total.ci)})</li>"
                  for r in rep.results)  # fmt: skip
    lo, hi = rep.span
    span = f"{lo.date() if lo else '?'} to {hi.date() if hi else '?'}"
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>SPADE: excess harm after treat-and-release visits</title><style>{_CSS}</style></head><body>
<h1>Excess harm after treat-and-release visits (SPADE)</h1>
<p>{rep.patients:,} patients, visits {esc(span)}, source <code>{esc(rep.source)}</code>;
generated {rep.generated:%Y-%m-%d %H:%M} UTC.</p>
<ul>{toc}</ul>
<div class=method><b>Method.</b> {METHOD}</div>
{"".join(_pair_html(r, rep) for r in rep.results)}
<h2 id=lookback>Look-back: which symptoms precede each disease admission</h2>
<p class=caption>For every admission with the disease, the share preceded by a
treat-and-release visit with the symptom within 30 days, against the share expected from the
same patients' visits 31-365 days before. Pairs at the top are candidates for a look-forward
measure (hypothesis generation, not proof).</p>
<table><tr><th>disease</th><th>symptom</th><th>admissions</th><th>with a prior visit</th>
<th>share</th><th>expected</th><th>ratio</th></tr>{lb}</table>
</body></html>"""


def case_link_key(patient_id: str, index_ref: str) -> str:
    return f"{patient_id}|{index_ref}"


def observed_keys(results: Sequence[PairResult]) -> set[tuple[str, str]]:
    return {(c.patient_id, c.ref) for r in results for c in r.cases}
