"""One interface for every MI estimator: `get_estimator(name, **settings)`, then `est(x, y)`.

Every estimator takes P problems at once, x [P, N, dx] and y [P, N, dy], and returns `MIEstimates` (nats);
one with several settings (the noise estimator over a sigma grid) returns one `MIEstimates` per setting from
`estimate_settings`. Settings are checked when the estimator is made, so a bad one fails before any work.
What a sweep needs to plan its chunks is part of the interface: `min_samples(dx, dy)`,
`bytes_per_problem(n, dx, dy)` (device memory per problem, `ie_jax.mi.chunks`) and `setting_params` (what
identifies a run).

  neural          critics trained on variational bounds (`ie_jax.mi.estimate_batch`); settings: protocol,
                  seeds, mesh and any protocol setting (steps=, batch_size=, ...)
  noise           noise-regularised MI over the sample (`ie_jax.mi.noise`); settings: sigma (a number or a
                  grid), seed, n_mc, normaliser, rtol, chunk, mesh, margin_nats, dtype
  exact_discrete  plug-in MI of the distinct states (`ie_jax.mi.discrete`); settings: rtol, margin_nats, discrete
  gaussian        closed-form Gaussian (CCA) MI (`ie_jax.mi.gaussian`); settings: ridge, bias_corrected
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from ie_jax.mi.result import MIEstimate, MIEstimates

ESTIMATOR_NAMES = ("neural", "noise", "exact_discrete", "gaussian")
# The default of `ie_jax.measure` on every backend: IE(sigma) over a grid of noise levels two and a half decades
# wide, so that at every layer some sigma leaves both terms measurable (below their ceilings, not resting on the
# sample's own points), and fine (steps of 1.4-1.7x), because the step from "the sample's points" to "nothing
# left" spans about a factor of 3 in sigma. The levels share the estimator's matmuls, so 16 cost little more
# than one. The sweep reports the smallest sigma at which the most layers are measured.
DEFAULT_ESTIMATOR = "noise"
DEFAULT_SIGMAS = (0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 70.0, 100.0)


def estimator_name(estimator: str | None, protocol: str | None) -> str:
    """The estimator a sweep runs: `estimator` if given, neural when only a protocol is named, else the default."""
    if estimator is not None:
        return estimator
    return "neural" if protocol is not None else DEFAULT_ESTIMATOR


class Estimator:
    """A batched MI estimator over S settings (S = 1 except for a noise sigma grid).

    `est(x, y)` -> MIEstimates for one setting; `est.estimate_settings(x, y)` -> [S] MIEstimates.
    """

    name: str = ""

    @property
    def settings(self) -> tuple[str, ...]:
        """One label per setting (e.g. "noise sigma=0.3")."""
        return (self.name,)

    @property
    def setting_params(self) -> list[dict]:
        """Per setting, the settings that decide its numbers (JSON-able): a run's identity."""
        return [{"estimator": self.name, **self.options}]

    def min_samples(self, dx: int, dy: int) -> int:
        return 2

    def bytes_per_problem(self, n: int, dx: int, dy: int) -> int:
        """Device memory one problem needs in a call on P problems, which needs at most P times this (per
        device, P / devices of them): its inputs x, y, every array kept between the estimator's programs and the
        largest program's working memory. Chunks are planned by it (`ie_jax.mi.chunks.plan`); tests hold it to
        the compiled programs' `memory_analysis()` (tests/mi/test_chunks.py). Default (estimators that compute on
        the host): x and y in float32."""
        return 4 * n * (dx + dy)

    def n_devices(self, n_problems: int) -> int:
        """Devices a call on n_problems problems spreads them over (each holds its share of the chunk)."""
        return 1

    def estimate_settings(self, x, y) -> list[MIEstimates]:
        raise NotImplementedError

    def __call__(self, x, y) -> MIEstimates:
        if len(self.settings) != 1:
            raise ValueError(f"this estimator has {len(self.settings)} settings ({', '.join(self.settings)}): "
                             "use estimate_settings(x, y) for one result per setting")
        return self.estimate_settings(x, y)[0]


