"""Each notebook's table, notebooks/results/<name>.md, from the JSON the notebook wrote (`make docs` writes them).

A notebook is a script that runs its analysis when imported, so its table writer lives here, one function per
notebook, each a pure function of the notebook's JSON. The table carries the numbers its README section talks
about, then the notebook's own "what we found" paragraph. All values in nats unless said.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "results"


def _table(head: str, rows) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731  (a "|IE|" in a sentence stays in its cell)
    return [f"| {head} |", "|" + "---|" * (head.count("|") + 1)] + ["| " + " | ".join(map(cell, r)) + " |" for r in rows]


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _span(values, digits: int = 2) -> str:
    """'a to b' over the finite values ('a' if they print alike), 'n/a' if there are none."""
    values = _finite(values)
    if not values:
        return "n/a"
    lo, hi = f"{min(values):,.{digits}f}", f"{max(values):,.{digits}f}"
    return lo if lo == hi else f"{lo} to {hi}"


def _num(value, digits: int = 2, sign: str = "") -> str:
    """A number, or 'n/a' where it is NaN/None (not measured)."""
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):{sign},.{digits}f}"


def _sigmas(value) -> str:
    return ", ".join(f"{v:g}" for v in value) if isinstance(value, list) else ("-" if value is None else f"{value:g}")


def _verdicts(nb: dict) -> list[str]:
    """The paper's findings this notebook re-reads on the default: claim, verdict, where, evidence."""
    rows = []
    for v in nb.get("verdicts", []):
        measured = v["n_layers_measured"]
        where = "-" if measured is None else (", ".join(map(str, measured)) if isinstance(measured, list) else measured)
        rows.append((v["claim"], f"**{v['verdict']}**", _sigmas(v["sigma"]),
                     f"{where} of {v['n_layers']}" if v["n_layers"] else where, v["evidence"]))
    return ["", "The paper's findings, re-read on the default:", ""] + _table(
        "paper's finding | verdict | sigma | layers measured | evidence", rows) if rows else []


def _doc(title: str, name: str, intro: str, body: list[str], found: str) -> str:
    head = [f"**{title}** (`{name}.json`)", "",
            f"Written by `scripts/notebook_tables.py` from the JSON of `notebooks/{name}.py`. {intro}", ""]
    return "\n".join(head + body + ["", f"The notebook's own summary: {found}"]) + "\n"


DEFAULT = ("the default of `ie_jax.measure`: noise-regularised IE over its sigma grid, at the sigma the sweep reports "
           "(the smallest with the most measured layers); an IE is a number only where both terms are measurements")


def icl_ascent(nb: dict) -> str:
    rows, by_sigma = [], []
    cats = nb["categories"]
    for cat, r in cats.items():
        T, k = 2 * r["shots"], r["reported"]["index"]
        fine = r["finest"]
        steps = r["demo_steps"]
        rows.append((cat, r["shots"], f"{r['sigma']:g}", f"{r['n_layers_measured']} of {r['n_layers']}",
                     f"{r['measured_positions'][k]} of {T}", _span(r["curve_layer_mean"]),
                     _num(r["climb"], sign="+"), f"{steps['up']} / {steps['down']} / {steps['flat']}",
                     _num(r["max_macro_mi"]),
                     "-" if fine["sigma"] is None else f"{fine['sigma']:g}: first {fine['positions']}, "
                     + " -> ".join(_num(v) for v in fine["curve"][:fine["positions"]]),
                     r["verdict_ascent"]))
    first = next(iter(cats.values()))
    for k, s in enumerate(first["grid"]["sigmas"]):
        by_sigma.append((f"{s:g}", *(f"{r['measured_positions'][k]} of {2 * r['shots']}" for r in cats.values()),
                         *(f"{r['grid']['n_layers_measured'][k]}" for r in cats.values())))
    body = _table("category | shots | reported sigma | layers with a measured IE there | positions with E(t) measured "
                  "at every layer | layer-mean E(t) | climb, first to last comma | demonstrations up / down / within "
                  f"{nb['negligible_nats']} nat | largest macro MI | finest sigma with E(t) measured at >= 2 positions: "
                  "layer-mean E(t) there | step-wise ascent", rows)
    body += ["", "By sigma: positions t (from the first) where E(t) is measured at every layer, and layers with a measured "
                 "IE (last token):", ""]
    body += _table("sigma | " + " | ".join(f"positions, {c}" for c in cats) + " | "
                   + " | ".join(f"layers, {c}" for c in cats), by_sigma)
    body += _verdicts(nb)
    return _doc("ICL ascent", "icl_ascent",
                f"N = {nb['config']['n_samples']:,} lists per category, layers {', '.join(map(str, first['layers']))}; "
                f"{DEFAULT}. All values in nats.", body, nb["found"])


