"""Write every number quoted in the docs from the committed results JSON (`make docs`; `--check` only compares).

A quoted number sits in a marked region, inline or as a block:

    IE is <!-- gen:wim.counting_ie_layer1 -->8.26<!-- /gen --> nats at every layer ...

`GENERATORS` maps each region name to a function of the committed results that returns the region's text.
`make docs` rewrites the regions of `DOC_FILES`; `python scripts/make_docs.py --check` lists every region whose
text differs from what its JSON says (and unknown names) and exits 1, which tests/test_docs.py runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import re
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC_FILES = ("README.md", "benchmarks/README.md", "notebooks/README.md")
REGION = re.compile(r"<!-- gen:([\w.\-]+) -->(.*?)<!-- /gen -->", re.S)


@functools.cache
def _json(rel: str):
    return json.loads((ROOT / rel).read_text())


def _f(x, digits: int = 2) -> str:
    """A number as the docs write it: fixed decimals, thousands separated, no '-0.00'."""
    text = f"{x:,.{digits}f}"
    return text[1:] if re.fullmatch(r"-0\.?0*", text) else text


def _range(values, digits: int = 2, sep: str = " to ") -> str:
    lo, hi = _f(min(values), digits), _f(max(values), digits)
    return lo if lo == hi else f"{lo}{sep}{hi}"


def _int(n) -> str:
    return f"{int(n):,}"


# -- notebooks/results/what_ie_measures.json ------------------------------------------------------------------
def _wim():
    return _json("notebooks/results/what_ie_measures.json")


def _wim_noise_ie(sigma):
    n = _wim()["noise"]
    return np.asarray(n["ie_nats"])[:, n["sigmas"].index(sigma)]


def _wim_sigma_layers(sigma, first, last, digits=2):
    return _range(_wim_noise_ie(sigma)[first: last + 1], digits)


def _wim_neural(bound):
    return _wim()["neural"][bound]


def _wim_gen_lists():
    return round(math.exp(_wim()["data"]["generating_entropy_nats"]))


def _dv_wide_ci():
    ci = np.asarray(_wim_neural("dv")["ci95_nats"])[:3]
    widest = ci[np.argmax(ci[:, 1] - ci[:, 0])]
    return f"{_f(widest[0], 1)} to {_f(widest[1], 1)}"


def _dv_above_entropy():
    d, h = _wim_neural("dv"), _wim()["data"]["sample_entropy_nats"]
    layers = [p.split()[-1] for p, v in zip(d["problems"][:3], d["value_nats"][:3]) if v > h]
    return " and ".join(layers) if layers else "none"


def _noise_ci_halfwidth(sigmas):
    n = _wim()["noise"]
    ci = np.asarray(n["macro_ci95_nats"])
    return _f(max(((ci[:, n["sigmas"].index(s), 1] - ci[:, n["sigmas"].index(s), 0]) / 2).max() for s in sigmas))


def _micro_output_scale(layers):
    scales = np.asarray(_wim()["noise"]["micro_scale_input_output"])[layers, 0, 1]
    return _f(np.median(scales), 1 if scales.max() < 10 else 0)


WIM = {
    "wim.n_entities": lambda: str(_wim()["data"]["n_entities"]),
    "wim.shots": lambda: str(_wim()["data"]["seq_len"] // 2),
    "wim.seq_len": lambda: str(_wim()["data"]["seq_len"]),
    "wim.n": lambda: _int(_wim()["data"]["n_samples"]),
    "wim.n_distinct": lambda: _int(_wim()["data"]["n_distinct_sequences"]),
    "wim.elapsed_s": lambda: _f(_wim()["elapsed_s"], 0),
    "wim.rtol": lambda: f"{_wim()['distinct_states']['rtol']:g}",
    "wim.last_layer": lambda: str(_wim()["layers"][-1]),
    "wim.sample_entropy": lambda: _f(_wim()["data"]["sample_entropy_nats"]),
    "wim.ln_entities": lambda: _f(_wim()["counting"]["ln_24_nats"]),
    "wim.micro_mean": lambda: _f(_wim()["counting"]["micro_mean_nats"][0]),
    "wim.counting_ie_layer1": lambda: _f(_wim()["counting"]["ie_nats"][1]),
    "wim.counting_ie_layer0": lambda: _f(_wim()["counting"]["ie_nats"][0]),
    "wim.growth": lambda: ", ".join(
        f"{_f(g['ie_layer1_nats'])} at N = {_int(n)}" for n, g in _wim()["counting_growth"].items()),
    "wim.growth_1000_distinct": lambda: _int(_wim()["counting_growth"]["1000"]["n_distinct_sequences"]),
    "wim.growth_1000_macro": lambda: _f(_wim()["counting_growth"]["1000"]["macro_layer1_nats"]),
    "wim.growth_1000_ie": lambda: _f(_wim()["counting_growth"]["1000"]["ie_layer1_nats"]),
    "wim.generating_entropy": lambda: _f(_wim()["data"]["generating_entropy_nats"]),
    "wim.generating_lists": lambda: _int(_wim_gen_lists()),
    "wim.ln_n": lambda: _f(_wim()["data"]["ln_n_nats"]),
    "wim.batch": lambda: str(_wim()["config"]["batch_size"]),
    "wim.steps": lambda: _int(_wim()["config"]["steps"]),
    "wim.infonce_values": lambda: ", ".join(_f(v) for v in _wim_neural("infonce")["value_nats"][:2]) + " and "
    + _f(_wim_neural("infonce")["value_nats"][2]),
    "wim.infonce_cap": lambda: _f(_wim_neural("infonce")["estimator_cap_nats"]),
    "wim.infonce_control": lambda: _f(_wim_neural("infonce")["value_nats"][3]),
    "wim.dv_values": lambda: ", ".join(_f(v) for v in _wim_neural("dv")["value_nats"][:2]) + " and "
    + _f(_wim_neural("dv")["value_nats"][2]),
    "wim.dv_wide_ci": _dv_wide_ci,
    "wim.dv_ceiling": lambda: _f(_wim_neural("dv")["ceiling_nats"][0]),
    "wim.dv_test_n": lambda: _int(round(math.exp(_wim_neural("dv")["ceiling_nats"][0]))),
    "wim.dv_above_entropy_layers": _dv_above_entropy,
    "wim.gaussian_range": lambda: _range(_wim()["gaussian"]["mi_nats"][1:], 0),
    "wim.gaussian_null_range": lambda: _range(_wim()["gaussian"]["shuffled_null_nats"].values(), 1),
    "wim.gaussian_null_bias": lambda: _f(_wim()["gaussian"]["expected_null_bias_nats"]),
    "wim.n_mc": lambda: str(_wim()["noise"]["n_mc"]),
    "wim.noise_ci_small": lambda: _noise_ci_halfwidth([0.1, 0.3, 1.0]),
    "wim.noise_ci_3": lambda: _noise_ci_halfwidth([3.0]),
    "wim.noise_small_sigma": lambda: _range(np.concatenate([_wim_noise_ie(0.1)[1:], _wim_noise_ie(0.3)[1:]])),
    "wim.noise_1_layers_2_10": lambda: _wim_sigma_layers(1.0, 2, 10),
    "wim.noise_1_layers_11_on": lambda: _wim_sigma_layers(1.0, 11, 29),
    "wim.noise_1_layer1": lambda: _f(_wim_noise_ie(1.0)[1]),
    "wim.noise_3_layer1": lambda: _f(_wim_noise_ie(3.0)[1]),
    "wim.noise_3_layers_2_10": lambda: _wim_sigma_layers(3.0, 2, 10, 1),
    "wim.noise_3_layers_11_19_max": lambda: _f(max(_wim_noise_ie(3.0)[11:20])),
    "wim.noise_10": lambda: _range(_wim_noise_ie(10.0)[1:]),
    "wim.noise_layer0_small": lambda: _f(_wim_noise_ie(3.0)[0]),
    "wim.noise_layer0_10": lambda: _f(_wim_noise_ie(10.0)[0]),
    "wim.macro_3_layer1": lambda: _f(np.asarray(_wim()["noise"]["macro_mi_nats"])[1, 3]),
    "wim.macro_3_max": lambda: _f(np.asarray(_wim()["noise"]["macro_mi_nats"])[:, 3].max()),
    "wim.macro_3_argmax": lambda: str(int(np.asarray(_wim()["noise"]["macro_mi_nats"])[:, 3].argmax())),
    "wim.micro_scale_before": lambda: _micro_output_scale(slice(1, 11)),
    "wim.micro_scale_after": lambda: _micro_output_scale(slice(11, 29)),
    "wim.macro_scale_layer1": lambda: _f(_wim()["noise"]["macro_scale_input_output"][1][1]),
    "wim.macro_scale_last": lambda: _f(_wim()["noise"]["macro_scale_input_output"][-1][1], 1),
    "wim.micro_1_before": lambda: _f(_wim()["noise"]["micro_mean_nats"][1][2]),
    "wim.micro_1_after": lambda: _f(np.median(np.asarray(_wim()["noise"]["micro_mean_nats"])[12:, 2])),
}

# -- notebooks/results/*.json ------------------------------------------------------------------------------------
def _nb(name):
    return _json(f"notebooks/results/{name}.json")


def _es_layer0_negative():
    ie = np.asarray(_nb("estimator_sensitivity")["ie"])[:, _nb("estimator_sensitivity")["layers"].index(0)]
    return f"all {len(ie)} settings" if (ie < 0).all() else f"{int((ie < 0).sum())} of {len(ie)} settings"


def _curve_mean(block):
    return np.asarray(block["token_curve"]).mean(axis=0)


def _rising(block):
    return f"{np.mean(np.diff(_curve_mean(block)) > 0):.0%}"


def _tvr(model, weights, data):
    return _nb("trained_vs_random")["models"][model][weights][data]


def _tvr_mean(model, weights, data):
    return _f(np.mean(_tvr(model, weights, data)["ie"]))


def _tvr_saturated(model):
    by_w = {w: _nb("trained_vs_random")["models"][model][w] for w in ("trained", "random")}
    flags = [f for by in by_w.values() for k in ("data", "shuffled") for f in by[k]["macro_saturated"]]
    return f"{sum(flags)} of {len(flags)}"


def _to_run(temperature):
    return _nb("text_origin")["runs"][str(float(temperature))]


def _to_sum(temperature, source, group):
    return _to_run(temperature)["sources"][source][group]["ie_sum"]


def _to_ratios():
    cfg = _nb("text_origin")["config"]
    ratios = [_to_sum(t, s, "model") / _to_sum(t, s, "human") for t in cfg["temperatures"] for s in ("kjv", "shakespeare")]
    return _range(ratios, 2, "-")


def _hs_corr(key):
    r, lo, hi = _nb("hallucination_signal")[key]
    return f"r = {_f(r, 3)} (95% bootstrap CI [{_f(lo, 3)}, {_f(hi, 3)}])" if key == "corr_ie" else \
        f"r = {_f(r, 3)} [{_f(lo, 3)}, {_f(hi, 3)}]"


def _es():
    return _nb("estimator_sensitivity")


def _es_neural_macro():
    values = [v for name, st in _es()["settings"].items() if name.startswith(("fast", "paper"))
              for v in st["mi_macro"][1:]]
    return _range(values, 2)


def _es_gaussian_macro():
    return _range(_es()["settings"]["gaussian"]["mi_macro"][1:], 0, "-")


def _es_layer_spread():
    names = [n for n in _es()["names"] if n != "gaussian"]
    ie = np.asarray([_es()["settings"][n]["ie"] for n in names])
    return _range(ie.max(axis=0) - ie.min(axis=0), 1, "-")


def _es_in_context_shift():
    st = _es()["settings"]
    return _f(np.mean(np.abs(np.asarray(st["noise sigma=1, in-context micro"]["ie"]) - st["noise sigma=1"]["ie"])))


NOTEBOOKS = {
    "es.layer0_negative": _es_layer0_negative,
    "hs.corr_ie_short": lambda: "r = {}, 95% CI [{}, {}]".format(*(_f(v) for v in _nb("hallucination_signal")["corr_ie"])),
    "ia.n": lambda: _int(_nb("icl_ascent")["config"]["n_samples"]),
    "ia.shots": lambda: str(_nb("icl_ascent")["categories"]["country"]["shots"]),
    "ia.layers": lambda: str(len(_nb("icl_ascent")["categories"]["country"]["layers"])),
    "ia.ceiling": lambda: _f(_nb("icl_ascent")["categories"]["country"]["mi_macro_ceiling"][-1]),
    "ia.ceiling_shots": lambda: _range(_nb("icl_ascent")["ceiling_shot"].values(), 0, " or "),
    "tvi.n": lambda: _int(_nb("text_vs_icl")["config"]["n_samples"]),
    "tvi.seq_len": lambda: str(_nb("text_vs_icl")["config"]["seq_len"]),
    "tvi.text_end": lambda: _f(_curve_mean(_nb("text_vs_icl")["text"])[-1]),
    "tvi.icl_end": lambda: _f(_curve_mean(_nb("text_vs_icl")["icl"])[-1]),
    "tvi.text_rising": lambda: _rising(_nb("text_vs_icl")["text"]),
    "tvi.icl_rising": lambda: _rising(_nb("text_vs_icl")["icl"]),
    "tvr.n": lambda: _int(_nb("trained_vs_random")["config"]["n_samples"]),
    "tvr.smollm2_trained": lambda: _tvr_mean("smollm2", "trained", "data"),
    "tvr.smollm2_random": lambda: _tvr_mean("smollm2", "random", "data"),
    "tvr.minilm_trained": lambda: _tvr_mean("minilm", "trained", "data"),
    "tvr.minilm_random": lambda: _tvr_mean("minilm", "random", "data"),
    "tvr.smollm2_shuffled_trained": lambda: _tvr_mean("smollm2", "trained", "shuffled"),
    "tvr.smollm2_shuffled_random": lambda: _tvr_mean("smollm2", "random", "shuffled"),
    "tvr.smollm2_saturated": lambda: _tvr_saturated("smollm2"),
    "tvr.minilm_saturated": lambda: _tvr_saturated("minilm"),
    "hs.n": lambda: _int(_nb("hallucination_signal")["n"]),
    "hs.accuracy": lambda: f"{_nb('hallucination_signal')['accuracy']:.0%}",
    "hs.corr_ie": lambda: _hs_corr("corr_ie"),
    "hs.corr_spread": lambda: _hs_corr("corr_spread"),
    "to.n_prompts": lambda: str(_nb("text_origin")["config"]["n_prompts"]),
    "to.lengths": lambda: f"{_nb('text_origin')['config']['prompt_len']} + {_nb('text_origin')['config']['continuation_len']}",
    "to.n_layers": lambda: str(len(_nb("text_origin")["config"]["layers"])),
    "to.kjv_greedy": lambda: f"{_f(_to_sum(0, 'kjv', 'human'), 1)} (human) against {_f(_to_sum(0, 'kjv', 'model'), 1)}",
    "to.shakespeare_greedy": lambda: f"{_f(_to_sum(0, 'shakespeare', 'human'), 1)} against "
                                     f"{_f(_to_sum(0, 'shakespeare', 'model'), 1)}",
    "to.ratios": _to_ratios,
    "to.auc": lambda: f"{_f(_to_run(0)['classifier']['auc'])} (greedy) and {_f(_to_run(1)['classifier']['auc'])}",
    "to.auc_logprob": lambda: f"{_f(_to_run(0)['classifier']['auc_logprob'])} and "
                              f"{_f(_to_run(1)['classifier']['auc_logprob'])}",
    "es.n": lambda: _int(_es()["config"]["n_samples"]),
    "es.n_layers": lambda: str(len(_es()["layers"])),
    "es.counting_macro": lambda: _f(_es()["settings"]["exact counting"]["mi_macro"][1]),
    "es.neural_macro": _es_neural_macro,
    "es.gaussian_macro": _es_gaussian_macro,
    "es.layer_spread": _es_layer_spread,
    "es.in_context_shift": _es_in_context_shift,
    "es.paper_steps": lambda: f"{_int(_es()['config']['paper_steps'])} of 10,000",
    "es.fast_steps": lambda: f"{_int(_es()['config']['fast_steps'])} of 1,500",
}


# -- benchmarks/results/*.json -------------------------------------------------------------------------------
def _bench(name):
    return _json(f"benchmarks/results/{name}.json")


def _steps_timed(run):
    """The one number of steps timed per step-time in a critic run (an error if they differ)."""
    counts = {v["steps_timed"] for v in run.values() if isinstance(v, dict)}
    if len(counts) != 1:
        raise ValueError(f"the runs timed different numbers of steps: {sorted(counts)}")
    return str(counts.pop())


BENCH = {
    "bench.paper_steps_timed": lambda: _steps_timed(_bench("critic_gpu")["paper_bfloat16_1gpu"]),
    "bench.reference_steps_timed": lambda: str(len(_bench("reference_torch_gpu")["fp32"]["step_s"])),
    "bench.faithful_steps_timed": lambda: str(_bench("critic_gpu")["faithful_fp32_1gpu"]["steps_timed"]),
}

# -- benchmarks/results/mi_accuracy_*.json ------------------------------------------------------------------------
def _acc(tag):
    return _bench(f"mi_accuracy_{tag}")


def _acc_rows(tag, **match):
    return [r for r in _acc(tag)["rows"] if all(r[k] in v if isinstance(v, tuple) else r[k] == v
                                                for k, v in match.items())]


def _acc_counts(tag):
    rows = _acc_rows(tag)
    unflagged = [r for r in rows if not r["flags"]]
    bar = lambda r: max(0.1, 0.1 * r["true_mi_nats"])
    above = sum(r["value_nats"] > r["true_mi_nats"] + bar(r) for r in rows)
    return {"rows": str(len(rows)), "passed": f"{sum(r['passes'] for r in rows)}/{len(rows)}",
            "within": f"{sum(r['within_bar'] for r in rows)}/{len(rows)}",
            "flagged": str(sum(bool(r["flags"]) and not r["within_bar"] for r in rows)),
            "unflagged": f"{sum(r['within_bar'] for r in unflagged)}/{len(unflagged)}",
            "unflagged_n": str(len(unflagged)),
            "copula": f"{sum(r['copula_within_bar'] for r in rows)}/{len(rows)}",
            "above": "none" if above == 0 else str(above)}


def _acc_group_seconds(tag):
    """Seconds of each estimate_batch call: one per d since the selection default (all families together),
    one per (family, d) before."""
    key = (lambda r: r["d"]) if "meets_target" in _acc_rows(tag)[0] else (lambda r: (r["family"], r["d"]))
    return {key(r): r["group_seconds"] for r in _acc_rows(tag)}


def _acc_cpu_table():
    """The CPU accuracy table and its summary line, as benchmarks/mi_accuracy.py writes them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from mi_accuracy import markdown
    finally:
        sys.path.pop(0)
    lines = markdown(_acc("cpu_reduced")["rows"], _acc("cpu_reduced")["meta"]).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| task"))
    return "\n" + "\n".join(lines[start:]).rstrip() + "\n"


