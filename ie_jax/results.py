"""IEResult: per-layer Information Emergence with CIs, ceilings and flags, built from MI estimates.

IE(l) = MI_macro(l) - (1/T) sum_t MI_micro_t(l), E_l(t) = MI_context_l(t) - (1/(t+1)) sum_{s<=t} MI_micro_l(s),
where MI_context_l(t) is the MI between block l's input and output at position t of the full-context pass
(MI_macro = MI_context at t = T-1) and MI_micro_l(t) that of token t processed alone (or, with
micro="in_context", the same as MI_context_l(t), so E(0) = 0).

Uncertainty: every derived number is a linear combination sum_k w_k MI_k of distinct estimates. Its stderr is
sqrt(sum_k w_k^2 stderr_k^2) and its 95% interval adds the (possibly asymmetric) half-widths in quadrature,
both ASSUMING THE ESTIMATES ARE INDEPENDENT (they share samples, so this is an approximation). An estimate that
appears twice (in-context micro = context) enters once with its summed weight, so E(0) = 0 exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import pathlib
from typing import Any

import numpy as np

from ie_jax.mi.result import LOWER_BOUND_FLAGS, MIEstimate, _jsonable, convert

FORMAT = "ie_jax.IEResult/1"
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
    def _context_estimates(self) -> list[list[MIEstimate]]:
        return self.context[self.selected]

    def _micro_estimates(self) -> list[list[MIEstimate]]:
        """[L][T] micro estimates; in_context: the context estimates at every position."""
        if self.micro_mode == "in_context":
            if len(self.context_positions) != self.seq_len:
                raise ValueError("in_context micro needs the context estimates at every position")
            return self.context[self.selected]
        return self.micro[self.selected]

    def _distinct(self):
        """Per layer the distinct estimates [L, K] as (values, stderrs, low, high), K as in `ie_weights`."""
        ctx = self._context_estimates()
        if self.micro_mode == "in_context":
            rows = ctx
        else:
            T, P = self.seq_len, len(self.context_positions)
            nan = MIEstimate(math.nan, math.nan, (math.nan, math.nan), self.units, "missing")
            # Context rows padded to all T positions so the weights of `ie_weights` apply (missing ones get 0).
            rows = []
            for l, row in enumerate(ctx):
                full = [nan] * T
                for p, e in zip(self.context_positions, row):
                    full[p] = e
                rows.append(full + list(self.micro[self.selected][l]))
        return _arrays(rows)

    def _combine(self, w):
        """w: [K] (one number per layer) or [T, K] (one per layer and position)."""
        arrays = self._distinct()
        if np.ndim(w) == 2:
            arrays = [a[:, None, :] for a in arrays]
        return linear_combination(w, *arrays)

    @property
    def mi_macro(self) -> np.ndarray:
        """[L] MI between block input and output of the last token with its whole context."""
        return _arrays([[r[-1]] for r in self._context_estimates()])[0][:, 0]

    @property
    def mi_macro_ci(self) -> np.ndarray:
        """[L, 2] 95% interval of `mi_macro`."""
        _, _, lo, hi = _arrays([[r[-1]] for r in self._context_estimates()])
        return np.stack([lo[:, 0], hi[:, 0]], -1)

    @property
    def mi_macro_stderr(self) -> np.ndarray:
        return _arrays([[r[-1]] for r in self._context_estimates()])[1][:, 0]

    @property
    def mi_micro(self) -> np.ndarray:
        """[L, T] MI between block input and output of token t processed alone (or in context)."""
        return _arrays(self._micro_estimates())[0]

    @property
    def mi_micro_ci(self) -> np.ndarray:
        """[L, T, 2] 95% intervals of `mi_micro`."""
        _, _, lo, hi = _arrays(self._micro_estimates())
        return np.stack([lo, hi], -1)

    @property
    def mi_micro_stderr(self) -> np.ndarray:
        return _arrays(self._micro_estimates())[1]

    @property
    def mi_micro_mean(self) -> np.ndarray:
        """[L] mean over tokens of the micro MI."""
        return self.mi_micro.mean(-1)

    def _ie(self):
        w_ie, _ = ie_weights(self.seq_len, self.micro_mode)
        return self._combine(w_ie)

    @property
    def ie(self) -> np.ndarray:
        """[L] IE(l) = MI_macro(l) - mean_t MI_micro_t(l)."""
        return self._ie()[0]

    @property
    def ie_stderr(self) -> np.ndarray:
        return self._ie()[1]

    @property
    def ie_ci(self) -> np.ndarray:
        """[L, 2] 95% interval of IE (independence assumed, see module docstring)."""
        _, _, lo, hi = self._ie()
        return np.stack([lo, hi], -1)

    @property
    def has_token_curve(self) -> bool:
        return len(self.context_positions) == self.seq_len

    def _curve(self):
        if not self.has_token_curve:
            raise ValueError("this result has no token curve: measure with token_curve=True")
        _, w_curve = ie_weights(self.seq_len, self.micro_mode)
        return self._combine(w_curve)

    @property
    def token_curve(self) -> np.ndarray:
        """[L, T] E_l(t) = MI_context_l(t) - mean_{s<=t} MI_micro_l(s)."""
        return self._curve()[0]

    @property
    def token_curve_ci(self) -> np.ndarray:
        _, _, lo, hi = self._curve()
        return np.stack([lo, hi], -1)

    @property
    def totals(self) -> dict[str, dict[str, Any]]:
        """IE summed and averaged over the measured layers, each with stderr and 95% CI (independent layers)."""
        v, se, lo, hi = self._ie()
        out = {}
        for name, w in (("sum_over_layers", 1.0), ("mean_over_layers", 1.0 / len(v))):
            q, s, a, b = linear_combination(np.full(len(v), w), v, se, lo, hi)
            out[name] = {"value": float(q), "stderr": float(s), "ci95": [float(a), float(b)], "units": self.units,
                         "layers": list(self.layers)}
        return out

    # -- ceilings and flags ----------------------------------------------------------------------------------
    @property
    def mi_macro_diagnostics(self) -> list[dict]:
        return [r[-1].diagnostics for r in self._context_estimates()]

    @property
    def mi_micro_diagnostics(self) -> list[list[dict]]:
        return [[e.diagnostics for e in r] for r in self._micro_estimates()]

    @property
    def mi_macro_ceiling(self) -> np.ndarray:
        """[L] smallest ceiling of the macro MI (nats -> `units`), NaN where none was computed."""
        return np.array([_ceiling(d, self.units) for d in self.mi_macro_diagnostics])

    @property
    def mi_micro_ceiling(self) -> np.ndarray:
        return np.array([[_ceiling(d, self.units) for d in r] for r in self.mi_micro_diagnostics])

    @property
    def ie_flags(self) -> list[dict[str, Any]]:
        """Per layer: IE ceiling (macro ceiling - mean micro) and flags inherited from the MI estimates.

        macro_saturated: MI_macro is a lower bound only, so IE may be larger; micro_saturated: some micro MI is a
        lower bound only, so IE may be smaller; constant: a macro variable is constant (MI exactly 0);
        above_ceiling: an MI estimate exceeds what the sample can support (an estimator artefact);
        macro_lower_bound / micro_lower_bound: a neural estimate is flagged as a lower bound for another reason
        (LOWER_BOUND_FLAGS: more samples or another critic would raise it), so IE may be larger / smaller.
        """
        out = []
        micro_mean = self.mi_micro_mean
        for l, (dm, dmi) in enumerate(zip(self.mi_macro_diagnostics, self.mi_micro_diagnostics)):
            flags = {
                "ie_ceiling": _ceiling(dm, self.units) - micro_mean[l],
                "macro_saturated": bool(dm.get("saturated", False)),
                "micro_saturated": any(bool(d.get("saturated", False)) for d in dmi),
                "macro_constant": bool(dm.get("constant", False)),
                "above_ceiling": bool(dm.get("above_ceiling", False))
                or any(bool(d.get("above_ceiling", False)) for d in dmi),
                "still_increasing": bool(dm.get("still_increasing", False))
                or any(bool(d.get("still_increasing", False)) for d in dmi),
            }
            flags["macro_lower_bound"] = _lower_bound(dm)
            flags["micro_lower_bound"] = any(_lower_bound(d) for d in dmi)
            flags["flags"] = [k for k in ("macro_saturated", "micro_saturated", "macro_lower_bound",
                                          "micro_lower_bound", "macro_constant", "above_ceiling", "still_increasing")
                              if flags[k]]
            out.append(flags)
        return out

    # -- output ----------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Derived numbers of every setting, for humans and reports (recomputable from the estimates)."""
        out = []
        for i in range(len(self.settings)):
            r = self.select(i)
            s = {
                "setting": r.setting, "layers": list(r.layers), "ie": r.ie, "ie_stderr": r.ie_stderr,
                "ie_ci95": r.ie_ci, "mi_macro": r.mi_macro, "mi_macro_ci95": r.mi_macro_ci,
                "mi_macro_ceiling": r.mi_macro_ceiling, "mi_micro": r.mi_micro, "mi_micro_mean": r.mi_micro_mean,
                "ie_flags": r.ie_flags, "totals": r.totals,
            }
            if r.has_token_curve:
                s["token_curve"] = r.token_curve
                s["token_curve_ci95"] = r.token_curve_ci
            out.append(_jsonable(s))
        return {"units": self.units, "note": INDEPENDENCE_NOTE, "settings": out}

    def to_dict(self) -> dict[str, Any]:
        dump = lambda grid: [[[e.to_dict() for e in row] for row in s] for s in grid]
        return {
            "format": FORMAT, "units": self.units, "layers": list(self.layers), "seq_len": self.seq_len,
            "micro": self.micro_mode, "settings": list(self.settings),
            "context_positions": list(self.context_positions), "metadata": _jsonable(self.metadata),
            "summary": self.summary(),
            "estimates": {"context": dump(self.context), "micro": None if self.micro is None else dump(self.micro)},
        }

    def to_json(self, path=None) -> str:
        """JSON text (NaN written as null); written atomically to `path` if given."""
        text = json.dumps(_nan_to_none(self.to_dict()), indent=1)
        if path is not None:
            from ie_jax.store import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IEResult":
        if d.get("format") != FORMAT:
            raise ValueError(f"not an IEResult file (format {d.get('format')!r}, expected {FORMAT!r})")
        load = lambda grid: tuple(tuple(tuple(_estimate(e) for e in row) for row in s) for s in grid)
        est = d["estimates"]
        return cls(layers=tuple(d["layers"]), seq_len=d["seq_len"], micro_mode=d["micro"],
                   settings=tuple(d["settings"]), context_positions=tuple(d["context_positions"]),
                   context=load(est["context"]), micro=None if est["micro"] is None else load(est["micro"]),
                   units=d["units"], metadata=d.get("metadata", {}))

    @classmethod
    def from_json(cls, path) -> "IEResult":
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / "result.json"
        return cls.from_dict(json.loads(path.read_text()))

    def to_csv(self, path=None) -> str:
        """One row per number: setting, quantity (ie | mi_macro | mi_micro | token_curve | total), layer, position,
        value, stderr, ci95_low, ci95_high, ceiling, flags, units. Written atomically to `path` if given."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["setting", "quantity", "layer", "position", "value", "stderr", "ci95_low", "ci95_high",
                    "ceiling", "flags", "units"])
        for i in range(len(self.settings)):
            r = self.select(i)
            ie, ie_se, ie_ci, flags = r.ie, r.ie_stderr, r.ie_ci, r.ie_flags
            for l, layer in enumerate(r.layers):
                w.writerow([r.setting, "ie", layer, "", ie[l], ie_se[l], *ie_ci[l], flags[l]["ie_ceiling"],
                            "|".join(flags[l]["flags"]), r.units])
                e = r._context_estimates()[l][-1]
                w.writerow([r.setting, "mi_macro", layer, r.seq_len - 1, e.value, e.stderr, *e.ci95,
                            _ceiling(e.diagnostics, r.units), "|".join(_flags(e.diagnostics)), r.units])
                for t, e in enumerate(r._micro_estimates()[l]):
                    w.writerow([r.setting, "mi_micro", layer, t, e.value, e.stderr, *e.ci95,
                                _ceiling(e.diagnostics, r.units), "|".join(_flags(e.diagnostics)), r.units])
                if r.has_token_curve:
                    for t, (v, (lo, hi)) in enumerate(zip(r.token_curve[l], r.token_curve_ci[l])):
                        w.writerow([r.setting, "token_curve", layer, t, v, "", lo, hi, "", "", r.units])
            for name, tot in r.totals.items():
                w.writerow([r.setting, f"ie_{name}", "", "", tot["value"], tot["stderr"], *tot["ci95"], "", "",
                            r.units])
        text = buf.getvalue()
        if path is not None:
            from ie_jax.store import atomic_write_text

            atomic_write_text(path, text)
        return text

    def plot(self, out_dir=None) -> dict:
        """The report's figures as {name: matplotlib Figure}; also written as PNGs into `out_dir` if given."""
        from ie_jax import report

        return report.figures(self, out_dir=out_dir)


