"""IE arithmetic, CI propagation, flags, serialisation, and measure() end to end on a tiny model."""

import json
import math

import numpy as np
import pytest

import ie_jax
from ie_jax.ie import data
from ie_jax.ie import variables
from ie_jax.mi.protocols import resolve
from ie_jax.mi.result import MIEstimate
from ie_jax.models import random_model
from ie_jax.ie.result import IEResult, ie_weights, linear_combination

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50, "max_position_embeddings": 16,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}


@pytest.fixture(scope="module")
def lm():
    return random_model(TINY, seed=0)


def _est(v, se=0.1, lo=None, hi=None, **diag):
    return MIEstimate(v, se, (v - 1.96 * se if lo is None else lo, v + 1.96 * se if hi is None else hi), "nats",
                      "hand", diag)


def test_linear_combination_hand_computed():
    q, se, lo, hi = linear_combination([1.0, -0.5], [2.0, 1.0], [0.3, 0.4], [1.5, 0.8], [2.6, 1.1])
    assert q == pytest.approx(1.5)
    assert se == pytest.approx(math.sqrt(0.3**2 + (0.5 * 0.4) ** 2))
    # the lower end takes the positive term's lower half-width and the negative term's upper one
    assert lo == pytest.approx(1.5 - math.sqrt(0.5**2 + (0.5 * 0.1) ** 2))
    assert hi == pytest.approx(1.5 + math.sqrt(0.6**2 + (0.5 * 0.2) ** 2))
    # a zero weight ignores a NaN estimate
    q, se, lo, hi = linear_combination([1.0, 0.0], [2.0, np.nan], [0.3, np.nan], [1.5, np.nan], [2.6, np.nan])
    assert (q, lo, hi) == pytest.approx((2.0, 1.5, 2.6))


def _result(micro="isolated"):
    ctx = [[1.0, 2.0, 4.0], [0.5, 3.0, 6.0]]  # [L][T]
    mic = [[1.0, 0.0, 2.0], [0.5, 1.0, 1.5]]
    context = ((tuple(tuple(_est(v, 0.1 * (t + 1), ceiling_nats=5.0, saturated=(l == 1 and t == 2))
                            for t, v in enumerate(row)) for l, row in enumerate(ctx))),)
    micro_est = ((tuple(tuple(_est(v, 0.2, ceiling_nats=3.0) for v in row) for row in mic)),)
    return IEResult(layers=(0, 1), seq_len=3, micro_mode=micro, settings=("hand",), context_positions=(0, 1, 2),
                    context=context, micro=micro_est if micro == "isolated" else None, metadata={"n_samples": 7})


def test_ie_arithmetic_and_ci_propagation():
    r = _result()
    np.testing.assert_allclose(r.mi_macro, [4.0, 6.0])
    np.testing.assert_allclose(r.mi_micro_mean, [1.0, 1.0])
    # layer 1's macro MI is saturated (a lower bound): its IE is no number but a lower bound, macro - mean micro
    np.testing.assert_allclose(r.ie, [3.0, np.nan])
    assert list(r.ie_measured) == [True, False] and r.ie_bound == [None, "lower"]
    np.testing.assert_allclose(r.ie_bound_value, [np.nan, 5.0])
    assert r.ie_reason[0] is None and "macro (saturated)" in r.ie_reason[1]
    assert r.ie_text() == ["3.00", ">= 5.00"]
    # IE = macro - mean micro: stderr^2 = 0.3^2 + 3 * (0.2 / 3)^2 (independent estimates)
    np.testing.assert_allclose(r.ie_stderr[0], math.sqrt(0.09 + 3 * (0.2 / 3) ** 2))
    half = 1.96 * math.sqrt(0.09 + 3 * (0.2 / 3) ** 2)
    np.testing.assert_allclose(r.ie_ci[0], [3.0 - half, 3.0 + half])
    assert np.isnan(r.ie_ci[1]).all() and np.isnan(r.ie_stderr[1])
    # E(t) = context(t) - mean micro(0..t), NaN where the context term is saturated
    np.testing.assert_allclose(r.token_curve, [[0.0, 1.5, 3.0], [0.0, 2.25, np.nan]])
    np.testing.assert_allclose(r.token_curve[:, -1], r.ie)
    tot = r.totals  # over the measured layer only, and saying so
    assert tot["sum_over_layers"]["value"] == pytest.approx(3.0)
    assert tot["mean_over_layers"]["value"] == pytest.approx(3.0)
    assert tot["sum_over_layers"]["stderr"] == pytest.approx(r.ie_stderr[0])
    assert tot["sum_over_layers"]["layers"] == [0] and tot["sum_over_layers"]["n_layers_measured"] == 1
    assert "1 of 2 layers" in r.totals_text()
    flags = r.ie_flags
    assert flags[0]["flags"] == [] and flags[1]["flags"] == ["macro_saturated"]
    assert flags[1]["ie_ceiling"] == pytest.approx(5.0 - 1.0)


