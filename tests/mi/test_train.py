"""Training program: the paper's schedule, mini-batch and full-batch modes, bf16, chunking, records."""

import math

import numpy as np
import pytest

from ie_jax.mi.protocols import resolve
from ie_jax.mi.chunks import balanced_chunk
from _helpers_train import train_one_chunk as train_batch
from ie_jax.mi.train import TrainConfig, paper_schedule, training_bytes


def test_paper_schedule_is_hf_polynomial_decay_with_warmup():
    lr = paper_schedule(1e-4, 10_000, warmup_steps=5, end_lr=1e-8, power=3.0)
    assert float(lr(0)) == 0.0  # HF's warm-up starts at 0: the first Adam step moves nothing
    assert float(lr(2)) == pytest.approx(0.4e-4)
    assert float(lr(5)) == pytest.approx(1e-4)
    # 2,500 of the 9,995 decay steps done: (1e-4 - 1e-8) * (1 - 2500 / 9995)**3 + 1e-8
    assert float(lr(2_505)) == pytest.approx((1e-4 - 1e-8) * (1 - 2500 / 9995) ** 3 + 1e-8, rel=1e-5)
    assert float(lr(10_000)) == pytest.approx(1e-8) and float(lr(20_000)) == pytest.approx(1e-8)


def _data(p=2, n=512, d=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, n, d)).astype(np.float32)
    y = (0.9 * x + math.sqrt(1 - 0.81) * rng.standard_normal((p, n, d))).astype(np.float32)
    return x, y


@pytest.mark.slow
def test_records_shapes_and_learning_curves():
    cfg = TrainConfig(critic="concat", hidden=(32, 16), bound="dv", steps=120, batch_size=64, lr=3e-3,
                      schedule="constant", eval_every=40)
    x, y = _data()
    rec = train_batch(cfg, x[:, :400], y[:, :400], x[:, 400:], y[:, 400:], seeds=(0, 1, 2))
    assert rec["train_values"].shape == (2, 3, 120)
    assert rec["heldout_curve"].shape == (2, 3, 3)
    assert rec["heldout_batches"].shape == (2, 3, 112 // 64)
    assert (rec["nan_step"] == -1).all()
    # The training bound climbs towards the true 1.66 nats; seeds differ; the held-out curve rises.
    early, late = rec["train_values"][..., :10].mean(), rec["train_values"][..., -20:].mean()
    assert late > early + 0.5 and late < 2.5
    assert not np.allclose(rec["train_values"][0, 0], rec["train_values"][0, 1])
    assert (rec["heldout_curve"][..., -1] > rec["heldout_curve"][..., 0]).all()


@pytest.mark.slow
def test_full_batch_mode_and_bfloat16():
    x, y = _data(p=1, n=256)
    f32 = TrainConfig(critic="concat", hidden=(64, 32), steps=60, batch_size=None, lr=3e-3, schedule="constant")
    bf16 = TrainConfig(critic="concat", hidden=(64, 32), steps=60, batch_size=None, lr=3e-3, schedule="constant",
                       dtype="bfloat16")
    empty = x[:, :0], y[:, :0]
    a = train_batch(f32, x, y, *empty, seeds=(0,))["train_values"][0, 0]
    b = train_batch(bf16, x, y, *empty, seeds=(0,))["train_values"][0, 0]
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert a[-10:].mean() > 1.0  # full batch of 256 learns most of the 1.66 nats
    assert abs(a[-10:].mean() - b[-10:].mean()) < 0.15  # bf16 matmuls, fp32 loss: same curve within noise


def test_training_memory_scales_with_n():
    paper, _ = resolve("paper", {})
    small = training_bytes(paper, 10_000, 0, 768, 768, 1)
    big = training_bytes(paper, 300_000, 0, 768, 768, 1)
    assert 20 < big / small < 40 and big > 5e9  # N = 300,000 at d = 768 needs several GB per critic


def test_balanced_chunks_pad_little_and_bf16_data_copies_are_counted():
    assert balanced_chunk(108, 24, 2) == 22  # 5 chunks, 110 problems with padding (not 5 x 24 = 120)
    assert balanced_chunk(108, 60, 2) == 54
    assert balanced_chunk(108, 200, 8) == 112
    assert balanced_chunk(5, 2, 1) == 2 and balanced_chunk(1, 7, 1) == 1
    f32, _ = resolve("paper", {})
    bf16, _ = resolve("paper", {"dtype": "bfloat16"})
    full, half = (training_bytes(c, 1000, 0, 768, 768, 1) for c in (f32, bf16))
    assert half - full == 3 * 2 * 1000 * 2 * 768  # the program's bf16 copies of the data (the caller holds the input)


def test_config_validation():
    with pytest.raises(ValueError, match="use critic='separable'"):
        TrainConfig(critic="paper", bound="infonce")
    with pytest.raises(ValueError, match="unknown dtype"):
        TrainConfig(dtype="float16")
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        TrainConfig(batch_size=1)
