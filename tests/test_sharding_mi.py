"""Problem-axis sharding: 8 (fake CPU) devices give the 1-device numbers, also for P not divisible by 8."""

import jax
import numpy as np
import pytest

import ie_jax.mi as mi
from ie_jax import sharding
from ie_jax.mi.protocols import resolve
from ie_jax.mi.train import train_critics

QUICK = dict(steps=40, batch_size=32, eval_every=20, hidden=(32,), embed_dim=8)


def _problems(p, n=256, d=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((p, n, d)).astype(np.float32)
    rho = np.linspace(0.0, 0.95, p)[:, None, None]
    y = (rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((p, n, d))).astype(np.float32)
    return x, y


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 devices (conftest sets 8 fake CPU devices)")
def test_sharded_estimate_batch_equals_one_device():
    x, y = _problems(11)  # 11 problems: padded to 16 on 8 devices, to 11 on 1
    one = mi.estimate_batch(x, y, mesh=sharding.make_mesh(1), seeds=(0, 1), **QUICK)
    eight = mi.estimate_batch(x, y, mesh=sharding.make_mesh(8), seeds=(0, 1), **QUICK)
    np.testing.assert_allclose(eight.values, one.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eight.stderrs, one.stderrs, rtol=1e-4, atol=1e-6)
    # Chunking the problem axis (3 chunks of 8 = 24 slots for 11 problems) changes nothing either.
    chunked = mi.estimate_batch(x, y, mesh=sharding.make_mesh(8), seeds=(0, 1), max_problems_per_chunk=5, **QUICK)
    np.testing.assert_allclose(chunked.values, one.values, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 devices")
def test_problem_axis_really_is_split_across_devices():
    mesh = sharding.make_mesh()
    assert mesh.devices.size == len(jax.devices()) and mesh.axis_names == ("problems",)
    cfg, _ = resolve("fast", QUICK)
    x, y = _problems(8)
    arrays = [sharding.shard_problems(a, mesh) for a in (x, y, x[:, :64], y[:, :64])]
    keys = jax.vmap(jax.random.wrap_key_data)(np.stack([jax.random.key_data(jax.random.key(0))]))
    out = train_critics(cfg, *arrays, keys, eval_batch=32)
    shards = out["train_values"].addressable_shards
    assert len({s.device for s in shards}) == 8 and all(s.data.shape[0] == 1 for s in shards)


def test_mesh_and_padding_helpers():
    assert sharding.make_mesh(1).devices.size == 1
    with pytest.raises(ValueError, match="devices are available"):
        sharding.make_mesh(len(jax.devices()) + 1)
    a = np.arange(6).reshape(3, 2)
    padded = sharding.pad_problems(a, 5)
    assert padded.shape == (5, 2) and (padded[3:] == a[-1]).all()
    if len(jax.devices()) >= 2:
        with pytest.raises(ValueError, match="pad first"):
            sharding.shard_problems(a, sharding.make_mesh(2))
