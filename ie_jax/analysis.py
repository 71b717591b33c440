"""Reusable analyses behind the notebooks (issue 8): each takes models, data and sizes and returns plain dicts
of numpy arrays, so users can rerun them on their own models and texts.

All IE numbers here default to the noise-regularised estimator (`estimator="noise"`, sigma relative to each
variable's centred standard deviation): the MI between deterministic continuous states is degenerate and the
neural macro estimates sit at estimator caps (issue 5), while the noise-regularised MI is finite, well defined
and never above the counting value. Every summary carries the counting ceilings and flags next to the values.

Per-sample quantities (`pointwise_ie`) use the same Gaussian-mixture formula as `ie_jax.mi.noise`: the pointwise
MI of sample n is LSE_m(a_m + b_m) - LSE_m(a_m) - LSE_m(b_m) + ln N at x~ = x_n + sigma s_x z, y~ = y_n + sigma s_y z'
(a_m, b_m the scaled squared distances to every sample), whose mean over samples and draws is the noise MI.
Units: nats throughout.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ie_jax import data as data_lib
from ie_jax import variables as variables_lib
from ie_jax.mi.discrete import state_scale
from ie_jax.models.masks import make_mask

DEFAULT_SIGMA = 1.0  # noise std in units of each variable's centred per-dimension std


# ----------------------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------------------

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


def shuffled_tokens(data: data_lib.TokenData, *, seed: int = 0) -> data_lib.TokenData:
    """The same sequences with their token order permuted independently per row (a no-syntax control)."""
    rng = np.random.default_rng(seed)
    ids = np.take_along_axis(data.token_ids, np.argsort(rng.random(data.token_ids.shape), axis=1), axis=1)
    return dataclasses.replace(data, token_ids=ids.astype(np.int32), spec=data.spec + "+shuffled",
                               description=data.description + ", tokens shuffled within each sequence",
                               generating_entropy_nats=None, examples=())


def prefix_entropy(token_ids) -> np.ndarray:
    """[T] plug-in entropy (nats) of the distinct prefixes token_ids[:, :t+1]: the counting ceiling of E(t)."""
    token_ids = np.asarray(token_ids)
    out = []
    for t in range(token_ids.shape[1]):
        _, counts = np.unique(token_ids[:, : t + 1], axis=0, return_counts=True)
        p = counts / counts.sum()
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)


@functools.partial(jax.jit, static_argnames=("chunk",))
def _pointwise_mi_core(x, y, zx, zy, *, chunk):
    """x, y [N, d] in noise units (centred, divided by sigma s); zx, zy [K, N, d] -> pointwise MI [K, N] nats."""
    n = x.shape[0]
    sq_x, sq_y = 0.5 * jnp.sum(x * x, axis=1), 0.5 * jnp.sum(y * y, axis=1)

    def one_draw(z_x, z_y):
        xt, yt = x + z_x, y + z_y
        # -|x~ - x_m|^2 / 2 up to a per-row constant that cancels between the joint and marginal terms
        a = jax.lax.map(lambda r: r @ x.T - sq_x, xt, batch_size=chunk)
        b = jax.lax.map(lambda r: r @ y.T - sq_y, yt, batch_size=chunk)
        lse = jax.nn.logsumexp
        return lse(a + b, axis=1) - lse(a, axis=1) - lse(b, axis=1) + jnp.log(n)

    return jax.lax.map(lambda z: one_draw(*z), (zx, zy))


def pointwise_noise_mi(x, y, *, sigma: float = DEFAULT_SIGMA, n_draws: int = 4, seed: int = 0,
                       chunk: int = 256) -> np.ndarray:
    """Per-sample noise-regularised MI [n_draws, N] (nats) of x [N, dx], y [N, dy].

    Noise std sigma * s per side, s the centred std per dimension (as `ie_jax.mi.noise`, normaliser
    "centred_std"); its mean over samples and draws estimates `noise_mi(x, y, sigma=sigma)`. A constant side
    gives 0 everywhere.
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be [N, d] with the same N; got {x.shape} and {y.shape}")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    sx, sy = state_scale(x) / math.sqrt(x.shape[1]), state_scale(y) / math.sqrt(y.shape[1])
    if sx == 0 or sy == 0:
        return np.zeros((n_draws, x.shape[0]))
    xs = (x - x.mean(axis=0)) / (sigma * sx)
    ys = (y - y.mean(axis=0)) / (sigma * sy)
    kx, ky = jax.random.split(jax.random.key(seed))
    zx = jax.random.normal(kx, (n_draws, *xs.shape), jnp.float32)
    zy = jax.random.normal(ky, (n_draws, *ys.shape), jnp.float32)
    return np.asarray(_pointwise_mi_core(jnp.asarray(xs), jnp.asarray(ys), zx, zy, chunk=min(chunk, x.shape[0])),
                      np.float64)


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


