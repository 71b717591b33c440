"""Flag policy: which diagnostics of the MI estimates become ceilings and flags of an IE number, and when an IE
is a measurement at all.

An MI estimate's flags are its true diagnostics among `ESTIMATE_FLAGS` (the vocabulary of `ie_jax.mi.result`
plus saturation, constancy and the above-ceiling artefact). A layer's IE inherits them as `IE_FLAGS`: what the
macro estimate's flags imply (IE may be larger) is kept apart from what the micro estimates' imply (IE may be
smaller).

An IE is a number only where both of its terms are measurements (`ie_jax.mi.result.bound_kind`: exact, or
verified below their ceilings). Otherwise it is a bound or nothing (`ie_status`): IE = macro - mean micro, so a
macro lower bound with measured micros makes IE a lower bound, measured macro with a micro lower bound an
upper bound, and anything else (both lower bounds, a value of the sample only, an unverified or above-ceiling
term) no bound at all.
"""

from __future__ import annotations

import math
from typing import Any

from ie_jax.mi.result import LOWER_BOUND_FLAGS, bound_kind, convert

ESTIMATE_FLAGS = ("saturated", *LOWER_BOUND_FLAGS, "constant", "above_ceiling", "still_increasing", "no_interval",
                  "unverified", "sample_specific")
IE_FLAGS = ("macro_saturated", "micro_saturated", "macro_lower_bound", "micro_lower_bound", "macro_constant",
            "above_ceiling", "still_increasing", "no_interval", "unverified", "sample_specific")


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
