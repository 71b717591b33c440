"""What a sweep will cost, decided before it starts: CPU-aware CLI defaults, and a warning naming the faster
choice when a chosen setting will take far longer than the defaults (the neural protocols on a CPU).

The neural protocols train a critic per MI problem (the fast one: 1,500 steps of 512 pairs, twice with its
critic check). A GPU runs hundreds of problems at once; a CPU runs them one core-bound step at a time, so the
embedded default's 480 problems take hours there. The noise estimator needs no training and finishes in
minutes, so it is the default where JAX finds no accelerator.
"""

from __future__ import annotations

import jax

# `ie-jax measure` defaults: the noise-regularised IE(sigma) on every backend (`ie_jax.mi.estimators.
# DEFAULT_ESTIMATOR`); 1,000 sequences where JAX's backend is the CPU (minutes), 8,192 with an accelerator.
CPU_DEFAULTS = {"estimator": "noise", "samples": 1000}
ACCELERATOR_DEFAULTS = {"estimator": "noise", "samples": 8192}

# Seconds per critic step of one MI problem, fast protocol as a whole (512 pairs a step, d = 576, its critic
# check included): 0.0276 s of CPU time, the slope between 100 and 300 steps of estimate_batch on 2 problems of
# 2,048 x 576 (jax 0.10.2, 2026-12-02, early stopping off). Counted as wall time, i.e. one core's worth: the
# shared 2-core machine it was measured on gave no clean figure for how well XLA spreads a step over cores.
CPU_FAST_STEP_S = 0.0276
FAST_PAIRS_PER_STEP, FAST_HIDDEN = 512, 576
# Warn when the estimate exceeds this.
SLOW_S = 30 * 60


def accelerator() -> str | None:
    """JAX's backend ("gpu", "tpu", ...) or None on a CPU-only machine."""
    backend = jax.default_backend()
    return None if backend == "cpu" else backend


def measure_defaults() -> dict:
    """The estimator and sample count `ie-jax measure` uses when the user gives neither."""
    return dict(ACCELERATOR_DEFAULTS if accelerator() else CPU_DEFAULTS)


def neural_cpu_seconds(protocol: str, overrides: dict, *, n_problems: int, n_seeds: int, n_samples: int,
                       hidden_size: int) -> float:
    """Rough CPU time of a neural protocol: critic steps x pairs per step x state width, scaled from the fast
    protocol's measured rate (CPU_FAST_STEP_S). An order of magnitude, not a promise."""
    from ie_jax.mi.protocols import resolve

    cfg, options = resolve(protocol, overrides)
    pairs = cfg.batch_size or n_samples * (1 - options["test_fraction"])  # None: full batch
    per_step = CPU_FAST_STEP_S * (pairs / FAST_PAIRS_PER_STEP) * (hidden_size / FAST_HIDDEN)
    return n_problems * n_seeds * cfg.steps * per_step


def slow_warning(estimator: str | None, protocol: str, overrides: dict, *, n_problems: int, n_seeds: int,
                 n_samples: int, hidden_size: int) -> str | None:
    """A one-line warning when the neural protocol will take far longer here than the CPU default; else None."""
    if estimator != "neural" or accelerator():
        return None
    seconds = neural_cpu_seconds(protocol, overrides, n_problems=n_problems, n_seeds=n_seeds, n_samples=n_samples,
                                 hidden_size=hidden_size)
    if seconds < SLOW_S:
        return None
    return (f"the neural {protocol} protocol on {n_problems} MI problems ({n_seeds} seed(s), {n_samples} samples, "
            f"width {hidden_size}) needs up to about {_duration(seconds)} on a CPU. Faster: --estimator noise (minutes "
            f"here), fewer --layers, --no-token-curve, or a GPU (README: On a GPU / TPU).")


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"