def bootstrap_ci(fn, *arrays, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(value, low, high): fn(*arrays) and its percentile bootstrap CI over the rows shared by all arrays."""
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    value = float(fn(*arrays))
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        b = fn(*(a[idx] for a in arrays))
        if np.isfinite(b):
            boots.append(b)
    if len(boots) < n_boot // 2:
        return value, math.nan, math.nan
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return value, float(lo), float(hi)


def point_biserial(flag, values) -> float:
    """Pearson correlation between a 0/1 flag [N] and values [N]; NaN if either is constant."""
    flag, values = np.asarray(flag, float), np.asarray(values, float)
    if flag.std() == 0 or values.std() == 0:
        return math.nan
    return float(np.corrcoef(flag, values)[0, 1])


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN with one class only."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # mid-ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i: j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logistic_fit(x, y, *, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method: x [N, F], y [N] 0/1 -> weights [F + 1] (bias last)."""
    x = np.concatenate([np.asarray(x, float), np.ones((len(x), 1))], axis=1)
    y = np.asarray(y, float)
    w = np.zeros(x.shape[1])
    reg = l2 * np.eye(x.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + reg @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + reg
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def cross_validated_auc(features, labels, *, folds: int = 5, seed: int = 0, l2: float = 1e-2) -> dict:
    """Stratified k-fold AUC of a logistic regression on standardised features [N, F] (standardised per fold).

    Returns {"auc": pooled out-of-fold AUC, "fold_auc": [folds], "scores": [N] out-of-fold scores}.
    """
    x, y = np.asarray(features, float), np.asarray(labels, int)
    if x.ndim == 1:
        x = x[:, None]
    if len(np.unique(y)) != 2:
        raise ValueError("cross_validated_auc needs two classes in labels")
    if min(np.bincount(y)) < folds:
        raise ValueError(f"each class needs at least {folds} samples for {folds}-fold cross-validation")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for c in (0, 1):  # stratified: each class dealt round-robin over the folds in random order
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % folds
    scores = np.empty(len(y))
    fold_auc = []
    for k in range(folds):
        tr, te = fold != k, fold == k
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-12
        w = logistic_fit((x[tr] - mu) / sd, y[tr], l2=l2)
        scores[te] = ((x[te] - mu) / sd) @ w[:-1] + w[-1]
        fold_auc.append(roc_auc(y[te], scores[te]))
    return {"auc": roc_auc(y, scores), "fold_auc": np.array(fold_auc), "scores": scores}


# ----------------------------------------------------------------------------------------------------------
# Generation (short continuations: no KV cache, one compiled step over a fixed-size buffer)
# ----------------------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("graphdef",))
def _next_logits_core(graphdef, state, token_ids, pos):
    """Logits [B, vocab] at position `pos` of token_ids [B, T]; later positions cannot reach it (causal)."""
    model = nnx.merge(graphdef, state)
    seq_len = token_ids.shape[1]
    position_ids = jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32), token_ids.shape)
    h, _, _ = model.run_blocks(model.embed(token_ids, position_ids), position_ids, make_mask("causal", seq_len),
                               positions=jnp.zeros((1,), jnp.int32))
    h_pos = jax.lax.dynamic_slice_in_dim(h, pos, 1, axis=1)
    return model.head(h_pos)[:, 0]