def _acc_range(tag, key, digits=1, sep="-", **match):
    return _range([r[key] for r in _acc_rows(tag, **match)], digits, sep)


GAUSSIAN_COPULA = ("gaussian", "rotated", "sparse", "cubic")
ACCURACY = {
    **{f"acc.gpu.{k}": (lambda k=k: _acc_counts("gpu_h200")[k]) for k in _acc_counts("gpu_h200")},
    **{f"acc.cpu.{k}": (lambda k=k: _acc_counts("cpu_reduced")[k]) for k in _acc_counts("cpu_reduced")},
    "acc.gpu.jax": lambda: _acc("gpu_h200")["meta"]["jax"],
    "acc.gpu.n": lambda: _int(_acc("gpu_h200")["meta"]["n"]),
    "acc.gpu.families": lambda: str(len(_acc("gpu_h200")["meta"]["families"])),
    "acc.gpu.dims": lambda: "/".join(map(str, sorted(_acc("gpu_h200")["meta"]["dims"]))),
    "acc.gpu.seconds": lambda: _f(sum(_acc_group_seconds("gpu_h200").values()), 0),
    "acc.gpu.mixture_error": lambda: _f(max(abs(r["value_nats"] - r["true_mi_nats"])
                                            for r in _acc_rows("gpu_h200", family="mixture", d=(32, 128)))),
    "acc.gpu.gaussian_128_at_10": lambda: _f(_acc_rows("gpu_h200", family="gaussian", d=128, true_mi_nats=10.0)[0]
                                             ["value_nats"], 1),
    "acc.gpu.d768_range": lambda: _acc_range("gpu_h200", "value_nats", 1, " to ", family=GAUSSIAN_COPULA, d=768),
    "acc.gpu.ceiling": lambda: _range([r["ceiling_nats"] for r in _acc_rows("gpu_h200")], 1),
    "acc.gpu.copula_mixture": lambda: _acc_range("gpu_h200", "copula_corrected_nats", 1, family="mixture"),
    "acc.gpu.mixture_truth": lambda: _acc_range("gpu_h200", "true_mi_nats", 1, family="mixture"),
    "acc.gpu.copula_spiral_2": lambda: _f(_acc_rows("gpu_h200", family="spiral", d=32, true_mi_nats=2.0)[0]
                                          ["copula_corrected_nats"], 1),
    "acc.gpu.copula_rows": lambda: str(len(_acc_rows("gpu_h200", family=GAUSSIAN_COPULA))),
    "acc.gpu.target": lambda: _count(_acc_rows("gpu_h200"), lambda r: r["meets_target"]),
    "acc.gpu.verifiable": lambda: _f(_verifiable(_acc("gpu_h200")["meta"]["n"]), 1),
    "acc.gpu.copula_right": lambda: _count(_acc_rows("gpu_h200", family=GAUSSIAN_COPULA), lambda r: r["within_bar"]),
    "acc.gpu.mixture_right": lambda: _count(_acc_rows("gpu_h200", family="mixture", d=(32, 128)),
                                            lambda r: r["within_bar"] and not r["flags"]),
    "acc.gpu.spiral_range": lambda: _acc_range("gpu_h200", "value_nats", 1, " to ", family="spiral"),
    "acc.gpu.spiral_unflagged": lambda: _count(_acc_rows("gpu_h200", family="spiral"), lambda r: not r["flags"]),
    "acc.gpu.mixture_768": lambda: _acc_range("gpu_h200", "value_nats", 1, " to ", family="mixture", d=768),
    "acc.gpu.mixture_768_flag": lambda: ", ".join(sorted({f for r in _acc_rows("gpu_h200", family="mixture", d=768)
                                                           for f in r["flags"]})),
    "acc.cpu.jax": lambda: _acc("cpu_reduced")["meta"]["jax"],
    "acc.cpu.group_seconds": lambda: _range(_acc_group_seconds("cpu_reduced").values(), 0, "-"),
    "acc.cpu.table": _acc_cpu_table,
}