def get_estimator(name: str = "neural", **settings) -> Estimator:
    """The estimator `name` ("neural", "noise", "exact_discrete", "gaussian") with its settings checked."""
    if name not in _ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}: use one of {ESTIMATOR_NAMES}")
    return _ESTIMATORS[name](**settings)


def _check_keys(name: str, given: dict, allowed) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for estimator {name!r}: use any of {sorted(allowed)}")


def _as_batch(x, y, *, keep_device: bool = False):
    """x, y as [P, N, d] arrays: numpy, or with keep_device, jax arrays left where they are (no host copy)."""
    import jax

    x, y = (a if keep_device and isinstance(a, jax.Array) else np.asarray(a) for a in (x, y))
    if x.ndim != 3 or y.ndim != 3:
        raise ValueError(f"x and y must have shape [P, N, d] (P problems of N samples); got {x.shape} and {y.shape}: "
                         "add a problem axis with x[None]")
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(f"x {x.shape} and y {y.shape} must agree in P (problems) and N (samples)")
    return x, y


class NeuralEstimator(Estimator):
    """Critics trained on a variational bound (`ie_jax.mi.estimate_batch`) under a named protocol."""

    name = "neural"

    def __init__(self, protocol: str = "fast", seeds=(0,), mesh=None, **overrides):
        from ie_jax.mi.protocols import resolve

        self.protocol, self.mesh = protocol, mesh
        self.seeds = tuple(int(s) for s in np.atleast_1d(seeds))
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed")
        self.cfg, self.run_options = resolve(protocol, overrides)  # raises on unknown or bad settings
        self.options = dict(overrides)

    @property
    def settings(self) -> tuple[str, ...]:
        # the fast protocol reports whichever candidate its selection chose (each estimate's label says which)
        selecting = self.protocol == "fast" and self.run_options.get("select", False)
        return ("fast protocol (selection)" if selecting else f"neural {self.protocol}",)

    @property
    def setting_params(self) -> list[dict]:
        return [{"estimator": "neural", "protocol": self.protocol, "seeds": list(self.seeds), **self.options}]

    def min_samples(self, dx: int, dy: int) -> int:
        """Smallest N whose training split fills one batch and, for a held-out readout, leaves 2 test pairs."""
        batch, test_fraction = self.cfg.batch_size or 2, self.run_options["test_fraction"]
        n = batch
        while True:
            n_test = int(round(n * test_fraction))
            if n - n_test >= batch and (self.run_options["readout"] != "heldout" or n_test >= 2):
                return n
            n += 1

    def bytes_per_problem(self, n: int, dx: int, dy: int) -> int:
        from ie_jax.mi.estimate import bytes_per_problem

        return bytes_per_problem(n, dx, dy, protocol=self.protocol, seeds=self.seeds, **self.options)

    def n_devices(self, n_problems: int) -> int:
        from ie_jax import distributed

        return self.mesh.devices.size if self.mesh is not None else distributed.mesh_size(n_problems)

    def estimate_settings(self, x, y) -> list[MIEstimates]:
        from ie_jax.mi.estimate import estimate_batch

        x, y = _as_batch(x, y, keep_device=True)
        return [estimate_batch(x, y, protocol=self.protocol, seeds=self.seeds, mesh=self.mesh, **self.options)]