def next_token_logits(lm, token_ids, pos: int) -> np.ndarray:
    """Next-token logits [B, vocab] after token_ids[:, :pos + 1] of a causal LM (token_ids [B, T], T > pos)."""
    if lm.arch == "bert":
        raise ValueError(f"{lm.name} is an encoder (bidirectional): next-token logits need a causal LM")
    graphdef, state = nnx.split(lm.module)
    return np.asarray(_next_logits_core(graphdef, state, jnp.asarray(token_ids, jnp.int32),
                                        jnp.asarray(pos, jnp.int32)))


def generate(lm, prompts, n_new: int, *, temperature: float = 0.0, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Continue prompts [N, P] (token ids) by n_new tokens: greedy (temperature 0) or sampled -> [N, P + n_new]."""
    prompts = np.asarray(prompts, np.int32)
    n, p = prompts.shape
    out = np.concatenate([prompts, np.zeros((n, n_new), np.int32)], axis=1)
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch_size):
        buf = out[start: start + batch_size]
        for t in range(p, p + n_new):
            logits = next_token_logits(lm, buf, t - 1).astype(np.float64)
            if temperature == 0:
                buf[:, t] = logits.argmax(-1)
            else:
                z = logits / temperature
                prob = np.exp(z - z.max(-1, keepdims=True))
                prob /= prob.sum(-1, keepdims=True)
                buf[:, t] = [rng.choice(len(row), p=row) for row in prob]
        out[start: start + batch_size] = buf
    return out


# ----------------------------------------------------------------------------------------------------------
# The analyses
# ----------------------------------------------------------------------------------------------------------

def _noise_measure(lm, data, *, sigma, layers, n_mc, seed, micro="isolated", token_curve=True):
    from ie_jax.sweep import measure

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
                 prefix_entropy=prefix_entropy(d.token_ids), shots=k, entities=list(d.entities),
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
        s.update(prefix_entropy=prefix_entropy(d.token_ids), examples=list(d.examples), description=d.description)
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
        inputs["shuffled"] = shuffled_tokens(data, seed=seed)
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


def read_jsonl_gz(path, *, text_key: str = "text") -> list[str]:
    """Documents from a gzipped JSONL file (one object per line, text under `text_key`)."""
    import gzip

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)[text_key] for line in f if line.strip()]


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


def continuation_logprob(lm, token_ids, start: int, *, batch_size: int = 32) -> np.ndarray:
    """[N] mean log-probability (nats/token) of token_ids[:, start:] under the causal LM, given what precedes."""
    from ie_jax.models.capture import logits

    out = []
    for i in range(0, len(token_ids), batch_size):
        ids = np.asarray(token_ids[i: i + batch_size])
        logp = jax.nn.log_softmax(logits(lm, ids)[:, start - 1: -1].astype(jnp.float32), axis=-1)
        picked = jnp.take_along_axis(logp, jnp.asarray(ids[:, start:])[..., None], axis=-1)[..., 0]
        out.append(np.asarray(picked.mean(axis=1)))
    return np.concatenate(out)


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

    from ie_jax.sweep import measure

    settings = DEFAULT_SENSITIVITY if settings is None else settings
    results, seconds = {}, []
    for name, kw in settings.items():
        t0 = time.perf_counter()
        results[name] = summarise(measure(lm, data, layers=layers, seeds=(seed,), token_curve=False, **kw))
        seconds.append(time.perf_counter() - t0)
    names = list(results)
    ie = np.array([results[n]["ie"] for n in names])
    rank = np.array([_average_ranks(row) for row in ie])  # ties (e.g. flat counting values) share a rank
    with np.errstate(invalid="ignore", divide="ignore"):
        spearman = np.corrcoef(rank) if ie.shape[1] > 1 else np.ones((len(names), len(names)))
    signs = np.sign(np.round(ie, 6))
    return {"settings": results, "names": names, "rank_agreement": spearman, "seconds": np.array(seconds),
            "sign_agreement": (signs[:, None, :] == signs[None, :, :]).mean(-1)}


def _average_ranks(values) -> np.ndarray:
    """Ranks 0..n-1 of values, ties (within 1e-6) given their mean rank, as Spearman's correlation needs."""
    values = np.round(np.asarray(values, float), 6)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for v in np.unique(values):
        tied = values == v
        ranks[tied] = ranks[tied].mean()
    return ranks


# ----------------------------------------------------------------------------------------------------------
# Notebook plumbing
# ----------------------------------------------------------------------------------------------------------

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