def text_vs_icl(nb: dict) -> str:
    rows = []
    for key, label in (("text", "KJV text"), ("icl", "country lists")):
        r, mv = nb[key], nb["movement"][key]
        curve = r["curve_layer_mean"]
        rows.append((label, f"{r['reported']['setting']}", f"{r['n_layers_measured']} of {r['n_layers']}",
                     f"{_num(curve[0])} to {_num(curve[-1])}", _num(mv["move"]), f"{_num(100 * mv['steps_up'], 0)}%",
                     _num(r["ie_mean"]), _num(max(_finite(r["mi_macro"]), default=float("nan"))),
                     f"{r['prefix_entropy'][-1]:.2f}"))
    comp = nb["comparison"]
    return _doc("Text against ICL lists", "text_vs_icl",
                f"N = {nb['config']['n_samples']:,} windows of T = {nb['config']['seq_len']} tokens; {DEFAULT}; both read "
                f"at sigma = {nb['sigma']:g} ({comp['n_layers_measured_in_all']} of {len(comp['measured_in_all'])} layers "
                "measured in both). All values in nats.",
                _table("data | own reported setting | layers measured at the common sigma | E(t), first to last token "
                       "(mean over measured layers) | largest distance of E(t) from E(0) | steps where E(t) rises | mean "
                       "IE over the measured layers | largest macro MI | prefix entropy at the last token", rows)
                + _verdicts(nb), nb["found"])


def trained_vs_random(nb: dict) -> str:
    rows = []
    for model, by_w in nb["models"].items():
        for data, label in (("data", "KJV"), ("shuffled", "KJV, tokens shuffled")):
            c = by_w[f"comparison_{data}"]
            rows.append((model, label, f"{c['sigma']:g}", f"{c['n_layers_both']} of {c['n_layers']}",
                         _num(c["mean_trained"]), _num(c["mean_random"]), _num(c["largest_abs_ie"]),
                         f"{_num(100 * c['above'], 0)}%", f"{_num(100 * c['below'], 0)}%", c["verdict"]))
    return _doc("Trained against random weights", "trained_vs_random",
                f"N = {nb['config']['n_samples']:,} windows of {nb['config']['seq_len']} tokens; {DEFAULT}; trained and "
                "random read at one common sigma per input. All values in nats.",
                _table("model | data | common sigma | layers measured in both | mean IE, trained | mean IE, random | "
                       "largest abs IE where the macro input varies | layers where trained > random by more than "
                       f"{nb['negligible_nats']} nat | ... where trained < random by more | trained > random", rows)
                + _verdicts(nb), nb["found"])


