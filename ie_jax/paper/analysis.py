"""The paper analyses behind the notebooks (issues 8 and 27): each takes models, data and sizes and returns plain
dicts of numpy arrays, so users can rerun them on their own models and texts.

Every IE here is the default of `ie_jax.measure`: the noise-regularised IE(sigma) over the grid
`ie_jax.mi.estimators.DEFAULT_SIGMAS` (sigma in units of each variable's centred std), read at the setting the sweep
reports (`ie_jax.ie.measure.reported_setting`: the smallest sigma at which the most layers have a measured IE). An IE is
a number only where both of its terms are measurements; elsewhere it is NaN, with a bound and a reason beside it
(`IEResult.ie_bound`, `ie_reason`), and every mean or sum here runs over the measured entries only, with their count
next to it. Two groups that are compared (text against ICL lists, trained against random weights, human against
model text) are read at one setting, `common_setting`. Per-sample IE (`pointwise_ie`) needs one sigma: the reported
sigma of the sweep on the same data unless one is given. Units: nats throughout.
The pieces they use live elsewhere: statistics in `ie_jax.paper.stats`, generation in `ie_jax.paper.generation`, data
helpers in `ie_jax.ie.data`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile

import numpy as np

from ie_jax.ie import data as data_lib
from ie_jax.ie import variables as variables_lib
from ie_jax.paper.generation import continuation_logprob, generate, next_token_logits
from ie_jax.mi.estimators import DEFAULT_SIGMAS
from ie_jax.mi.noise import pointwise_noise_mi
from ie_jax.paper.stats import bootstrap_ci, cross_validated_auc, point_biserial, rank_agreement, roc_auc

__all__ = ["DEFAULT_SIGMAS", "NEGLIGIBLE_NATS", "VERDICTS", "summarise", "common_setting", "compared", "pointwise_ie",
           "icl_ascent", "text_vs_icl", "trained_vs_random", "hallucination_signal", "text_origin",
           "estimator_sensitivity", "finding", "notebook_dirs"]

# An effect smaller than this is not told apart from 0: issue 27's accuracy bar for an MI estimate (0.1 nat).
NEGLIGIBLE_NATS = 0.1
# What a paper finding is on the default: seen, contradicted, or not testable where IE is a measurement.
VERDICTS = ("holds", "does not hold", "cannot be tested at measurable resolutions")


def _sigma(result, index: int | None = None) -> float | None:
    """The noise level of setting `index` (default: the selected one); None for other estimators."""
    params = result.metadata.get("setting_params") or []
    i = result.selected if index is None else index
    return params[i].get("sigma") if i < len(params) else None


def _measured_mean(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean over the finite entries along `axis`, NaN where there are none; how many there are)."""
    values = np.asarray(values, float)
    ok = np.isfinite(values)
    n = ok.sum(axis)
    total = np.where(ok, values, 0.0).sum(axis)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan), n


