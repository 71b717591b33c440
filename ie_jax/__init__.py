"""ie_jax: Information Emergence (Chen et al., ACL 2025) in language models, measured with JAX.

Top-level names are imported lazily so that `import ie_jax` stays cheap and a
sub-package can be used on its own (e.g. `ie_jax.mi` without any model code).
"""

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("ie_jax.models", "load_model"),
    "measure": ("ie_jax.ie.measure", "measure"),
    "IEResult": ("ie_jax.ie.result", "IEResult"),
}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in {"mi", "models", "ie", "paper", "sharding", "distributed", "cli"}:
        return importlib.import_module(f"ie_jax.{name}")
    raise AttributeError(f"module 'ie_jax' has no attribute {name!r}")
