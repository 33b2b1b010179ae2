"""The normalisation tables (``plugin/normalize/tables/*.csv``) as SQL macros.

The flattening SQL (:mod:`plugin.population.flatten`) normalises exactly as the Python
converters do because it reads the same CSV files: each macro here is generated, when a
connection is set up, from the rows :func:`plugin.normalize.tables.read_table` returns, with
the matching conventions of ``plugin/normalize/README.md`` (``exact`` / ``contains`` /
``phrase`` / ``word`` on the stripped, upper-cased value; lowest ``ord`` wins). Nothing is
mapped here by hand: a row added to a table changes every engine at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from plugin.fhir.values import PLAUSIBLE_YEARS
from plugin.normalize.lookups import CHAIN
from plugin.normalize.tables import Row, read_table
from plugin.timeline.codes import ICD_SYSTEMS


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(lit(v) for v in sorted(set(values))) + ")"


def vlist(values: Iterable[str]) -> str:
    """A VARCHAR[] literal, order kept."""
    return "[" + ", ".join(lit(v) for v in values) + "]::VARCHAR[]"


def _hit(row: Row, norm: str) -> str:
    """``lookups._hits`` as SQL over the normalised text expression ``norm``."""
    match, value = row["match"], row["value"]
    if match in ("exact", "id", "type"):
        return f"{norm} = {lit(value)}"
    if match in ("contains", "phrase"):
        return f"strpos({norm}, {lit(value)}) > 0"
    if match == "word":
        return f"list_contains(regexp_extract_all({norm}, '[A-Z0-9]+'), {lit(value)})"
    return "FALSE"


def _ordered(table: str, **where: str) -> list[Row]:
    rows = [r for r in read_table(table) if all(r.get(k) == v for k, v in where.items())]
    return sorted(rows, key=lambda r: int(r["ord"]))


def _first_hit(rows: list[Row], norm: str, out: str, default: str = "NULL") -> str:
    if not rows:
        return default
    whens = " ".join(f"WHEN {_hit(r, norm)} THEN {lit(r[out])}" for r in rows)
    return f"CASE {whens} ELSE {default} END"


def _map(expr: str, pairs: Iterable[tuple[str, str]], default: str = "NULL") -> str:
    """A look-up of ``expr`` in a constant MAP (one hash probe, not a chain of WHENs)."""
    found = dict(pairs)  # a later row of a key wins, as in the Python dict comprehensions
    if not found:
        return default
    keys = ", ".join(lit(k) for k in found)
    values = ", ".join(lit(v) for v in found.values())
    return f"coalesce(MAP([{keys}], [{values}])[{expr}], {default})"


def _spellings(systems: dict[str, str]) -> list[tuple[str, str]]:
    """Raw URI spellings whose ``canon`` (lower-cased, trimmed, no scheme, no trailing
    slash) is a table key, with that key's system."""
    out = []
    for key, system in systems.items():
        if key != key.lower() or key != key.strip() or key.endswith("/"):
            continue
        out += [(f"{pre}{key}{post}", system)
                for pre in ("", "http://", "https://") for post in ("", "/")]  # fmt: skip
    return out


# The URIs most codings carry, tried by plain comparison first: a constant MAP probed inside
# a list lambda (as codings() does per coding) costs ~10x a short CASE. The systems they
# map to still come from the table.
_COMMON_URIS = (
    "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.nlm.nih.gov/research/umls/rxnorm", "http://www.ama-assn.org/go/cpt",
)  # fmt: skip


def _common(systems: dict[str, str]) -> str:
    spelled = dict(_spellings(systems))
    return " ".join(f"WHEN u = {lit(u)} THEN {lit(spelled[u])}" for u in _COMMON_URIS
                    if u in spelled)  # fmt: skip


