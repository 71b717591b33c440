"""ie_jax.mi: mutual-information estimation (neural bounds, closed forms, counting, noise-regularised).

Every estimator through one interface: `get_estimator(name, **settings)` ("neural", "noise", "exact_discrete",
"gaussian"), then `est(x [P, N, dx], y [P, N, dy]) -> MIEstimates` (see `ie_jax.mi.estimators`).
Neural estimation directly: `estimate(x, y)` and `estimate_batch(x, y)` (P problems in one compiled program);
named protocols in `PROTOCOLS` ("paper": the reference exactly, "fast": the default).
Other estimators and test problems are imported on first use: `gaussian_mi`, `gaussian_copula_mi`,
`gaussian_mi_bias_nats`, `groundtruth`, `bounds`, `exact_discrete_mi`, `noise_mi`.
"""

from ie_jax.mi.estimate import estimate, estimate_batch
from ie_jax.mi.estimators import ESTIMATOR_NAMES, Estimator, get_estimator
from ie_jax.mi.protocols import PROTOCOLS
from ie_jax.mi.result import DIAGNOSTIC_KEYS, MIEstimate, MIEstimates

__all__ = ["get_estimator", "Estimator", "ESTIMATOR_NAMES", "estimate", "estimate_batch", "PROTOCOLS", "MIEstimate", "MIEstimates", "DIAGNOSTIC_KEYS",
           "gaussian_mi", "gaussian_copula_mi", "gaussian_mi_bias_nats", "groundtruth", "bounds", "exact_discrete_mi",
           "noise_mi"]

# name -> (module, attribute or None for the module itself); imported lazily so that a helper module
# that is missing or heavy does not break `import ie_jax.mi`.
_LAZY = {
    "gaussian_mi": ("ie_jax.mi.gaussian", "gaussian_mi"),
    "gaussian_copula_mi": ("ie_jax.mi.gaussian", "gaussian_copula_mi"),
    "gaussian_mi_bias_nats": ("ie_jax.mi.gaussian", "gaussian_mi_bias_nats"),
    "groundtruth": ("ie_jax.mi.groundtruth", None),
    "bounds": ("ie_jax.mi.bounds", None),
    "exact_discrete_mi": ("ie_jax.mi.discrete", "exact_discrete_mi"),
    "noise_mi": ("ie_jax.mi.noise", "noise_mi"),
}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'ie_jax.mi' has no attribute {name!r}")
