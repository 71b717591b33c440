"""Public API: estimate / estimate_batch, units, seeds, diagnostics and input validation."""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import ie_jax.mi as mi
from ie_jax.mi.result import DIAGNOSTIC_KEYS

# Small and quick: the fast protocol's critic on a few hundred steps.
QUICK = dict(steps=150, batch_size=64, eval_every=50)


def _gaussian(seed, n=1024, d=2, rho=0.8):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))).astype(np.float32)
    return x, y, -0.5 * d * math.log(1 - rho**2)


@pytest.mark.slow
def test_estimate_batch_equals_loop_of_estimate():
    problems = [_gaussian(s, rho=r) for s, r in ((0, 0.9), (1, 0.5), (2, 0.0))]
    x = np.stack([p[0] for p in problems])
    y = np.stack([p[1] for p in problems])
    batch = mi.estimate_batch(x, y, seed=3, **QUICK)
    assert batch.values.shape == (3,) and batch.ci95s.shape == (3, 2) and len(batch.diagnostics) == 3
    for p in range(3):
        single = mi.estimate(jnp.asarray(x[p]), y[p], seed=3, **QUICK)  # jax and numpy inputs alike
        assert single.value == pytest.approx(batch.values[p], rel=1e-5, abs=1e-5)
        assert single.stderr == pytest.approx(batch.stderrs[p], rel=1e-4, abs=1e-6)
    # The learned values order the problems by their true MI (1.66, 0.29, 0 nats).
    assert batch.values[0] > batch.values[1] + 0.5 and abs(batch.values[2]) < 0.15


@pytest.mark.slow
def test_units_seeds_and_diagnostics():
    x, y, true_mi = _gaussian(0)
    nats = mi.estimate(x, y, seeds=(0, 1), **QUICK)
    timings = {}
    bits = mi.estimate(x, y, seeds=(0, 1), units="bits", timings=timings, **QUICK)
    phases = {"setup_s", "prepare_s", "train_s", "gaussian_s", "readout_s", "selection_s", "transfer_s", "format_s"}
    assert set(timings) == phases and all(t >= 0 for t in timings.values()) and timings["train_s"] > 0
    assert nats.units == "nats" and bits.units == "bits"
    assert bits.value == pytest.approx(nats.value / math.log(2), rel=1e-6)
    lo, hi = nats.ci95
    # the selection default's interval: +- 1.96 stderr, widened towards the N/2 -> N extrapolation
    assert lo <= nats.value <= hi and hi - lo >= 2 * 1.96 * nats.stderr * (1 - 1e-3) or lo == 0.0
    assert nats.diagnostics["seeds"] == 2
    assert {"ceiling_nats", "ceilings", "saturated", "still_increasing", "nan_step", "train_test_gap",
            "n_samples"} <= set(nats.diagnostics) and set(DIAGNOSTIC_KEYS) >= {"ceiling_nats", "saturated"}
    assert nats.diagnostics["n_samples"] == 1024 and nats.diagnostics["nan_step"] is None
    assert nats.diagnostics["ceiling_nats"] == pytest.approx(min(math.log(307), math.log(64 * 63)))  # 30% held out
    assert 0.3 * true_mi < nats.value < 1.2 * true_mi


@pytest.mark.slow
def test_saturation_is_flagged_for_infonce():
    # y = x in 8 dims: MI is infinite, InfoNCE can say at most ln(batch): the result must say "lower bound".
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 8)).astype(np.float32)
    r = mi.estimate(x, x.copy(), bound="infonce", steps=300, batch_size=32, eval_every=0, lr=3e-3)
    assert r.diagnostics["ceilings"]["ln_batch"] == pytest.approx(math.log(32))
    assert r.value <= math.log(32) + 1e-5
    assert r.diagnostics["saturated"] and "lower bound" in r.diagnostics["note"]


@pytest.mark.parametrize("bound,critic", [("dv", "concat"), ("nwj", "separable"), ("mine", "concat"),
                                          ("infonce", "separable")])