def hallucination_signal(nb: dict) -> str:
    ci = lambda r, lo, hi: f"{_num(r, 3)} [{_num(lo, 3)}, {_num(hi, 3)}]"  # noqa: E731
    sweep = nb["sweep"]
    rows = [("four-shot country lists", f"{nb['n']:,}"),
            ("greedy next entity right", f"{nb['n_right']} ({nb['accuracy']:.0%})"),
            ("sigma (the default sweep's reported sigma on these lists)", f"{nb['sigma']:g}"),
            ("layers with a measured IE there (scored per sample)", f"{nb['n_layers_scored']} of {len(nb['layers'])}"),
            ("mean IE over those layers (the sweep)", _num(sweep["ie_mean"])),
            ("correlation of right with the layer-mean pointwise IE, r [95% bootstrap CI]", ci(*nb["corr_ie"])),
            ("correlation of right with the spread of IE over noise draws, r [95% bootstrap CI]",
             ci(*nb["corr_spread"])),
            ("mean pointwise IE", _num(nb["mean_pointwise_ie"])),
            ("layer-mean pointwise IE of a sequence, range",
             "n/a" if nb["pointwise_ie_range"] is None else _span(nb["pointwise_ie_range"]))]
    return _doc("Hallucination signal", "hallucination_signal",
                f"Pointwise noise-regularised IE at the reported sigma, {nb['config']['n_draws']} noise draws; {DEFAULT}.",
                _table("quantity | value", rows) + _verdicts(nb), nb["found"])


def text_origin(nb: dict) -> str:
    cfg, rows, auc = nb["config"], [], []
    for t in cfg["temperatures"]:
        run = nb["runs"][str(float(t))]
        comp = run["comparison"]
        for source, by in run["sources"].items():
            m = by["mean_ie_measured_in_all"]
            rows.append((f"{t:g}", source, f"{run['sigma']:g}",
                         f"{comp['n_layers_measured_in_all']} of {len(comp['measured_in_all'])}", _num(m["human"]),
                         _num(m["model"]), _num(m["model"] - m["human"], sign="+"), _num(m["largest_abs_ie"])))
        c = run["classifier"]
        auc.append((f"{t:g}", f"{run['sigma']:g}", c["n_layers"], f"{_num(c['auc'])} (folds {_span(c['fold_auc'])})",
                    _num(c["auc_mean_ie"]), _num(c["auc_logprob"])))
    body = _table("temperature | source | common sigma | layers measured in every group | mean IE, human | mean IE, model "
                  "| model - human | largest abs IE where the macro input varies", rows) + [""]
    body += _table("temperature | sigma | layers (features) | cross-validated AUC, per-sample IE trajectories | AUC, "
                   "layer-mean IE alone | AUC, the model's own mean log-probability", auc)
    return _doc("Text origin", "text_origin",
                f"{cfg['n_prompts']} prompts per source, {cfg['prompt_len']} + {cfg['continuation_len']} tokens, "
                f"layers {', '.join(map(str, cfg['layers']))}; {DEFAULT}; every group read at one common sigma per "
                "temperature. Model text: SmolLM2-135M-Instruct's own continuations (temperature 0: greedy). All "
                "values in nats.", body + _verdicts(nb), nb["found"])


def estimator_sensitivity(nb: dict) -> str:
    layers, names = nb["layers"], nb["names"]
    ref = names.index("noise, default grid")
    rows = []
    for k, name in enumerate(names):
        st = nb["settings"][name]
        rows.append((name, st["setting"], *st["ie_text"], f"{st['n_layers_measured']}/{len(layers)}",
                     _span(st["mi_macro"][1:]), f"{sum(st['macro_saturated'])}/{len(layers)}",
                     f"{_num(nb['rank_agreement'][k][ref])} ({nb['n_common'][k][ref]})"))
    cfg = nb["config"]
    return _doc("Estimator sensitivity", "estimator_sensitivity",
                f"N = {cfg['n_samples']:,} four-shot country lists; the fast protocol ran {cfg['fast_steps']:,} "
                f"steps and the paper protocol {cfg['paper_steps']:,} of its 10,000 on this CPU (not converged). An IE "
                "that is not a measurement is printed as its bound (>=, <=) or n/a.",
                _table("setting | read at | " + " | ".join(f"IE, layer {l}" for l in layers) + " | layers measured | "
                       "macro MI, layers >= 1 | macro saturated | rank agreement with the default (common layers)", rows)
                + _verdicts(nb), nb["found"])


