"""The IE result: the MI estimates of one run and what is read from them (IE, E(t), totals, bounds, flags).

`IEResult` is data (the estimates, per setting, layer and position) plus read-only views of it. This module also
holds what those views are made of:
- arithmetic: IE and E(t) as linear combinations of MI estimates with stderr and 95% interval carried
  (IE(l) = MI_macro(l) - (1/T) sum_t MI_micro_t(l), E_l(t) = MI_context_l(t) - (1/(t+1)) sum_{s<=t} MI_micro_l(s),
  MI_context_l(t) the MI at position t of the full-context pass, MI_macro its last position; with
  micro="in_context" MI_micro_l(t) is MI_context_l(t), so E(0) = 0). Errors combine in quadrature ASSUMING
  INDEPENDENT ESTIMATES (they share samples: an approximation); an estimate that appears twice enters once with
  its summed weight;
- the flag policy: which MI flags become a layer's IE flags, and when an IE is a number at all (`ie_status`:
  only where both terms are measurements; else a lower or upper bound, or nothing);
- serialisation: result.json (estimates plus a derived summary, NaN as null) and a long-format CSV.
Figures and the HTML page are `ie_jax.paper.report`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import pathlib
from typing import Any

import numpy as np

from ie_jax.fileio import atomic_write_text, describe_error, dumps, jsonable, read_json
from ie_jax.mi.result import LOWER_BOUND_FLAGS, MIEstimate, bound_kind, convert

# -- arithmetic ------------------------------------------------------------------------------------------------------

INDEPENDENCE_NOTE = ("stderr and 95% CI of IE, E(t) and totals combine the MI estimates' errors in quadrature, "
                     "assuming the estimates are independent (they share samples: an approximation)")


def linear_combination(weights, values, stderrs, ci_low, ci_high):
    """q = sum_k w_k v_k with stderr and 95% interval carried from independent estimates.

    weights: [..., K] (broadcast against the others); values, stderrs, ci_low, ci_high: [..., K].
    Returns (value, stderr, low, high) with the leading shape. Half-widths: a positive weight takes the
    estimate's lower half-width into the result's lower one, a negative weight its upper half-width.
    """
    w = np.asarray(weights, dtype=np.float64)
    v, se = np.asarray(values, np.float64), np.asarray(stderrs, np.float64)
    down, up = v - np.asarray(ci_low, np.float64), np.asarray(ci_high, np.float64) - v
    # Zero-weight terms must not turn a finite result into NaN (0 * NaN).
    used = w != 0
    sq = lambda a: np.where(used, (w * a) ** 2, 0.0)
    q = np.where(used, w * v, 0.0).sum(-1)
    stderr = np.sqrt(sq(se).sum(-1))
    low = q - np.sqrt(np.where(w > 0, sq(down), sq(up)).sum(-1))
    high = q + np.sqrt(np.where(w > 0, sq(up), sq(down)).sum(-1))
    return q, stderr, low, high


def ie_weights(seq_len: int, micro: str) -> tuple[np.ndarray, np.ndarray]:
    """Weights over one layer's distinct estimates [context_0..T-1, micro_0..T-1] (in_context: context only).

    Returns (w_ie[K], w_curve[T, K]) for IE and E(t); K = 2T (isolated) or T (in_context).
    """
    T = seq_len
    if micro == "in_context":
        w_curve = np.zeros((T, T))
        for t in range(T):
            w_curve[t, : t + 1] -= 1.0 / (t + 1)
            w_curve[t, t] += 1.0
        return w_curve[T - 1], w_curve
    w_curve = np.zeros((T, 2 * T))
    for t in range(T):
        w_curve[t, t] = 1.0
        w_curve[t, T : T + t + 1] = -1.0 / (t + 1)
    return w_curve[T - 1], w_curve


def estimate_arrays(rows):
    """Nested [L][K] MIEstimate -> (values, stderrs, low, high) float arrays [L, K]."""
    v = np.array([[e.value for e in r] for r in rows], dtype=np.float64)
    se = np.array([[e.stderr for e in r] for r in rows], dtype=np.float64)
    lo = np.array([[e.ci95[0] for e in r] for r in rows], dtype=np.float64)
    hi = np.array([[e.ci95[1] for e in r] for r in rows], dtype=np.float64)
    return v, se, lo, hi

# -- flag policy -----------------------------------------------------------------------------------------------------

ESTIMATE_FLAGS = ("saturated", *LOWER_BOUND_FLAGS, "constant", "above_ceiling", "still_increasing", "no_interval",
                  "unverified", "sample_specific", "estimator_defined")
IE_FLAGS = ("macro_saturated", "micro_saturated", "macro_lower_bound", "micro_lower_bound", "macro_constant",
            "above_ceiling", "still_increasing", "no_interval", "unverified", "sample_specific", "estimator_defined")


def ceiling(diagnostics: dict, units: str) -> float:
    """The estimate's smallest ceiling (stored in nats) in `units`; NaN where none was computed."""
    c = diagnostics.get("ceiling_nats")
    return math.nan if c is None else float(convert(float(c), "nats", units))