def _count(rows, test) -> str:
    return f"{sum(bool(test(r)) for r in rows)}/{len(rows)}"


def _verifiable(n: int) -> float:
    """ln(N_test) - 1 of the fast protocol at N samples: issue 16's line between 'within the bar' and 'flagged'."""
    from ie_jax.mi.protocols import resolve

    return math.log(round(n * resolve("fast", {})[1]["test_fraction"])) - 1.0


# -- benchmarks/results/bmi_suite.json and default_cost_h200.json ------------------------------------------------
def _bmi():
    return _bench("bmi_suite")


def _bmi_summary():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bmi_suite import coverage, summary
    finally:
        sys.path.pop(0)
    rows, sizes = _bmi()["rows"], _bmi()["meta"]["sizes"]
    return summary(rows, sizes), coverage(rows, sizes), sizes


def _bmi_mae(name):
    table, _, sizes = _bmi_summary()
    return " / ".join(_f(table[name][n][0], 3) for n in sizes)


def _bmi_within(name):
    table, _, sizes = _bmi_summary()
    return " and ".join(f"{table[name][n][1]}/{table[name][n][2]}" for n in sizes)


def _bmi_coverage(exclude_spirals=False):
    rows, sizes = _bmi()["rows"], _bmi()["meta"]["sizes"]
    parts = []
    for n in sizes:
        kept = [r for r in rows if r["n"] == n and not r.get("flags") and not (exclude_spirals and "spiral" in r["id"])]
        parts.append(_count(kept, lambda r: r["ci95"][0] <= r["true_mi_nats"] <= r["ci95"][1]))
    return " and ".join(parts)


