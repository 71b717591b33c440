"""Serialisation of an IEResult: its dict/JSON form (estimates plus a derived summary) and a long-format CSV.

Functions take any IEResult (this module does not import `ie_jax.results`, which imports it); `fields_from_dict`
returns the constructor's keyword arguments so that `IEResult.from_dict` builds the object.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from ie_jax.ie_arithmetic import INDEPENDENCE_NOTE
from ie_jax.ie_flags import ceiling, estimate_flags
from ie_jax.jsonio import dumps, jsonable
from ie_jax.mi.result import MIEstimate

FORMAT = "ie_jax.IEResult/1"
CSV_COLUMNS = ["setting", "quantity", "layer", "position", "value", "stderr", "ci95_low", "ci95_high", "ceiling",
               "flags", "units", "bound", "bound_value"]


def summary(r) -> dict[str, Any]:
    """Derived numbers of every setting, for humans and reports (recomputable from the estimates)."""
    out = []
    for i in range(len(r.settings)):
        s = r.select(i)
        row = {
            "setting": s.setting, "layers": list(s.layers), "ie": s.ie, "ie_stderr": s.ie_stderr,
            "ie_ci95": s.ie_ci, "ie_measured": s.ie_measured, "ie_bound": s.ie_bound,
            "ie_bound_value": s.ie_bound_value, "ie_reason": s.ie_reason, "mi_macro": s.mi_macro, "mi_macro_ci95": s.mi_macro_ci,
            "mi_macro_ceiling": s.mi_macro_ceiling, "mi_micro": s.mi_micro, "mi_micro_mean": s.mi_micro_mean,
            "ie_flags": s.ie_flags, "totals": s.totals,
        }
        if s.has_token_curve:
            row["token_curve"] = s.token_curve
            row["token_curve_ci95"] = s.token_curve_ci
        out.append(jsonable(row))
    return {"units": r.units, "note": INDEPENDENCE_NOTE, "settings": out}


def to_dict(r) -> dict[str, Any]:
    dump = lambda grid: [[[e.to_dict() for e in row] for row in s] for s in grid]
    return {
        "format": FORMAT, "units": r.units, "layers": list(r.layers), "seq_len": r.seq_len,
        "micro": r.micro_mode, "settings": list(r.settings),
        "context_positions": list(r.context_positions), "metadata": jsonable(r.metadata),
        "summary": summary(r),
        "estimates": {"context": dump(r.context), "micro": None if r.micro is None else dump(r.micro)},
    }


def to_json(r) -> str:
    """Strict JSON text (NaN written as null)."""
    return dumps(to_dict(r))


def fields_from_dict(d: dict[str, Any]) -> dict[str, Any]:
    """IEResult constructor arguments from `to_dict`'s output (nulls read back as NaN)."""
    if d.get("format") != FORMAT:
        raise ValueError(f"not an IEResult file (format {d.get('format')!r}, expected {FORMAT!r})")
    load = lambda grid: tuple(tuple(tuple(_estimate(e) for e in row) for row in s) for s in grid)
    est = d["estimates"]
    return dict(layers=tuple(d["layers"]), seq_len=d["seq_len"], micro_mode=d["micro"],
                settings=tuple(d["settings"]), context_positions=tuple(d["context_positions"]),
                context=load(est["context"]), micro=None if est["micro"] is None else load(est["micro"]),
                units=d["units"], metadata=d.get("metadata", {}),
                selected=int(d.get("metadata", {}).get("selected_setting", {}).get("index", 0)))


def to_csv(r) -> str:
    """One row per number: setting, quantity (ie | mi_macro | mi_micro | token_curve | ie_<total>), layer,
    position, value, stderr, ci95_low, ci95_high, ceiling, flags, units, bound, bound_value. An IE that is not a
    measurement has an empty value; bound says "lower", "upper" or "none", bound_value the bound's value; a
    total counts the measured layers only (flags: "layers=M/L")."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for i in range(len(r.settings)):
        s = r.select(i)
        ie, ie_se, ie_ci, flags = s.ie, s.ie_stderr, s.ie_ci, s.ie_flags
        bound_value = s.ie_bound_value
        for l, layer in enumerate(s.layers):
            measured = flags[l]["ie_measured"]
            w.writerow([s.setting, "ie", layer, "", *_blank_nan(ie[l], ie_se[l], *ie_ci[l]), flags[l]["ie_ceiling"],
                        "|".join(flags[l]["flags"]), s.units, "" if measured else (flags[l]["ie_bound"] or "none"),
                        "" if measured else _blank_nan(bound_value[l])[0]])
            w.writerow(_estimate_row(s, "mi_macro", layer, s.seq_len - 1, s.macro_estimates()[l]))
            for t, e in enumerate(s.micro_estimates()[l]):
                w.writerow(_estimate_row(s, "mi_micro", layer, t, e))
            if s.has_token_curve:
                for t, (v, (lo, hi)) in enumerate(zip(s.token_curve[l], s.token_curve_ci[l])):
                    w.writerow([s.setting, "token_curve", layer, t, *_blank_nan(v), "", *_blank_nan(lo, hi), "", "",
                                s.units, "", ""])
        for name, tot in s.totals.items():
            w.writerow([s.setting, f"ie_{name}", "", "", *_blank_nan(tot["value"], tot["stderr"], *tot["ci95"]), "",
                        f"layers={tot['n_layers_measured']}/{tot['n_layers']}", s.units, "", ""])
    return buf.getvalue()


def _estimate_row(r, quantity, layer, position, e: MIEstimate) -> list:
    return [r.setting, quantity, layer, position, e.value, e.stderr, *e.ci95, ceiling(e.diagnostics, r.units),
            "|".join(estimate_flags(e.diagnostics)), r.units, "", ""]


def _blank_nan(*values) -> list:
    """Numbers for a CSV cell: NaN (no measurement) as an empty cell."""
    return ["" if isinstance(v, float) and math.isnan(v) else v for v in (float(x) for x in values)]


def _estimate(d: dict) -> MIEstimate:
    f = lambda x: math.nan if x is None else x
    return MIEstimate(value=f(d["value"]), stderr=f(d["stderr"]), ci95=(f(d["ci95"][0]), f(d["ci95"][1])),
                      units=d["units"], estimator=d["estimator"], diagnostics=dict(d.get("diagnostics", {})))