def summarise(result) -> dict:
    """Key arrays of an IEResult at its selected setting, nats: per layer [L] and, with a token curve, [L, T].

    ie: NaN where a term is not a measurement (ie_measured False; ie_bound, ie_bound_value and ie_reason say what
    it is instead, ie_text how to print it). ie_mean / ie_sum: over the n_layers_measured layers where it is
    measured (NaN if none). sigma: the selected noise level (None for other estimators); reported: the sweep's
    own choice ({"index", "setting", "reason"}). token_curve: NaN where a term is not measured; curve_layer_mean
    [T] the mean over the layers measured at t, curve_n_layers [T] their number. grid: per setting of the sweep
    [S]: "settings", "sigmas", "n_layers_measured" [S], "ie" [S, L] and, with a token curve, "curve_layer_mean"
    and "curve_n_layers" [S, T].
    """
    totals = result.totals
    macro = result.mi_macro_diagnostics
    out = {
        "layers": np.asarray(result.layers), "setting": result.setting, "sigma": _sigma(result),
        "reported": result.metadata.get("selected_setting"),
        "ie": result.ie, "ie_ci": result.ie_ci, "ie_measured": result.ie_measured, "ie_bound": result.ie_bound,
        "ie_bound_value": result.ie_bound_value, "ie_reason": result.ie_reason, "ie_text": result.ie_text(),
        "n_layers_measured": totals["sum_over_layers"]["n_layers_measured"], "n_layers": len(result.layers),
        "ie_mean": totals["mean_over_layers"]["value"], "ie_sum": totals["sum_over_layers"]["value"],
        "mi_macro": result.mi_macro, "mi_micro_mean": result.mi_micro_mean,
        "mi_macro_ceiling": result.mi_macro_ceiling,
        "macro_saturated": np.array([bool(d.get("saturated")) for d in macro]),
        "macro_sample_specific": np.array([bool(d.get("sample_specific")) for d in macro]),
        "macro_constant": np.array([bool(d.get("constant")) for d in macro]),
    }
    grid = [result.select(i) for i in range(len(result.settings))]
    out["grid"] = {"settings": list(result.settings), "sigmas": [_sigma(result, i) for i in range(len(grid))],
                   "n_layers_measured": np.array([int(g.ie_measured.sum()) for g in grid]),
                   "ie": np.array([g.ie for g in grid])}
    if result.has_token_curve:
        out["token_curve"] = result.token_curve
        out["token_curve_ci"] = result.token_curve_ci
        out["curve_layer_mean"], out["curve_n_layers"] = _measured_mean(result.token_curve)
        curves = [_measured_mean(g.token_curve) for g in grid]
        out["grid"]["curve_layer_mean"] = np.array([c[0] for c in curves])
        out["grid"]["curve_n_layers"] = np.array([c[1] for c in curves])
    return out


def common_setting(results) -> tuple[int, str]:
    """(index, why) of the one setting at which sweeps of the same grid and layers are compared: the most layers
    with a measured IE in every sweep, of those the smallest sigma (`ie_jax.ie.measure.reported_setting` for one)."""
    results = list(results)
    settings = results[0].settings
    if any(r.settings != settings or r.layers != results[0].layers for r in results):
        raise ValueError("common_setting compares sweeps of one estimator grid and one set of layers")
    counts = [int(np.all([r.select(i).ie_measured for r in results], axis=0).sum()) for i in range(len(settings))]
    sigmas = [_sigma(results[0], i) or 0.0 for i in range(len(settings))]
    index = min(range(len(settings)), key=lambda i: (-counts[i], sigmas[i], i))
    if len(settings) == 1:
        return index, "the only setting"
    tie = " (the smallest sigma among those)" if counts.count(counts[index]) > 1 else ""
    return index, (f"{settings[index]}: IE measured in all {len(results)} groups at {counts[index]} of "
                   f"{len(results[0].layers)} layers, the most of any setting{tie}")


def compared(results: dict) -> dict:
    """{name: summary} of sweeps read at their `common_setting`; each summary's "comparison" holds the setting,
    sigma, why, and "measured_in_all" [L] (the layers where every group's IE is measured)."""
    index, why = common_setting(results.values())
    picked = {k: r.select(index) for k, r in results.items()}
    in_all = np.all([r.ie_measured for r in picked.values()], axis=0)
    comparison = {"index": index, "setting": next(iter(picked.values())).setting,
                  "sigma": _sigma(next(iter(picked.values()))), "reason": why, "measured_in_all": in_all,
                  "n_layers_measured_in_all": int(in_all.sum()), "groups": list(results)}
    return {k: {**summarise(r), "comparison": comparison} for k, r in picked.items()}


