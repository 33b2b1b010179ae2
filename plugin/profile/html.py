"""The profile as one self-contained HTML page for a quality officer: two charts (inline SVG,
drawn with matplotlib's object API so no global pyplot state is touched), the fields table with
the top unmapped values, and the rules table saying which rules the source can evaluate."""

from __future__ import annotations

import io
from html import escape
from typing import Any

from matplotlib.figure import Figure

from plugin.profile.measure import Profile

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2433;max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #d7dce4;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f4f8}.num{text-align:right}.bad{color:#a4161a;font-weight:600}
.ok{color:#2b7a0b}.warn{color:#9a6700}.charts{display:flex;flex-wrap:wrap;gap:1rem}
.charts figure{margin:0}figcaption{font-size:.85rem;color:#555}code{font-size:.85rem}
"""


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def coverage_chart(p: Profile) -> str:
    fields = [f for f in p.fields.values() if f.total]
    fig = Figure(figsize=(6.5, 0.45 * max(len(fields), 2) + 0.8))
    ax = fig.subplots()
    names = [f.name for f in fields]
    shares = [100 * (f.share or 0.0) for f in fields]
    colors = ["#2b7a0b" if s >= 95 else "#d08c00" if s >= 80 else "#a4161a" for s in shares]
    ax.barh(names, shares, color=colors)
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("% of records mapped")
    for i, s in enumerate(shares):
        ax.text(min(s + 1, 88), i, f"{s:.0f}%", va="center", fontsize=8)
    return _svg(fig)


def period_chart(p: Profile) -> str:
    fig = Figure(figsize=(6.5, 3.2))
    ax = fig.subplots()
    for kind, counts in sorted(p.by_year.items()):
        years = sorted(counts)
        ax.plot(years, [counts[y] for y in years], marker="o", markersize=3, label=kind)
    ax.set_ylabel("records")
    ax.set_xlabel("year")
    if p.by_year:
        ax.legend(fontsize=7, ncol=2)
    return _svg(fig)


def _field_rows(p: Profile) -> str:
    rows = []
    for f in p.fields.values():
        share = f.share
        cls = (
            "ok"
            if share is not None and share >= 0.95
            else "bad"
            if share is not None and share < 0.8
            else "warn"
        )
        top = "<br>".join(
            f"<code>{escape(v)}</code> × {n} (e.g. <code>{escape(f.examples[v])}</code>)"
            for v, n in f.unmapped.most_common(5)
        )
        pct = "—" if share is None else f"{100 * share:.1f}%"
        rows.append(
            f"<tr><td>{escape(f.name)}</td><td class=num>{f.total}</td>"
            f"<td class='num {cls}'>{pct}</td><td>{top or '—'}</td></tr>"
        )
    return "\n".join(rows)


def _rule_rows(p: Profile) -> str:
    rows = []
    for r in p.rules:
        inputs = ", ".join(f"{n} {escape(k)}" for k, n in r["inputs"].items())
        if not r["evaluated"]:
            state = "<span class=bad>not evaluated</span>"
        elif r["data_gap"]:
            state = "<span class=warn>findings marked data gap</span>"
        else:
            state = "<span class=ok>evaluated</span>"
        why = escape(r["data_gap"] or "")
        missing = ", ".join(f"0 {escape(k)}" for k in r["missing"])
        rows.append(
            f"<tr><td>{escape(r['trigger'] or '')}</td><td>{escape(r['title'])}</td>"
            f"<td>{inputs}</td><td class=bad>{missing}</td><td>{state}<br><small>{why}</small>"
            "</td></tr>"
        )
    return "\n".join(rows)


def _partial(p: Profile) -> str:
    periods = p.partial_periods()
    if not periods:
        return ""
    items = "".join(
        f"<li><strong>{escape(kind)}</strong>: none in {', '.join(map(str, years))}</li>"
        for kind, years in periods.items()
    )
    return (
        "<h2>Kinds held only for some periods</h2><p>Years in which the source holds records "
        "but none of this kind: absence rules there see missing data, not missing care.</p>"
        f"<ul id=partial>{items}</ul>"
    )


def render_html(p: Profile) -> str:
    data: dict[str, Any] = p.as_json()
    resources = ", ".join(f"{n} {escape(t)}" for t, n in data["resources"].items())
    not_evaluated = sum(1 for r in p.rules if not r["evaluated"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dxsafety data profile</title>
<style>{CSS}</style></head><body>
<h1>Data profile: {escape(p.source)}</h1>
<p id="summary">{p.patients} patients; {resources or "no resources"}; {p.skipped} skipped.
<strong>{not_evaluated}</strong> rule(s) cannot be evaluated on this source.</p>
<div class="charts">
<figure id="coverage-chart">{coverage_chart(p)}<figcaption>Share of records whose field maps
to what the rules read</figcaption></figure>
<figure id="period-chart">{period_chart(p)}<figcaption>Records per kind per year: a kind held
only for some periods shows as a gap</figcaption></figure>
</div>
{_partial(p)}
<h2>Fields the rules read</h2>
<table id="fields"><tr><th>field</th><th class=num>records</th><th class=num>mapped</th>
<th>top unmapped values (count, example reference)</th></tr>
{_field_rows(p)}
</table>
<h2>Rules and their inputs</h2>
<table id="rules"><tr><th>trigger</th><th>rule</th><th>records of the kinds it reads</th>
<th>missing</th><th>can it be evaluated?</th></tr>
{_rule_rows(p)}
</table>
</body></html>
"""