def macros() -> list[str]:
    """``CREATE MACRO`` statements the flattening SQL uses."""
    systems = {r["uri"]: r["system"] for r in read_table("code_systems")}
    canon = "regexp_replace(lower(rtrim(trim(u), '/')), '^https?://', '')"
    out = [
        # FHIR date / dateTime / instant -> epoch microseconds UTC (plugin.fhir.values)
        "CREATE OR REPLACE MACRO fdt_raw(s) AS CASE "
        "WHEN s IS NULL OR s = '' THEN NULL "
        "WHEN length(s) = 4 THEN epoch_us(try_cast(s || '-01-01' AS TIMESTAMPTZ)) "
        "WHEN length(s) = 7 AND substr(s, 5, 1) = '-' "
        "THEN epoch_us(try_cast(s || '-01' AS TIMESTAMPTZ)) "
        "WHEN length(s) = 10 THEN epoch_us(try_cast(s AS TIMESTAMPTZ)) "
        "WHEN length(s) < 16 OR substr(s, 11, 1) <> 'T' THEN NULL "
        "ELSE epoch_us(try_cast(s AS TIMESTAMPTZ)) END",
        # placeholder / out-of-range years read as unknown, not as errors (plugin.fhir.values)
        f"CREATE OR REPLACE MACRO fdt(s) AS CASE WHEN try_cast(substr(s, 1, 4) AS INTEGER) "
        f"BETWEEN {PLAUSIBLE_YEARS.start} AND {PLAUSIBLE_YEARS.stop - 1} THEN fdt_raw(s) END",
        "CREATE OR REPLACE MACRO fbad(s) AS (s IS NOT NULL AND s <> '' AND fdt_raw(s) IS NULL)",
        # a period end before its start is dropped
        'CREATE OR REPLACE MACRO pend(p) AS CASE WHEN fdt(p."end") < fdt(p.start) THEN NULL '
        'ELSE fdt(p."end") END',
        # the URI exactly as a table row spells it (the common case) is one probe before
        # the regex canonicalisation: only spellings whose canonical form is the row's key
        f"CREATE OR REPLACE MACRO sysname(u) AS CASE WHEN u IS NULL OR u = '' THEN 'local:' "
        f"{_common(systems)} "
        f"ELSE coalesce({_map('u', _spellings(systems))}, {_map(canon, systems.items())}, "
        f"CASE WHEN u IN {in_list(systems.values())} THEN u END, 'local:' || trim(u)) END",
        f"CREATE OR REPLACE MACRO ncode(s, c) AS CASE WHEN s IN {in_list(ICD_SYSTEMS)} "
        f"THEN upper(replace(replace(trim(c), '.', ''), ' ', '')) ELSE trim(c) END",
        "CREATE OR REPLACE MACRO codings(cc) AS list_transform(list_transform("
        "list_filter(coalesce(cc.coding, []), lambda x: x.code IS NOT NULL AND x.code <> ''), "
        "lambda x: {'s': sysname(x.system), 'c': x.code, 'd': x.display}), "
        "lambda y: {'s': y.s, 'c': ncode(y.s, y.c), 'd': y.d})",
        "CREATE OR REPLACE MACRO first_code(cc) AS list_filter(coalesce(cc.coding, []), "
        "lambda x: x.code IS NOT NULL AND x.code <> '')[1].code",
    ]
    # the setting chain: one macro per link, then the first list value a link places
    for field in CHAIN:
        name = "sf_" + field.replace(".", "_")
        rows = _ordered("settings", field=field)
        out.append(
            f"CREATE OR REPLACE MACRO {name}(v) AS CASE WHEN v IS NULL OR trim(v) = '' "
            f"THEN NULL ELSE {_first_hit(rows, 'upper(trim(v))', 'setting')} END"
        )
    out.append(
        "CREATE OR REPLACE MACRO first_placed(l) AS list_filter(l, lambda x: x IS NOT NULL)[1]"
    )
    out.append(
        "CREATE OR REPLACE MACRO setting_chain(cc, cd, sn, lk, ad) AS coalesce("
        "sf_class_code(cc), sf_class_display(cd), "
        "first_placed(list_transform(sn, lambda v: sf_type_snomed(v))), "
        "first_placed(list_transform(sn, lambda v: sf_serviceType_snomed(v))), "
        "first_placed(list_transform(lk, lambda v: sf_location_kind(v))), "
        "sf_admitSource(ad), 'OTHER')"
    )
    # planned (lookups.is_planned)
    planned = _ordered("planned")
    exact_fields = []
    for field, param in (("priority", "pr"), ("class.code", "cl"), ("admitSource", "ad")):
        rows = [r for r in planned if r["field"] == field]
        hits = " OR ".join(_hit(r, "n") for r in rows) or "FALSE"
        fname = "pl_" + field.replace(".", "_")
        out.append(f"CREATE OR REPLACE MACRO {fname}_n(n) AS (n <> '' AND ({hits}))")
        exact_fields.append(f"{fname}_n(upper(trim(coalesce({param}, ''))))")
    words = [r for r in planned if r["field"] == "text" and r["match"] != "negate"]
    vetoes = [r["value"] for r in planned if r["field"] == "text" and r["match"] == "negate"]
    word_hit = " OR ".join(_hit(r, "upper(x)") for r in words) or "FALSE"
    veto = " OR ".join(f"strpos(upper(x), {lit(v)}) > 0" for v in vetoes) or "FALSE"
    out.append(f"CREATE OR REPLACE MACRO pl_text(x) AS (({word_hit}) AND NOT ({veto}))")
    out.append(
        "CREATE OR REPLACE MACRO is_planned(pr, cl, ad, texts) AS ("
        + " OR ".join(exact_fields)
        + " OR coalesce(list_bool_or(list_transform(texts, lambda x: pl_text(x))), FALSE))"
    )
    # admit source (lookups.admit_source_code)
    admits = [(r["value"], r["code"]) for r in read_table("admit_sources")]
    out.append(
        f"CREATE OR REPLACE MACRO admit_code(k) AS nullif(coalesce("
        f"{_map('lower(trim(k))', admits)}, lower(trim(k))), '')"
    )
    # discharge disposition (lookups.disposition_group)
    dispo = _ordered("dispositions")
    exact = [(r["value"], r["group"]) for r in dispo if r["match"] == "exact"]
    others = [r for r in dispo if r["match"] != "exact"]
    out += [
        "CREATE OR REPLACE MACRO dkey(k0) AS CASE WHEN regexp_full_match(trim(k0), '[0-9]') "
        "THEN '0' || trim(k0) ELSE trim(k0) END",
        f"CREATE OR REPLACE MACRO dispo_k(k) AS coalesce({_map('k', exact)}, "
        f"{_map('lower(k)', exact)}, {_first_hit(others, 'upper(k)', 'group', lit('other'))})",
        "CREATE OR REPLACE MACRO dispo(k0) AS CASE WHEN k0 IS NULL THEN NULL "
        "ELSE dispo_k(dkey(k0)) END",
    ]
    # location kind (lookups.location_kind): type codes, then the id, then the name
    locs = _ordered("locations")
    types: dict[str, str] = {}
    for r in locs:  # the first type row of a code wins (lookups.location_kind: next(...))
        if r["match"] == "type":
            types.setdefault(r["value"], r["kind"])
    ids = [(r["value"], r["kind"]) for r in locs if r["match"] == "id"]
    names = [r for r in locs if r["match"] in ("word", "phrase")]
    out += [
        f"CREATE OR REPLACE MACRO loc_type(t) AS {_map('upper(trim(t))', types.items())}",
        f"CREATE OR REPLACE MACRO loc_id(k) AS CASE WHEN k IS NULL THEN NULL ELSE "
        f"{_map('lower(trim(string_split(k, chr(47))[-1]))', ids)} END",
        f"CREATE OR REPLACE MACRO loc_name(n) AS "
        f"{_first_hit(names, 'upper(n)', 'kind', lit('other'))}",
        "CREATE OR REPLACE MACRO loc_kind(types, name, k) AS coalesce("
        "first_placed(list_transform(types, lambda t: loc_type(t))), loc_id(k), loc_name(name))",
    ]
    # qualitative answers (lookups.qualitative): coded (system, code) and text
    qual = read_table("qualitative")
    coded = [(f"{r['system']}|{r['value']}", r["meaning"]) for r in qual if r["system"] != "text"]
    texts = [(r["value"], r["meaning"]) for r in qual if r["system"] == "text"]
    trimmed = "rtrim(text_key(v), '.')"
    out += [
        f"CREATE OR REPLACE MACRO qual_coded(s, c) AS coalesce("
        f"{_map('s || chr(124) || trim(c)', coded)}, "
        f"{_map('s || chr(124) || upper(trim(c))', coded)})",
        "CREATE OR REPLACE MACRO text_key(v) AS array_to_string(list_filter(string_split_regex("
        "rtrim(lower(trim(v)), '.!'), '\\s+'), lambda w: w <> ''), ' ')",
        f"CREATE OR REPLACE MACRO qual_text(v) AS coalesce({_map('text_key(v)', texts)}, "
        f"{_map(trimmed, texts)})",
    ]
    # interpretation codes (lookups.interpretation) and the range test of results.judge
    interp = read_table("interpretations")
    out += [
        f"CREATE OR REPLACE MACRO interp_flag(c) AS "
        f"{_map('upper(trim(c))', [(r['code'], r['flag']) for r in interp if r['flag']])}",
        f"CREATE OR REPLACE MACRO interp_pos(c) AS "
        f"{_map('upper(trim(c))', [(r['code'], r['positive']) for r in interp if r['positive']])}",
        # results.compare for one side: a value with a comparator is an interval
        "CREATE OR REPLACE MACRO cmp_gt(v, c, n) AS CASE WHEN c IS NULL THEN v > n "
        "WHEN c = '>=' THEN v > n WHEN c = '>' THEN v >= n ELSE FALSE END",
        "CREATE OR REPLACE MACRO cmp_lt(v, c, n) AS CASE WHEN c IS NULL THEN v < n "
        "WHEN c = '<=' THEN v < n WHEN c = '<' THEN v <= n ELSE FALSE END",
        "CREATE OR REPLACE MACRO cmp_ge(v, c, n) AS CASE WHEN c IS NULL THEN v >= n "
        "WHEN c IN ('>', '>=') THEN v >= n ELSE FALSE END",
        "CREATE OR REPLACE MACRO cmp_le(v, c, n) AS CASE WHEN c IS NULL THEN v <= n "
        "WHEN c IN ('<', '<=') THEN v <= n ELSE FALSE END",
        "CREATE OR REPLACE MACRO by_range(v, c, lo, hi) AS CASE "
        "WHEN v IS NULL OR (lo IS NULL AND hi IS NULL) THEN NULL "
        "WHEN hi IS NOT NULL AND cmp_gt(v, c, hi) THEN 'high' "
        "WHEN lo IS NOT NULL AND cmp_lt(v, c, lo) THEN 'low' "
        "WHEN (lo IS NULL OR cmp_ge(v, c, lo)) AND (hi IS NULL OR cmp_le(v, c, hi)) "
        "THEN 'normal' END",
        "CREATE OR REPLACE MACRO meaning_bool(m) AS CASE m WHEN 'positive' THEN TRUE "
        "WHEN 'negative' THEN FALSE END",
    ]
    return out