def finding(claim: str, verdict: str, evidence: str, *, sigma=None, n_layers_measured=None, n_layers=None) -> dict:
    """One paper finding re-read on the default: its claim, the verdict (one of VERDICTS), the evidence (a
    sentence made from the run's numbers), the sigma it was read at and how many layers were measured there."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {"claim": claim, "verdict": verdict, "evidence": evidence, "sigma": sigma,
            "n_layers_measured": n_layers_measured, "n_layers": n_layers}


def _measure(lm, data, *, sigma=None, layers=None, n_mc=256, seed=0, micro="isolated", token_curve=True):
    """The default sweep (noise over DEFAULT_SIGMAS) or, with sigma (a float or a list), the noise estimator there."""
    from ie_jax.ie.measure import measure

    grid = {} if sigma is None else {"estimator": "noise", "sigma": sigma}
    return measure(lm, data, layers=layers, n_mc=n_mc, seeds=(seed,), micro=micro, token_curve=token_curve, **grid)


def pointwise_ie(lm, data: data_lib.TokenData, *, sigma: float | None = None, layers=None, n_draws: int = 4,
                 seed: int = 0, micro: str = "isolated", batch_size: int = 64, n_mc: int = 256) -> dict:
    """Per-sample IE trajectories over layers at one noise level.

    sigma: the noise level (centred std units); None: the reported sigma of the default sweep on the same data and
    layers (n_mc Monte Carlo draws), and only the layers whose population IE is measured there are scored.
    Returns {"layers": [L], "scored": [L] bool, "ie": [N, L] (mean over noise draws; NaN columns where not
    scored), "ie_spread": [N, L] (std over draws), "mi_macro": [N, L], "mi_micro_mean": [N, L], "sigma",
    "sigma_reason", "n_draws"} in nats; with sigma None also "sweep" (its `summarise`). The mean of "ie" over
    samples estimates the noise-regularised IE of the whole sample; the pool of `data` defines the mixture, so
    compare samples scored in the same call.
    """
    sweep = None
    if sigma is None:
        sweep = summarise(_measure(lm, data, layers=layers, n_mc=n_mc, seed=seed, micro=micro, token_curve=False))
        sigma, layers, scored = sweep["sigma"], sweep["layers"], sweep["ie_measured"]
        reason = f"reported sigma of the default sweep on the same data ({sweep['reported']['reason']})"
    else:
        layers = tuple(range(lm.config.num_layers)) if layers is None else layers
        scored, reason = np.ones(len(layers), bool), "given"
    layers = np.asarray(layers)
    N, L = data.n_samples, len(layers)
    out = {k: np.full((N, L), np.nan) for k in ("ie", "ie_spread", "mi_macro", "mi_micro_mean")}
    if scored.any():
        v = variables_lib.extract(lm, data, layers=layers[scored], micro=micro, token_curve=micro == "in_context",
                                  batch_size=batch_size)
        for i, col in enumerate(np.flatnonzero(scored)):
            m = pointwise_noise_mi(*v.macro_pair(i), sigma=sigma, n_draws=n_draws, seed=seed)
            mu = np.mean([pointwise_noise_mi(*v.micro_pair(i, t), sigma=sigma, n_draws=n_draws, seed=seed + 1 + t)
                          for t in range(data.seq_len)], axis=0)
            out["mi_macro"][:, col], out["mi_micro_mean"][:, col] = m.mean(0), mu.mean(0)
            out["ie"][:, col], out["ie_spread"][:, col] = (m - mu).mean(0), (m - mu).std(0)
    out.update(layers=layers, scored=scored, sigma=float(sigma), sigma_reason=reason, n_draws=n_draws)
    if sweep is not None:
        out["sweep"] = sweep
    return out


def icl_ascent(lm, categories=("country", "animal", "colour"), *, n_samples: int = 2048, shots: int | None = None,
               sigma=None, layers=None, n_mc: int = 256, seed: int = 0) -> dict:
    """Token-wise IE curve E(t) on ICL lists, per category, at the sweep's reported setting.

    sigma: None (the default grid) or a noise level / list of them. Returns {category: summary} where summary (see
    `summarise`) has "token_curve" [L, T] (NaN where not measured) and its CI, plus "curve_layer_mean" [T] (mean
    over the layers measured at t; "curve_n_layers" [T] how many), "entity_gain" [shots] (rise of that mean at
    each entity token over the token before; NaN where either is not measured), "comma_gain" [shots],
    "measured_positions" [S] (per setting of the grid: how many leading positions t have E(t) measured at every
    layer), "prefix_entropy" [T] (counting ceiling of the context MI at t), "shots", "entities" and "examples".
    shots: default the largest even split of T <= 20 the category allows.
    """
    out = {}
    for category in categories:
        k = shots
        if k is None:
            n_entities = len(data_lib.single_token_entities(lm.tokenizer, data_lib.ENTITIES[
                data_lib.ALIASES.get(category, category)])[0])
            k = min(10, n_entities)
        d = data_lib.icl_lists(lm.tokenizer, category, n_samples=n_samples, shots=k, seed=seed)
        s = summarise(_measure(lm, d, sigma=sigma, layers=layers, n_mc=n_mc, seed=seed))
        gains = np.diff(np.concatenate([[0.0], s["curve_layer_mean"]]))
        every_layer = np.asarray(s["grid"]["curve_n_layers"]) == s["n_layers"]  # [S, T]
        s.update(entity_gain=gains[0::2], comma_gain=gains[1::2],
                 measured_positions=np.array([int(np.argmin(np.append(row, False))) for row in every_layer]),
                 prefix_entropy=data_lib.prefix_entropy(d.token_ids), shots=k, entities=list(d.entities),
                 examples=list(d.examples), description=d.description)
        out[category] = s
    return out


def text_vs_icl(lm, *, text: str | data_lib.TokenData = "text:kjv", icl: str = "icl:country", n_samples: int = 2048,
                seq_len: int = 8, sigma=None, layers=None, n_mc: int = 256, seed: int = 0) -> dict:
    """E(t) and per-layer IE on natural-text windows against ICL lists of the same length T = seq_len, both read at
    their `common_setting`.

    Returns {"text": summary, "icl": summary} (see `summarise` and `compared`), each with "prefix_entropy" [T]
    and "examples".
    """
    results, extra = {}, {}
    for name, spec in (("text", text), ("icl", icl)):
        d = spec if isinstance(spec, data_lib.TokenData) else data_lib.load_data(
            spec, lm.tokenizer, n_samples=n_samples, seq_len=seq_len, seed=seed)
        results[name] = _measure(lm, d, sigma=sigma, layers=layers, n_mc=n_mc, seed=seed)
        extra[name] = dict(prefix_entropy=data_lib.prefix_entropy(d.token_ids), examples=list(d.examples),
                           description=d.description)
    return {name: {**s, **extra[name]} for name, s in compared(results).items()}


def trained_vs_random(trained, random, data: data_lib.TokenData, *, shuffle: bool = True, sigma=None, layers=None,
                      n_mc: int = 256, seed: int = 0) -> dict:
    """Per-layer IE of a trained model against the same architecture with random weights, on `data` and (shuffle)
    on the same tokens shuffled within each sequence; trained and random read at their `common_setting` per input.

    trained, random: LoadedModels of one architecture (random: `ie_jax.models.random_model`); data: TokenData
    in their vocabulary. Returns {"trained": {"data": summary, "shuffled": summary}, "random": {...}}.
    """
    inputs = {"data": data}
    if shuffle:
        inputs["shuffled"] = data_lib.shuffled_tokens(data, seed=seed)
    out = {"trained": {}, "random": {}}
    for k, d in inputs.items():
        pair = {name: _measure(lm, d, sigma=sigma, layers=layers, n_mc=n_mc, seed=seed, token_curve=False)
                for name, lm in (("trained", trained), ("random", random))}
        for name, s in compared(pair).items():
            out[name][k] = s
    return out


def hallucination_signal(lm, category: str = "country", *, n_samples: int = 1024, shots: int | None = None,
                         sigma: float | None = None, layers=None, n_draws: int = 4, n_boot: int = 1000,
                         n_mc: int = 256, seed: int = 0) -> dict:
    """Does the per-sample IE trajectory track whether the greedy next entity on an ICL list is right?

    Right: the greedy next token is an entity of the category (with its leading space) not already in the list.
    Per-sample features from `pointwise_ie` at `sigma` (None: the reported sigma of the default sweep on the same
    lists, scoring only the layers whose IE is measured there): IE averaged over the scored layers, and its
    spread over noise draws. Returns {"correct": [N] bool, "accuracy", "predicted": [N] token ids, "ie": [N, L],
    "ie_spread": [N, L] (NaN columns: layers not scored), "scored": [L], "n_layers_scored", "sigma",
    "sigma_reason", "sweep" (summary, with sigma None), "trajectory_right"/"trajectory_wrong": [L] mean IE per
    layer, "corr_ie"/"corr_spread": (r, low, high) the point-biserial correlation with a bootstrap 95% CI (NaN
    with no scored layer), "layers"}. A correlation, not a causal claim.
    """
    d = data_lib.icl_lists(lm.tokenizer, category, n_samples=n_samples, shots=shots, seed=seed)
    ids = d.token_ids
    T = ids.shape[1]
    entity_ids = np.array([lm.tokenizer.encode(" " + e)[0] for e in d.entities])
    predicted = np.concatenate([next_token_logits(lm, ids[i: i + 128], T - 1).argmax(-1)
                                for i in range(0, len(ids), 128)])
    correct = np.isin(predicted, entity_ids) & ~np.any(ids == predicted[:, None], axis=1)
    pw = pointwise_ie(lm, d, sigma=sigma, layers=layers, n_draws=n_draws, seed=seed, n_mc=n_mc)
    scored = pw["scored"]
    nan_l, nan_n = np.full(len(pw["layers"]), np.nan), np.full(len(correct), np.nan)
    ie_mean = pw["ie"][:, scored].mean(1) if scored.any() else nan_n
    spread_mean = pw["ie_spread"][:, scored].mean(1) if scored.any() else nan_n
    return {
        "layers": pw["layers"], "correct": correct, "accuracy": float(correct.mean()), "predicted": predicted,
        "ie": pw["ie"], "ie_spread": pw["ie_spread"], "scored": scored, "n_layers_scored": int(scored.sum()),
        "sigma": pw["sigma"], "sigma_reason": pw["sigma_reason"], "sweep": pw.get("sweep"),
        "description": d.description,
        "trajectory_right": pw["ie"][correct].mean(0) if correct.any() else nan_l,
        "trajectory_wrong": pw["ie"][~correct].mean(0) if (~correct).any() else nan_l,
        "corr_ie": bootstrap_ci(point_biserial, correct, ie_mean, n_boot=n_boot, seed=seed),
        "corr_spread": bootstrap_ci(point_biserial, correct, spread_mean, n_boot=n_boot, seed=seed),
        "predicted_text": [lm.tokenizer.decode([int(t)]) for t in predicted[:8]],
        "examples": list(d.examples),
    }


def text_origin(lm, sources: dict, *, n_prompts: int = 256, prompt_len: int = 8, continuation_len: int = 8,
                tail_len: int = 4, temperature: float = 0.0, sigma=None, layers=None, n_mc: int = 256,
                n_draws: int = 4, folds: int = 5, seed: int = 0) -> dict:
    """Human text against the model's own continuation of the same prompts, by IE.

    sources: {name: list of documents}. For each source, n_prompts windows of prompt_len + continuation_len
    + tail_len tokens ending at a full stop are drawn and their last tail_len tokens cut, so that neither group
    ends at a full stop (else the last token alone would tell them apart); "human" is the cut window, "model"
    its first prompt_len tokens continued by `generate` (greedy at temperature 0). Every group's sweep (default
    grid, or `sigma`) is read at one `common_setting` of all groups and sources, so that the groups and the
    classifier's features share one sigma. Returns {"sources": {name: {"human": summary, "model": summary,
    "pointwise_mean_ie": {...}}}, "sigma", "comparison" (the common setting, why, and the layers measured in every
    group), "classifier": cross-validated AUC of a logistic regression on the per-sample IE trajectories [N, K]
    (+ their spread) over the K layers measured in every group, human = 0, model = 1, pooled over sources ("auc",
    "fold_auc", "n_layers"), "auc_mean_ie": the AUC of the layer-mean IE alone, and "auc_logprob": the AUC of the
    model's mean log-probability of the continuation tokens (the usual likelihood detector, as a baseline)}; the
    IE AUCs are NaN where no layer is measured in every group.
    """
    T = prompt_len + continuation_len
    out, results, pooled, logprobs = {"sources": {}}, {}, {}, []
    for k, (name, docs) in enumerate(sources.items()):
        window = data_lib.text_windows(lm.tokenizer, docs, seq_len=T + tail_len, n_samples=n_prompts, seed=seed,
                                       spec=name)
        human = dataclasses.replace(window, token_ids=np.ascontiguousarray(window.token_ids[:, :T]),
                                    description=f"{n_prompts} human windows of {T} tokens from {name}",
                                    examples=tuple(lm.tokenizer.decode(list(r)) for r in window.token_ids[:3, :T]))
        model_ids = generate(lm, human.token_ids[:, :prompt_len], continuation_len, temperature=temperature,
                             seed=seed + k)
        model = dataclasses.replace(human, token_ids=model_ids, spec=name + "+model",
                                    description=f"{lm.name} continuations of {name} prompts",
                                    examples=tuple(lm.tokenizer.decode(list(r)) for r in model_ids[:3]))
        for g, d in (("human", human), ("model", model)):
            results[name, g] = (_measure(lm, d, sigma=sigma, layers=layers, n_mc=n_mc, seed=seed, token_curve=False),
                                list(d.examples))
        pooled[name] = dataclasses.replace(human, token_ids=np.concatenate([human.token_ids, model_ids]))
        logprobs.append(continuation_logprob(lm, pooled[name].token_ids, prompt_len))
    summaries = compared({key: r for key, (r, _) in results.items()})
    comparison = next(iter(summaries.values()))["comparison"]
    in_all = comparison["measured_in_all"]
    all_layers = next(iter(summaries.values()))["layers"]
    feats, labels = [], []
    for name in sources:
        groups = {g: {**summaries[name, g], "examples": results[name, g][1]} for g in ("human", "model")}
        for g in groups.values():  # a tuple key is no JSON key: the groups compared are the sources' groups
            g["comparison"] = {**comparison, "groups": [f"{n}/{x}" for n, x in comparison["groups"]]}
        if in_all.any():
            pw = pointwise_ie(lm, pooled[name], sigma=comparison["sigma"], layers=all_layers[in_all],
                              n_draws=n_draws, seed=seed)
            feats.append(np.concatenate([pw["ie"], pw["ie_spread"]], axis=1))
            groups["pointwise_mean_ie"] = {"human": float(pw["ie"][:n_prompts].mean()),
                                           "model": float(pw["ie"][n_prompts:].mean())}
        else:
            groups["pointwise_mean_ie"] = {"human": np.nan, "model": np.nan}
        labels.append(np.repeat([0, 1], n_prompts))
        out["sources"][name] = groups
    y, n_layers = np.concatenate(labels), int(in_all.sum())
    classifier = {"n": len(y), "n_layers": n_layers, "n_features": 2 * n_layers,
                  "auc_logprob": roc_auc(y, np.concatenate(logprobs))}
    if feats:
        x = np.concatenate(feats)
        cv = cross_validated_auc(x, y, folds=folds, seed=seed)
        classifier.update(auc=cv["auc"], fold_auc=cv["fold_auc"], auc_mean_ie=roc_auc(y, x[:, :n_layers].mean(1)))
    else:
        classifier.update(auc=np.nan, fold_auc=np.full(folds, np.nan), auc_mean_ie=np.nan)
    out.update(classifier=classifier, sigma=comparison["sigma"],
               comparison={**comparison, "groups": [f"{n}/{x}" for n, x in comparison["groups"]]})
    return out


DEFAULT_SENSITIVITY = {
    "noise, default grid": {},
    "noise, default grid, in-context micro": dict(micro="in_context"),
    "noise sigma=1": dict(estimator="noise", sigma=1.0),
    "exact counting": dict(estimator="exact_discrete"),
    "gaussian": dict(estimator="gaussian"),
    "fast InfoNCE": dict(protocol="fast", bound="infonce"),
    "fast DV": dict(protocol="fast", bound="dv"),
    "fast InfoNCE, in-context micro": dict(protocol="fast", bound="infonce", micro="in_context"),
    "paper (DV)": dict(protocol="paper"),
}


def estimator_sensitivity(lm, data: data_lib.TokenData, *, settings: dict | None = None, layers=None,
                          seed: int = 0) -> dict:
    """The same per-layer IE under several estimator settings: {name: `ie_jax.measure` keyword arguments}
    (default `DEFAULT_SENSITIVITY`; add steps=, batch_size= to the neural ones to size them). Each is read at its
    own reported setting (a grid's smallest sigma with the most measured layers; a single setting as it is).

    Returns {"settings": {name: summary}, "names": [S], "n_layers_measured": [S], "rank_agreement": [S, S]
    Spearman correlation of the layer profiles over the layers measured in both (NaN under 3 such layers),
    "sign_agreement": [S, S] fraction of those layers where the IE signs agree (NaN with none), "n_common": [S, S]
    how many layers each pair shares, "seconds": [S]}.
    """
    import time

    from ie_jax.ie.measure import measure

    settings = DEFAULT_SENSITIVITY if settings is None else settings
    results, seconds = {}, []
    for name, kw in settings.items():
        t0 = time.perf_counter()
        results[name] = summarise(measure(lm, data, layers=layers, seeds=(seed,), token_curve=False, **kw))
        seconds.append(time.perf_counter() - t0)
    names = list(results)
    ie = np.array([results[n]["ie"] for n in names])
    ok = np.isfinite(ie)
    common = (ok[:, None, :] & ok[None, :, :])
    n_common = common.sum(-1)
    signs = np.sign(np.round(ie, 6))
    same = ((signs[:, None, :] == signs[None, :, :]) & common).sum(-1)
    return {"settings": results, "names": names, "n_layers_measured": ok.sum(1),
            "rank_agreement": rank_agreement(ie),  # ties (e.g. flat counting values) share a rank
            "n_common": n_common, "seconds": np.array(seconds),
            "sign_agreement": np.where(n_common > 0, same / np.maximum(n_common, 1), np.nan)}


def notebook_dirs(name: str) -> tuple[str, pathlib.Path, pathlib.Path]:
    """(scale, figure dir, result dir) from IE_NB_SCALE (small|large) and IE_NB_OUT.

    Large: notebooks/figures and notebooks/results of the repository; small: IE_NB_OUT (default a new temp dir).
    """
    scale = os.environ.get("IE_NB_SCALE", "small")
    if scale not in ("small", "large"):
        raise ValueError(f"IE_NB_SCALE must be 'small' or 'large', got {scale!r}")
    if scale == "large":
        root = pathlib.Path(__file__).resolve().parents[2] / "notebooks"  # the repository's notebooks/
        fig, res = root / "figures", root / "results"
    else:
        fig = res = pathlib.Path(os.environ.get("IE_NB_OUT") or tempfile.mkdtemp(prefix=f"{name}_"))
    fig.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    return scale, fig, res
