"""Named estimation protocols: every setting of critic training and readout, in one dict each.

"paper": the reference protocol of Chen et al. (2025) exactly: the paper's concat critic, DV bound,
    full batch with a fresh permutation of y per step, Adam 1e-4 with cubic polynomial decay to 1e-8
    after 5 warm-up steps, 10,000 steps, no held-out split, readout = max over steps of the
    training-set bound floored at 0 (the reference prints it in bits: pass units="bits").
"fast": the recommended default (see benchmarks/mi_accuracy.py and benchmarks/results/mi_accuracy_gpu_h200.md
    for the measurements behind it): every column is rank-normalised to normal scores first (the copula
    transform: MI-preserving, removes element-wise distortions such as cubes and massive activations); a
    separable critic (one 256-wide hidden layer, 64-d embeddings, plus a zero-initialised linear skip so the
    untrained critic scores 0) scores all B x B pairs of a 512-batch; SMILE (clip 5, Jensen-Shannon gradient),
    1,500 Adam steps (5e-4, cosine). 30% of the samples are held out, in batches of 256: the first picks the best
    checkpoint of those taken every 100 steps (step 0, the untrained critic, included, so an estimate is never
    below 0 because of overfitting), the other held-out batches give the value (the SMILE bound there: DV with
    the partition term's ratios clipped to e^+-5) and its stderr. Three checks, read out on the same held-out
    batches, turn into flags: the same critics trained on half the training pairs (sample_limited: the estimate
    still grows with N), a concat critic (2 x 256) and the closed-form Gaussian critic (critic_limited: another
    critic finds clearly more). Compute: three neural critic sets (main, half-N, concat) of 1,500 x 512 pairs,
    about 3x one critic and still ~0.1% of the paper's 10,000 full-batch steps over 300,000 pairs per critic;
    pass convergence_check=False, critic_check=None, gaussian_check=False for a single critic.
    The reported value is then chosen (select=True, `ie_jax.mi.selection`) among the Gaussian copula, KSG (low
    widths), a radial KSG and the neural critic, on held-out selection batches (batches 1.. after the
    validation batch, about a third of the rest); the neural value is read out on the remaining batches only.
    select=False gives the neural critic's held-out bound alone.

Any key can be overridden per call: `estimate(x, y, protocol="fast", steps=500, bound="dv")`.
"""

from __future__ import annotations

import dataclasses
import math

from ie_jax.mi.train import TrainConfig

READOUTS = ("heldout", "paper")

PROTOCOLS: dict[str, dict] = {
    "paper": dict(
        critic="paper", bound="dv", steps=10_000, batch_size=None, lr=1e-4, schedule="paper", warmup_steps=5,
        end_lr=1e-8, power=3.0, dtype="float32", eval_every=0, loss_scale=1.0 / math.log(2.0),
        readout="paper", test_fraction=0.0, standardize=False, convergence_check=False,
        critic_check=None, gaussian_check=False, select=False, eval_batch_size=None,
    ),
    "fast": dict(
        critic="separable", hidden=(256,), embed_dim=64, skip=True, bound="smile", smile_clip=5.0, steps=1_500,
        batch_size=512, lr=5e-4, schedule="cosine", warmup_steps=50, dtype="float32", eval_every=100,
        early_stopping=True, readout="heldout", test_fraction=0.3, standardize="rank", convergence_check=True,
        critic_check="concat", gaussian_check=True, select=True, eval_batch_size=256,
    ),
}

# Settings that shape the data or the readout rather than the compiled training program.
RUN_OPTIONS = ("readout", "test_fraction", "standardize", "convergence_check", "critic_check", "gaussian_check",
               "select", "eval_batch_size", "max_problems_per_chunk",
               "memory_budget_bytes")


def resolve(protocol: str, overrides: dict) -> tuple[TrainConfig, dict]:
    """(TrainConfig, run options) for a protocol name plus per-call overrides; ValueError on unknown keys."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {tuple(PROTOCOLS)}")
    settings = {"max_problems_per_chunk": None, "memory_budget_bytes": None, "select": False, "eval_batch_size": None,
                **PROTOCOLS[protocol]}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - train_keys - set(RUN_OPTIONS)
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}: use any of {sorted(train_keys | set(RUN_OPTIONS))}")
    settings.update(overrides)
    if settings["readout"] not in READOUTS:
        raise ValueError(f"unknown readout {settings['readout']!r}: use one of {READOUTS}")
    test_fraction = float(settings["test_fraction"])
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if settings["readout"] == "heldout" and test_fraction == 0.0:
        raise ValueError("readout='heldout' needs test_fraction > 0 (or use readout='paper')")
    if settings["critic_check"] not in (None, False, "concat", "separable"):
        raise ValueError(f"unknown critic_check {settings['critic_check']!r}: use 'concat', 'separable' or None")
    if settings["standardize"] not in (True, False, None, "rank", "zscore", "none"):
        raise ValueError(f"unknown standardize {settings['standardize']!r}: use 'rank', 'zscore' or 'none'")
    if settings["eval_batch_size"] is not None and int(settings["eval_batch_size"]) < 2:
        raise ValueError(f"eval_batch_size must be >= 2 (or None: the training batch size), got {settings['eval_batch_size']}")
    cfg = TrainConfig(**{k: v for k, v in settings.items() if k in train_keys})
    return cfg, {k: settings[k] for k in RUN_OPTIONS}