def test_ie_bound_kinds_follow_the_terms():
    """Measured macro with a lower-bound micro: IE <= value; both lower bounds, or a term of the sample only or
    unverified: no bound; totals with no measured layer are NaN."""
    r = _result()
    r.micro[0][0][1].diagnostics["critic_limited"] = True
    assert r.ie_bound[0] == "upper" and np.isnan(r.ie[0])
    assert r.ie_bound_value[0] == pytest.approx(3.0) and r.ie_text()[0] == "<= 3.00"
    r.context[0][1][2].diagnostics["saturated"] = False
    r.micro[0][1][0].diagnostics["sample_limited"] = True
    r.context[0][1][2].diagnostics["sample_limited"] = True
    assert r.ie_bound[1] is None and "both lower bounds" in r.ie_reason[1] and r.ie_text()[1] == "n/a"
    assert math.isnan(r.totals["sum_over_layers"]["value"]) and r.totals["sum_over_layers"]["n_layers_measured"] == 0
    r = _result()
    r.context[0][0][2].diagnostics["sample_specific"] = True
    r.micro[0][1][2].diagnostics["unverified"] = True
    assert r.ie_bound == [None, None] and not r.ie_measured.any()
    assert "sample_specific" in r.ie_flags[0]["flags"] and "unverified" in r.ie_flags[1]["flags"]


def test_lower_bound_flags_of_the_estimates_reach_ie():
    r = _result()
    r.micro[0][0][1].diagnostics["critic_limited"] = True
    r.context[0][1][2].diagnostics["sample_limited"] = True
    flags = r.ie_flags
    assert flags[0]["flags"] == ["micro_lower_bound"]
    assert flags[1]["flags"] == ["macro_saturated", "macro_lower_bound"]
    assert "critic_limited" in r.to_csv()


def test_in_context_micro_has_e0_zero_exactly():
    r = _result("in_context")
    np.testing.assert_allclose(r.mi_micro, [[1.0, 2.0, 4.0], [0.5, 3.0, 6.0]])
    # layer 1's last context estimate is saturated and enters both terms: no bound, no number
    np.testing.assert_allclose(r.ie, [4.0 - 7.0 / 3, np.nan])
    assert r.ie_bound == [None, None]
    assert (r.token_curve[:, 0] == 0).all()
    assert (r.token_curve_ci[:, 0] == 0).all()  # the same estimate on both sides cancels, error included
    w_ie, w_curve = ie_weights(3, "in_context")
    np.testing.assert_allclose(w_ie, [-1 / 3, -1 / 3, 2 / 3])
    assert w_curve.shape == (3, 3)


def test_json_and_csv_roundtrip(tmp_path):
    r = _result()
    r.to_json(tmp_path / "result.json")
    back = IEResult.from_json(tmp_path)
    np.testing.assert_allclose(back.ie, r.ie)
    np.testing.assert_allclose(back.ie_ci, r.ie_ci)
    assert back.ie_flags[1]["flags"] == ["macro_saturated"]
    summary = json.loads((tmp_path / "result.json").read_text())["summary"]["settings"][0]
    assert summary["ie"] == [3.0, None]  # not a measurement: null, with its bound and the reason
    assert summary["ie_bound"] == [None, "lower"] and summary["ie_bound_value"] == [None, 5.0]
    assert summary["ie_measured"] == [True, False] and "saturated" in summary["ie_reason"][1]
    assert summary["totals"]["sum_over_layers"]["n_layers_measured"] == 1
    rows = r.to_csv().strip().splitlines()
    # header + per layer (ie, mi_macro, 3 micro, 3 token curve) + 2 totals
    assert len(rows) == 1 + 2 * 8 + 2
    assert rows[1].startswith("hand,ie,0,,3.0")
    ie_row = next(row for row in rows if row.startswith("hand,ie,1,"))
    assert ie_row.startswith("hand,ie,1,,,,,,") and ie_row.endswith(",lower,5.0")
    assert any(row.startswith("hand,ie_sum_over_layers,,,3.0") and "layers=1/2" in row for row in rows)