def what_ie_measures(nb: dict) -> str:
    d, c, g, noise = nb["data"], nb["counting"], nb["gaussian"], nb["noise"]
    sigmas, layers = noise["sigmas"], nb["layers"]
    ie_noise, macro_noise = np.asarray(noise["ie_nats"], float), np.asarray(noise["macro_mi_nats"])
    ci = np.asarray(noise["macro_ci95_nats"])
    micro_scale = np.asarray(noise["micro_scale_input_output"])[:, 0, 1]  # a country token alone, block output
    body = _table("quantity | value", [
        ("sequences N (ICL country lists, four shots)", f"{d['n_samples']:,} of {d['seq_len']} tokens"),
        ("distinct sequences", f"{d['n_distinct_sequences']:,}"),
        ("single-token countries", d["n_entities"]),
        ("sample entropy (ln N at most)", f"{d['sample_entropy_nats']:.2f}"),
        ("ln N", f"{d['ln_n_nats']:.2f}"),
        ("generating entropy: ln of the ordered lists", f"{d['generating_entropy_nats']:.2f} "
                                                        f"(ln {round(math.exp(d['generating_entropy_nats'])):,})"),
        ("tolerance of `distinct_states` (of the centred scale)", f"{nb['distinct_states']['rtol']:g}"),
        ("micro MI at a country position (ln 24) / mean over positions", f"{c['ln_24_nats']:.2f} / "
                                                                          f"{c['micro_mean_nats'][1]:.2f}"),
        ("Gaussian closed form on shuffled pairs, layers " + ", ".join(g["shuffled_null_nats"]),
         ", ".join(f"{v:.1f}" for v in g["shuffled_null_nats"].values())
         + f" (expected Wishart bias {_num(g['expected_null_bias_nats'])})"),
        ("noise estimator: Monte Carlo draws, normaliser", f"{noise['n_mc']}, {noise['normaliser']}"),
        ("notebook run time at IE_NB_SCALE=large", f"{nb['elapsed_s']:.0f} s"),
    ])
    body += ["", "The counting value against N (layer 1):", ""]
    body += _table("N | distinct sequences | ln N | macro MI | IE", [
        (f"{int(n):,}", f"{r['n_distinct_sequences']:,}", f"{r['ln_n_nats']:.2f}", f"{r['macro_layer1_nats']:.2f}",
         f"{r['ie_layer1_nats']:.2f}") for n, r in nb["counting_growth"].items()])
    body += ["", f"Neural estimates (fast protocol, batch {nb['config']['batch_size']}, {nb['config']['steps']:,} "
                 "steps, held-out readout):", ""]
    rows = []
    for bound, label in (("infonce", "InfoNCE"), ("dv", "DV held-out")):
        r = nb["neural"][bound]
        for k, problem in enumerate(r["problems"]):
            flags = [f for f in ("saturated", "still_increasing") if r[f][k]]
            rows.append((label, problem, f"{r['value_nats'][k]:.2f} [{r['ci95_nats'][k][0]:.2f}, "
                                         f"{r['ci95_nats'][k][1]:.2f}]", f"{r['ceiling_nats'][k]:.2f}",
                         f"{r['estimator_cap_nats']:.2f}", f"{r['truth_by_counting_nats'][k]:.2f}",
                         ", ".join(flags) or "-"))
    body += _table("estimator | problem | value [95% CI] | ceiling | estimator cap | truth by counting | flags", rows)
    measured = np.asarray(noise["ie_measured"], bool)
    flags = noise["macro_flags"]
    n_flag = lambda k, f: sum(f in flags[i][k] for i in range(1, len(layers)))  # noqa: E731
    body += ["", "The noise estimator by sigma (sigma in units of each variable's centred std; IE only where both "
                 "terms are measurements):", ""]
    body += _table("sigma | layers with a measured IE | IE where measured, layers >= 1 | IE, layer 0 | macro MI, layers "
                   ">= 1 | macro flagged saturated / sample-specific, layers >= 1 | largest half-width of a macro MI "
                   "95% CI", [
                       (f"{s:g}", f"{int(measured[:, k].sum())} of {len(layers)}", _span(ie_noise[1:, k]),
                        _num(ie_noise[0, k]), _span(macro_noise[1:, k]), f"{n_flag(k, 'saturated')} / "
                        f"{n_flag(k, 'sample_specific')}", f"{((ci[:, k, 1] - ci[:, k, 0]) / 2).max():.2f}")
                       for k, s in enumerate(sigmas)])
    shown = [k for k, s in enumerate(sigmas) if s in (1.0, 3.0, 10.0, 15.0, 30.0)]
    raw, bound = np.asarray(noise["macro_minus_micro_nats"]), noise["ie_bound"]
    as_text = lambda i, k: (f"{raw[i, k]:.2f}" if measured[i, k] else  # noqa: E731
                            {"lower": ">= ", "upper": "<= "}[bound[i][k]] + f"{raw[i, k]:.2f}" if bound[i][k] else "n/a")
    count_ok = c["ie_measured"]
    # the macro MI where IE is first measured at every layer (else the largest sigma)
    at = sigmas.index(noise["measured_from_sigma"]) if noise.get("measured_from_sigma") else len(sigmas) - 1
    body += ["", "Per layer (IE printed as a bound, >= or <=, or n/a where it is not a measurement):", ""]
    body += _table("layer | distinct states (block input) | macro MI, counting | IE, counting | Gaussian closed form | "
                   + " | ".join(f"IE, sigma = {sigmas[k]:g}" for k in shown)
                   + f" | macro MI, sigma = {sigmas[at]:g} | micro MI, sigma = 1 | centred std, macro output | centred std, a "
                     "country token's output alone", [
                       (l, f"{nb['distinct_states']['block_input'][i]:,}", f"{c['macro_mi_nats'][i]:.2f}",
                        ("" if count_ok[i] else ">= ") + f"{c['ie_nats'][i]:.2f}", f"{g['mi_nats'][i]:,.0f}",
                        *(as_text(i, k) for k in shown), f"{macro_noise[i, at]:.2f}",
                        f"{noise['micro_mean_nats'][i][sigmas.index(1.0)]:.2f}",
                        f"{noise['macro_scale_input_output'][i][1]:.2f}", f"{micro_scale[i]:.2f}")
                       for i, l in enumerate(layers)])
    return _doc("What IE measures", "what_ie_measures",
                "SmolLM2-135M-Instruct, fp32; all values in nats.", body, nb["findings"])


