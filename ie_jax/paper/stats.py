"""Statistics for the paper analyses: bootstrap intervals, correlations, ROC AUC, a cross-validated classifier.

Ranks, the Mann-Whitney U behind the AUC and the bootstrap come from scipy.stats; the logistic regression is a
few lines of Newton's method so that no machine-learning package is needed. Plain numpy in, floats out.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def bootstrap_ci(fn, *arrays, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(value, low, high): fn(*arrays) and its percentile bootstrap CI over the rows shared by all arrays.

    NaN bounds when fn is undefined (NaN) on the whole sample or on resamples (e.g. one class only).
    """
    value = float(fn(*arrays))
    if not math.isfinite(value):
        return value, math.nan, math.nan
    res = stats.bootstrap(arrays, fn, paired=True, vectorized=False, n_resamples=n_boot, confidence_level=level,
                          method="percentile", rng=np.random.default_rng(seed))
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)


def point_biserial(flag, values) -> float:
    """Pearson correlation between a 0/1 flag [N] and values [N]; NaN if either is constant."""
    flag, values = np.asarray(flag, float), np.asarray(values, float)
    if flag.std() == 0 or values.std() == 0:
        return math.nan
    return float(stats.pointbiserialr(flag, values).statistic)


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting half
    (the Mann-Whitney U over n_pos x n_neg); NaN with one class only."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    return float(stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def rank_agreement(profiles, *, decimals: int = 6, min_common: int = 3) -> np.ndarray:
    """[S, S] Spearman correlation between S profiles [S, L] (e.g. IE per layer under S estimators).

    NaN entries (a value that is not a measurement) are left out pair by pair: each pair is ranked over the
    layers where both are finite, and is NaN where fewer than `min_common` are (a rank correlation of two points
    is always +-1). Values equal to `decimals` places are ties and share their mean rank (flat counting profiles
    are common); a constant profile has no rank correlation (NaN).
    """
    profiles = np.round(np.asarray(profiles, float), decimals)
    S = len(profiles)
    out = np.full((S, S), np.nan)
    for i in range(S):
        for j in range(S):
            both = np.isfinite(profiles[i]) & np.isfinite(profiles[j])
            if both.sum() < min_common:
                continue
            a, b = stats.rankdata(profiles[i, both]), stats.rankdata(profiles[j, both])
            if a.std() > 0 and b.std() > 0:
                out[i, j] = float(np.corrcoef(a, b)[0, 1])
    return out


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