@pytest.mark.slow
def test_measure_exact_counting_matches_hand_computed_entropies(lm):
    """A random network keeps distinct inputs distinct, so counting gives entropies of the token data."""
    rng = np.random.default_rng(0)
    ids = np.stack([rng.integers(0, 4, 300), np.full(300, 7), rng.integers(10, 13, 300)], 1).astype(np.int32)
    res = ie_jax.measure(lm, data.TokenData(ids, "toy", "icl", "toy"), estimator="exact_discrete")

    def entropy(cols):
        _, c = np.unique(ids[:, cols], axis=0, return_counts=True)
        p = c / c.sum()
        return float(-(p * np.log(p)).sum())

    h_tok = [entropy([0]), 0.0, entropy([2])]
    np.testing.assert_allclose(res.mi_micro, [h_tok, h_tok], atol=1e-9)
    # layer 0's input at the last position is that token's embedding; later blocks see the whole prefix
    np.testing.assert_allclose(res.mi_macro, [entropy([2]), entropy([0, 1, 2])], atol=1e-9)
    np.testing.assert_allclose(res.ie, res.mi_macro - np.mean(h_tok), atol=1e-9)
    np.testing.assert_allclose(res.token_curve[1], [0.0, entropy([0]) - h_tok[0] / 2, res.ie[1]], atol=1e-9)
    assert res.mi_micro_diagnostics[0][1]["constant"] is True  # position 1 always holds token 7
    assert res.metadata["model"]["num_layers"] == 2 and res.metadata["estimator"] == "exact_discrete"
    bits = ie_jax.measure(lm, data.TokenData(ids, "toy", "icl", "toy"), estimator="exact_discrete", units="bits")
    np.testing.assert_allclose(bits.ie, res.ie / math.log(2))


@pytest.mark.slow
def test_measure_noise_sigma_grid(lm):
    ids = np.random.default_rng(1).integers(0, 5, (80, 3)).astype(np.int32)
    res = ie_jax.measure(lm, data.TokenData(ids, "toy", "icl", "toy"), estimator="noise", sigma=[0.01, 100.0],
                         token_curve=False, n_mc=64)
    assert res.settings == ("noise sigma=0.01", "noise sigma=100")
    small, large = res.select(sigma=0.01), res.select(1)
    exact = ie_jax.measure(lm, data.TokenData(ids, "toy", "icl", "toy"), estimator="exact_discrete",
                           token_curve=False)
    np.testing.assert_allclose(small.mi_macro, exact.mi_macro, atol=0.05)  # sigma -> 0: the counting value
    assert (large.mi_macro < 0.05).all()  # sigma -> infinity: 0
    assert not res.has_token_curve
    with pytest.raises(ValueError, match="no token curve"):
        res.token_curve