def _bmi_misses():
    bar = lambda r: abs(r["values"]["ie_jax default"] - r["true_mi_nats"]) > max(0.1, 0.1 * r["true_mi_nats"])
    return sorted({r["id"] for r in _bmi()["rows"] if bar(r)})


def _cost():
    return _bench("default_cost_h200")


BMI = {
    "bmi.jax": lambda: _bmi()["meta"]["jax"],
    "bmi.default_mae": lambda: _bmi_mae("ie_jax default"),
    "bmi.default_within": lambda: _bmi_within("ie_jax default"),
    "bmi.bmi_ksg_mae": lambda: _bmi_mae("bmi KSG"),
    "bmi.bmi_cca_mae": lambda: _bmi_mae("bmi CCA"),
    "bmi.neural_mae": lambda: _bmi_mae("ie_jax candidate: neural"),
    "bmi.copula_mae": lambda: _bmi_mae("ie_jax candidate: copula"),
    "bmi.best_published": lambda: " / ".join(_f(v, 3) for v in min(_bmi()["meta"]["published_mae"].values())),
    "bmi.coverage": _bmi_coverage,
    "bmi.coverage_no_spiral": lambda: _bmi_coverage(exclude_spirals=True),
    "bmi.misses": lambda: str(len(_bmi_misses())),
    "bmi.misses_spiral": lambda: str(sum("spiral" in m for m in _bmi_misses())),
    "cost.d": lambda: str(_cost()["meta"]["d"]),
    "cost.new_s": lambda: _f(_cost()["warm_median_seconds"]["selection default"]),
    "cost.old_s": lambda: _f(_cost()["warm_median_seconds"]["previous default"]),
    "cost.ratio": lambda: _f(_cost()["ratio_warm"]),
    "cost.ratio_first": lambda: _f(_cost()["ratio_first_call"]),
    "cost.value_new": lambda: _f(_cost()["values"]["selection default"]["value_nats"]),
    "cost.value_old": lambda: _f(_cost()["values"]["previous default"]["value_nats"]),
    "cost.truth": lambda: _f(_cost()["meta"]["true_mi_nats"], 0),
}

# -- benchmarks/results: speed ------------------------------------------------------------------------------------
def _hours(seconds):
    return _f(seconds / 3600, 1)


def _paper_sweep_s(run):
    return _bench("critic_gpu")[run]["P108"]["extrapolated_10k_steps_s"]


def _reference_sweep_s():
    return _bench("reference_torch_gpu")["fp32"]["extrapolated_sweep_108_s"]


def _variant_sweep_s():
    """108 problems at the bf16-activations-and-data variant's per-problem step time (P = 12), 10,000 steps."""
    return 108 * _bench("variants_bf16_gpu")["variants_P12"]["bf16_act_data"]["step_s_per_problem"] * 10_000


def _peak_bf16_tflops():
    return 2 * 8192**3 / _bench("critic_gpu")["peak"]["bf16"]["seconds_median"] / 1e12


def _capture_bf16():
    """Per bf16 shape: (block parameters, ie_jax / best HF tokens per second, % of the bf16 peak)."""
    jax_models, hf_models = _bench("capture_jax_gpu")["models"], _bench("capture_hf_gpu")["models"]
    out = []
    for key, m in jax_models.items():
        if not key.endswith("/bfloat16"):
            continue
        tokens = m["batch"] * m["tokens"]
        rate = tokens / m["seconds_median"]
        best_hf = max(tokens / hf_models[f"{key}/{a}"]["seconds_median"] for a in ("eager", "sdpa"))
        tflops = tokens * (2 * m["block_params"] + m["attention_flops_per_token"]) / m["seconds_median"] / 1e12
        out.append((m["block_params"], rate / best_hf, 100 * tflops / _peak_bf16_tflops()))
    return out


def _sig(x) -> str:
    """Three significant figures, thousands separated (1,563; 642; 84.9; 7.3)."""
    return _f(x, max(0, 2 - int(math.floor(math.log10(abs(x))))) if x else 0)


def _capture_table(jax_file="capture_jax_gpu", hf_file="capture_hf_gpu") -> str:
    """A capture table of benchmarks/README.md, one row per shape and dtype, from capture_{jax,hf}_gpu.json."""
    jax_models, hf_models = _bench(jax_file)["models"], _bench(hf_file)["models"]
    rows = ["| shape | dtype | block params | ie_jax k tok/s | ie_jax TFLOP/s (% peak) | HF eager k tok/s | "
            "HF sdpa k tok/s | ie_jax / best HF | compile s |", "|---|---|---|---|---|---|---|---|---|"]
    for key, m in jax_models.items():
        shape, dtype = key.split("/")
        rate = m["tokens_per_s"]
        hf = {a: hf_models[f"{key}/{a}"]["tokens_per_s"] for a in ("eager", "sdpa")}
        bf16 = dtype == "bfloat16"
        tflops = _f(m["tflops"], 0) + (f" ({100 * m['tflops'] / _peak_bf16_tflops():.0f}%)" if bf16 else "")
        ratio = f"{rate / max(hf.values()):.2f}x" + ("" if bf16 else "*")
        rows.append(f"| {shape} | {'bf16' if bf16 else 'fp32'} | {m['block_params'] / 1e6:.0f} M | {_sig(rate / 1e3)} | "
                    f"{tflops} | {_sig(hf['eager'] / 1e3)} | {_sig(hf['sdpa'] / 1e3)} | {ratio} | "
                    f"{m['first_call_incl_compile_s']:.1f} |")
    return "\n" + "\n".join(rows) + "\n"


SPEED = {
    "speed.capture_table": _capture_table,
    "speed.paper_1gpu_h": lambda: _hours(_paper_sweep_s("paper_bfloat16_1gpu")),
    "speed.reference_h": lambda: _hours(_reference_sweep_s()),
    "speed.speedup": lambda: _f(_reference_sweep_s() / _paper_sweep_s("paper_bfloat16_1gpu"), 1),
    "speed.paper_2gpu_h": lambda: _hours(_paper_sweep_s("paper_bfloat16_2gpu")),
    "speed.variant_h": lambda: _hours(_variant_sweep_s()),
    "speed.capture_vs_hf": lambda: _range([r for _, r, _ in _capture_bf16()], 2, "-"),
    "speed.capture_peak_large": lambda: _range([p for n, _, p in _capture_bf16() if n >= 1.4e9], 0, "-"),
    "speed.cpu_load_s": lambda: _f(_bench("capture_cpu")["seconds"]["load_ie_jax"], 1),
    "speed.cpu_capture_s": lambda: _f(_bench("capture_cpu")["seconds"]["capture_ie_jax"], 1),
    "speed.cpu_torch_s": lambda: _f(_bench("capture_cpu")["seconds"]["forward_hidden_states_torch"], 1),
    "speed.cpu_load_average": lambda: _f(_bench("capture_cpu")["machine"]["load_average_1min"], 1),
}

# -- benchmarks/results/sweep_e2e_h200.json: `ie-jax measure` end to end on one H200 (issue 14) ----------------
E2E_NOW, E2E_MAIN = "f56a1b7", "6accc3c"  # device capture (issue-14 branch); main before it (13:08 UTC call)
E2E_MERGED = "6880669"  # issues 14, 16 and 19 merged on an integration branch: the selection default (not on main)


def _e2e(run: str, commit: str, model: str = "gpt2") -> dict:
    return next(r for r in _bench("sweep_e2e_h200") if r["run"] == run and r["commit"] == commit
                and r["model"] == model)


def _e2e_phase(run: str, commit: str, phase: str, digits: int = 1) -> str:
    return _f(_e2e(run, commit)["timing_s"][phase], digits)


def _busy(fraction) -> str:
    return "" if fraction is None else f"{100 * fraction:.1f}%" if fraction < 0.01 else f"{100 * fraction:.0f}%"


