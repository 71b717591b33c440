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


def _assert_same_numbers(a, b):
    """Values, stderrs and every numeric diagnostic equal to float32 rounding (XLA's CPU kernels may round a
    batch of 11 problems and one of 2 per device differently); flags and counts exactly equal."""
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.stderrs, b.stderrs, rtol=1e-4, atol=1e-6)
    for da, db in zip(a.diagnostics, b.diagnostics, strict=True):
        assert da.keys() == db.keys()
        for k, v in da.items():
            if isinstance(v, float) and not isinstance(v, bool):
                assert v == pytest.approx(db[k], rel=1e-4, abs=1e-6, nan_ok=True), k
            elif isinstance(v, (int, bool, str, list)) or v is None:
                assert v == db[k], k


@pytest.mark.slow
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 devices (conftest sets 8 fake CPU devices)")
def test_device_count_and_chunking_change_no_number():
    x, y = _problems(11, n=512)  # 11 problems: padded to 16 on 8 devices, to 11 on 1; 3 held-out batches
    quick = dict(QUICK, seeds=(0, 1), critic_check=None)  # the half-N and Gaussian checks run
    one = mi.estimate_batch(x, y, mesh=sharding.make_mesh(1), **quick)
    eight = mi.estimate_batch(x, y, mesh=sharding.make_mesh(8), **quick)
    _assert_same_numbers(eight, one)
    # Chunking the problem axis (3 chunks of 8 = 24 slots for 11 problems) changes nothing either.
    _assert_same_numbers(mi.estimate_batch(x, y, mesh=sharding.make_mesh(8), max_problems_per_chunk=5, **quick), one)
    # Nor does padding a call to 16 problems (a sweep's last chunk keeps the program shape): the same
    # program as `eight`, so its numbers are identical.
    padded = mi.estimate_batch(x[:5], y[:5], mesh=sharding.make_mesh(8), pad_problems_to=16, **quick)
    np.testing.assert_array_equal(padded.values, eight.values[:5])
    assert padded.diagnostics == eight.diagnostics[:5]
    assert "gaussian_critic_gain_nats" in one.diagnostics[0] and "gain_from_doubling_n_nats" in one.diagnostics[0]


@pytest.mark.slow
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 devices")
def test_jax_inputs_stay_on_the_devices():
    x, y = _problems(8)
    mesh = sharding.make_mesh(8)
    quick = dict(QUICK, critic_check=None, convergence_check=False)
    host = mi.estimate_batch(x, y, **quick)
    xs, ys = (sharding.shard_problems(a, mesh) for a in (x, y))
    # Any implicit device-to-host copy of the data raises here; the one explicit device_get of results does not.
    with jax.transfer_guard_device_to_host("disallow"):
        device = mi.estimate_batch(xs, ys, **quick)
    np.testing.assert_array_equal(device.values, host.values)
    with pytest.raises(ValueError, match="NaN or inf in problem 3"):
        mi.estimate_batch(xs.at[3, 5, 0].set(np.nan), ys, **quick)


@pytest.mark.slow
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
