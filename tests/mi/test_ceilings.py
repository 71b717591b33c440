"""Ceilings and flags: saturation at an estimator cap, constant inputs, generator entropy, shuffled null."""

import math

import numpy as np
import pytest

from ie_jax.mi.ceilings import annotate, annotate_batch, estimator_cap, icl_orderings_entropy, shuffled_null
from ie_jax.mi.discrete import exact_discrete_mi
from ie_jax.mi.result import MIEstimate, MIEstimates


def _estimate(value, units="nats", **diagnostics):
    return MIEstimate(value=value, stderr=0.01, ci95=(value - 0.02, value + 0.02), units=units,
                      estimator="infonce", diagnostics=diagnostics)


def _continuous(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8))
    return x, np.tanh(x @ rng.standard_normal((8, 4)))


def test_icl_orderings_entropy():
    assert icl_orderings_entropy(24, 4) == pytest.approx(math.log(24 * 23 * 22 * 21))
    assert icl_orderings_entropy(24, 4) == pytest.approx(12.449, abs=1e-3)  # ln 255,024
    assert icl_orderings_entropy(5, 0) == 0.0
    assert icl_orderings_entropy(24, 4, with_replacement=True) == pytest.approx(4 * math.log(24))
    with pytest.raises(ValueError, match="with_replacement"):
        icl_orderings_entropy(3, 4)


def test_infonce_at_its_cap_is_flagged_saturated():
    x, y = _continuous()
    cap = math.log(512)
    at_cap = annotate(_estimate(cap - 0.01), x, y, estimator_cap_nats=cap)
    d = at_cap.diagnostics
    assert d["saturated"] and not d["constant"] and not d["above_ceiling"]
    assert d["ceiling_nats"] == pytest.approx(cap)  # ln 512 < ln 1000 = the sample's entropy here
    assert d["ceilings"]["estimator_cap"] == pytest.approx(cap)
    assert d["ceilings"]["sample_entropy"] == pytest.approx(math.log(1000))
    assert d["n_distinct_x"] == 1000
    below = annotate(_estimate(cap - 1.0), x, y, estimator_cap_nats=cap)
    assert not below.diagnostics["saturated"]
    # the margin is configurable and the comparison is made in nats whatever the estimate's unit
    assert not annotate(_estimate(cap - 0.01), x, y, estimator_cap_nats=cap, margin_nats=0.001).diagnostics[
        "saturated"
    ]
    in_bits = annotate(_estimate((cap - 0.05) / math.log(2), units="bits"), x, y, estimator_cap_nats=cap)
    assert in_bits.diagnostics["saturated"] and in_bits.units == "bits"


def test_ceiling_is_the_smallest_and_generator_entropy_is_recorded():
    labels = np.arange(2400) % 24
    points = np.random.default_rng(1).standard_normal((24, 16)) * 5
    x, y = points[labels], np.tanh(points[labels][:, :6])
    est = annotate(
        _estimate(3.0), x, y, estimator_cap_nats=math.log(512),
        generating_entropy_nats=icl_orderings_entropy(24, 1), data_entropy_nats=3.5,
    )
    d = est.diagnostics
    assert d["sample_entropy_nats"] == pytest.approx(math.log(24))
    assert d["ceiling_nats"] == pytest.approx(math.log(24))  # min(ln 512, ln 24, 3.5, ln 2400)
    assert d["ceilings"]["data_entropy"] == 3.5
    assert d["ceilings"]["generating_entropy"] == pytest.approx(math.log(24))
    assert not d["saturated"]  # 3.0 is 0.18 below ln 24 = 3.18
    # 100 samples of each of 24 states cover them: ln 24 is the population's entropy, reaching it is exact
    covered = annotate(_estimate(3.1), x, y).diagnostics
    assert covered["covered"] and not covered["saturated"]
    assert annotate(_estimate(2.95), x, y, estimator_cap_nats=3.0).diagnostics["saturated"]  # caps still count
    # every sample its own state: ln N is the sample's size, and reaching it is saturation
    cx, cy = _continuous(200)
    near = annotate(_estimate(math.log(200) - 0.05), cx, cy).diagnostics
    assert not near["covered"] and near["saturated"]
    # a closed-form Gaussian estimate far above what the sample can hold (the issue saw 359 nats)
    huge = annotate(_estimate(359.0), x, y).diagnostics
    assert huge["above_ceiling"] and not huge["reliable"]
    assert annotate(_estimate(359.0), cx, cy).diagnostics["saturated"]


def test_constant_input_is_flagged_and_not_saturated():
    x, y = _continuous(200)
    d = annotate(_estimate(0.0), np.zeros((200, 4)), y).diagnostics
    assert d["constant"] and not d["saturated"] and d["n_distinct_x"] == 1 and d["sample_entropy_nats"] == 0.0


def test_annotate_keeps_existing_diagnostics_and_merges_ceilings():
    labels = np.arange(600) % 6
    points = np.random.default_rng(2).standard_normal((6, 8)) * 4
    x, y = points[labels], points[labels][:, ::-1] ** 3
    counted = exact_discrete_mi(x, y)
    est = annotate(counted, x, y, generating_entropy_nats=math.log(6))
    d = est.diagnostics
    assert d["n_distinct_joint"] == 6 and d["rtol"] == 1e-4
    assert set(counted.diagnostics["ceilings"]) <= set(d["ceilings"])
    assert d["saturated"]  # ln 6 exactly: the generator's entropy is reached
    assert est.value == counted.value and est.estimator == "exact_discrete"


def test_shuffled_null_is_near_zero_and_recorded():
    labels = np.random.default_rng(3).integers(0, 4, 2000)
    points = np.random.default_rng(4).standard_normal((4, 8)) * 4
    x, y = points[labels], np.sin(points[labels][:, :3])
    est = exact_discrete_mi(x, y)
    null = shuffled_null(exact_discrete_mi, x, y, seed=5)
    assert est.value == pytest.approx(math.log(4), abs=0.01)
    # plug-in bias under independence is about (Kx - 1)(Ky - 1) / 2N = 9 / 4000
    assert 0.0 <= null.value < 0.02
    assert null.diagnostics["shuffled_null"] and null.diagnostics["permutation_seed"] == 5
    d = annotate(est, x, y, null_estimate=null).diagnostics
    assert d["null_nats"] == null.value


def test_annotate_batch_and_bad_input():
    x, y = _continuous(300)
    batch = MIEstimates.stack([_estimate(1.0), _estimate(math.log(300))])
    out = annotate_batch(batch, np.stack([x, x]), np.stack([y, y]))
    assert [d["saturated"] for d in out.diagnostics] == [False, True]
    with pytest.raises(ValueError, match="one x and y per estimate"):
        annotate_batch(batch, x[None], y[None])
    with pytest.raises(ValueError, match="same number"):
        annotate(_estimate(1.0), x, y[:-1])


def test_estimator_cap():
    assert estimator_cap("infonce", batch_size=512) == pytest.approx(6.238, abs=1e-3)  # ln 512
    assert estimator_cap("dv", n_marginal=1000) == pytest.approx(math.log(1000))
    with pytest.raises(ValueError, match="batch_size"):
        estimator_cap("infonce")
    with pytest.raises(ValueError, match="unknown bound"):
        estimator_cap("gaussian", batch_size=8)