class NoiseEstimator(Estimator):
    """Noise-regularised MI (`ie_jax.mi.noise`) at one or several noise levels (one setting each)."""

    name = "noise"

    def __init__(self, sigma=DEFAULT_SIGMAS, seed: int = 0, mesh=None, **options):
        from ie_jax.mi import noise

        allowed = [k for k in inspect.signature(noise.noise_mi_batch).parameters
                   if k not in ("x", "y", "sigma", "seed", "mesh", "units")]
        _check_keys(self.name, options, allowed)
        self.sigmas = tuple(float(s) for s in np.atleast_1d(DEFAULT_SIGMAS if sigma is None else sigma))
        self.seed, self.mesh, self.options = int(seed), mesh, dict(options)
        noise.check_settings(self.sigmas, **{k: v for k, v in options.items() if k != "margin_nats"})

    @property
    def settings(self) -> tuple[str, ...]:
        return tuple(f"noise sigma={s:g}" for s in self.sigmas)

    @property
    def setting_params(self) -> list[dict]:
        return [{"estimator": "noise", "sigma": s, "normaliser": "centred_std", "seed": self.seed, **self.options}
                for s in self.sigmas]

    def bytes_per_problem(self, n: int, dx: int, dy: int) -> int:
        from ie_jax.mi.noise import bytes_per_problem

        sizes = {k: self.options[k] for k in ("n_mc", "chunk", "dtype") if k in self.options}
        return bytes_per_problem(n, dx, dy, n_sigmas=len(self.sigmas), **sizes)

    def n_devices(self, n_problems: int) -> int:
        return 1 if self.mesh is None else self.mesh.devices.size

    def estimate_settings(self, x, y) -> list[MIEstimates]:
        from ie_jax.mi.noise import noise_mi_batch

        x, y = _as_batch(x, y, keep_device=True)
        return noise_mi_batch(x, y, sigma=self.sigmas, seed=self.seed, mesh=self.mesh, **self.options)


class ExactDiscreteEstimator(Estimator):
    """Plug-in MI of the distinct states (`ie_jax.mi.discrete.exact_discrete_mi`), one problem at a time."""

    name = "exact_discrete"

    def __init__(self, **options):
        _check_keys(self.name, options, ("rtol", "margin_nats", "discrete"))
        if options.get("discrete") is False:
            raise ValueError("exact_discrete counts distinct states of discrete data; Gaussian-input states are "
                             "continuous: use estimator='noise' or a neural protocol")
        if not options.get("rtol", 1e-4) > 0:
            raise ValueError(f"rtol must be > 0; got {options['rtol']}")
        self.options = options

    @property
    def setting_params(self) -> list[dict]:
        return [{"estimator": self.name, **{k: v for k, v in self.options.items() if k != "discrete"}}]

    def estimate_settings(self, x, y) -> list[MIEstimates]:
        from ie_jax.mi.discrete import exact_discrete_mi

        x, y = _as_batch(x, y)
        options = {"discrete": True, **self.options}
        return [MIEstimates.stack([exact_discrete_mi(a, b, **options) for a, b in zip(x, y)])]


class GaussianEstimator(Estimator):
    """Closed-form Gaussian (CCA) MI (`ie_jax.mi.gaussian.gaussian_mi`); no error estimate of its own."""

    name = "gaussian"

    def __init__(self, **options):
        _check_keys(self.name, options, ("ridge", "bias_corrected"))
        if not options.get("ridge", 1e-6) >= 0:
            raise ValueError(f"ridge must be >= 0, got {options['ridge']}")
        self.options = options

    def min_samples(self, dx: int, dy: int) -> int:
        if self.options.get("ridge", 1e-6) == 0:  # no ridge: the joint covariance needs N > dx + dy
            return dx + dy + 1
        return max(dx, dy) + 2  # sample covariances of d-dim states need more than d samples

    def estimate_settings(self, x, y) -> list[MIEstimates]:
        from ie_jax.mi.gaussian import gaussian_mi

        x, y = _as_batch(x, y)
        n = x.shape[1]
        values = [float(gaussian_mi(a, b, **self.options)) for a, b in zip(x, y)]
        return [MIEstimates.stack([MIEstimate(v, math.nan, (math.nan, math.nan), "nats", "gaussian",
                                              {"n_samples": n}) for v in values])]


_ESTIMATORS = {"neural": NeuralEstimator, "noise": NoiseEstimator, "exact_discrete": ExactDiscreteEstimator,
               "gaussian": GaussianEstimator}
