"""A sweep on states kept on the device gives the numbers of the same sweep on host copies of them."""

import jax.numpy as jnp
import numpy as np
import pytest

from ie_jax.ie import data
from ie_jax.ie import measure as sweep
from ie_jax.ie import variables
from ie_jax.mi.ceilings import state_counts
from ie_jax.models import random_model

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}


def _sweep(states, est, size):
    timings = dict.fromkeys(("prepare", "compile", "train", "readout", "write"), 0.0)
    problems = sweep.problems_for(states)
    rows = sweep._estimate_all(states, problems, est, None, size, lambda line: None, None, None, timings)
    return [[(e.value, e.stderr, e.diagnostics.get("flags")) for e in row] for row in rows]


@pytest.fixture(scope="module")
def lm():
    return random_model(TINY, seed=3)


@pytest.mark.slow
def test_device_states_give_the_host_states_numbers(lm):
    g = data.GaussianData(n_samples=256, seq_len=2, variance=0.81, seed=1)
    host, dev = (variables.extract(lm, g, layers=[1], on_device=d) for d in (False, True))
    assert dev.on_device and not host.on_device
    # 4 problems in chunks of 3: the second chunk is padded on the device; one critic, no checks (they do not
    # read the states: the same prepared chunk feeds them)
    est = sweep.make_estimator("fast", None, None, (0,), False, dict(
        steps=40, batch_size=64, eval_every=20, convergence_check=False, critic_check=None, gaussian_check=False))
    want, got = _sweep(host, est, 3), _sweep(dev, est, 3)
    assert len(got[0]) == 4 and np.isfinite([e[0] for e in got[0]]).all()
    for (gv, gs, gf), (wv, ws, wf) in zip(got[0], want[0]):
        np.testing.assert_allclose([gv, gs], [wv, ws], rtol=1e-5, atol=1e-6)
        assert gf == wf and isinstance(gf, list)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gaussian", "tokens"])
def test_noise_sweep_and_state_counts_on_device_states(lm, kind):
    # tokens: 40 ids over 256 samples repeat, so the distinct-state screen has candidate pairs to confirm
    ids = np.random.default_rng(4).integers(0, 40, (256, 2)).astype(np.int32)
    dataset = data.TokenData(ids, "t", "icl", "t") if kind == "tokens" else data.GaussianData(256, 2, seed=2)
    host, dev = (variables.extract(lm, dataset, on_device=d) for d in (False, True))
    est = sweep.make_estimator("fast", "noise", [0.3, 1.0], (0,), False, {"n_mc": 32})
    want, got = _sweep(host, est, 5), _sweep(dev, est, 5)  # 8 problems: 2 chunks, the second padded
    for row_got, row_want in zip(got, want):
        for (gv, gs, gf), (wv, ws, wf) in zip(row_got, row_want):
            np.testing.assert_allclose([gv, gs], [wv, ws], rtol=1e-6, atol=1e-7)
            assert gf == wf
    pairs = [sweep.problem_pair(dev, p) for p in sweep.problems_for(dev)]
    xs = jnp.stack([a for a, _ in pairs])
    counts = state_counts(xs)
    assert counts == state_counts(np.asarray(xs))
    if kind == "tokens":  # the micro variables: one state per distinct token
        micro = [c for c, p in zip(counts, sweep.problems_for(dev)) if p.kind == "micro"]
        assert [c.n_distinct for c in micro] == [len(np.unique(ids[:, p.t])) for p in sweep.problems_for(dev)
                                                 if p.kind == "micro"]