def test_measure_gaussian_closed_form_on_gaussian_states(lm):
    res = ie_jax.measure(lm, "gaussian:0.81", n_samples=200, seq_len=2, estimator="gaussian", token_curve=False)
    assert res.metadata["data"]["variance"] == 0.81 and res.settings == ("gaussian",)
    # the closed form on the captured states: I = (ln det C_x + ln det C_y - ln det C_xy) / 2 (sample covariances)
    v = variables.extract(lm, data.GaussianData(200, 2, variance=0.81), token_curve=False)

    def closed_form(x, y):
        logdet = lambda a: np.linalg.slogdet(np.cov(a, rowvar=False))[1]
        return 0.5 * (logdet(x) + logdet(y) - logdet(np.concatenate([x, y], axis=1)))

    macro = [closed_form(*v.macro_pair(i)) for i in range(len(v.layers))]
    micro = [[closed_form(*v.micro_pair(i, t)) for t in range(2)] for i in range(len(v.layers))]
    np.testing.assert_allclose(res.mi_macro, macro, rtol=1e-3)
    np.testing.assert_allclose(res.mi_micro, micro, rtol=1e-3)
    # a deterministic block's continuous states give closed forms above ln N: no IE is printed from them
    assert (np.array(macro) > math.log(200)).all() and not res.ie_measured.any()
    assert np.isnan(res.ie).all() and all("above_ceiling" in f["flags"] for f in res.ie_flags)
    np.testing.assert_allclose(res._ie_unmeasured()[0], np.array(macro) - np.mean(micro, axis=1), rtol=1e-3, atol=1e-3)
    assert np.isnan(res.ie_stderr).all()  # the closed form carries no error estimate: none is invented
    with pytest.raises(ValueError, match="needs at least 34"):
        ie_jax.measure(lm, "gaussian", n_samples=20, estimator="gaussian")


@pytest.mark.slow
def test_measure_neural_fast_protocol_small(lm):
    ids = np.random.default_rng(2).integers(0, 6, (96, 3)).astype(np.int32)
    res = ie_jax.measure(lm, data.TokenData(ids, "toy", "icl", "toy"), protocol="fast", layers=[1],
                         token_curve=False, steps=30, batch_size=32, eval_every=10)
    assert res.settings == ("fast protocol (selection)",)
    # a number exactly where both terms are measurements, else a bound or nothing, with the reason
    assert (np.isfinite(res.ie) == res.ie_measured).all()
    assert all(r is not None for r, m in zip(res.ie_reason, res.ie_measured) if not m)
    # an undefined component error (NaN stderr) leaves IE's interval undefined rather than falsely narrow
    component_nan = np.isnan(res.mi_macro_stderr).any() or np.isnan(res.mi_micro_stderr).any()
    assert np.isnan(res.ie_ci).any() == component_nan
    d = res.mi_macro_diagnostics[0]
    assert d["ceilings"] and d["ceiling_nats"] <= math.log(96) + 1e-6


def test_bad_input_errors(lm, tmp_path):
    ids = np.random.default_rng(3).integers(0, 6, (50, 3)).astype(np.int32)
    toy = data.TokenData(ids, "toy", "icl", "toy")
    cfg, options = resolve("fast", {})
    # the smallest N whose training split (1 - test_fraction) fills one batch
    need = next(n for n in range(cfg.batch_size, 10 * cfg.batch_size)
                if n - round(n * options["test_fraction"]) >= cfg.batch_size)
    with pytest.raises(ValueError, match=rf"too few for fast protocol \(selection\): it needs at least {need}"):
        ie_jax.measure(lm, toy, protocol="fast")
    with pytest.raises(ValueError, match="unknown data spec"):
        ie_jax.measure(lm, "wiki:all", n_samples=10)
    with pytest.raises(ValueError, match="unknown protocol"):
        ie_jax.measure(lm, toy, protocol="slow")
    with pytest.raises(ValueError, match="unknown estimator"):
        ie_jax.measure(lm, toy, estimator="knn")
    with pytest.raises(ValueError, match="sigma applies to estimator='noise' only"):
        ie_jax.measure(lm, toy, estimator="exact_discrete", sigma=0.1)
    with pytest.raises(ValueError, match="Gaussian-input states are continuous"):
        ie_jax.measure(lm, "gaussian", n_samples=20, estimator="exact_discrete")
    with pytest.raises(ValueError, match="exceed .* context of 16"):
        ie_jax.measure(lm, data.TokenData(np.zeros((4, 20), np.int32), "long", "icl", "long"),
                       estimator="exact_discrete")
    with pytest.raises(ValueError, match="micro must be"):
        ie_jax.measure(lm, toy, estimator="exact_discrete", micro="alone")
    with pytest.raises(ValueError, match="need a tokenizer"):
        ie_jax.measure(lm, "icl:country", n_samples=10, estimator="exact_discrete")
