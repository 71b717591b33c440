"""Result types shared by every MI estimator (neural, closed-form, counting, noise-regularised).

Every estimate carries its unit; values convert with `.to("bits")`. Diagnostics are a plain
dict with well-known keys (see `DIAGNOSTIC_KEYS`) so that reports can show ceilings and flags
next to every number.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ie_jax.fileio import jsonable

NATS_PER_BIT = math.log(2.0)
UNITS = ("nats", "bits")

# An estimate within this of its smallest ceiling is a lower bound only ("saturated").
SATURATION_MARGIN_NATS = 0.1
# The accuracy bar is max(0.1 nat, 10% of the value); the checks (a gain from doubling N, another critic, a
# witness above the selected candidate) call a difference real above half of it plus two standard errors.
CHECK_NATS = 0.05
CHECK_FRACTION = 0.05
Z95 = 1.959963984540054
# Ceilings that the sample itself sets (its size, the entropies of its states, the counting MI). Over a sample
# that covers the discrete states (`ie_jax.mi.discrete.coverage`) they are the population's own values, so an
# estimate that reaches them is exact rather than saturated.
SAMPLE_CEILINGS = ("ln_n_samples", "sample_entropy", "entropy_x_sample", "entropy_y_sample", "counting_mi")

# Neural-estimate flags that make the value a lower bound for a reason other than saturation at the ceiling:
# more samples (sample_limited) or another critic (critic_limited, overfit, no_fit, heldout_negative) would raise it.
LOWER_BOUND_FLAGS = ("sample_limited", "critic_limited", "overfit", "no_fit", "heldout_negative")
# Diagnostics that make an estimate a lower bound only rather than a measurement (`reliable` is False).
FLAG_KEYS = ("saturated", *LOWER_BOUND_FLAGS, "still_increasing")
# The flag vocabulary of every estimator, in the order `flags` lists them: FLAG_KEYS, then a non-finite
# training step (nan_step), then those that are not lower-bound reasons: a constant side (MI exactly 0), a
# value above what the sample supports (an estimator artefact) and a model-based value no held-out bound can
# check at this N (the selection default's copula far past ln B(B-1)), and a noise-regularised value that rests on
# the sample's own points (IE(sigma) of these N samples, above what the distribution they come from would give).
FLAGS = (*FLAG_KEYS, "nan_step", "constant", "above_ceiling", "unverified", "sample_specific", "estimator_defined")

# Keys estimators fill where they apply; absent keys mean "not computed".
DIAGNOSTIC_KEYS = {
    "ceiling_nats": "smallest cap or data ceiling that applies (estimator cap, ln N, data entropy)",
    "ceilings": "dict name -> value in nats of every cap/ceiling that was computed",
    "saturated": "True if the estimate is within SATURATION_MARGIN_NATS of a ceiling: a lower bound only",
    "constant": "True if x or y is constant (MI is exactly 0)",
    "still_increasing": "neural critics: the bound was still rising at the end of training",
    "nan_step": "neural critics: first step with a non-finite loss, or None",
    "train_test_gap": "neural critics: train bound minus held-out bound (nats)",
    "n_samples": "number of samples used",
    "no_interval": "neural critics: no spread to give a CI (one held-out value); the note says what would give one",
    "flags": "the names of FLAGS that hold, in that order",
    "reliable": "False if a flag makes the value a lower bound only (FLAG_KEYS), training hit a non-finite step, "
                "or the value is unverified",
    "unverified": "selection default: the copula was reported beyond what held-out bounds can check (model-based)",
    "sample_specific": "noise estimator: leaving each draw's own sample out lowers the value clearly: it describes "
                       "these N samples at this sigma (too sparse for the noise to hide them), not their distribution",
    "estimator_defined": "paper readout: the paper's estimator-defined quantity (max over steps of the training-set "
                         "bound), faithful to the reference and checked against nothing: not a measurement",
    "plugin_bias_nats": "counting: Miller-Madow's (K - 1) / 2N of the joint states, what the plug-in misses of an "
                        "entropy at this N; the interval reaches up by it",
    "covered": "counting and noise estimators, sweeps: the sample covers the discrete states of both sides, so the "
               "sample's entropies are the population's and reaching them is exact, not saturated",
    "selected": "selection default: the candidate reported (copula, ksg, radial, neural)",
    "candidates": "selection default: every candidate's value, stderr, half-N value and bias-aware CI (nats)",
    "selection_note": "selection default: which candidate was reported and why",
    "neural_flags": "selection default: the neural critic's own flags when another candidate was reported",
}


def saturated(value_nats: float, ceiling_nats: float, *, constant: bool = False,
              margin_nats: float = SATURATION_MARGIN_NATS) -> bool:
    """The one saturation rule: a non-constant estimate within `margin_nats` of (or above) its ceiling."""
    return bool(not constant and value_nats >= ceiling_nats - margin_nats)


def check_tolerance(value_nats):
    """Half the accuracy bar at `value_nats`: max(CHECK_NATS, CHECK_FRACTION * |value|) (floats or arrays)."""
    return np.maximum(CHECK_NATS, CHECK_FRACTION * np.abs(value_nats))


def saturation_ceiling(ceilings: dict[str, float], covered: bool) -> float:
    """The smallest ceiling whose reaching makes an estimate a lower bound: all of them, except the sample's own
    (SAMPLE_CEILINGS) when the sample covers the discrete states; inf if none is left."""
    caps = [v for k, v in ceilings.items() if not (covered and k in SAMPLE_CEILINGS)]
    return min(caps) if caps else math.inf


def flags(diagnostics: dict) -> list[str]:
    """The names in FLAGS that hold for these diagnostics (nan_step: a step index, not None)."""
    held = lambda k: diagnostics.get(k) is not None if k == "nan_step" else bool(diagnostics.get(k))
    return [k for k in FLAGS if held(k)]


def with_flags(diagnostics: dict) -> dict:
    """`diagnostics` plus `flags` (see FLAGS) and `reliable` (no flag of FLAG_KEYS or nan_step holds).

    Every estimator and `ie_jax.mi.ceilings.annotate` end with this, so flags follow the final diagnostics."""
    names = flags(diagnostics)
    return {**diagnostics, "flags": names,
            "reliable": not [k for k in names if k in NOT_MEASURED_FLAGS]}


# Flags that keep an estimate from being a measurement: the lower-bound reasons (FLAG_KEYS), a non-finite
# training step, a model-based value no held-out bound could check, a value above what the sample supports, and
# a value of the sample rather than of its distribution.
NOT_MEASURED_FLAGS = (*FLAG_KEYS, "nan_step", "unverified", "above_ceiling", "sample_specific", "estimator_defined")
UNBOUNDED_FLAGS = ("unverified", "above_ceiling", "nan_step", "sample_specific", "estimator_defined")


def bound_kind(diagnostics: dict) -> str | None:
    """What an estimate is: "measured" (exact, or verified below its ceilings), "lower" (a lower bound: saturated,
    sample- or critic-limited, ...), or None (neither: unverified, above its ceiling, a non-finite step, a value of
    the sample only)."""
    names = diagnostics.get("flags")
    names = flags(diagnostics) if names is None else names
    if any(k in names for k in UNBOUNDED_FLAGS):
        return None
    return "lower" if any(k in names for k in FLAG_KEYS) else "measured"


def check_units(units: str) -> str:
    if units not in UNITS:
        raise ValueError(f"unknown units {units!r}: use one of {UNITS}")
    return units


def convert(value, from_units: str, to_units: str):
    """Convert nats <-> bits (works on floats and arrays)."""
    check_units(from_units)
    check_units(to_units)
    if from_units == to_units:
        return value
    return value / NATS_PER_BIT if to_units == "bits" else value * NATS_PER_BIT


def reported_by(estimator: str, diagnostics: dict) -> str:
    """The label of what produced one estimate: the estimator, or, where a selection chose among candidates, the
    candidate it reported ("copula, selected by smile/separable/heldout/selected")."""
    chosen = diagnostics.get("selected")
    return f"{chosen}, selected by {estimator}" if chosen else estimator


@dataclasses.dataclass(frozen=True)
class MIEstimate:
    """One mutual-information estimate.

    value: point estimate in `units`; stderr: standard error (over held-out batches and seeds,
    or Monte Carlo), NaN where not defined; ci95: (low, high) 95% interval in `units`.
    """

    value: float
    stderr: float
    ci95: tuple[float, float]
    units: str
    estimator: str
    diagnostics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to(self, units: str) -> "MIEstimate":
        c = lambda v: float(convert(v, self.units, units))
        return dataclasses.replace(
            self, value=c(self.value), stderr=c(self.stderr), ci95=(c(self.ci95[0]), c(self.ci95[1])), units=units
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": float(self.value),
            "stderr": float(self.stderr),
            "ci95": [float(self.ci95[0]), float(self.ci95[1])],
            "units": self.units,
            "estimator": self.estimator,
            "diagnostics": jsonable(self.diagnostics),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MIEstimate":
        return cls(
            value=d["value"], stderr=d["stderr"], ci95=tuple(d["ci95"]), units=d["units"],
            estimator=d["estimator"], diagnostics=dict(d.get("diagnostics", {})),
        )


@dataclasses.dataclass(frozen=True)
class MIEstimates:
    """P independent estimates (one per MI problem), e.g. all layers x tokens of a sweep."""

    values: np.ndarray  # [P]
    stderrs: np.ndarray  # [P]
    ci95s: np.ndarray  # [P, 2]
    units: str
    estimator: str
    diagnostics: list[dict[str, Any]]  # length P

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> MIEstimate:
        return MIEstimate(
            value=float(self.values[i]), stderr=float(self.stderrs[i]),
            ci95=(float(self.ci95s[i, 0]), float(self.ci95s[i, 1])), units=self.units,
            estimator=reported_by(self.estimator, self.diagnostics[i]), diagnostics=self.diagnostics[i],
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def to(self, units: str) -> "MIEstimates":
        c = lambda v: np.asarray(convert(np.asarray(v, dtype=np.float64), self.units, units))
        return dataclasses.replace(self, values=c(self.values), stderrs=c(self.stderrs), ci95s=c(self.ci95s), units=units)

    @classmethod
    def stack(cls, estimates: list[MIEstimate]) -> "MIEstimates":
        if not estimates:
            raise ValueError("cannot stack an empty list of estimates")
        units = estimates[0].units
        return cls(
            values=np.array([e.to(units).value for e in estimates]),
            stderrs=np.array([e.to(units).stderr for e in estimates]),
            ci95s=np.array([e.to(units).ci95 for e in estimates]),
            units=units, estimator=estimates[0].estimator,
            diagnostics=[e.diagnostics for e in estimates],
        )