@pytest.mark.slow
def test_every_bound_learns(bound, critic):
    x, y, true_mi = _gaussian(0, rho=0.9)
    r = mi.estimate(x, y, bound=bound, critic=critic, hidden=(64,), lr=3e-3, **QUICK)
    assert f"{bound}/{critic}" in r.estimator  # "copula, selected by dv/concat/heldout/selected" names both
    assert 0.4 * true_mi < r.value < 1.3 * true_mi


def test_bad_inputs_name_the_problem():
    x, y, _ = _gaussian(0, n=256)
    with pytest.raises(ValueError, match="N \\(samples\\) differs"):
        mi.estimate(x, y[:100])
    with pytest.raises(ValueError, match="rank 2"):
        mi.estimate(x[:, 0], y)
    with pytest.raises(ValueError, match="rank 3"):
        mi.estimate_batch(x, y)
    with pytest.raises(ValueError, match="P \\(problems\\) differs"):
        mi.estimate_batch(np.stack([x, x]), y[None])
    bad = x.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        mi.estimate(bad, y)
    with pytest.raises(ValueError, match="NaN or inf in problem 1"):
        mi.estimate_batch(np.stack([x, bad]), np.stack([y, y]))
    with pytest.raises(ValueError, match="below batch_size=512"):
        mi.estimate(x, y)  # 205 training pairs < the fast protocol's batch of 512
    with pytest.raises(ValueError, match="unknown protocol"):
        mi.estimate(x, y, protocol="slow")
    with pytest.raises(ValueError, match="unknown units"):
        mi.estimate(x, y, units="hartleys")
    with pytest.raises(ValueError, match="unknown setting"):
        mi.estimate(x, y, stepz=10)
    with pytest.raises(ValueError, match="unknown bound"):
        mi.estimate(x, y, bound="jsd", batch_size=64)
    with pytest.raises(ValueError, match="unknown readout"):
        mi.estimate(x, y, readout="best", batch_size=64)


@pytest.mark.slow
def test_constant_columns_warn():
    x, y, _ = _gaussian(0, n=256)
    x[:, 1] = 3.0
    with pytest.warns(UserWarning, match="constant column"):
        r = mi.estimate(x, y, steps=20, batch_size=64, eval_every=0)
    assert r.diagnostics["constant"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = mi.estimate(np.ones_like(x), y, steps=20, batch_size=64, eval_every=0)
    assert r.diagnostics["constant"] is True


def test_lazy_reexports():
    assert callable(mi.estimate) and "paper" in mi.PROTOCOLS and "fast" in mi.PROTOCOLS
    assert callable(mi.bounds.dv_bound)
    assert callable(mi.gaussian_copula_mi) and mi.gaussian_mi_bias_nats(4, 4, 1000) > 0
    with pytest.raises(AttributeError):
        mi.not_a_function


def test_negative_heldout_is_flagged_as_a_failed_estimate():
    from ie_jax.mi.estimate import _readout
    from ie_jax.mi.protocols import resolve

    cfg, _ = resolve("fast", {"steps": 20})
    rec = {"train_values": np.full((1, 20), 0.9, np.float32), "heldout_batches": np.array([[-0.5, -0.4]], np.float32),
           "nan_step": np.array([-1])}
    value, _, diagnostics = _readout(cfg, "heldout", rec, 1000, 800, 200, False)
    assert value == pytest.approx(-0.45) and diagnostics["heldout_negative"]  # reported, not clipped
    assert "failed estimate" in diagnostics["note"] and diagnostics["train_test_gap"] == pytest.approx(1.35)
    rec["heldout_batches"] = -rec["heldout_batches"]
    assert not _readout(cfg, "heldout", rec, 1000, 800, 200, False)[2]["heldout_negative"]
    assert not _readout(cfg, "paper", rec, 1000, 800, 200, False)[2]["heldout_negative"]