def is_lower_bound(diagnostics: dict) -> bool:
    """A neural estimate flagged as a lower bound for a reason other than saturation (LOWER_BOUND_FLAGS)."""
    return any(bool(diagnostics.get(k, False)) for k in LOWER_BOUND_FLAGS)


def estimate_flags(diagnostics: dict) -> list[str]:
    """Names of the flags an MI estimate's diagnostics raise, in `ESTIMATE_FLAGS` order."""
    return [k for k in ESTIMATE_FLAGS if diagnostics.get(k)]


def layer_flags(macro: dict, micro: list[dict], micro_mean: float, units: str) -> dict[str, Any]:
    """One layer's IE ceiling (macro ceiling - mean micro) and flags from its macro and micro diagnostics.

    macro_saturated: MI_macro is a lower bound only, so IE may be larger; micro_saturated: some micro MI is a
    lower bound only, so IE may be smaller; macro_constant: a macro variable is constant (MI exactly 0);
    above_ceiling: an MI estimate exceeds what the sample can support (an estimator artefact);
    macro_lower_bound / micro_lower_bound: a neural estimate is flagged as a lower bound for another reason
    (LOWER_BOUND_FLAGS: more samples or another critic would raise it), so IE may be larger / smaller;
    no_interval: an estimate had no spread to give a CI (its note says what would).
    """
    both = [macro, *micro]
    flags = {
        "ie_ceiling": ceiling(macro, units) - micro_mean,
        "macro_saturated": bool(macro.get("saturated", False)),
        "micro_saturated": any(bool(d.get("saturated", False)) for d in micro),
        "macro_lower_bound": is_lower_bound(macro),
        "micro_lower_bound": any(is_lower_bound(d) for d in micro),
        "macro_constant": bool(macro.get("constant", False)),
        "above_ceiling": any(bool(d.get("above_ceiling", False)) for d in both),
        "still_increasing": any(bool(d.get("still_increasing", False)) for d in both),
        # a neural estimate without a spread (one held-out batch of one seed): the IE has no CI either
        "no_interval": any(bool(d.get("no_interval", False)) for d in both),
        "unverified": any(bool(d.get("unverified", False)) for d in both),
        "sample_specific": any(bool(d.get("sample_specific", False)) for d in both),
        "estimator_defined": any(bool(d.get("estimator_defined", False)) for d in both),
    }
    flags["flags"] = [k for k in IE_FLAGS if flags[k]]
    return {**flags, **ie_status(macro, micro)}


def _why(diagnostics: dict) -> str:
    names = [k for k in ESTIMATE_FLAGS if diagnostics.get(k) and k not in ("constant", "no_interval")]
    return ", ".join(names) or "measured"


def ie_status(macro: dict, micro: list[dict]) -> dict[str, Any]:
    """Whether a layer's IE is a measurement: ie_measured (both terms measured), ie_bound ("lower", "upper" or
    None where it is not a measurement) and ie_reason (None when measured; else which terms are what)."""
    kinds = [bound_kind(macro), *(bound_kind(d) for d in micro)]
    macro_kind, micro_kinds = kinds[0], kinds[1:]
    if all(k == "measured" for k in kinds):
        return {"ie_measured": True, "ie_bound": None, "ie_reason": None}
    odd = [f"micro t={t} ({_why(d)})" for t, (d, k) in enumerate(zip(micro, micro_kinds)) if k != "measured"]
    parts = ([] if macro_kind == "measured" else [f"macro ({_why(macro)})"]) + odd
    if None in kinds:
        bound, why = None, "no bound: a term is neither a measurement nor a lower bound"
    elif macro_kind == "lower" and all(k == "measured" for k in micro_kinds):
        bound, why = "lower", "a lower bound: the macro MI is one, the micro MIs are measured"
    elif macro_kind == "measured":
        bound, why = "upper", "an upper bound: a micro MI is a lower bound, the macro MI is measured"
    else:
        bound, why = None, "no bound: the macro and a micro MI are both lower bounds"
    return {"ie_measured": False, "ie_bound": bound, "ie_reason": f"{why}; not measured: {'; '.join(parts)}"}