WRITERS = {f.__name__: f for f in (what_ie_measures, icl_ascent, text_vs_icl, trained_vs_random, hallucination_signal,
                                   text_origin, estimator_sensitivity)}


def findings(notebooks: dict[str, dict]) -> str:
    """One table of every paper finding the notebooks re-read on the default, with its verdict (notebooks/README)."""
    rows = [(f"`{name}`", v["claim"], f"**{v['verdict']}**", _sigmas(v["sigma"]), v["evidence"])
            for name, nb in notebooks.items() for v in nb.get("verdicts", [])]
    return "\n".join([
        "**The paper's findings on the default** (`findings.md`)", "",
        "Written by `scripts/notebook_tables.py` from the notebooks' JSON: each notebook judges the findings it "
        "tests from its own numbers (its table says how). Verdicts: holds; does not hold; cannot be tested at "
        "measurable resolutions (where IE is a measurement, the effect is within "
        f"{next(nb['negligible_nats'] for nb in notebooks.values() if 'negligible_nats' in nb)} nat of 0, or no layer "
        "is measured).", ""] + _table("notebook | paper's finding | verdict | sigma | evidence", rows)) + "\n"


def tables(results: pathlib.Path = RESULTS) -> dict[pathlib.Path, str]:
    notebooks = {name: json.loads((results / f"{name}.json").read_text()) for name in WRITERS}
    out = {results / f"{name}.md": write(notebooks[name]) for name, write in WRITERS.items()}
    out[results / "findings.md"] = findings(notebooks)
    return out


if __name__ == "__main__":
    for path, text in tables().items():
        path.write_text(text)
        print(f"wrote {path}")
