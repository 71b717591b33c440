"""IEResult: the measured MI estimates of one run, with the selected setting's IE, E(t), totals and flags.

The object is data (the estimates, per setting, layer and position) plus read-only views computed from it: the
arithmetic is in `ie_jax.ie_arithmetic`, the flag policy in `ie_jax.ie_flags`, JSON/CSV in `ie_jax.result_io`
and the figures in `ie_jax.report` (`ie_jax.report.figures(result)`).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

import numpy as np

from ie_jax import result_io
from ie_jax.fileio import atomic_write_text, describe_error, read_json
from ie_jax.ie_arithmetic import INDEPENDENCE_NOTE, estimate_arrays, ie_weights, linear_combination
from ie_jax.ie_flags import ceiling, layer_flags
from ie_jax.mi.result import MIEstimate, bound_kind

__all__ = ["IEResult", "INDEPENDENCE_NOTE", "ie_weights", "linear_combination"]


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
    ie_ci = _part("_ie", 2, "[L, 2] 95% interval of IE (independence assumed, see `ie_jax.ie_arithmetic`).")
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
        """Per layer: IE ceiling (macro ceiling - mean micro) and flags (see `ie_jax.ie_flags.layer_flags`)."""
        micro_mean = self.mi_micro_mean
        return [layer_flags(dm, dmi, micro_mean[l], self.units)
                for l, (dm, dmi) in enumerate(zip(self.mi_macro_diagnostics, self.mi_micro_diagnostics))]

    # -- output (see ie_jax.result_io) -----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Derived numbers of every setting, for humans and reports (recomputable from the estimates)."""
        return result_io.summary(self)

    def to_dict(self) -> dict[str, Any]:
        return result_io.to_dict(self)

    def to_json(self, path=None) -> str:
        """JSON text (NaN written as null); written atomically to `path` if given."""
        return _written(result_io.to_json(self), path)

    def to_csv(self, path=None) -> str:
        """Long-format CSV, one row per number (see `ie_jax.result_io.to_csv`); written atomically to `path`."""
        return _written(result_io.to_csv(self), path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IEResult":
        return cls(**result_io.fields_from_dict(d))

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