# -- the result ------------------------------------------------------------------------------------------------------

def _part(method: str, index: int, doc: str) -> property:
    """A read-only view: element `index` of (value, stderr, ci) returned by the method named `method`."""
    return property(lambda self: getattr(self, method)()[index], doc=doc)


@dataclasses.dataclass(frozen=True)
class IEResult:
    """Per-layer IE for one model and data set, for S estimator settings (S > 1: a sigma grid).

    context: [S][L][P] MIEstimate, block input vs output at `context_positions` of the full-context pass
    (P = T with the token curve, else 1: the last position, the macro variable).
    micro: [S][L][T] MIEstimate for tokens processed alone; None when micro == "in_context".
    Properties give the `selected` setting (see `select`); arrays are in `units`.
    """

    layers: tuple[int, ...]
    seq_len: int
    micro_mode: str
    settings: tuple[str, ...]
    context_positions: tuple[int, ...]
    context: tuple
    micro: tuple | None
    units: str = "nats"
    metadata: dict = dataclasses.field(default_factory=dict)
    selected: int = 0

    def __post_init__(self):
        if self.micro_mode not in ("isolated", "in_context"):
            raise ValueError(f"micro must be 'isolated' or 'in_context', got {self.micro_mode!r}")
        if self.context_positions[-1] != self.seq_len - 1:
            raise ValueError("the last context position must be T-1: it is the macro variable")
        if self.micro_mode == "isolated" and self.micro is None:
            raise ValueError("isolated micro needs micro estimates")

    # -- selection -------------------------------------------------------------------------------------------
    def select(self, index: int | None = None, *, sigma: float | None = None) -> "IEResult":
        """The same result with another estimator setting selected (by index or by noise sigma)."""
        if sigma is not None:
            sigmas = [p.get("sigma") for p in self.metadata.get("setting_params", [])]
            matches = [i for i, s in enumerate(sigmas) if s is not None and math.isclose(s, sigma)]
            if not matches:
                raise ValueError(f"sigma {sigma} not in this result's settings {self.settings}")
            index = matches[0]
        if index is None or not 0 <= index < len(self.settings):
            raise ValueError(f"setting index must be in [0, {len(self.settings)}), got {index}")
        return dataclasses.replace(self, selected=index)

    @property
    def setting(self) -> str:
        return self.settings[self.selected]

    # -- estimates as arrays ---------------------------------------------------------------------------------
    def macro_estimates(self) -> list[MIEstimate]:
        """[L] the macro estimate (last position of the full-context pass) of every layer."""
        return [r[-1] for r in self.context[self.selected]]

    def micro_estimates(self) -> list[list[MIEstimate]]:
        """[L][T] micro estimates; in_context: the context estimates at every position."""
        if self.micro_mode == "in_context":
            if len(self.context_positions) != self.seq_len:
                raise ValueError("in_context micro needs the context estimates at every position")
            return self.context[self.selected]
        return self.micro[self.selected]

    def _rows(self) -> list[list[MIEstimate]]:
        """Per layer the distinct estimates [L][K], K as in `ie_weights` (missing context positions: NaN)."""
        ctx = self.context[self.selected]
        if self.micro_mode == "in_context":
            return [list(r) for r in ctx]
        T = self.seq_len
        nan = MIEstimate(math.nan, math.nan, (math.nan, math.nan), self.units, "missing")
        # Context rows padded to all T positions so the weights of `ie_weights` apply (missing ones get 0).
        rows = []
        for l, row in enumerate(ctx):
            full = [nan] * T
            for p, e in zip(self.context_positions, row):
                full[p] = e
            rows.append(full + list(self.micro[self.selected][l]))
        return rows

    def _combine(self, w, *, measured_only: bool = True):
        """w: [K] (one number per layer) or [T, K] (one per layer and position). measured_only: NaN wherever a
        term with a nonzero weight is not a measurement (`ie_jax.mi.result.bound_kind`)."""
        rows = self._rows()
        arrays = estimate_arrays(rows)
        measured = np.array([[e.estimator == "missing" or bound_kind(e.diagnostics) == "measured" for e in r]
                             for r in rows])
        if np.ndim(w) == 2:
            arrays, measured = [a[:, None, :] for a in arrays], measured[:, None, :]
        out = linear_combination(w, *arrays)
        if measured_only:
            ok = np.all(measured | (np.asarray(w) == 0), axis=-1)
            out = tuple(np.where(ok, a, np.nan) for a in out)
        return _with_ci(*out)

    def _macro(self):
        return _with_ci(*(a[:, 0] for a in estimate_arrays([[e] for e in self.macro_estimates()])))

    def _micro(self):
        return _with_ci(*estimate_arrays(self.micro_estimates()))

    def _ie(self):
        return self._combine(ie_weights(self.seq_len, self.micro_mode)[0])

    def _ie_unmeasured(self):
        return self._combine(ie_weights(self.seq_len, self.micro_mode)[0], measured_only=False)

    def _curve(self):
        if not self.has_token_curve:
            raise ValueError("this result has no token curve: measure with token_curve=True")
        return self._combine(ie_weights(self.seq_len, self.micro_mode)[1])

    # Each quantity Q comes as Q (values), Q_stderr and Q_ci (95% interval, a last axis [low, high]).
    mi_macro = _part("_macro", 0, "[L] MI between block input and output of the last token with its whole context.")
    mi_macro_stderr = _part("_macro", 1, "[L] standard error of `mi_macro`.")
    mi_macro_ci = _part("_macro", 2, "[L, 2] 95% interval of `mi_macro`.")
    mi_micro = _part("_micro", 0, "[L, T] MI between block input and output of token t processed alone (or in "
                                  "context).")
    mi_micro_stderr = _part("_micro", 1, "[L, T] standard errors of `mi_micro`.")
    mi_micro_ci = _part("_micro", 2, "[L, T, 2] 95% intervals of `mi_micro`.")
    ie = _part("_ie", 0, "[L] IE(l) = MI_macro(l) - mean_t MI_micro_t(l); NaN where a term is not a measurement "
                         "(see `ie_bound`).")
    ie_stderr = _part("_ie", 1, "[L] standard error of `ie`.")
    ie_ci = _part("_ie", 2, "[L, 2] 95% interval of IE (independence assumed, see the arithmetic above).")
    token_curve = _part("_curve", 0, "[L, T] E_l(t) = MI_context_l(t) - mean_{s<=t} MI_micro_l(s); NaN where a "
                                     "term is not a measurement.")
    token_curve_ci = _part("_curve", 2, "[L, T, 2] 95% intervals of `token_curve`.")

    @property
    def ie_measured(self) -> np.ndarray:
        """[L] bool: both terms of the layer's IE are measurements, so `ie` holds a number."""
        return np.array([f["ie_measured"] for f in self.ie_flags])

    @property
    def ie_bound(self) -> list[str | None]:
        """[L] "lower" or "upper" where IE is not measured but bounded by `ie_bound_value`, else None."""
        return [f["ie_bound"] for f in self.ie_flags]

    @property
    def ie_bound_value(self) -> np.ndarray:
        """[L] macro - mean micro where that is a lower or upper bound on IE (`ie_bound`), NaN elsewhere."""
        raw = self._ie_unmeasured()[0]
        return np.array([raw[l] if b is not None else math.nan for l, b in enumerate(self.ie_bound)])

    @property
    def ie_reason(self) -> list[str | None]:
        """[L] why the layer's IE is not a measurement (None where it is)."""
        return [f["ie_reason"] for f in self.ie_flags]

    def ie_text(self, digits: int = 2) -> list[str]:
        """[L] IE as a reader should see it: "1.23" where measured, ">= 1.23" / "<= 1.23" where a bound, "n/a"
        where neither (the reason is `ie_reason`)."""
        f = lambda v: f"{v:.{digits}f}"
        out = []
        for v, bound, b in zip(self.ie, self.ie_bound, self.ie_bound_value):
            out.append(f(v) if np.isfinite(v) else {"lower": ">= ", "upper": "<= "}[bound] + f(b) if bound else "n/a")
        return out

    def totals_text(self, digits: int = 3) -> str:
        """One line of totals: sum and mean over the measured layers with their count, or why there are none."""
        tot = self.totals
        s, m = tot["sum_over_layers"], tot["mean_over_layers"]
        if not s["n_layers_measured"]:
            return f"IE measured at none of the {s['n_layers']} layers (see the per-layer bounds and reasons)"
        f = lambda v: f"{v:.{digits}f}"
        return (f"IE over the {s['n_layers_measured']} of {s['n_layers']} layers where it is measured: sum {f(s['value'])} "
                f"[{f(s['ci95'][0])}, {f(s['ci95'][1])}], mean {f(m['value'])} {self.units}")

    @property
    def mi_micro_mean(self) -> np.ndarray:
        """[L] mean over tokens of the micro MI."""
        return self.mi_micro.mean(-1)

    @property
    def has_token_curve(self) -> bool:
        return len(self.context_positions) == self.seq_len

    @property
    def totals(self) -> dict[str, dict[str, Any]]:
        """IE summed and averaged over the layers where it is measured (the others are left out and counted), each
        with stderr and 95% CI (independent layers); NaN where no layer is measured."""
        v, se, ci = self._ie()
        ok = np.isfinite(v)
        layers = [l for l, m in zip(self.layers, ok) if m]
        out = {}
        for name, w in (("sum_over_layers", 1.0), ("mean_over_layers", 1.0 / max(1, int(ok.sum())))):
            if ok.any():
                q, s, a, b = (float(x) for x in linear_combination(np.full(int(ok.sum()), w), v[ok], se[ok], ci[ok, 0],
                                                                   ci[ok, 1]))
            else:
                q = s = a = b = math.nan
            out[name] = {"value": q, "stderr": s, "ci95": [a, b], "units": self.units, "layers": layers,
                         "n_layers_measured": len(layers), "n_layers": len(self.layers)}
        return out

    # -- ceilings and flags ----------------------------------------------------------------------------------
    @property
    def mi_macro_diagnostics(self) -> list[dict]:
        return [e.diagnostics for e in self.macro_estimates()]

    @property
    def mi_micro_diagnostics(self) -> list[list[dict]]:
        return [[e.diagnostics for e in r] for r in self.micro_estimates()]

    @property
    def mi_macro_ceiling(self) -> np.ndarray:
        """[L] smallest ceiling of the macro MI (nats -> `units`), NaN where none was computed."""
        return np.array([ceiling(d, self.units) for d in self.mi_macro_diagnostics])

    @property
    def mi_micro_ceiling(self) -> np.ndarray:
        return np.array([[ceiling(d, self.units) for d in r] for r in self.mi_micro_diagnostics])

    @property
    def ie_flags(self) -> list[dict[str, Any]]:
        """Per layer: IE ceiling (macro ceiling - mean micro) and flags (see `layer_flags`)."""
        micro_mean = self.mi_micro_mean
        return [layer_flags(dm, dmi, micro_mean[l], self.units)
                for l, (dm, dmi) in enumerate(zip(self.mi_macro_diagnostics, self.mi_micro_diagnostics))]

    # -- output (serialisation below) -----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Derived numbers of every setting, for humans and reports (recomputable from the estimates)."""
        return _summary(self)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def to_json(self, path=None) -> str:
        """JSON text (NaN written as null); written atomically to `path` if given."""
        return _written(_to_json(self), path)

    def to_csv(self, path=None) -> str:
        """Long-format CSV, one row per number (see `_to_csv`); written atomically to `path`."""
        return _written(_to_csv(self), path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IEResult":
        return cls(**_fields_from_dict(d))

    @classmethod
    def from_json(cls, path) -> "IEResult":
        """Read result.json (or a run directory holding it); a damaged file is named with the fix."""
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / "result.json"
        fix = f"delete {path} and rerun the same ie-jax measure command to rebuild it from the finished chunks"
        try:
            return cls.from_dict(read_json(path, fix=fix))
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"{path} is damaged ({describe_error(e)}): {fix}") from e


