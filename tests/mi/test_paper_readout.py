"""The "paper" readout against a plain PyTorch re-implementation of the reference loop.

The reference (Chen et al. 2025, GPT2/MINE_for_LLMs.py) is re-written step by step in torch: the same
Sequential critic, Adam, HF's polynomial-decay schedule, loss = -log2(e) * DV, a fresh permutation of
y per step, info_max = max over steps (starting at 0), stop at NaN. It starts from our critic's initial
weights and uses our permutations, so both runs must agree step by step.
"""

import math

import jax
import numpy as np
from _helpers_train import train_one_chunk
import pytest
import torch

import ie_jax.mi as mi
from ie_jax.mi.protocols import resolve

N, D, STEPS, SEED = 64, 8, 30, 7


def _data():
    rng = np.random.default_rng(0)
    x = 3 * rng.standard_normal((N, D)).astype(np.float32)
    y = (x + rng.standard_normal((N, D))).astype(np.float32)
    return x, y


def _reference_info_per_step(x, y, params, perms, lr_steps):
    """The reference loop, step by step, from given initial weights and permutations. Returns info in bits."""
    from transformers import get_polynomial_decay_schedule_with_warmup

    widths = [2 * D, 768, 384, 192, 96, 48, 24, 12, 6, 3, 1]
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.LeakyReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    weights = [np.concatenate([params["first"]["w_x"], params["first"]["w_y"]], 0)] + [l["w"] for l in params["rest"]]
    biases = [params["first"]["b"]] + [l["b"] for l in params["rest"]]
    with torch.no_grad():
        for linear, w, b in zip([m for m in net if isinstance(m, torch.nn.Linear)], weights, biases):
            linear.weight.copy_(torch.from_numpy(np.asarray(w).T.copy()))
            linear.bias.copy_(torch.from_numpy(np.asarray(b).copy()))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    scheduler = get_polynomial_decay_schedule_with_warmup(optimizer, num_warmup_steps=5, num_training_steps=lr_steps,
                                                          lr_end=1e-8, power=3)
    xt, yt = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
    tiled_x = torch.cat([xt, xt], 0)
    infos, info_max = [], 0
    for perm in perms:
        inputs = torch.cat([tiled_x, torch.cat([yt, yt[torch.from_numpy(perm)]], 0)], 1)
        logits = net(inputs)
        loss = -np.log2(np.exp(1)) * (torch.mean(logits[:N]) - torch.log(torch.mean(torch.exp(logits[N:]))))
        net.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        info = -loss.detach()
        infos.append(float(info))
        if info_max < info and info == info:
            info_max = info
        elif info != info:
            break
    return np.array(infos), float(info_max)


@pytest.mark.slow
def test_paper_readout_matches_reference_loop():
    x, y = _data()
    cfg, _ = resolve("paper", {"steps": STEPS})
    critic = cfg.make_critic()
    # The same keys as ie_jax.mi.train._train_one: init key, then one permutation key per step.
    k_init, k_steps = jax.random.split(jax.random.key(SEED))
    params = jax.tree.map(np.asarray, critic.init(k_init, D, D))
    perms = [np.asarray(jax.random.permutation(jax.random.split(jax.random.fold_in(k_steps, t))[1], N))
             for t in range(STEPS)]
    ref_infos, ref_max = _reference_info_per_step(x, y, params, perms, STEPS)

    result = mi.estimate(x, y, protocol="paper", steps=STEPS, seed=SEED, units="bits")
    records = train_one_chunk(cfg, x[None], y[None], x[None, :0], y[None, :0], (SEED,))
    ours_bits = records["train_values"][0, 0] / math.log(2.0)
    np.testing.assert_allclose(ours_bits, ref_infos, rtol=1e-3, atol=2e-6)
    # The bound rises over the 30 steps, so the max is a late step's value, not the floor at 0.
    assert ref_infos[-1] > 10 * ref_infos[0] and ref_max > 0.003
    assert result.units == "bits" and result.value == pytest.approx(ref_max, rel=1e-3)
    assert result.to("nats").value == pytest.approx(ref_max * math.log(2.0), rel=1e-3)


@pytest.mark.slow
def test_paper_readout_stops_at_nan_and_floors_at_zero():
    x, y = _data()
    # A huge learning rate blows the critic up after the warm-up's first non-zero steps: the reference
    # breaks at the first NaN and keeps the max of the steps before it.
    cfg, _ = resolve("paper", {"steps": 12, "lr": 1e6})
    records = train_one_chunk(cfg, x[None], y[None], x[None, :0], y[None, :0], (SEED,))
    values, nan_step = records["train_values"][0, 0], int(records["nan_step"][0, 0])
    assert 0 < nan_step < 12
    assert np.isfinite(values[:nan_step]).all() and np.isnan(values[nan_step:]).all()
    result = mi.estimate(x, y, protocol="paper", steps=12, lr=1e6, seed=SEED)
    assert result.diagnostics["nan_step"] == nan_step
    assert result.value == pytest.approx(max(0.0, values[:nan_step].max()), rel=1e-6)
    # Independent data: the max over steps may dip below 0 but the readout is floored there.
    rng = np.random.default_rng(1)
    indep = mi.estimate(rng.standard_normal((N, D)), rng.standard_normal((N, D)), protocol="paper", steps=3)
    assert indep.value >= 0.0 and indep.diagnostics["nan_step"] is None