def _e2e_table() -> str:
    """Every sweep run of sweep_e2e_h200.json, in the order measured; stopped runs as lower bounds."""
    rows = ["| run | code (device call) | total s | capture | prepare | compile | train | states | busy |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in _bench("sweep_e2e_h200"):
        if r["run"].startswith("baseline"):
            continue
        t = r.get("timing_s") or {}
        total = f"> {_f(r['total_s'], 1)} (stopped)" if r["timed_out"] else _f(r["total_s"], 1)
        phases = " | ".join(_f(t[k], 1) if k in t else "" for k in ("capture", "prepare", "compile", "train"))
        states = {True: "device", False: "host"}.get(r.get("states_on_device"), "host")
        rows.append(f"| {r['run']} ({r['model']}, {r['data']}, {r['estimator']}) | {r['commit']} "
                    f"({r['device_call'][11:]}, `{r['log']}`) | {total} | {phases} | {states} | "
                    f"{_busy(r['device_busy_fraction'])} |")
    return "\n" + "\n".join(rows) + "\n"


def _e2e_baseline() -> str:
    return "; ".join(f"{r['commit']}: {_f(r['calls'][0]['estimate_s'], 1)} s first call, "
                     f"{_f(r['calls'][1]['estimate_s'], 1)} s second (+ {_f(r['calls'][1]['annotate_s'], 1)} s "
                     "annotation)" for r in _bench("sweep_e2e_h200") if r["run"].startswith("baseline"))


E2E = {
    "e2e.table": _e2e_table,
    "e2e.merged_total": lambda: _f(_e2e("fast-gaussian", E2E_MERGED)["total_s"], 1),
    "e2e.merged_compile": lambda: _e2e_phase("fast-gaussian", E2E_MERGED, "compile"),
    "e2e.merged_compile_over": lambda: _f(_e2e("fast-gaussian", E2E_MERGED)["timing_s"]["compile"] - 30, 1),
    "e2e.merged_train": lambda: _e2e_phase("fast-gaussian", E2E_MERGED, "train"),
    "e2e.merged_capture": lambda: _e2e_phase("fast-gaussian", E2E_MERGED, "capture"),
    "e2e.merged_busy": lambda: _busy(_e2e("fast-gaussian", E2E_MERGED)["device_busy_fraction"]),
    "e2e.baseline": _e2e_baseline,
    "e2e.fast_total": lambda: _f(_e2e("fast-gaussian", E2E_NOW)["total_s"], 1),
    "e2e.fast_total_main": lambda: _f(_e2e("fast-gaussian", E2E_MAIN)["total_s"], 1),
    "e2e.fast_capture": lambda: _e2e_phase("fast-gaussian", E2E_NOW, "capture"),
    "e2e.fast_capture_main": lambda: _e2e_phase("fast-gaussian", E2E_MAIN, "capture"),
    "e2e.fast_prepare": lambda: _e2e_phase("fast-gaussian", E2E_NOW, "prepare"),
    "e2e.fast_prepare_main": lambda: _e2e_phase("fast-gaussian", E2E_MAIN, "prepare"),
    "e2e.fast_compile": lambda: _e2e_phase("fast-gaussian", E2E_NOW, "compile"),
    "e2e.fast_compile_over": lambda: _f(_e2e("fast-gaussian", E2E_NOW)["timing_s"]["compile"] - 30, 1),
    "e2e.fast_train": lambda: _e2e_phase("fast-gaussian", E2E_NOW, "train"),
    "e2e.fast_busy": lambda: _busy(_e2e("fast-gaussian", E2E_NOW)["device_busy_fraction"]),
    "e2e.fast_load": lambda: _f(_e2e("fast-gaussian", E2E_NOW)["load_model_s"], 1),
    "e2e.fast_outside": lambda: _f(_e2e("fast-gaussian", E2E_NOW)["total_s"]
                                   - _e2e("fast-gaussian", E2E_NOW)["timing_s"]["total"], 1),
    "e2e.states_gib": lambda: _f(_e2e("fast-gaussian", E2E_NOW)["states_gib"], 1),
    "e2e.tokens_states_gib": lambda: _f(_e2e("fast-tokens", E2E_NOW)["states_gib"], 1),
    "e2e.noise_total": lambda: _f(_e2e("noise-gaussian", E2E_NOW)["total_s"], 1),
    "e2e.noise_total_old": lambda: _f(_e2e("noise-gaussian", "62aeded")["total_s"], 1),
    "e2e.noise_capture": lambda: _e2e_phase("noise-gaussian", E2E_NOW, "capture"),
    "e2e.noise_capture_old": lambda: _e2e_phase("noise-gaussian", "62aeded", "capture"),
    "e2e.noise_train": lambda: _e2e_phase("noise-gaussian", E2E_NOW, "train"),
    "e2e.noise_train_old": lambda: _e2e_phase("noise-gaussian", "62aeded", "train"),
    "e2e.noise_busy": lambda: _busy(_e2e("noise-gaussian", E2E_NOW)["device_busy_fraction"]),
    "e2e.noise_compile": lambda: _e2e_phase("noise-gaussian", E2E_NOW, "compile"),
    "e2e.baseline_sweep_min": lambda: _f(192 / _e2e("baseline-97b21cf-one-chunk", "62aeded")["chunk_problems"]
                                         * _e2e("baseline-97b21cf-one-chunk", "62aeded")["calls"][1]["estimate_s"] / 60, 0),
    "e2e.noise_gbps": lambda: _f(2 * 2 * 96 * 20_000 * 768 * 4 / 1e9 / (
        _e2e("noise-gaussian", E2E_NOW)["timing_s"]["train"] - _e2e("noise-gaussian", "62aeded")["timing_s"]["train"])),
    "e2e.tokens_total": lambda: _f(_e2e("fast-tokens", E2E_NOW)["total_s"], 1),
    "e2e.tokens_capture": lambda: _e2e_phase("fast-tokens", E2E_NOW, "capture"),
    "e2e.tokens_prepare": lambda: _e2e_phase("fast-tokens", E2E_NOW, "prepare"),
    "e2e.tokens_busy": lambda: _busy(_e2e("fast-tokens", E2E_NOW)["device_busy_fraction"]),
    "e2e.generator": lambda: _e2e("fast-gaussian", E2E_NOW)["generator"],
}

# -- Across hosts (README): the by-hand 2-process example and benchmarks/scaling_model.py's table ---------------
def _mh_example():
    return _json("benchmarks/results/multihost_example_cpu.json")


def _scaling_row(sweep: str, chips: int, fabric: str = "gpu_nodes") -> dict:
    rows = _json("benchmarks/results/scaling_model.json")["rows"]
    return next(r for r in rows if r["sweep"] == sweep and r["chips"] == chips and r["fabric"] == fabric)


def _scaling_duration(seconds: float) -> str:
    # as benchmarks/scaling_model.py writes its table
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _scaling_series(sweep: str) -> str:
    return ", ".join(f"{_scaling_duration(_scaling_row(sweep, c)['total_s'])} on {c}" + (" H200" if c == 1 else "")
                     for c in (1, 8, 64, 256))


ACROSS_HOSTS = {
    "hosts.example_estimates": lambda: _int(_mh_example()["n_estimates"]),
    "hosts.example_max_diff": lambda: _f(_mh_example()["max_abs_difference_nats"], 1),
    "hosts.example_minutes": lambda: _f(_mh_example()["two_processes"]["wall_s"] / 60, 0),
    "hosts.example_cpu_s": lambda: _f(np.mean(_mh_example()["two_processes"]["cpu_user_s_per_process"]), 0),
    "hosts.paper_gpt2": lambda: _scaling_series("gpt2-small paper"),
    "hosts.paper_1b": lambda: _scaling_series("1B paper"),
    "hosts.fast_critic_s": lambda: _f(_scaling_row("gpt2-small fast", 1)["critic_s"], 0),
    "hosts.fixed_s": lambda: _f(_scaling_row("gpt2-small fast", 1)["start_s"]
                                 + _scaling_row("gpt2-small fast", 1)["compile_s"], 0),
    "hosts.reshard_max_s": lambda: _f(max(r["reshard_s"] for r in _json("benchmarks/results/scaling_model.json")["rows"]), 2),
}

# -- benchmarks/README.md: critic speed, capture, targets, four GPUs (issue 19's block) ---------------------------
_ISSUE7_SCALING = 3.6  # issue 7: 4 GPUs at least 3.6x one
_ISSUE6 = {"sweep_h": 2.0, "speedup": 15.0, "peak_pct": 60.0, "fast_s": 120.0, "two_gpus": 1.9, "capture_vs_hf": 2.0}


def _crit():
    return _bench("critic_gpu")


def _x4():
    return _bench("critic_gpu_x4")


def _ref():
    return _bench("reference_torch_gpu")


def _variant(name, problems, file="variants_gpu"):
    return _bench(file)[f"variants_P{problems}"][name]


def _peak(run=None):
    return (run or _crit())["peak"]["bf16"]["tflops"]


def _ms(seconds):
    return _sig(1e3 * seconds)


def _h(seconds):
    """Hours to three significant figures (5.80, 30.6)."""
    return _sig(seconds / 3600)


def _x(ratio):
    return f"{_f(ratio, 2 if ratio < 1 else 1)}x"


def _issue_factor():
    f = _crit()["flops_per_step_per_problem"]["paper"]
    return f["issue_convention"] / f["executed"]


def _paper_rows():
    """(label, ms/step text, critic-steps/s, executed TFLOP/s text, issue-convention TFLOP/s) per table row."""
    c, ref, peak = _crit(), _ref(), _peak()
    rows = []
    for label, r in (("PyTorch reference loop, fp32 (same GPU, same run)", ref["fp32"]),
                     ("PyTorch reference loop, bf16 autocast", ref["bf16_autocast"]),
                     ("JAX faithful baseline: one critic, fp32 highest, host loop + readback", c["faithful_fp32_1gpu"])):
        rows.append((label, _ms(r["step_s_median"]), 1 / r["step_s_median"], _f(r["reference_executed_tflops"], 0),
                     r["issue_convention_tflops"]))
    for label, r, devices in (("ie_jax bf16, P = 1", c["paper_bfloat16_1gpu"]["P1"], 1),
                              ("ie_jax bf16, P = 12 (one chunk)", c["paper_bfloat16_1gpu"]["P12"], 1),
                              ('ie_jax "float32" (TF32), P = 12', c["paper_float32_1gpu"]["P12"], 1),
                              ("ie_jax bf16, P = 24 on 2 GPUs (12 each)", c["paper_bfloat16_2gpu"]["P24"], 2)):
        per = "" if r["problems"] == 1 else f" per {r['problems']}"
        pct = f"{100 * r['executed_tflops'] / (devices * peak):.0f}%" + (f" of {devices} x peak" if devices > 1 else "")
        rows.append((label, _ms(r["chunk_step_s"]) + per, r["critic_steps_per_s"],
                     f"{_f(r['executed_tflops'], 0)} ({pct})", r["issue_convention_tflops"]))
    for label, v in (("variant: bf16 activations, P = 12", _variant("bf16_act", 12)),
                     ("variant: bf16 activations + bf16 data, P = 24", _variant("bf16_act_data", 24, "variants_bf16_gpu"))):
        rows.append((label, _ms(v["step_s_per_problem"]) + " per problem", 1 / v["step_s_per_problem"],
                     f"{_f(v['executed_tflops'], 0)} ({100 * v['executed_tflops'] / peak:.0f}%)",
                     v["executed_tflops"] * _issue_factor()))
    return rows


def _paper_table():
    lines = ["| paper protocol | ms / step | critic-steps/s | TFLOP/s executed (% peak) | issue-convention TFLOP/s |",
             "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {_f(c, 1)} | {d} | {_f(e, 0)} |" for a, b, c, d, e in _paper_rows()]
    return "\n" + "\n".join(lines) + "\n"


def _sweep_s():
    """Seconds of the whole 108-problem sweep (10,000 steps, extrapolated) per way of running it."""
    c = _crit()
    return {"reference": _reference_sweep_s(), "faithful": c["faithful_fp32_1gpu"]["extrapolated_sweep_108_s"],
            "reference_bf16": _ref()["bf16_autocast"]["extrapolated_sweep_108_s"],
            "bf16_1gpu": _paper_sweep_s("paper_bfloat16_1gpu"), "fp32_1gpu": _paper_sweep_s("paper_float32_1gpu"),
            "bf16_2gpu": _paper_sweep_s("paper_bfloat16_2gpu"), "variant": _variant_sweep_s()}


def _fast(run):
    return _crit()[run]["P108"]


def _sweep_table():
    s, c = _sweep_s(), _crit()
    one, two = c["paper_bfloat16_1gpu"]["P108"], c["paper_bfloat16_2gpu"]["P108"]
    v = _variant("bf16_act_data", 12, "variants_bf16_gpu")
    f1, f2, api = _fast("fast_1gpu"), _fast("fast_2gpu"), c["api_fast"]
    vs = lambda key: _x(s["reference"] / s[key])  # noqa: E731
    rows = [
        ("PyTorch reference fp32, one critic at a time (extrapolated)", f"{_h(s['reference'])} h", "1x"),
        ("JAX faithful baseline (extrapolated)", f"{_h(s['faithful'])} h", vs("faithful")),
        ("PyTorch bf16 autocast, one at a time (extrapolated)", f"{_h(s['reference_bf16'])} h", vs("reference_bf16")),
        (f"**ie_jax paper protocol, bf16, 1 GPU** ({one['n_chunks']} chunks of {one['chunk']}, extrapolated)",
         f"**{_h(s['bf16_1gpu'])} h**", f"**{vs('bf16_1gpu')}**"),
        ('ie_jax paper protocol, "float32" (TF32), 1 GPU', f"{_h(s['fp32_1gpu'])} h", vs("fp32_1gpu")),
        (f"**ie_jax paper protocol, bf16, 2 GPUs** ({two['n_chunks']} chunks of {two['chunk']}, extrapolated)",
         f"**{_h(s['bf16_2gpu'])} h**", vs("bf16_2gpu")),
        (f"variant bf16 activations + data, 1 GPU (108 problems x {_ms(v['step_s_per_problem'])} ms x 10k)",
         f"{_h(s['variant'])} h", vs("variant")),
        (f"**ie_jax fast protocol, 1 GPU** ({f1['n_chunks']} chunks of {f1['chunk']}, all {_int(f1['steps'])} steps "
         f"run, held-out evals included)", f"**{_f(f1['total_s'], 1)} s** + {_f(f1['chunk_run']['compile_s'], 1)} s "
         f"compile", ""),
        (f"**ie_jax fast protocol, 2 GPUs** ({f2['n_chunks']} chunks of {f2['chunk']})",
         f"**{_f(f2['total_s'], 1)} s** + {_f(f2['chunk_run']['compile_s'], 1)} s compile", ""),
        (f'`estimate_batch(protocol="fast")` end to end, P = {api["problems"]} (host preparation included)',
         f"{_f(api['second_call_s'], 1)} s ({_f(api['first_call_s'], 1)} s first call)", ""),
    ]
    lines = ["| sweep | time | vs PyTorch fp32 reference (same run) |", "|---|---|---|"]
    return "\n" + "\n".join(["\n".join(lines)] + [f"| {a} | {b} | {c} |" for a, b, c in rows]) + "\n"


def _step_s(run, problems=12):
    return _crit()[run][f"P{problems}"]["chunk_step_s"]


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _targets_table():
    s, c, t = _sweep_s(), _crit(), _ISSUE6
    p12 = c["paper_bfloat16_1gpu"]["P12"]
    v = _variant("bf16_act_data", 24, "variants_bf16_gpu")
    pct, pct_v = 100 * p12["executed_tflops"] / _peak(), 100 * v["executed_tflops"] / _peak()
    f1, f2, api = _fast("fast_1gpu"), _fast("fast_2gpu"), c["api_fast"]
    fast_end_to_end = 108 * api["per_problem_s_second_call"]
    step2 = c["paper_bfloat16_2gpu"]["P24"]["critic_steps_per_s"] / p12["critic_steps_per_s"]
    sweep2, fast2 = s["bf16_1gpu"] / s["bf16_2gpu"], f1["total_s"] / f2["total_s"]
    small = [(n, r, p) for n, r, p in _capture_bf16()][0]  # gpt2-small: the first shape of the capture run
    large = [(k.split("/")[0], p) for k, (n, _, p) in zip(
        [k for k in _bench("capture_jax_gpu")["models"] if k.endswith("/bfloat16")], _capture_bf16()) if n >= 1e9]
    rows = [
        (f"paper sweep <= {_f(t['sweep_h'], 0)} h on one GPU",
         f"{_h(s['bf16_1gpu'])} h bf16 ({_h(s['variant'])} h with the bf16-activation variant; "
         f"{_h(s['bf16_2gpu'])} h on 2 GPUs)",
         f"{_met(s['bf16_1gpu'] <= 3600 * t['sweep_h'])} by {_x(s['bf16_1gpu'] / 3600 / t['sweep_h'])} "
         f"({_x(s['variant'] / 3600 / t['sweep_h'])} with the variant)"),
        (f">= {_f(t['speedup'], 0)}x the reference",
         f"{_x(s['reference'] / s['bf16_1gpu'])} the same-run PyTorch fp32 loop ({_x(s['reference'] / s['variant'])} "
         f"with the variant)", _met(s["reference"] / s["bf16_1gpu"] >= t["speedup"])),
        (f"critic training >= {_f(t['peak_pct'], 0)}% of bf16 peak",
         f"{pct:.0f}% (P = 12); {pct_v:.0f}% with the variant",
         _met(pct >= t["peak_pct"])),
        (f"fast sweep <= {_f(t['fast_s'] / 60, 0)} min",
         f"{_f(f1['total_s'], 1)} s of GPU training (+ {_f(f1['chunk_run']['compile_s'], 1)} s compile); end to end "
         f"through `estimate_batch` about {_f(fast_end_to_end / 60, 0)} min "
         f"({_f(api['per_problem_s_second_call'], 1)} s per problem, from P = {api['problems']})",
         f"{_met(f1['total_s'] + f1['chunk_run']['compile_s'] <= t['fast_s'])} on the GPU, "
         f"{_met(fast_end_to_end <= t['fast_s'])} end to end"),
        (f"2 GPUs >= {_f(t['two_gpus'], 1)}x one",
         f"{_f(step2)}x per step (P = 24 on 2 vs 12 on 1); {_f(sweep2)}x for the 108-problem sweep; fast sweep "
         f"{_f(fast2)}x", f"{_met(step2 >= t['two_gpus'])} per step, {_met(sweep2 >= t['two_gpus'])} by the sweep's "
                          f"chunking"),
        (f"capture >= {_f(t['capture_vs_hf'], 0)}x HF on gpt2-small shapes", f"{_f(small[1])}x (bf16)",
         _met(small[1] >= t["capture_vs_hf"])),
        (f"capture >= {_f(t['peak_pct'], 0)}% of bf16 peak at >= 1B parameters",
         ", ".join(f"{name} {p:.0f}%" for name, p in large), _met(all(p >= t["peak_pct"] for _, p in large))),
    ]
    lines = ["| target (issue 6) | measured | met? |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n" + "\n".join(lines) + "\n"


def _x4_rows():
    x = _x4()
    one, twelve, four = x["paper_bfloat16_1gpu"]["P1"], x["paper_bfloat16_1gpu"]["P12"], x["paper_bfloat16_4gpu"]["P48"]
    rows = []
    for label, r, devices in (("1 GPU, P = 1", one, 1), ("1 GPU, P = 12", twelve, 1),
                              ("4 GPUs, P = 48 (12 per GPU)", four, 4)):
        rows.append(f"| {label} | {_f(1e3 * r['chunk_step_s'], 1)} | {_f(r['critic_steps_per_s'], 1)} | "
                    f"{_f(r['executed_tflops'], 0)} ({100 * r['executed_tflops'] / (devices * _peak(x)):.0f}%) | "
                    f"{_f(r['extrapolated_10k_steps_s'], 0)} s |")
    faithful = x["faithful_fp32_1gpu"]
    rows.append(f"| faithful fp32 baseline, one critic, host loop | {_f(1e3 * faithful['step_s_median'], 1)} | "
                f"{_f(1 / faithful['step_s_median'], 1)} | - | sweep {_h(faithful['extrapolated_sweep_108_s'])} h |")
    head = ["| run | ms / step / chunk | critic-steps/s | TFLOP/s executed (% of peak x devices) | 10k steps |",
            "|---|---|---|---|---|"]
    return "\n" + "\n".join(head + rows) + "\n"


def _x4_sweep():
    """(1-GPU chunks, seconds; 4-GPU chunks, chunk size, seconds) of the 108-critic paper sweep on the 4-GPU host."""
    x = _x4()
    twelve, four = x["paper_bfloat16_1gpu"]["P12"], x["paper_bfloat16_4gpu"]["P48"]
    n1, n4 = math.ceil(108 / twelve["problems"]), math.ceil(108 / four["problems"])
    return n1, n1 * twelve["extrapolated_10k_steps_s"], n4, four["problems"], n4 * four["extrapolated_10k_steps_s"]


def _date_time(file):
    """The HH:MM (UTC) at which a benchmark run wrote its environment."""
    return _bench(file)["env"]["date_utc"][11:16]


def _smi(file="critic_gpu"):
    """GPU memory, power limit, max SM clock and driver from the run's nvidia-smi line."""
    first_gpu = _bench(file)["env"]["nvidia_smi"].splitlines()[0]
    _, memory, clock, power, driver = (p.strip() for p in first_gpu.split(","))
    return f"{memory}, {power.replace('.00 W', ' W')}, {clock} max SM clock, driver {driver}"


def _bytes_ms():
    """(ms at the copy bandwidth for the paper step's byte floor, ms of executed matmul at the bf16 peak)."""
    c = _crit()
    floor = c["bytes_per_step_per_problem"]["paper"]["total"] / (c["peak"]["copy"]["gb_per_s"] * 1e9)
    return 1e3 * floor, 1e3 * c["flops_per_step_per_problem"]["paper"]["executed"] / (_peak() * 1e12)


def _gb(n_bytes, digits=1):
    return _f(n_bytes / 1e9, digits)


BENCH_README = {
    "gpu.machine": _smi,
    **{f"gpu.time.{f}": (lambda f=f: _date_time(f)) for f in ("critic_gpu", "capture_jax_gpu", "capture_hf_gpu",
                                                              "variants_gpu", "variants_bf16_gpu", "critic_gpu_x4")},
    "gpu.peak_bf16": lambda: _f(_peak(), 0),
    "gpu.peak_fp32": lambda: _f(_crit()["peak"]["fp32_default"]["tflops"], 0),
    "gpu.peak_fp32_highest": lambda: _f(_crit()["peak"]["fp32_highest"]["tflops"], 0),
    "gpu.copy_tb_s": lambda: _f(_crit()["peak"]["copy"]["gb_per_s"] / 1e3),
    "gpu.flops_executed": lambda: _f(_crit()["flops_per_step_per_problem"]["paper"]["executed"] / 1e12),
    "gpu.flops_reference": lambda: _f(_crit()["flops_per_step_per_problem"]["paper"]["reference_executed"] / 1e12),
    "gpu.flops_issue": lambda: _f(_crit()["flops_per_step_per_problem"]["paper"]["issue_convention"] / 1e12),
    "gpu.bytes": lambda: "{} GB per problem-step (data {} GB, the 768-wide layer {} GB, narrower layers {} GB)".format(
        *(_gb(_crit()["bytes_per_step_per_problem"]["paper"][k]) for k in ("total", "data", "first_layer",
                                                                           "other_layers"))),
    "gpu.bytes_ms": lambda: _f(_bytes_ms()[0], 1),
    "gpu.matmul_ms": lambda: _f(_bytes_ms()[1], 1),
    "gpu.paper_table": _paper_table,
    "gpu.sweep_table": _sweep_table,
    "gpu.capture_bytes": lambda: _range([m["bytes_min"] / 1e9 for m in _bench("capture_jax_gpu")["models"].values()],
                                        1, "-"),
    "gpu.families_table": lambda: _capture_table("capture_families_jax_gpu", "capture_families_hf_gpu"),
    "gpu.families_time": lambda: _bench("capture_families_jax_gpu")["env"]["date_utc"][:16].replace("T", " "),
    "gpu.targets_table": _targets_table,
    # "Why": the numbers behind each explanation
    "why.fp32_slower": lambda: f"{100 * (_step_s('paper_float32_1gpu') / _step_s('paper_bfloat16_1gpu') - 1):.0f}%",
    "why.step_ms_p12": lambda: _f(1e3 * _crit()["paper_bfloat16_1gpu"]["P12"]["chunk_step_s"] / 12, 1),
    "why.variant_base_ms": lambda: _f(1e3 * _variant("base", 12)["step_s_per_problem"], 1),
    "why.variant_act_ms": lambda: _f(1e3 * _variant("bf16_act", 12)["step_s_per_problem"], 1),
    "why.variant_act_gain": lambda: _f(_variant("base", 12)["step_s_per_problem"]
                                       / _variant("bf16_act", 12)["step_s_per_problem"]),
    "why.variant_data_ms_12": lambda: _ms(_variant("bf16_act_data", 12, "variants_bf16_gpu")["step_s_per_problem"]),
    "why.variant_data_ms_24": lambda: _ms(_variant("bf16_act_data", 24, "variants_bf16_gpu")["step_s_per_problem"]),
    "why.unique_ms": lambda: _f(1e3 * _variant("unique", 12)["step_s_per_problem"]),
    "why.perm_vjp_ms": lambda: _f(1e3 * _variant("perm_vjp", 12)["step_s_per_problem"]),
    "why.variant_pct": lambda: "{:.0f}%".format(
        100 * _variant("bf16_act_data", 24, "variants_bf16_gpu")["executed_tflops"] / _peak()),
    "why.p1_ms": lambda: _f(1e3 * _crit()["paper_bfloat16_1gpu"]["P1"]["chunk_step_s"], 1),
    "why.fast_s": lambda: _f(_fast("fast_1gpu")["total_s"], 1),
    "why.api_per_problem_s": lambda: _f(_crit()["api_fast"]["per_problem_s_second_call"], 0),
    "why.api_n": lambda: _int(_crit()["api_fast"]["n"]),
    "why.api_gb": lambda: _f(108 * _crit()["api_fast"]["n"] * 2 * _crit()["config"]["d"] * 4 / 1e9, 0),
    "why.capture_small_tflops": lambda: _f(_bench("capture_jax_gpu")["models"]["gpt2/bfloat16"]["tflops"], 0),
    "why.capture_small_gb": lambda: _gb(_bench("capture_jax_gpu")["models"]["gpt2/bfloat16"]["bytes_min"]),
    "why.heldout_value": lambda: _f(np.mean(_crit()["api_fast"]["values_nats"])),
    "why.train_value": lambda: _f(_fast("fast_1gpu")["chunk_run"]["train_value_last_nats"]),
    "why.true_mi": lambda: _f(_crit()["api_fast"]["true_mi_nats"]),
    # Four-GPU run
    "x4.peak": lambda: _f(_peak(_x4()), 0),
    "x4.steps_timed": lambda: str(_x4()["paper_bfloat16_4gpu"]["P48"]["steps_timed"]),
    "x4.table": _x4_rows,
    "x4.step_scaling": lambda: _f(_x4()["paper_bfloat16_4gpu"]["P48"]["critic_steps_per_s"]
                                  / _x4()["paper_bfloat16_1gpu"]["P12"]["critic_steps_per_s"]),
    "x4.steps_4": lambda: _f(_x4()["paper_bfloat16_4gpu"]["P48"]["critic_steps_per_s"], 1),
    "x4.steps_1": lambda: _f(_x4()["paper_bfloat16_1gpu"]["P12"]["critic_steps_per_s"], 1),
    "x4.sweep": lambda: "1 GPU {} chunks x {} s = {} h; 4 GPUs {} chunks of {} x {} s = {} h, i.e. **{}x**".format(
        _x4_sweep()[0], _f(_x4_sweep()[1] / _x4_sweep()[0], 0), _h(_x4_sweep()[1]), _x4_sweep()[2], _x4_sweep()[3],
        _f(_x4_sweep()[4] / _x4_sweep()[2], 0), _h(_x4_sweep()[4]), _f(_x4_sweep()[1] / _x4_sweep()[4])),
    "x4.fill": lambda: f"{100 * 108 / (_x4_sweep()[2] * _x4_sweep()[3]):.0f}%",
    "x4.slots": lambda: str(_x4_sweep()[2] * _x4_sweep()[3]),
    "x4.sweep_1gpu_h": lambda: _h(_x4_sweep()[1]),
    "x4.vs_faithful": lambda: _f(_x4()["faithful_fp32_1gpu"]["extrapolated_sweep_108_s"] / _x4_sweep()[1], 1),
    "x4.pct": lambda: f"{100 * _x4()['paper_bfloat16_1gpu']['P12']['executed_tflops'] / _peak(_x4()):.0f}%",
    "x4.fast": lambda: "{} s on 1 GPU, {} s on 4 GPUs (plus {}-{} s compile)".format(
        _f(_x4()["fast_1gpu"]["P108"]["total_s"], 1), _f(_x4()["fast_4gpu"]["P108"]["total_s"], 1),
        _f(min(_x4()[k]["P108"]["chunk_run"]["compile_s"] for k in ("fast_1gpu", "fast_4gpu")), 0),
        _f(max(_x4()[k]["P108"]["chunk_run"]["compile_s"] for k in ("fast_1gpu", "fast_4gpu")), 0)),
    "x4.fast_steps": lambda: str(_x4()["fast_1gpu"]["P108"]["steps"]),
    "x4.step_verdict": lambda: "met" if _x4()["paper_bfloat16_4gpu"]["P48"]["critic_steps_per_s"]
    / _x4()["paper_bfloat16_1gpu"]["P12"]["critic_steps_per_s"] >= _ISSUE7_SCALING else "missed",
    "x4.sweep_verdict": lambda: "meeting" if _x4_sweep()[1] / _x4_sweep()[4] >= _ISSUE7_SCALING else "short of",
    "x4.target": lambda: _f(_ISSUE7_SCALING, 1),
    "why.chunks_2gpu": lambda: "{n_chunks} chunks of {chunk} ({pad} padding problems)".format(
        pad=_crit()["paper_bfloat16_2gpu"]["P108"]["n_chunks"] * _crit()["paper_bfloat16_2gpu"]["P108"]["chunk"] - 108,
        **_crit()["paper_bfloat16_2gpu"]["P108"]),
}


# -- notebooks/README.md: the committed Shakespeare speeches ---------------------------------------------------
_SPEECHES = "notebooks/data/shakespeare_speeches.jsonl.gz"


def _speeches() -> int:
    import gzip

    with gzip.open(ROOT / _SPEECHES, "rt") as f:
        return sum(1 for line in f if line.strip())


BENCH_README.update({
    "nb.shakespeare_speeches": lambda: _int(_speeches()),
    "nb.shakespeare_kb": lambda: _f((ROOT / _SPEECHES).stat().st_size / 1e3, 0),
})


GENERATORS: dict = {**WIM, **NOTEBOOKS, **BENCH, **ACCURACY, **BMI, **SPEED, **E2E, **ACROSS_HOSTS, **BENCH_README}


# -- rewriting and checking -----------------------------------------------------------------------------------
def render(text: str) -> tuple[str, list[str]]:
    """text with every region regenerated, and the problems found (unknown names, failing generators)."""
    problems = []

    def fill(m):
        name, old = m.group(1), m.group(2)
        if name not in GENERATORS:
            problems.append(f"unknown region name {name!r}: add it to GENERATORS in scripts/make_docs.py")
            return m.group(0)
        try:
            new = GENERATORS[name]()
        except Exception as e:  # noqa: BLE001 - reported with the region's name
            problems.append(f"{name}: {type(e).__name__}: {e}")
            return m.group(0)
        return f"<!-- gen:{name} -->{new}<!-- /gen -->"

    return REGION.sub(fill, text), problems


def differences(files=DOC_FILES) -> list[str]:
    """One line per region whose quoted text differs from its JSON, plus unknown or failing regions."""
    out = []
    for rel in files:
        text = (ROOT / rel).read_text()
        new, problems = render(text)
        out += [f"{rel}: {p}" for p in problems]
        for (name, old), (_, fresh) in zip(REGION.findall(text), REGION.findall(new)):
            if old != fresh:
                out.append(f"{rel}: {name}: the doc says {old!r}, the results say {fresh!r}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on any difference")
    args = parser.parse_args(argv)
    if args.check:
        diffs = differences()
        print("\n".join(diffs) or "docs match the results")
        return 1 if diffs else 0
    failed = []
    for rel in DOC_FILES:
        path = ROOT / rel
        text = path.read_text()
        new, problems = render(text)
        failed += [f"{rel}: {p}" for p in problems]
        if new != text:
            path.write_text(new)
            print(f"rewrote {rel}")
    if failed:
        print("\n".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
