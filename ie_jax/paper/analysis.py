"""The paper analyses behind the notebooks (issue 8): each takes models, data and sizes and returns plain dicts
of numpy arrays, so users can rerun them on their own models and texts.

All IE numbers here default to the noise-regularised estimator (`estimator="noise"`, sigma relative to each
variable's centred standard deviation): the MI between deterministic continuous states is degenerate and the
neural macro estimates sit at estimator caps (issue 5), while the noise-regularised MI is finite, well defined
and never above the counting value. Every summary carries the counting ceilings and flags next to the values.
Per-sample IE (`pointwise_ie`) uses `ie_jax.mi.noise.pointwise_noise_mi`. Units: nats throughout.
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
from ie_jax.mi.noise import pointwise_noise_mi
from ie_jax.paper.stats import bootstrap_ci, cross_validated_auc, point_biserial, rank_agreement, roc_auc

DEFAULT_SIGMA = 1.0  # noise std in units of each variable's centred per-dimension std


def summarise(result) -> dict:
    """Key arrays of an IEResult (selected setting), nats: per layer [L] and, with a token curve, [L, T]."""
    out = {
        "layers": np.asarray(result.layers),
        "ie": result.ie, "ie_ci": result.ie_ci,
        "mi_macro": result.mi_macro, "mi_micro_mean": result.mi_micro_mean,
        "mi_macro_ceiling": result.mi_macro_ceiling,
        "macro_saturated": np.array([bool(d.get("saturated")) for d in result.mi_macro_diagnostics]),
        "macro_constant": np.array([bool(d.get("constant")) for d in result.mi_macro_diagnostics]),
        "ie_mean": float(np.mean(result.ie)), "ie_sum": float(np.sum(result.ie)),
        "setting": result.setting,
    }
    if result.has_token_curve:
        out["token_curve"] = result.token_curve
        out["token_curve_ci"] = result.token_curve_ci
    return out


def pointwise_ie(lm, data: data_lib.TokenData, *, sigma: float = DEFAULT_SIGMA, layers=None, n_draws: int = 4,
                 seed: int = 0, micro: str = "isolated", batch_size: int = 64) -> dict:
    """Per-sample IE trajectories over layers.

    Returns {"layers": [L], "ie": [N, L] (mean over noise draws), "ie_spread": [N, L] (std over draws),
    "mi_macro": [N, L], "mi_micro_mean": [N, L]} in nats. The mean of "ie" over samples estimates the
    noise-regularised IE of the whole sample; the pool of `data` defines the mixture, so compare samples
    scored in the same call.
    """
    v = variables_lib.extract(lm, data, layers=layers, micro=micro, token_curve=micro == "in_context",
                              batch_size=batch_size)
    T = data.seq_len
    macro, micro_mean, ie, spread = [], [], [], []
    for i, _ in enumerate(v.layers):
        m = pointwise_noise_mi(*v.macro_pair(i), sigma=sigma, n_draws=n_draws, seed=seed)
        mu = np.mean([pointwise_noise_mi(*v.micro_pair(i, t), sigma=sigma, n_draws=n_draws, seed=seed + 1 + t)
                      for t in range(T)], axis=0)
        macro.append(m.mean(0))
        micro_mean.append(mu.mean(0))
        ie.append((m - mu).mean(0))
        spread.append((m - mu).std(0))
    stack = lambda a: np.stack(a, axis=1)
    return {"layers": np.asarray(v.layers), "ie": stack(ie), "ie_spread": stack(spread), "mi_macro": stack(macro),
            "mi_micro_mean": stack(micro_mean), "sigma": sigma, "n_draws": n_draws}


def _noise_measure(lm, data, *, sigma, layers, n_mc, seed, micro="isolated", token_curve=True):
    from ie_jax.ie.measure import measure

    return measure(lm, data, estimator="noise", sigma=sigma, layers=layers, n_mc=n_mc, seeds=(seed,),
                   micro=micro, token_curve=token_curve)


def icl_ascent(lm, categories=("country", "animal", "colour"), *, n_samples: int = 2048, shots: int | None = None,
               sigma: float = DEFAULT_SIGMA, layers=None, n_mc: int = 256, seed: int = 0) -> dict:
    """Token-wise IE curve E(t) on ICL lists, per category.

    Returns {category: summary} where summary (see `summarise`) has "token_curve" [L, T] and its CI, plus
    "curve_layer_mean" [T], "entity_gain" [shots] (rise of the layer-mean curve at each entity token over the
    token before), "comma_gain" [shots], "prefix_entropy" [T] (counting ceiling of the context MI at t),
    "shots", "entities" and "examples". shots: default the largest even split of T <= 20 the category allows.
    """
    out = {}
    for category in categories:
        k = shots
        if k is None:
            n_entities = len(data_lib.single_token_entities(lm.tokenizer, data_lib.ENTITIES[
                data_lib.ALIASES.get(category, category)])[0])
            k = min(10, n_entities)
        d = data_lib.icl_lists(lm.tokenizer, category, n_samples=n_samples, shots=k, seed=seed)
        s = summarise(_noise_measure(lm, d, sigma=sigma, layers=layers, n_mc=n_mc, seed=seed))
        curve = s["token_curve"].mean(axis=0)
        gains = np.diff(np.concatenate([[0.0], curve]))
        s.update(curve_layer_mean=curve, entity_gain=gains[0::2], comma_gain=gains[1::2],
                 prefix_entropy=data_lib.prefix_entropy(d.token_ids), shots=k, entities=list(d.entities),
                 examples=list(d.examples), description=d.description)
        out[category] = s
    return out


def text_vs_icl(lm, *, text: str | data_lib.TokenData = "text:kjv", icl: str = "icl:country", n_samples: int = 2048,
                seq_len: int = 8, sigma: float = DEFAULT_SIGMA, layers=None, n_mc: int = 256, seed: int = 0) -> dict:
    """E(t) and per-layer IE on natural-text windows against ICL lists of the same length T = seq_len.

    Returns {"text": summary, "icl": summary} (see `summarise`), each with "prefix_entropy" [T] and "examples".
    """
    out = {}
    for name, spec in (("text", text), ("icl", icl)):
        d = spec if isinstance(spec, data_lib.TokenData) else data_lib.load_data(
            spec, lm.tokenizer, n_samples=n_samples, seq_len=seq_len, seed=seed)
        s = summarise(_noise_measure(lm, d, sigma=sigma, layers=layers, n_mc=n_mc, seed=seed))
        s.update(prefix_entropy=data_lib.prefix_entropy(d.token_ids), examples=list(d.examples),
                 description=d.description)
        out[name] = s
    return out


def trained_vs_random(trained, random, data: data_lib.TokenData, *, shuffle: bool = True,
                      sigma: float = DEFAULT_SIGMA, layers=None, n_mc: int = 256, seed: int = 0) -> dict:
    """Per-layer IE of a trained model against the same architecture with random weights, on `data` and (shuffle)
    on the same tokens shuffled within each sequence.

    trained, random: LoadedModels of one architecture (random: `ie_jax.models.random_model`); data: TokenData
    in their vocabulary. Returns {"trained": {"data": summary, "shuffled": summary}, "random": {...}}.
    """
    inputs = {"data": data}
    if shuffle:
        inputs["shuffled"] = data_lib.shuffled_tokens(data, seed=seed)
    return {name: {k: summarise(_noise_measure(lm, d, sigma=sigma, layers=layers, n_mc=n_mc, seed=seed,
                                               token_curve=False)) for k, d in inputs.items()}
            for name, lm in (("trained", trained), ("random", random))}


def hallucination_signal(lm, category: str = "country", *, n_samples: int = 1024, shots: int | None = None,
                         sigma: float = DEFAULT_SIGMA, layers=None, n_draws: int = 4, n_boot: int = 1000,
                         seed: int = 0) -> dict:
    """Does the per-sample IE trajectory track whether the greedy next entity on an ICL list is right?

    Right: the greedy next token is an entity of the category (with its leading space) not already in the list.
    Per-sample features from `pointwise_ie`: IE averaged over layers, and its spread over noise draws. Returns
    {"correct": [N] bool, "accuracy", "predicted": [N] token ids, "ie": [N, L], "ie_spread": [N, L],
    "trajectory_right"/"trajectory_wrong": [L] mean IE per layer, "corr_ie"/"corr_spread": (r, low, high) the
    point-biserial correlation with a bootstrap 95% CI, "layers"}. A correlation, not a causal claim.
    """
    d = data_lib.icl_lists(lm.tokenizer, category, n_samples=n_samples, shots=shots, seed=seed)
    ids = d.token_ids
    T = ids.shape[1]
    entity_ids = np.array([lm.tokenizer.encode(" " + e)[0] for e in d.entities])
    predicted = np.concatenate([next_token_logits(lm, ids[i: i + 128], T - 1).argmax(-1)
                                for i in range(0, len(ids), 128)])
    correct = np.isin(predicted, entity_ids) & ~np.any(ids == predicted[:, None], axis=1)
    pw = pointwise_ie(lm, d, sigma=sigma, layers=layers, n_draws=n_draws, seed=seed)
    ie_mean, spread_mean = pw["ie"].mean(1), pw["ie_spread"].mean(1)
    nan_l = np.full(len(pw["layers"]), np.nan)
    return {
        "layers": pw["layers"], "correct": correct, "accuracy": float(correct.mean()), "predicted": predicted,
        "ie": pw["ie"], "ie_spread": pw["ie_spread"], "sigma": sigma, "description": d.description,
        "trajectory_right": pw["ie"][correct].mean(0) if correct.any() else nan_l,
        "trajectory_wrong": pw["ie"][~correct].mean(0) if (~correct).any() else nan_l,
        "corr_ie": bootstrap_ci(point_biserial, correct, ie_mean, n_boot=n_boot, seed=seed),
        "corr_spread": bootstrap_ci(point_biserial, correct, spread_mean, n_boot=n_boot, seed=seed),
        "predicted_text": [lm.tokenizer.decode([int(t)]) for t in predicted[:8]],
        "examples": list(d.examples),
    }


def text_origin(lm, sources: dict, *, n_prompts: int = 256, prompt_len: int = 8, continuation_len: int = 8,
                tail_len: int = 4, temperature: float = 0.0, sigma: float = DEFAULT_SIGMA, layers=None,
                n_mc: int = 256, n_draws: int = 4, folds: int = 5, seed: int = 0) -> dict:
    """Human text against the model's own continuation of the same prompts, by IE.

    sources: {name: list of documents}. For each source, n_prompts windows of prompt_len + continuation_len
    + tail_len tokens ending at a full stop are drawn and their last tail_len tokens cut, so that neither group
    ends at a full stop (else the last token alone would tell them apart); "human" is the cut window, "model"
    its first prompt_len tokens continued by `generate` (greedy at temperature 0). Returns {"sources": {name:
    {"human": summary, "model": summary}}} with population IE per group (noise estimator), and "classifier":
    cross-validated AUC of a logistic regression on the per-sample IE trajectories [N, L] (+ their spread),
    human = 0, model = 1, pooled over sources ("auc", "fold_auc"), "auc_mean_ie": the AUC of the layer-mean
    IE alone, and "auc_logprob": the AUC of the model's mean log-probability of the continuation tokens (the
    usual likelihood detector, as a baseline).
    """
    T = prompt_len + continuation_len
    out, feats, labels, logprobs = {"sources": {}}, [], [], []
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
        groups = {}
        for g, d in (("human", human), ("model", model)):
            groups[g] = summarise(_noise_measure(lm, d, sigma=sigma, layers=layers, n_mc=n_mc, seed=seed,
                                                 token_curve=False))
            groups[g]["examples"] = list(d.examples)
        pooled = dataclasses.replace(human, token_ids=np.concatenate([human.token_ids, model_ids]))
        pw = pointwise_ie(lm, pooled, sigma=sigma, layers=layers, n_draws=n_draws, seed=seed)
        feats.append(np.concatenate([pw["ie"], pw["ie_spread"]], axis=1))
        logprobs.append(continuation_logprob(lm, pooled.token_ids, prompt_len))
        labels.append(np.repeat([0, 1], n_prompts))
        groups["pointwise_mean_ie"] = {"human": float(pw["ie"][:n_prompts].mean()),
                                       "model": float(pw["ie"][n_prompts:].mean())}
        out["sources"][name] = groups
    x, y = np.concatenate(feats), np.concatenate(labels)
    n_layers = x.shape[1] // 2
    cv = cross_validated_auc(x, y, folds=folds, seed=seed)
    out["classifier"] = {"auc": cv["auc"], "fold_auc": cv["fold_auc"], "n": len(y), "n_features": x.shape[1],
                         "auc_mean_ie": roc_auc(y, x[:, :n_layers].mean(1)),
                         "auc_logprob": roc_auc(y, np.concatenate(logprobs))}
    return out


DEFAULT_SENSITIVITY = {
    "noise sigma=1": dict(estimator="noise", sigma=1.0),
    "noise sigma=1, in-context micro": dict(estimator="noise", sigma=1.0, micro="in_context"),
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
    (default `DEFAULT_SENSITIVITY`; add steps=, batch_size= to the neural ones to size them).

    Returns {"settings": {name: summary}, "names": [S], "rank_agreement": [S, S] Spearman correlation of the
    layer profiles, "sign_agreement": [S, S] fraction of layers where the IE signs agree, "seconds": [S]}.
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
    spearman = rank_agreement(ie)  # ties (e.g. flat counting values) share a rank
    signs = np.sign(np.round(ie, 6))
    return {"settings": results, "names": names, "rank_agreement": spearman, "seconds": np.array(seconds),
            "sign_agreement": (signs[:, None, :] == signs[None, :, :]).mean(-1)}


def notebook_dirs(name: str) -> tuple[str, pathlib.Path, pathlib.Path]:
    """(scale, figure dir, result dir) from IE_NB_SCALE (small|large) and IE_NB_OUT.

    Large: notebooks/figures and notebooks/results of the repository; small: IE_NB_OUT (default a new temp dir).
    """
    scale = os.environ.get("IE_NB_SCALE", "small")
    if scale not in ("small", "large"):
        raise ValueError(f"IE_NB_SCALE must be 'small' or 'large', got {scale!r}")
    if scale == "large":
        root = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
        fig, res = root / "figures", root / "results"
    else:
        fig = res = pathlib.Path(os.environ.get("IE_NB_OUT") or tempfile.mkdtemp(prefix=f"{name}_"))
    fig.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    return scale, fig, res