def _with_ci(value, stderr, low, high):
    """(value, stderr, [..., 2] interval) from the four arrays of `estimate_arrays` / `linear_combination`."""
    return value, stderr, np.stack([low, high], -1)


def _written(text: str, path) -> str:
    if path is not None:
        atomic_write_text(path, text)
    return text

# -- serialisation ---------------------------------------------------------------------------------------------------

FORMAT = "ie_jax.IEResult/1"
CSV_COLUMNS = ["setting", "quantity", "layer", "position", "value", "stderr", "ci95_low", "ci95_high", "ceiling",
               "flags", "units", "bound", "bound_value"]


def _summary(r) -> dict[str, Any]:
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


def _to_dict(r) -> dict[str, Any]:
    dump = lambda grid: [[[e.to_dict() for e in row] for row in s] for s in grid]
    return {
        "format": FORMAT, "units": r.units, "layers": list(r.layers), "seq_len": r.seq_len,
        "micro": r.micro_mode, "settings": list(r.settings),
        "context_positions": list(r.context_positions), "metadata": jsonable(r.metadata),
        "summary": _summary(r),
        "estimates": {"context": dump(r.context), "micro": None if r.micro is None else dump(r.micro)},
    }


def _to_json(r) -> str:
    """Strict JSON text (NaN written as null)."""
    return dumps(_to_dict(r))


def _fields_from_dict(d: dict[str, Any]) -> dict[str, Any]:
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


def _to_csv(r) -> str:
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
