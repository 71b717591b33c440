"""A sweep on states kept on the device gives the numbers of the same sweep on host copies of them."""

import numpy as np

from ie_jax import data, sweep, variables
from ie_jax.models import random_model

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}


def _sweep(states, est, size):
    timings = dict.fromkeys(("prepare", "compile", "train", "readout", "write"), 0.0)
    problems = sweep.problems_for(states)
    rows = sweep._estimate_all(states, problems, est, None, size, lambda line: None, None, None, timings)
    return [[(e.value, e.stderr, e.diagnostics.get("flags")) for e in row] for row in rows]


def test_device_states_give_the_host_states_numbers():
    lm = random_model(TINY, seed=3)
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
