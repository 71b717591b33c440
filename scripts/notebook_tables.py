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
    return [f"| {head} |", "|" + "---|" * (head.count("|") + 1)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def _span(values, digits: int = 2) -> str:
    lo, hi = f"{min(values):,.{digits}f}", f"{max(values):,.{digits}f}"
    return lo if lo == hi else f"{lo} to {hi}"


def _doc(title: str, name: str, intro: str, body: list[str], found: str) -> str:
    head = [f"**{title}** (`{name}.json`)", "",
            f"Written by `scripts/notebook_tables.py` from the JSON of `notebooks/{name}.py`. {intro}", ""]
    return "\n".join(head + body + ["", f"The notebook's own summary: {found}"]) + "\n"


def icl_ascent(nb: dict) -> str:
    rows = [(cat, r["shots"], len(r["layers"]), f"{r['curve_layer_mean'][-1]:.2f}", f"{r['mi_macro_ceiling'][-1]:.2f}",
             nb["ceiling_shot"][cat], r["saturation_shot"]) for cat, r in nb["categories"].items()]
    return _doc("ICL ascent", "icl_ascent",
                f"N = {nb['config']['n_samples']:,} lists per category; noise-regularised IE at "
                f"sigma = {nb['sigma']:g}.",
                _table("category | shots | layers | E(t) at the last token (mean over layers) | sample ceiling ln N | "
                       "shot at which the context MI reaches ln N | shot from which entity gains are < 10% of the "
                       "largest", rows), nb["found"])


def text_vs_icl(nb: dict) -> str:
    rows = []
    for key, label in (("text", "KJV text"), ("icl", "country lists")):
        curve = np.asarray(nb[key]["token_curve"]).mean(axis=0)
        rows.append((label, f"{curve[0]:.2f} to {curve[-1]:.2f}", f"{np.mean(np.diff(curve) > 0):.0%}",
                     f"{np.mean(nb[key]['ie']):.2f}", f"{nb[key]['prefix_entropy'][-1]:.2f}"))
    return _doc("Text against ICL lists", "text_vs_icl",
                f"N = {nb['config']['n_samples']:,} windows of T = {nb['config']['seq_len']} tokens; noise-regularised "
                f"IE at sigma = {nb['sigma']:g}.",
                _table("data | E(t), first to last token (mean over layers) | steps where E(t) rises | mean IE over "
                       "layers | prefix entropy at the last token", rows), nb["found"])


def trained_vs_random(nb: dict) -> str:
    rows = []
    for model, by_w in nb["models"].items():
        for data, label in (("data", "KJV"), ("shuffled", "KJV, tokens shuffled")):
            trained, random = by_w["trained"][data], by_w["random"][data]
            flags = trained["macro_saturated"] + random["macro_saturated"]
            above = np.mean(np.asarray(trained["ie"]) - np.asarray(random["ie"]) > 0.05)
            rows.append((model, label, f"{np.mean(trained['ie']):.2f}", f"{np.mean(random['ie']):.2f}", f"{above:.0%}",
                         f"{sum(flags)} of {len(flags)}"))
    return _doc("Trained against random weights", "trained_vs_random",
                f"N = {nb['config']['n_samples']:,} windows of {nb['config']['seq_len']} tokens; all layers; "
                f"noise-regularised IE at sigma = {nb['sigma']:g}.",
                _table("model | data | mean IE, trained | mean IE, random | layers where trained > random by more "
                       "than 0.05 nat | macro MI at its counting ceiling (trained and random)", rows), nb["found"])


def hallucination_signal(nb: dict) -> str:
    ci = lambda r, lo, hi: f"{r:.3f} [{lo:.3f}, {hi:.3f}]"  # noqa: E731
    rows = [("four-shot country lists", f"{nb['n']:,}"),
            ("greedy next entity right", f"{nb['n_right']} ({nb['accuracy']:.0%})"),
            ("correlation of right with the layer-mean pointwise IE, r [95% bootstrap CI]", ci(*nb["corr_ie"])),
            ("correlation of right with the spread of IE over noise draws, r [95% bootstrap CI]",
             ci(*nb["corr_spread"])),
            ("mean pointwise IE", f"{nb['mean_pointwise_ie']:.2f}")]
    return _doc("Hallucination signal", "hallucination_signal",
                f"Pointwise noise-regularised IE at sigma = {nb['sigma']:g}, {nb['config']['n_draws']} noise draws.",
                _table("quantity | value", rows), nb["found"])


def text_origin(nb: dict) -> str:
    cfg, rows, auc = nb["config"], [], []
    for t in cfg["temperatures"]:
        run = nb["runs"][str(float(t))]
        for source, by in run["sources"].items():
            human, model = by["human"]["ie_sum"], by["model"]["ie_sum"]
            rows.append((f"{t:g}", source, f"{human:.1f}", f"{model:.1f}", f"{model / human:.2f}"))
        c = run["classifier"]
        auc.append((f"{t:g}", f"{c['auc']:.2f} (folds {_span(c['fold_auc'])})", f"{c['auc_mean_ie']:.2f}",
                    f"{c['auc_logprob']:.2f}"))
    body = _table("temperature | source | IE summed over the layers, human | model | model / human", rows) + [""]
    body += _table("temperature | cross-validated AUC, per-sample IE trajectories | AUC, layer-mean IE alone | AUC, "
                   "the model's own mean log-probability", auc)
    return _doc("Text origin", "text_origin",
                f"{cfg['n_prompts']} prompts per source, {cfg['prompt_len']} + {cfg['continuation_len']} tokens, "
                f"layers {', '.join(map(str, cfg['layers']))}; noise-regularised IE at sigma = {nb['sigma']:g}. Model "
                "text: SmolLM2-135M-Instruct's own continuations (temperature 0: greedy).", body, nb["found"])


def estimator_sensitivity(nb: dict) -> str:
    layers, names = nb["layers"], nb["names"]
    counting = names.index("exact counting")
    rows = []
    for k, name in enumerate(names):
        st = nb["settings"][name]
        rows.append((name, *(f"{v:,.2f}" for v in st["ie"]), _span(st["mi_macro"][1:]),
                     f"{sum(st['macro_saturated'])}/{len(layers)}", f"{nb['rank_agreement'][k][counting]:.2f}"))
    cfg = nb["config"]
    return _doc("Estimator sensitivity", "estimator_sensitivity",
                f"N = {cfg['n_samples']:,} four-shot country lists; the fast protocol ran {cfg['fast_steps']:,} "
                f"steps and the paper protocol {cfg['paper_steps']:,} of its 10,000 on this CPU (not converged).",
                _table("setting | " + " | ".join(f"IE, layer {l}" for l in layers) + " | macro MI, layers >= 1 | "
                       "macro saturated | rank agreement with counting", rows), nb["found"])


def what_ie_measures(nb: dict) -> str:
    d, c, g, noise = nb["data"], nb["counting"], nb["gaussian"], nb["noise"]
    sigmas, layers = noise["sigmas"], nb["layers"]
    ie_noise, macro_noise = np.asarray(noise["ie_nats"]), np.asarray(noise["macro_mi_nats"])
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
         + f" (expected Wishart bias {g['expected_null_bias_nats']:.2f})"),
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
    body += ["", "The noise estimator by sigma (sigma in units of each variable's centred std):", ""]
    body += _table("sigma | IE, layers >= 1 | IE, layer 0 | macro MI, layers >= 1 | largest half-width of a macro "
                   "MI 95% CI", [
                       (f"{s:g}", _span(ie_noise[1:, k]), f"{ie_noise[0, k]:.2f}", _span(macro_noise[1:, k]),
                        f"{((ci[:, k, 1] - ci[:, k, 0]) / 2).max():.2f}") for k, s in enumerate(sigmas)])
    body += ["", "Per layer:", ""]
    body += _table("layer | distinct states (block input) | macro MI, counting | IE, counting | Gaussian closed form | "
                   + " | ".join(f"IE, sigma = {s:g}" for s in sigmas)
                   + " | macro MI, sigma = 3 | micro MI, sigma = 1 | centred std, macro output | centred std, a "
                     "country token's output alone", [
                       (l, f"{nb['distinct_states']['block_input'][i]:,}", f"{c['macro_mi_nats'][i]:.2f}",
                        f"{c['ie_nats'][i]:.2f}", f"{g['mi_nats'][i]:,.0f}",
                        *(f"{v:.2f}" for v in ie_noise[i]), f"{macro_noise[i, sigmas.index(3.0)]:.2f}",
                        f"{noise['micro_mean_nats'][i][sigmas.index(1.0)]:.2f}",
                        f"{noise['macro_scale_input_output'][i][1]:.2f}", f"{micro_scale[i]:.2f}")
                       for i, l in enumerate(layers)])
    return _doc("What IE measures", "what_ie_measures",
                "SmolLM2-135M-Instruct, fp32; all values in nats.", body, nb["findings"])


WRITERS = {f.__name__: f for f in (what_ie_measures, icl_ascent, text_vs_icl, trained_vs_random, hallucination_signal,
                                   text_origin, estimator_sensitivity)}


def tables(results: pathlib.Path = RESULTS) -> dict[pathlib.Path, str]:
    return {results / f"{name}.md": write(json.loads((results / f"{name}.json").read_text()))
            for name, write in WRITERS.items()}


if __name__ == "__main__":
    for path, text in tables().items():
        path.write_text(text)
        print(f"wrote {path}")