def _arrays(rows):
    """Nested [L][K] MIEstimate -> (values, stderrs, low, high) float arrays [L, K]."""
    v = np.array([[e.value for e in r] for r in rows], dtype=np.float64)
    se = np.array([[e.stderr for e in r] for r in rows], dtype=np.float64)
    lo = np.array([[e.ci95[0] for e in r] for r in rows], dtype=np.float64)
    hi = np.array([[e.ci95[1] for e in r] for r in rows], dtype=np.float64)
    return v, se, lo, hi


def _ceiling(diagnostics: dict, units: str) -> float:
    c = diagnostics.get("ceiling_nats")
    return math.nan if c is None else float(convert(float(c), "nats", units))


def _lower_bound(diagnostics: dict) -> bool:
    return any(bool(diagnostics.get(k, False)) for k in LOWER_BOUND_FLAGS)


def _flags(diagnostics: dict) -> list[str]:
    return [k for k in ("saturated", *LOWER_BOUND_FLAGS, "constant", "above_ceiling", "still_increasing")
            if diagnostics.get(k)]


def _estimate(d: dict) -> MIEstimate:
    f = lambda x: math.nan if x is None else x
    return MIEstimate(value=f(d["value"]), stderr=f(d["stderr"]), ci95=(f(d["ci95"][0]), f(d["ci95"][1])),
                      units=d["units"], estimator=d["estimator"], diagnostics=dict(d.get("diagnostics", {})))


def _nan_to_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj
