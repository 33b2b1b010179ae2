"""SPADE on a large synthetic population with a planted excess (issue 16).

    .venv/bin/python bench/spade_bench.py --patients 50000 --cohort 50000 --out var/spade

writes ``--patients`` background patients (``dxsafety synth``) plus a dizziness → stroke cohort
of ``--cohort`` index visits with 25 excess strokes per 10,000 planted, runs ``dxsafety
measure spade`` over all of it (per-patient engine), prints the figures and timings, and
screenshots the report in Chromium into test-artifacts/screenshots/. The floor for the ratio
is the time to read the same files once (staging), measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson

from plugin.cli import main


def _timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    code = main(argv)
    if code not in (0,):
        raise SystemExit(f"{argv[0]} exited {code}")
    return time.perf_counter() - t0


def _stage_only(src: Path) -> float:
    from plugin.fhir.read import ReadReport
    from plugin.fhir.stage import iter_timelines

    t0 = time.perf_counter()
    for _ in iter_timelines([src], report=ReadReport()):
        pass
    return time.perf_counter() - t0


def _duckdb(src: Path, html: Path, js: Path) -> tuple[float, float]:
    """(flatten seconds, SPADE seconds on the flattened tables); writes the report."""
    from plugin.measure import report as rpt
    from plugin.measure.pairs import load_pairs
    from plugin.measure.sql import measure_duckdb
    from plugin.population.flatten import connect, flatten

    # bounded memory (the machine is shared); DuckDB spills to disk beyond it
    con = connect(memory_limit="3GB", temp_dir=src.parent / "duckdb-tmp")
    t0 = time.perf_counter()
    flatten(con, [src])
    t1 = time.perf_counter()
    rep = measure_duckdb(con, load_pairs(), source=str(src))
    t2 = time.perf_counter()
    js.write_bytes(orjson.dumps(rpt.to_json(rep), option=orjson.OPT_INDENT_2))
    html.write_text(rpt.to_html(rep), encoding="utf-8")
    return t1 - t0, t2 - t1


def _screens(html: Path, shots: Path, tag: str) -> None:
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium",
                              args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = b.new_page(viewport={"width": 1100, "height": 1400})
        page.goto(html.as_uri())
        page.screenshot(path=str(shots / f"spade-{tag}-01-top.png"))
        page.locator("#dizziness_stroke").scroll_into_view_if_needed()
        page.evaluate("document.getElementById('dizziness_stroke').scrollIntoView()")
        page.screenshot(path=str(shots / f"spade-{tag}-02-dizziness.png"))
        page.evaluate("window.scrollBy(0, 1300)")
        page.screenshot(path=str(shots / f"spade-{tag}-03-dizziness-funnel.png"))
        page.evaluate("document.getElementById('lookback').scrollIntoView()")
        page.screenshot(path=str(shots / f"spade-{tag}-04-lookback.png"))
        b.close()


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=50_000)
    ap.add_argument("--cohort", type=int, default=50_000)
    ap.add_argument("--excess", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("var/spade"))
    ap.add_argument("--source", type=Path, default=None, help="measure this instead (MIMIC)")
    ap.add_argument("--tag", default="100k")
    ap.add_argument("--engine", choices=("python", "duckdb"), default="python")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.source or args.out / "pop"
    if args.source is None and not (src / "labels.csv").exists():
        secs = _timed(["synth", "--patients", str(args.patients), "--seed", str(args.seed),
                       "--out", str(src), "--spade-excess", f"dizziness_stroke:{args.excess:g}",
                       "--spade-cohort", str(args.cohort)])
        print(f"synth: {secs:.1f} s")
    html, js = args.out / f"spade-{args.tag}.html", args.out / f"spade-{args.tag}.json"
    if args.engine == "duckdb":
        floor, secs = _duckdb(src, html, js)
        print(f"engine duckdb: staging (flatten) {floor:.1f} s; SPADE after staging {secs:.1f} s "
              f"(ratio {secs / floor:.2f} x staging)")
    else:
        floor = _stage_only(src)
        try:
            secs = _timed(["measure", "spade", str(src), "--html", str(html), "--json", str(js)])
        except SystemExit as exc:  # a partial read still writes the report; say so
            print(f"measure: {exc}")
            secs = float("nan")
        print(f"engine python: staging only {floor:.1f} s; measure (staging included) "
              f"{secs:.1f} s (ratio {secs / floor:.2f} x staging)")
    data = orjson.loads(js.read_bytes())
    print(f"patients {data['patients']:,}")
    for p in data["pairs"]:
        print(f"  {p['id']:30s} n={p['n']:7,d} O={p['observed']:5d} E={p['expected']:8.1f} "
              f"excess/10k={p['excess_per_10k']:7.1f} CI {p['ci95']}")
    if args.source is None:
        print(f"  planted: {args.excess:g} per 10,000 on dizziness_stroke")
    _screens(html, Path("test-artifacts/screenshots"), args.tag)


if __name__ == "__main__":
    run()
