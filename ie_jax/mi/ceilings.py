"""Ceilings and flags for any MI estimate: what the data and the estimator allow it to show.

An MI estimate from N samples of a deterministic map is bounded by
- the entropy of the distinct states over the sample, min(H(x), H(y)) <= ln N (plug-in MI cannot exceed it);
- the entropy of the generating distribution where the data generator knows it (e.g. ln of the number of
  possible ICL orderings), which the sample entropy approaches only as N grows;
- the estimator's own cap: ln B for InfoNCE with batch B, about ln M for DV-type bounds with M marginal pairs.
An estimate within `margin_nats` of the smallest of these is a lower bound only ("saturated"); a shuffled-pairs
null (the same estimator on y permuted) gives the level that means "no dependence" for that estimator.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from ie_jax.mi.discrete import as_state_pair, coverage, distinct_states, distinct_states_batch, plugin_entropy
from ie_jax.mi.result import (SATURATION_MARGIN_NATS, MIEstimate, MIEstimates, saturated, saturation_ceiling,
                              with_flags)


@dataclasses.dataclass(frozen=True)
class StateCounts:
    """The distinct states of one variable over its sample (see `ie_jax.mi.discrete.distinct_states`)."""

    n_samples: int
    n_distinct: int
    entropy_nats: float  # plug-in entropy of the distinct states: what MI over the sample can reach at most
    covered: bool = False  # the sample covers the states (`ie_jax.mi.discrete.coverage`): entropy_nats is exact

    @classmethod
    def of(cls, labels: np.ndarray, n_distinct: int) -> "StateCounts":
        return cls(len(labels), int(n_distinct), plugin_entropy(labels), coverage(labels)["covered"])


def state_counts(states, *, rtol: float = 1e-4) -> list[StateCounts]:
    """StateCounts of V variables [V, N, d] at once (one device pass, `distinct_states_batch`)."""
    return [StateCounts.of(labels, n) for labels, n in distinct_states_batch(states, rtol=rtol)]


def icl_orderings_entropy(n_entities: int, n_shots: int, *, with_replacement: bool = False) -> float:
    """ln of the number of ordered lists of `n_shots` entities out of `n_entities`, in nats.

    Without replacement (distinct entities, the ICL lists of the paper): ln(n! / (n - k)!); with
    replacement: k ln n. Uniform sampling over the lists makes this the generator's entropy.
    """
    if n_entities < 1 or n_shots < 0:
        raise ValueError(f"need n_entities >= 1 and n_shots >= 0; got {n_entities}, {n_shots}")
    if with_replacement:
        return n_shots * math.log(n_entities)
    if n_shots > n_entities:
        raise ValueError(
            f"cannot draw {n_shots} distinct entities out of {n_entities}: pass with_replacement=True"
        )
    return math.lgamma(n_entities + 1) - math.lgamma(n_entities - n_shots + 1)


_PARTITION_BOUNDS = ("dv", "mine", "smile", "nwj")


def estimator_cap(bound: str, *, batch_size: int | None = None, n_marginal: int | None = None) -> float:
    """The most an MI lower bound can report from its sample, in nats.

    InfoNCE with batch B: exactly ln B (each row is a B-way classification). DV-type bounds (dv, mine,
    smile, nwj) estimate the partition term from M shuffled pairs: a critic that separates the joint pairs
    from those M marginal pairs reaches about ln M, beyond which the estimate reflects the critic's scale,
    not the data (the issue saw DV move from -0.9 to 8.4 nats with M).
    """
    if bound == "infonce":
        if not batch_size or batch_size < 1:
            raise ValueError("estimator_cap('infonce') needs batch_size >= 1")
        return math.log(batch_size)
    if bound in _PARTITION_BOUNDS:
        if not n_marginal or n_marginal < 1:
            raise ValueError(f"estimator_cap({bound!r}) needs n_marginal >= 1 (the number of shuffled pairs)")
        return math.log(n_marginal)
    raise ValueError(f"unknown bound {bound!r}: use 'infonce' or one of {_PARTITION_BOUNDS}")


def annotate(estimate: MIEstimate, x, y, *, rtol: float = 1e-4, **ceiling_settings) -> MIEstimate:
    """Return `estimate` with ceilings and flags added to its diagnostics (existing keys kept, ceilings merged).

    x: [N, dx], y: [N, dy] the samples it was computed from; rtol: tolerance of `distinct_states`;
    ceiling_settings: the keyword arguments of `annotate_counts` (estimator_cap_nats, ..., margin_nats).
    """
    x, y = as_state_pair(x, y)
    counts = [StateCounts.of(*distinct_states(a, rtol=rtol)) for a in (x, y)]
    return annotate_counts(estimate, *counts, **ceiling_settings)


def annotate_counts(
    estimate: MIEstimate,
    x_counts: StateCounts,
    y_counts: StateCounts,
    *,
    estimator_cap_nats: float | None = None,
    data_entropy_nats: float | None = None,
    generating_entropy_nats: float | None = None,
    null_estimate: MIEstimate | None = None,
    margin_nats: float = SATURATION_MARGIN_NATS,
) -> MIEstimate:
    """`estimate` with ceilings and flags added, from the variables' StateCounts (computed once per variable,
    e.g. by `state_counts`; `annotate` computes them from the samples).

    Args:
      estimate: any MIEstimate (nats or bits; comparisons are made in nats).
      x_counts, y_counts: distinct states and their entropy of the samples the estimate was computed from.
      estimator_cap_nats: the estimator's own cap (`estimator_cap`: ln B for InfoNCE, ln M for DV-type).
      data_entropy_nats: the caller's entropy of the inputs, if known better than the sample's.
      generating_entropy_nats: the generator's entropy, e.g. `icl_orderings_entropy(24, 4)`.
      null_estimate: the same estimator on shuffled pairs (`shuffled_null`): recorded as null_nats.
      margin_nats: saturated when the value is within this of the smallest ceiling (or above it).
    Diagnostics added: n_distinct_x, n_distinct_y, entropy_x_nats, entropy_y_nats, sample_entropy_nats
      (= min of the two: MI over the sample can't exceed it), ceilings (dict name -> nats), ceiling_nats,
      covered (both sides' discrete states covered by the sample: its entropies are exact, so reaching them is a
      measurement), saturated (within margin of a ceiling that is not exact), above_ceiling (value > ceiling + margin: the estimate is not supported by the sample),
      constant, n_samples, margin_nats, null_nats (if given).
    """
    n = x_counts.n_samples
    nx, ny = x_counts.n_distinct, y_counts.n_distinct
    hx, hy = x_counts.entropy_nats, y_counts.entropy_nats
    if y_counts.n_samples != n:
        raise ValueError(f"x and y must have the same number of samples; got {n} and {y_counts.n_samples}")
    ceilings = dict(estimate.diagnostics.get("ceilings", {}))
    ceilings["ln_n_samples"] = math.log(n)
    ceilings["sample_entropy"] = min(hx, hy)
    for name, value in (
        ("estimator_cap", estimator_cap_nats),
        ("data_entropy", data_entropy_nats),
        ("generating_entropy", generating_entropy_nats),
    ):
        if value is not None:
            ceilings[name] = float(value)
    ceiling = min(ceilings.values())
    value = estimate.to("nats").value
    constant = nx == 1 or ny == 1
    # Over covered discrete states the sample's entropies are the population's: reaching them is exact.
    covered = x_counts.covered and y_counts.covered
    diagnostics = dict(estimate.diagnostics)
    diagnostics.update(
        n_samples=n,
        n_distinct_x=nx,
        n_distinct_y=ny,
        entropy_x_nats=hx,
        entropy_y_nats=hy,
        sample_entropy_nats=min(hx, hy),
        ceilings=ceilings,
        ceiling_nats=ceiling,
        covered=covered,
        saturated=saturated(value, saturation_ceiling(ceilings, covered), constant=constant, margin_nats=margin_nats),
        above_ceiling=bool(value > ceiling + margin_nats),
        constant=constant,
        margin_nats=margin_nats,
    )
    if null_estimate is not None:
        diagnostics["null_nats"] = null_estimate.to("nats").value
    return dataclasses.replace(estimate, diagnostics=with_flags(diagnostics))


def annotate_batch(estimates: MIEstimates, x, y, **kwargs) -> MIEstimates:
    """`annotate` for each problem of a batch: x [P, N, dx], y [P, N, dy]; same keyword arguments."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(estimates) or len(y) != len(estimates):
        raise ValueError(f"need one x and y per estimate: {len(estimates)} estimates, {len(x)} x, {len(y)} y")
    return MIEstimates.stack([annotate(e, xp, yp, **kwargs) for e, xp, yp in zip(estimates, x, y)])


def shuffled_null(estimator_fn: Callable[..., MIEstimate], x, y, *, seed: int = 0, **kwargs) -> MIEstimate:
    """The same estimator on shuffled pairs (y permuted with `seed`): its level when x and y are independent.

    `estimator_fn(x, y, **kwargs) -> MIEstimate`. The true MI of shuffled pairs is 0 (up to finite-N
    dependence); anything above is the estimator's bias at this N and dimension (e.g. about d^2 / 2N for
    the Gaussian closed form, (Kx - 1)(Ky - 1) / 2N for plug-in counting).
    """
    y = np.asarray(y)
    perm = np.random.default_rng(seed).permutation(y.shape[0])
    result = estimator_fn(np.asarray(x), y[perm], **kwargs)
    return dataclasses.replace(
        result, diagnostics={**result.diagnostics, "shuffled_null": True, "permutation_seed": seed}
    )
